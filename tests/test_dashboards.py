"""Grafana dashboards: generated files current, SDK round trip, panel hygiene, and every query run
against a real Prometheus scraping the demo (simulator + daemon over real HTTP)."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models import prometheus as sdk_prometheus
from grafana_foundation_sdk.models.dashboard import Dashboard, Panel, RowPanel

from exporter.catalog import FAMILIES, WORKSPACE_LABEL
from exporter.commands import Demo
from exporter.config import load_settings

from .conftest import require_binary

REPO = Path(__file__).resolve().parent.parent
GRAFANA = REPO / "dashboards" / "grafana"
FILES = ["overview.json", "endpoint.json"]
MINUTE_S = 1.0  # one simulated minute a second, polled every second: data within seconds

# The demo (exporter/simulator/demo.py): a simulated Databricks workspace, and two self-hosted model servers:
# chat-assistant (vLLM, 2 replicas, KV cache ~97 % full, requests waiting; replica 1 down 3 minutes in 20) and
# image-tagger (Triton, 1 GPU replica, queue full at max_queue_size, overflow rejected).
DATABRICKS_ENDPOINTS = ["batch-scorer", "doc-embedder", "fraud-scorer", "recommender", "search-ranker",
                        "support-chat", "vision-classifier"]
LLM, TRITON = "chat-assistant", "image-tagger"
SELF_HOSTED_ENDPOINTS = [LLM, TRITON]
DEMO_ENDPOINTS = DATABRICKS_ENDPOINTS + SELF_HOSTED_ENDPOINTS
# Endpoints that stay busy in the demo (batch-scorer idles by design, and is the one the test faults).
BUSY = ["doc-embedder", "fraud-scorer", "recommender", "search-ranker", "support-chat", "vision-classifier",
        *SELF_HOSTED_ENDPOINTS]
GPU_ENDPOINTS = ["support-chat", "vision-classifier", TRITON]  # Triton publishes nv_gpu_*; the vLLM shape none
ENTITY_ENDPOINTS = ["recommender", "support-chat", TRITON]  # error ratios per served entity (Triton: per model)
# Grafana's built-in variables, as Grafana would set them on a short time range with 1 s scrapes.
BUILTINS = {"__rate_interval": "30s", "__range": "1m", "__interval": "15s"}
REPLICA_LABELS = {"job", "instance"}


def load_build():
    spec = importlib.util.spec_from_file_location("dashboards_build", REPO / "dashboards" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def boards() -> dict[str, dict[str, Any]]:
    return {name: json.loads((GRAFANA / name).read_text(encoding="utf-8")) for name in FILES}


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def panel_queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, expr) for every panel target."""
    return [(f"{p['title']} / {t['refId']}", t["expr"])
            for p in panels(board) for t in p.get("targets", []) if t.get("expr")]


def variable_queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            q = var["query"]
            out.append((var["name"], q["query"] if isinstance(q, dict) else q))
    return out


VARIABLE = re.compile(r"\$\{(\w+)(?::[\w]+)?\}|\$(\w+)|\[\[(\w+)\]\]")


def substitute(expr: str, values: dict[str, str]) -> str:
    """Grafana-style interpolation; an unknown variable is a KeyError (the test then names it)."""
    return VARIABLE.sub(lambda m: values[m.group(1) or m.group(2) or m.group(3)], expr)


LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(.+),\s*)?(\w+)\s*\)\s*$")


def variable_to_promql(query: str) -> tuple[str, str]:
    """Grafana's `label_values(selector, label)` as the PromQL Grafana effectively asks: (expr, label)."""
    m = LABEL_VALUES.match(query)
    assert m, f"unsupported variable query {query!r}"
    label = m.group(2)
    selector = m.group(1) or f'{{{label}!=""}}'
    return f"count by ({label}) ({selector})", label


SELECTOR = re.compile(r"model_serving_\w+(?:\{[^}]*\})?")


# --- static checks ---------------------------------------------------------------------------------

def test_committed_files_are_current():
    build = load_build()
    stale = [str(path.relative_to(REPO)) for path, text in build.render().items()
             if not path.exists() or path.read_text(encoding="utf-8") != text]
    assert not stale, f"stale generated files (run python dashboards/build.py): {stale}"
    assert build.main(["--check"]) == 0


