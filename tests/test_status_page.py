"""The status page over a real HTTP server: worst-first order, escaping of hostile platform values, the
endpoint page's charts, checks, hints and recommendation, the exporter's health. The browser test is
tests/test_status_page_browser.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from html.parser import HTMLParser

import pytest
import requests
from prometheus_client import CollectorRegistry

from exporter.model import (Check, Counters, EndpointInfo, EndpointReport, Figures, Hint, PollStatus, Recommendation,
                            SeriesReport, Snapshot)
from exporter.sinks.http import HttpServer, make_app
from exporter.sinks.prometheus import Exposition

from .examples import healthy_figures

HOSTILE = "<script>document.body.dataset.pwned='1'</script>\"'&amp;"
HOSTILE_TAG = ("team\"><img src=x onerror=alert(1)>", "'; </td></tr></table><h1>x")
NOW = 1_800_000_000.0


def report(name: str, *, up: bool = True, hints: tuple[Hint, ...] = (), breached: tuple[str, ...] = (),
           figures: Figures | None = None, minutes: tuple[Figures, ...] = (), tags: dict | None = None,
           last_error: str | None = None, recommendation: Recommendation | None = None) -> EndpointReport:
    figures = figures or healthy_figures(latency_p99=0.9 if "latency_p99" in breached else 0.08,
                                         error_ratio=0.2 if "error_ratio" in breached else 0.001)
    checks = (Check("latency_p99", figures.latency_p99, 0.5), Check("error_ratio", figures.error_ratio, 0.01))
    info = EndpointInfo(name, platform="databricks", state="READY", tags=tags or {})
    return EndpointReport(info, SeriesReport(None, figures, checks, Counters(), minutes), (),
                          PollStatus(up, NOW - 30, last_error), hints, recommendation)


def hint(severity: str, id_: str = "queueing", detail: str = "raise max_provisioned_concurrency to at least 15") -> Hint:
    return Hint(id_, severity, f"{id_} summary", detail, NOW - 600)  # type: ignore[arg-type]


def minute(i: int, **changes) -> Figures:
    return healthy_figures(minutes=1, latest_minute_ms=(29_999_990 + i) * 60_000, **changes)


FLEET = Snapshot(
    endpoints=(
        report("alpha-ok"),
        report("bravo-down", up=False, last_error="timeout: no answer within 10s"),
        report("charlie-critical", hints=(hint("critical"), hint("warning", "latency_high"))),
        report("delta-warning", breached=("latency_p99",)),
        report("echo-info", hints=(hint("info", "gpu_underused"),)),
        report("foxtrot-waiting", figures=Figures()),
        report("golf-two-breaches", breached=("latency_p99", "error_ratio")),
    ),
    completed_at_s=NOW - 12, poll_duration_s=0.25, polls={"success": 9, "list_failed": 2},
    fetch_errors={("", "bravo-down", "metrics", "timeout"): 3.0, ("", "alpha-ok", "metrics", "timeout"): 1.0,
                  ("", "alpha-ok", "detail", "http_5xx"): 2.0},
    discovered=7, workspace="adb-123.azuredatabricks.net",
)


class Dom(HTMLParser):
    """What a browser would build: the elements (tag, attributes) and the text of the page."""

    def __init__(self, html: str):
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def attr(self, name: str) -> list[str]:
        return [a[name] for _, a in self.elements if a.get(name) is not None]  # type: ignore[misc]


@pytest.fixture
def serve() -> Iterator:
    servers = []

    def start(snap: Snapshot) -> str:
        app = make_app(Exposition(lambda: snap, CollectorRegistry()), lambda: snap, refresh_seconds=30)
        servers.append(HttpServer(app, "127.0.0.1", 0).start())
        return f"http://127.0.0.1:{servers[-1].port}"

    yield start
    for server in servers:
        server.stop()


def test_fleet_is_ordered_worst_first_with_every_column(serve):
    reply = requests.get(serve(FLEET) + "/", timeout=5)
    assert reply.status_code == 200 and reply.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "script-src" not in reply.headers["Content-Security-Policy"]  # default-src 'none': no script runs
    dom = Dom(reply.text)
    rows = [(a["data-endpoint"], a["data-state"]) for tag, a in dom.elements if tag == "tr" and "data-endpoint" in a]
    assert rows == [("charlie-critical", "critical"), ("bravo-down", "down"), ("golf-two-breaches", "warning"),
                    ("delta-warning", "warning"), ("echo-info", "info"), ("foxtrot-waiting", "no data"),
                    ("alpha-ok", "ok")]
    headers = re.findall(r"<th>(?:<a [^>]+>)?([^<]+)(?:</a>)?[ ▾]*</th>", reply.text.split("</thead>")[0])
    assert headers == ["endpoint", "platform", "state", "QPS", "P99", "error %", "queue", "utilisation",
                       "breached checks", "active hints"]
    golf = reply.text.split('data-endpoint="golf-two-breaches"')[1].split("</tr>")[0]
    assert "50.0" in golf and "900 ms" in golf and "20.0 %" in golf and "CPU 40.0 %" in golf
    assert re.search(r"latency_p99</span>, <span[^>]*>error_ratio", golf)
    charlie = reply.text.split('data-endpoint="charlie-critical"')[1].split("</tr>")[0]
    assert ">queueing<" in charlie and ">latency_high<" in charlie
    assert "timeout: no answer within 10s" in reply.text  # why bravo is down
    assert '<meta http-equiv="refresh" content="30">' in reply.text


def test_columns_sort_largest_first_with_no_figure_last(serve):
    fleet = replace(FLEET, endpoints=(
        report("small", figures=healthy_figures(qps=1.0, latency_p99=0.3)),
        report("none", figures=healthy_figures(qps=None, latency_p99=None)),
        report("large", figures=healthy_figures(qps=250.0, latency_p99=0.02)),
        report("middle", figures=healthy_figures(qps=40.0, latency_p99=None)),
    ))
    url = serve(fleet)

    def order(query: str) -> list[str]:
        text = requests.get(url + "/" + query, timeout=5).text
        return [a["data-endpoint"] for tag, a in Dom(text).elements if tag == "tr" and "data-endpoint" in a]

    assert order("?sort=qps") == ["large", "middle", "small", "none"]
    assert order("?sort=p99") == ["small", "large", "middle", "none"]  # no figure last, then worst first (by name)
    assert order("?sort=endpoint") == ["large", "middle", "none", "small"]
    assert order("?sort=<bogus>") == order("") == ["large", "middle", "none", "small"]  # all ok: by name
    assert '<a href="/?sort=qps">QPS</a> ▾' in requests.get(url + "/?sort=qps", timeout=5).text


def test_exporter_health_shows_the_last_poll_and_errors_by_reason(serve):
    text = requests.get(serve(FLEET) + "/", timeout=5).text
    assert "adb-123.azuredatabricks.net" in text
    assert re.search(r'id="last-poll">\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(\d+ s ago, took 250 ms\)', text)
    assert "list_failed 2, success 9" in text
    errors = text.split('id="errors-by-reason">')[1].split("</dd>")[0]
    assert errors == "detail http_5xx: 2, metrics timeout: 4"  # summed over endpoints


def test_hostile_names_and_tags_are_text_never_markup(serve):
    evil = report(HOSTILE, tags=dict([HOSTILE_TAG]), hints=(hint("critical", detail=HOSTILE),),
                  last_error=HOSTILE, up=False, minutes=(minute(0), minute(1)),
                  recommendation=Recommendation(3, 4, HOSTILE))
    url = serve(Snapshot(endpoints=(evil,), completed_at_s=NOW, polls={"success": 1}, workspace=HOSTILE))
    fleet = requests.get(url + "/", timeout=5).text
    link = [href for href in Dom(fleet).attr("href") if href.startswith("/endpoints/")]
    page = requests.get(url + link[0], timeout=5)
    assert page.status_code == 200
    for text in (fleet, page.text):
        dom = Dom(text)
        tags = {tag for tag, _ in dom.elements}
        assert "script" not in tags and "img" not in tags and "h1" in tags
        assert not [a for _, a in dom.elements if "onerror" in a]
        assert HOSTILE in "".join(dom.text)  # shown as the text it is
        assert "<script>" not in text and "&lt;script&gt;" in text
        assert HOSTILE in dom.attr("data-endpoint")  # quotes inside attributes stay inside them
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in fleet
    assert "&lt;/td&gt;&lt;/tr&gt;&lt;/table&gt;" in page.text


def test_endpoint_page_has_charts_checks_hints_and_the_recommendation(serve):
    minutes = (minute(0, qps=10.0, latency_p99=0.2), minute(1, qps=None, latency_p99=None),
               minute(2, qps=30.0, latency_p99=0.9, gpu_ratio=None))
    ep = report("recommender", hints=(hint("critical"),), breached=("latency_p99",), minutes=minutes,
                recommendation=Recommendation(14, 15, "QPS 84-90 per minute x 0.139 s, +15% headroom"))
    page = requests.get(serve(replace(FLEET, endpoints=(ep,))) + "/endpoints/recommender", timeout=5).text
    svgs = re.findall(r"<svg.*?</svg>", page, re.S)
    titles = re.findall(r'<svg[^>]*aria-label="([^"]+)"', page)
    assert titles == ["Requests per second", "Latency", "Error ratio", "Queue depth", "Concurrency", "Utilisation"]
    qps_path = re.search(r'<path d="([^"]+)"', svgs[0]).group(1)
    assert qps_path.count("M") == 2  # the minute without a figure breaks the line
    assert "(target 500 ms)" in page and 'stroke-dasharray="4 3"' in svgs[1]  # the P99 target drawn
    assert "<title>gpu</title>" not in page and "<title>cpu</title>" in page  # never reported: no line, no legend
    assert "min 14, max 15" in page and "+15% headroom" in page
    assert "raise max_provisioned_concurrency to at least 15" in page and "queueing summary" in page
    checks = page.split('id="checks"')[1].split("</table>")[0]
    assert re.search(r"latency_p99</td><td[^>]*>900 ms</td><td[^>]*>500 ms</td><td>yes", checks)
    assert re.search(r"error_ratio</td><td[^>]*>0.1 %</td><td[^>]*>1.0 %</td><td>no", checks)


def test_unknown_endpoint_is_404_and_utf8_names_resolve(serve):
    url = serve(replace(FLEET, endpoints=(report("modèle/fr"),)))
    assert requests.get(url + "/endpoints/nope", timeout=5).status_code == 404
    page = requests.get(url + "/endpoints/mod%C3%A8le%2Ffr", timeout=5)
    assert page.status_code == 200 and 'data-endpoint="modèle/fr"' in page.text


def test_before_the_first_poll_the_page_says_so(serve):
    text = requests.get(serve(Snapshot()) + "/", timeout=5).text
    assert "No endpoints yet: waiting for the first poll" in text
    assert 'id="last-poll">never</dd>' in text and 'id="ready">no: waiting' in text


def test_self_hosted_page_shows_llm_figures_replicas_and_replicas_recommended(serve):
    from exporter.model import Replica

    llm = dict(requests_running=48.0, queue_depth=3.0, queue_depth_method="server", ttft_p50=0.25, ttft_p90=0.8,
               ttft_p99=2.4, ttft_mean=0.31, tpot_mean=0.03, generation_tokens_per_second=1500.0, kv_cache_ratio=0.93)
    minutes = (minute(0, **llm), minute(1, **{**llm, "kv_cache_ratio": 0.97}))
    base = report("chat", figures=healthy_figures(**llm), minutes=minutes,
                  recommendation=Recommendation(2, 3, "256 concurrent requests per replica", unit="replicas"))
    ep = replace(base, info=replace(base.info, platform="self-hosted", server="vllm"),
                 replicas=(Replica("http://10.0.0.5:8000/metrics", True),
                           Replica("http://10.0.0.7:8000/metrics", False, "timeout: no answer within 10s")))
    page = requests.get(serve(replace(FLEET, endpoints=(ep,))) + "/endpoints/chat", timeout=5).text
    assert 'id="server">vllm<' in page
    assert "Recommended replicas: <strong>min 2, max 3</strong>" in page
    titles = re.findall(r'<svg[^>]*aria-label="([^"]+)"', page)
    assert titles[-4:] == ["Time to first token", "Time per output token", "Running and waiting requests", "KV cache"]
    tpot = re.findall(r"<svg.*?</svg>", page, re.S)[-3]
    assert "<title>mean</title>" in tpot and "<title>P99</title>" not in tpot  # only the mean was reported
    table = page.split('id="llm"')[1].split("</table>")[0]
    assert re.search(r"TTFT P50 / P90 / P99</th><td[^>]*>250 ms / 800 ms / 2.40 s<", table)
    assert re.search(r"KV cache \(fullest replica\)</th><td[^>]*>93.0 %<", table)
    assert "TPOT P50" not in table and "TPOT mean" in table  # only what the server reported
    replicas = page.split('id="replicas"')[1].split("</table>")[0]
    assert re.search(r'<tr class="breached"><td>http://10.0.0.7:8000/metrics</td><td>down</td><td>timeout: no answer', replicas)


def test_a_databricks_page_has_no_llm_or_replica_sections(serve):
    page = requests.get(serve(FLEET) + "/endpoints/alpha-ok", timeout=5).text
    assert 'id="llm"' not in page and 'id="replicas"' not in page and "Time to first token" not in page
    assert "Recommended provisioned concurrency" in page or "No recommendation" in page
