"""/metrics and the JSON API rendered once per snapshot, served as cached bytes (plain and gzip)."""

from __future__ import annotations

import gc
import gzip
import json
import threading
import weakref

import pytest
import requests
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from exporter.config import load_settings
from exporter.pipeline.poller import Poller
from exporter.sinks import prometheus as prometheus_sink
from exporter.sinks.http import HttpServer, make_app
from exporter.sinks.prometheus import Exposition

from .replay import ReplaySource

OPENMETRICS = "application/openmetrics-text; version=1.0.0"


@pytest.fixture
def served():
    """A poller over the recorded polls, an Exposition with one live gauge, and the HTTP app on a free port."""
    poller = Poller(ReplaySource(), load_settings())
    poller.poll()
    live = CollectorRegistry(auto_describe=False)
    gauge = Gauge("live_scrape_gauge", "Changes between scrapes.", registry=live)
    exposition = Exposition(lambda: poller.snapshot, live)
    server = HttpServer(make_app(exposition, lambda: poller.snapshot), "127.0.0.1", 0).start()
    yield poller, exposition, gauge, f"http://127.0.0.1:{server.port}"
    server.stop()
    poller.close()


@pytest.fixture
def renders(monkeypatch):
    """Counts renders of a snapshot."""
    count = [0]
    original = prometheus_sink.render

    def counting(*args, **kwargs):
        count[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(prometheus_sink, "render", counting)
    return count


def families(text: str) -> dict[str, list]:
    return {f.name: f.samples for f in parse_text(text)}


def test_a_snapshot_is_rendered_once_however_often_it_is_scraped(served, renders):
    poller, exposition, gauge, _ = served
    first, _ = exposition.body()
    for _ in range(5):
        assert exposition.body()[0] == first
    assert renders[0] == 1
    poller.poll()  # a new snapshot: rendered again, once
    second, _ = exposition.body()
    exposition.body()
    assert renders[0] == 2 and second != first


def test_the_live_part_is_fresh_at_every_scrape(served):
    _, exposition, gauge, _ = served
    gauge.set(1)
    assert families(exposition.body()[0].decode())["live_scrape_gauge"][0].value == 1
    gauge.set(2)
    assert families(exposition.body()[0].decode())["live_scrape_gauge"][0].value == 2


def test_warm_renders_the_new_snapshot_in_every_format_scraped_so_far(served, renders):
    poller, exposition, _, _ = served
    exposition.body()
    exposition.body(OPENMETRICS)
    assert renders[0] == 2
    poller.poll()
    exposition.warm()
    assert renders[0] == 4
    exposition.body()
    exposition.body(OPENMETRICS)
    assert renders[0] == 4  # the scrapes found them rendered


def test_concurrent_scrapes_of_a_new_snapshot_render_it_once(served, renders):
    _, exposition, _, _ = served
    bodies = []
    threads = [threading.Thread(target=lambda: bodies.append(exposition.body()[0])) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert renders[0] == 1 and len(set(bodies)) == 1


def test_gzip_is_one_valid_stream_equal_to_the_plain_body(served):
    _, exposition, _, url = served
    plain = requests.get(f"{url}/metrics", headers={"Accept-Encoding": "identity"}, timeout=10)
    assert "Content-Encoding" not in plain.headers
    raw = requests.get(f"{url}/metrics", headers={"Accept-Encoding": "gzip"}, timeout=10, stream=True)
    assert raw.headers["Content-Encoding"] == "gzip" and raw.headers["Vary"] == "Accept-Encoding"
    body = raw.raw.read()  # as sent: two gzip members (the cached snapshot, the live part)
    assert gzip.decompress(body) == plain.content
    assert int(raw.headers["Content-Length"]) == len(body)
    assert len(body) < len(plain.content) / 5


def test_openmetrics_is_negotiated_and_ends_with_a_single_eof(served):
    _, _, _, url = served
    resp = requests.get(f"{url}/metrics", headers={"Accept": OPENMETRICS}, timeout=10)
    assert resp.headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    assert resp.text.endswith("# EOF\n") and resp.text.count("# EOF") == 1
    names = {f.name for f in parse_openmetrics(resp.text)}  # the strict parser accepts the joined body
    assert {"model_serving_exporter_up", "live_scrape_gauge"} <= names
    text = requests.get(f"{url}/metrics", timeout=10)
    assert text.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8" and "# EOF" not in text.text


def test_name_filter_returns_only_the_asked_families(served):
    _, _, _, url = served
    resp = requests.get(f"{url}/metrics", params={"name[]": ["model_serving_exporter_up", "live_scrape_gauge"]}, timeout=10)
    assert set(families(resp.text)) == {"model_serving_exporter_up", "live_scrape_gauge"}


def test_the_json_api_is_serialised_once_per_snapshot_and_gzipped_on_request(served, monkeypatch):
    poller, _, _, url = served
    from exporter.sinks import http as http_sink
    calls = [0]
    original = http_sink.snapshot_json

    def counting(snap):
        calls[0] += 1
        return original(snap)

    monkeypatch.setattr(http_sink, "snapshot_json", counting)
    first = requests.get(f"{url}/api/v1/endpoints", timeout=10)
    again = requests.get(f"{url}/api/v1/endpoints", headers={"Accept-Encoding": "gzip"}, timeout=10)
    assert again.headers["Content-Encoding"] == "gzip" and again.json() == first.json()
    assert calls[0] == 1
    poller.poll()
    assert json.loads(requests.get(f"{url}/api/v1/endpoints", timeout=10).content)["completed_at"] is not None
    assert calls[0] == 2


def test_the_json_api_does_not_keep_an_old_snapshot_alive(served):
    """A snapshot replaced by a newer one is freed even when the JSON API served it last: held, it kept its
    endpoints' minutes alive after they left the windows."""
    poller, _, _, url = served
    assert requests.get(f"{url}/api/v1/endpoints", timeout=10).status_code == 200
    served_last = weakref.ref(poller.snapshot)
    poller.poll()
    gc.collect()
    assert served_last() is None
    # ... and the next request renders the new snapshot, not the cached body of the old one.
    assert requests.get(f"{url}/api/v1/endpoints", timeout=10).json()["completed_at"] == poller.snapshot.completed_at_s