@pytest.mark.parametrize("name", FILES)
def test_json_round_trips_through_the_sdk_model(name: str):
    register_default_plugins()
    data = json.loads((GRAFANA / name).read_text(encoding="utf-8"))
    model = Dashboard.from_json(data)
    assert json.loads(json.dumps(model, cls=JSONEncoder)) == data
    # Decoded into the SDK's typed model, not kept as opaque dicts.
    for panel in model.panels:
        assert isinstance(panel, (Panel, RowPanel))
        for inner in [panel, *(getattr(panel, "panels", None) or [])]:
            for target in getattr(inner, "targets", None) or []:
                assert isinstance(target, sdk_prometheus.Dataquery), (inner.title, type(target))
            if isinstance(inner, Panel):
                assert not isinstance(inner.options, dict), (inner.title, "options not decoded")


@pytest.mark.parametrize("name", FILES)
def test_every_panel_has_a_title_a_unit_and_the_datasource_variable(name: str):
    board = boards()[name]
    assert board["uid"] and board["title"]
    names = [v["name"] for v in board["templating"]["list"]]
    assert names[0] == "datasource"
    ds_var = board["templating"]["list"][0]
    assert ds_var["type"] == "datasource" and ds_var["query"] == "prometheus"
    for panel in panels(board):
        assert panel.get("title"), panel
        if panel["type"] == "row":
            continue
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{panel['title']}: no unit"
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], f"{panel['title']}: no query"
        for target in panel["targets"]:
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            assert var["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, var["name"]
    # No data source uid other than the variable anywhere in the file.
    uids = re.findall(r'"uid": "([^"]*)"', json.dumps(board))
    assert set(uids) == {board["uid"], "${datasource}"}


@pytest.mark.parametrize("name", FILES)
def test_queries_name_no_replica_label_or_recording_rule(name: str):
    for where, expr in panel_queries(boards()[name]):
        assert not re.search(r"\b(job|instance)\b", expr), f"{where}: depends on a replica label: {expr}"
        assert ":" not in re.sub(r"\[[^\]]*\]|\{[^}]*\}|\"[^\"]*\"", "", expr), f"{where}: recording rule? {expr}"


def test_overview_links_to_the_endpoint_dashboard():
    overview, endpoint = boards()["overview.json"], boards()["endpoint.json"]
    text = json.dumps(overview)
    assert f"/d/{endpoint['uid']}/" in text and "var-endpoint=${__value.raw}" in text
    endpoint_names = {v["name"] for v in endpoint["templating"]["list"]}
    assert {"datasource", "platform", "endpoint", "served_entity"} <= endpoint_names


@pytest.mark.parametrize("name", FILES)
def test_the_platform_variable_narrows_the_endpoints_and_queries_use_serving_endpoint(name: str):
    board = boards()[name]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    order = [v["name"] for v in board["templating"]["list"]]
    platform, endpoint = variables["platform"], variables["endpoint"]
    assert order.index("platform") < order.index("endpoint")  # Grafana resolves dependencies in order
    assert platform["query"] == "label_values(model_serving_endpoint_info, platform)"
    assert platform["multi"] and platform["includeAll"] and platform["allValue"] == ".*"
    assert endpoint["query"] == ('label_values(model_serving_endpoint_info{platform=~"$platform", workspace=~"$workspace"}, '
                                 'serving_endpoint)')
    # Two workspaces may each have an endpoint of a name: the workspace variable comes first and narrows it.
    assert order.index("platform") < order.index("workspace") < order.index("endpoint")
    # A custom All value (.*) would select every platform's endpoints whatever the platform variable.
    assert "allValue" not in endpoint or not endpoint["allValue"]
    # The exporter's label is serving_endpoint: `endpoint` is the Prometheus Operator's target label.
    exprs = [expr for _, expr in panel_queries(board) + variable_queries(board)]
    legends = [t.get("legendFormat", "") for p in panels(board) for t in p.get("targets", [])]
    for text in exprs + legends:
        assert not re.search(r"(?<![\w.$])endpoint\s*(=|!=|=~|!~)|\b(by|on|without|ignoring)\s*\([^)]*\bendpoint\b"
                             r"|\{\{\s*endpoint\s*\}\}|exported_endpoint", text), text


# --- against a real Prometheus -------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate: Callable[[], object], timeout: float, what: str | Callable[[], str]) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what() if callable(what) else what}")


class Stack:
    """The demo as `serving-exporter demo` runs it (commands.Demo: simulated workspace, simulated vLLM and
    Triton servers, the daemon polling both) and a Prometheus scraping the daemon as two replicas (jobs
    replica-a and replica-b), so replica-safe aggregation is exercised."""

    def __init__(self, prometheus: str, workdir: Path):
        self.settings = load_settings(overrides=dict(
            listen="127.0.0.1:0", poll_interval_seconds=1, request_timeout_seconds=2,
            retry_budget_seconds=1, max_concurrent_requests=8))
        self.prometheus_bin, self.workdir = prometheus, workdir
        self.demo: Demo | None = None
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self) -> Stack:
        self.demo = Demo(self.settings, MINUTE_S)  # starts the daemon
        self.daemon, self.simulator = self.demo.daemon, self.demo.simulator
        assert self.daemon.wait_ready(15), "no poll completed"
        target = self.daemon.url.removeprefix("http://")
        config = self.workdir / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\nscrape_configs:\n"
            + "".join(f"  - job_name: {job}\n    static_configs: [{{targets: ['{target}']}}]\n"
                      for job in ("replica-a", "replica-b")))
        for _ in range(3):  # the port is picked before Prometheus binds it: retry on a lost race
            port = free_port()
            self.url = f"http://127.0.0.1:{port}"
            log = open(self.workdir / "prometheus.log", "w")
            self.proc = subprocess.Popen(
                [self.prometheus_bin, f"--config.file={config}", f"--storage.tsdb.path={self.workdir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT)
            log.close()
            state = wait_for(lambda: "exited" if self.proc.poll() is not None else self._ready(), 30,
                             "Prometheus to start")
            if state is True:
                return self
        raise AssertionError("Prometheus did not start: " + (self.workdir / "prometheus.log").read_text()[-2000:])

    def _ready(self) -> bool:
        try:
            return requests.get(f"{self.url}/-/ready", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.demo is not None:
            self.demo.stop()

    def control(self, method: str, path: str, body: dict | None = None) -> None:
        requests.request(method, f"{self.simulator.url}/simulator/v1{path}", json=body, timeout=5).raise_for_status()

    def query(self, expr: str) -> dict[str, Any]:
        """The /api/v1/query answer (status, errorType/error or data)."""
        return requests.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10).json()

    def series(self, expr: str) -> list[dict[str, Any]]:
        answer = self.query(expr)
        assert answer["status"] == "success", f"{expr}: {answer.get('errorType')}: {answer.get('error')}"
        return answer["data"]["result"] if answer["data"]["resultType"] == "vector" else [answer["data"]]


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    prometheus = require_binary("prometheus")
    with pytest.MonkeyPatch.context() as mp:  # no developer credentials or ~/.databrickscfg
        for var in [v for v in os.environ if v.startswith(("DATABRICKS_", "SERVING_EXPORTER_"))]:
            mp.delenv(var)
        mp.setenv("HOME", str(tmp_path_factory.mktemp("home")))
        s = Stack(prometheus, tmp_path_factory.mktemp("prometheus"))
        try:
            # A failing endpoint for a moment, so the fetch-error panels have a series to show.
            s.start().control("POST", "/endpoints/batch-scorer/fault", {"kind": "http_500"})
            wait_for(lambda: s.series("model_serving_exporter_fetch_errors_total"), 30, "a fetch error in Prometheus")
            s.control("POST", "/endpoints/batch-scorer/fault", {"kind": "none"})
            ready = [
                'count_over_time(model_serving_requests_total{serving_endpoint="support-chat", served_entity=""}[30s]) >= 4',
                'count_over_time(model_serving_request_errors_total{serving_endpoint="support-chat", served_entity="support-chat-v4"}[30s]) >= 4',
                'count_over_time(model_serving_latency_seconds{serving_endpoint="vision-classifier"}[30s]) >= 2',
                'count_over_time(model_serving_exporter_fetch_errors_total[30s]) >= 2',
                'count(count by (serving_endpoint) (model_serving_remediation{serving_endpoint=~"support-chat|recommender|search-ranker|doc-embedder"})) == 4',
                'model_serving_gpu_utilization_ratio{serving_endpoint="vision-classifier"}',
                # The self-hosted servers: counters (for rates), LLM figures, hints, the Triton queue.
                f'count(count by (serving_endpoint) (count_over_time(model_serving_requests_total{{serving_endpoint=~"{LLM}|{TRITON}", served_entity=""}}[30s]) >= 4)) == 2',
                f'model_serving_time_to_first_token_seconds{{serving_endpoint="{LLM}"}}',
                f'model_serving_remediation{{serving_endpoint="{LLM}", rule="kv_cache_full"}}',
                f'model_serving_queue_depth{{serving_endpoint="{TRITON}"}}',
            ]
            wait_for(lambda: all(s.series(q) for q in ready), 30,
                     lambda: "demo data in Prometheus; none yet for " + str([q for q in ready if not s.series(q)]))
            yield s
        finally:
            s.stop()


def contexts(name: str, entity_values: list[str]) -> dict[str, dict[str, str]]:
    """Variable values per context, as Grafana would interpolate them."""
    common = {**BUILTINS, "slo": "0.99", "docs_url": "http://docs.invalid", "datasource": "prometheus",
              "platform": ".*", "workspace": ".*"}
    if name == "overview.json":
        # The endpoint variable has no custom All value: All is the alternation of the listed endpoints.
        return {"All": {**common, "endpoint": "(" + "|".join(DEMO_ENDPOINTS) + ")"},
                "two endpoints": {**common, "endpoint": "(batch-scorer|support-chat)"}}
    out = {e: {**common, "endpoint": e, "served_entity": "^$"} for e in DEMO_ENDPOINTS}
    for entity in entity_values:
        out[f"support-chat/{entity}"] = {**common, "endpoint": "support-chat", "served_entity": entity}
    return out


# What each server publishes, from the simulated servers' metric families (exporter/simulator/model_servers/):
# only vLLM has token latencies, token rates, a KV cache and a running-requests gauge; Triton publishes no latency
# histogram (means only: no percentiles); both count their own queue and have replicas; neither has Databricks'
# recommended provisioned concurrency.
LLM_ONLY = re.compile(r"model_serving_(requests_running|time_to_first_token|time_per_output_token|prompt_tokens|"
                      r'generation_tokens|kv_cache|preemptions)|check="(ttft_p99|tpot_p99|kv_cache_utilization)"')
SERVER_ONLY = re.compile(r'model_serving_(replica_up|recommended_replicas)|method="server"')  # queue as counted by the server
PERCENTILES = re.compile(r"model_serving_(latency_seconds|request_duration_seconds_bucket)\b")
HINTED = ["recommender", "search-ranker", "doc-embedder", LLM, TRITON]  # hints active from the start


def expected_endpoints(expr: str) -> list[str]:
    """The demo endpoints an endpoint-dashboard query must show data for."""
    if LLM_ONLY.search(expr):
        return [LLM]
    if SERVER_ONLY.search(expr):
        return SELF_HOSTED_ENDPOINTS
    if "gpu" in expr:
        return GPU_ENDPOINTS
    if 'served_entity!=""' in expr:
        return ENTITY_ENDPOINTS
    if "remediation" in expr:
        return HINTED
    if "recommended_concurrency" in expr:
        return [e for e in BUSY if e not in SELF_HOSTED_ENDPOINTS]
    if re.search(r"model_serving_(cpu|memory)_utilization", expr):  # the vLLM shape publishes no process figures
        return [e for e in BUSY if e != LLM]
    if PERCENTILES.search(expr):
        return [e for e in BUSY if e != TRITON]
    return BUSY


def reference_contexts(name: str, expr: str) -> list[str]:
    """Contexts in which the query must return data."""
    if name == "overview.json":
        return ["All"]
    if "support-chat" not in expected_endpoints(expr):
        return expected_endpoints(expr)[:1]
    return ["support-chat", "support-chat/support-chat-v4"]


@pytest.mark.integration
def test_variable_queries_list_the_demo_endpoints_and_entities(stack: Stack):
    for name, board in boards().items():
        for var, query in variable_queries(board):
            expr, label = variable_to_promql(substitute(query, {"endpoint": "support-chat", "platform": ".*",
                                                                  "workspace": ".*"}))
            values = {r["metric"].get(label) for r in stack.series(expr)}
            if var == "platform":
                assert values == {"databricks", "self-hosted"}, (name, var, values)
            elif var == "endpoint":
                assert values == set(DEMO_ENDPOINTS), (name, var, values)
                # Picking a platform narrows the list; the server kind (vllm) is not a platform.
                for platform, expected in (("databricks", set(DATABRICKS_ENDPOINTS)),
                                           ("self-hosted", set(SELF_HOSTED_ENDPOINTS)),
                                           ("databricks|self-hosted", set(DEMO_ENDPOINTS)), ("vllm", set())):
                    narrowed, _ = variable_to_promql(substitute(query, {"platform": platform, "workspace": ".*"}))
                    assert {r["metric"].get(label) for r in stack.series(narrowed)} == expected, (name, platform)
            elif var == "served_entity":
                assert values == {"support-chat-v3", "support-chat-v4"}, (name, var, values)
            else:
                assert values, (name, var)


@pytest.mark.integration
@pytest.mark.parametrize("name", FILES)
def test_every_query_parses_and_returns_series(stack: Stack, name: str):
    board = boards()[name]
    ctxs = contexts(name, ["support-chat-v3", "support-chat-v4"])
    queries = panel_queries(board)
    assert len(queries) >= 15
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    problems = []
    for where, expr in queries:
        for ctx, values in ctxs.items():
            try:
                promql = substitute(expr, values)
            except KeyError as err:
                problems.append(f"{where}: unknown variable {err} in {expr}")
                break
            answer = stack.query(promql)
            if answer["status"] != "success":
                problems.append(f"{where} [{ctx}]: {answer.get('errorType')}: {answer.get('error')}\n  {promql}")
                continue
            result = answer["data"]["result"]
            results[(where, ctx)] = result if answer["data"]["resultType"] == "vector" else [answer["data"]]
            leaked = {label for r in results[(where, ctx)] for label in r.get("metric", {})} & REPLICA_LABELS
            if leaked:
                problems.append(f"{where} [{ctx}]: result keeps replica labels {leaked}: {promql}")
    assert not problems, "\n".join(problems)

    empty = [f"{where} [{ctx}]: {expr}" for where, expr in queries for ctx in reference_contexts(name, expr)
             if not results[(where, ctx)]]
    assert not empty, "queries without data in the demo:\n" + "\n".join(empty)
    if name == "endpoint.json":
        # Beyond the reference endpoint: each panel shows data for every busy demo endpoint whose server
        # publishes its family: LLM panels for the vLLM server, replica panels for both self-hosted
        # endpoints, GPU series for GPU endpoints, entity series where metrics carry entities, hints where
        # hints are active.
        missing = [f"{where}: no data for {absent}: {expr}" for where, expr in queries
                   if (absent := [e for e in expected_endpoints(expr) if not results[(where, e)]])]
        assert not missing, "\n".join(missing)


@pytest.mark.integration
@pytest.mark.parametrize("name", FILES)
def test_every_metric_selector_matches_demo_data(stack: Stack, name: str):
    """Catches a misspelt metric or label hidden behind an `or` or a ratio that still returns a series."""
    ctxs = contexts(name, ["support-chat-v3", "support-chat-v4"])
    selectors = {s for _, expr in panel_queries(boards()[name]) for s in SELECTOR.findall(expr)}
    unmatched = [s for s in sorted(selectors)
                 if not any(stack.series(f"count({substitute(s, values)})") for values in ctxs.values())]
    assert not unmatched, f"selectors matching nothing: {unmatched}"


LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
LEGEND_LABELS = re.compile(r"\{\{\s*(\w+)\s*\}\}")
MATCHER_LABELS = re.compile(r'(\w+)\s*(?:=~|!~|!=|=)\s*"')


@pytest.mark.integration
@pytest.mark.parametrize("name", FILES)
def test_every_label_a_query_uses_exists_on_its_metrics(stack: Stack, name: str):
    """A grouping, join, matcher or legend label that the metric does not carry still returns series
    (with the label empty), so check label names against what Prometheus holds for each family."""
    known: dict[str, set[str]] = {}

    def labels_of(metric: str) -> set[str]:
        if metric not in known:
            answer = requests.get(f"{stack.url}/api/v1/series", params={"match[]": metric}, timeout=10).json()
            known[metric] = {label for series in answer["data"] for label in series} - {"__name__"}
            # `workspace` is empty (absent) on a self-hosted endpoint's series, and the families only self-hosted
            # servers feed carry it for none in the demo: the catalog says whether the family has it.
            if any(metric in {f.prometheus_name + suffix for suffix in ("", "_total", "_bucket", "_sum", "_count")}
                   and WORKSPACE_LABEL in f.label_names for f in FAMILIES):
                known[metric].add(WORKSPACE_LABEL)
        return known[metric]

    uses = [(where, expr, legend) for where, expr, legend in
            [(f"{p['title']} / {t['refId']}", t["expr"], t.get("legendFormat", ""))
             for p in panels(boards()[name]) for t in p.get("targets", [])]]
    for var, query in variable_queries(boards()[name]):
        expr, label = variable_to_promql(query)
        uses.append((f"variable {var}", expr, f"{{{{{label}}}}}"))
    problems = []
    for where, expr, legend in uses:
        available = set().union(*(labels_of(m.split("{")[0]) for m in SELECTOR.findall(expr)))
        used = {label.strip() for group in LABEL_LISTS.findall(expr) for label in group.split(",") if label.strip()}
        used |= {label for inner in re.findall(r"\{([^}]*)\}", expr) for label in MATCHER_LABELS.findall(inner)}
        used |= set(LEGEND_LABELS.findall(legend))
        if used - available:
            problems.append(f"{where}: labels {sorted(used - available)} not on {sorted(available)}: {expr}")
    assert not problems, "\n".join(problems)


@pytest.mark.integration
def test_fleet_totals_count_each_endpoint_once_across_replicas(stack: Stack):
    overview = boards()["overview.json"]
    total_qps = next(t["expr"] for p in panels(overview) if p["title"] == "Total QPS" for t in p["targets"])
    one_replica = 'sum(model_serving_requests_per_second{job="replica-a", served_entity=""})'
    both = stack.series(substitute(total_qps, contexts("overview.json", [])["All"]))
    single = stack.series(one_replica)
    assert both and single
    value, reference = float(both[0]["value"][1]), float(single[0]["value"][1])
    assert math.isclose(value, reference, rel_tol=0.25), (value, reference)  # doubled would be 2x
    endpoints = next(t["expr"] for p in panels(overview) if p["title"] == "Endpoints polled" for t in p["targets"])
    assert float(stack.series(substitute(endpoints, contexts("overview.json", [])["All"]))[0]["value"][1]) == len(DEMO_ENDPOINTS)


@pytest.mark.integration
def test_the_latency_panels_show_a_mean_only_server(stack: Stack):
    """image-tagger's mean latency is ~1.8 s, nearly all queueing (queue full at max_queue_size 400 for 24
    concurrent executions): the endpoint dashboard's Latency panel must show it (the overview's latency
    columns are percentile-only too)."""
    values = contexts("endpoint.json", [])[TRITON]
    latency = next(p for p in panels(boards()["endpoint.json"]) if p["title"] == "Latency")
    shown = [float(r["value"][1]) for t in latency["targets"] if "model_serving_target" not in t["expr"]
             for r in stack.series(substitute(t["expr"], values))]
    assert [v for v in shown if math.isfinite(v) and v > 0.5], shown
