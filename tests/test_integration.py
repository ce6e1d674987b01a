"""Simulator and daemon over real HTTP on loopback: values, scenario changes, failures, auth."""

from __future__ import annotations

import logging
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from exporter.config import load_settings
from exporter.daemon import Daemon
from exporter.simulator import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_TOKEN, SimulatorServer, build_demo_workspace
from exporter.sources.databricks import DatabricksSource, client_factory
from exporter.sources.databricks.client import host_label

from .conftest import require_binary

pytestmark = pytest.mark.integration

MINUTE_S = 1.0  # one simulated minute a second (the poll interval) keeps these tests short

REQUIRED_FAMILIES = [
    "model_serving_latency_seconds", "model_serving_requests_per_second", "model_serving_error_ratio",
    "model_serving_error_ratio_by_class", "model_serving_queue_depth", "model_serving_cpu_utilization_ratio",
    "model_serving_memory_utilization_ratio", "model_serving_gpu_utilization_ratio",
    "model_serving_provisioned_concurrency", "model_serving_required_concurrency", "model_serving_target",
    "model_serving_target_breached", "model_serving_endpoint_info", "model_serving_requests_total",
    "model_serving_request_errors_total", "model_serving_request_duration_seconds_bucket",
    "model_serving_exporter_up", "model_serving_exporter_poll_duration_seconds",
    "model_serving_exporter_last_success_timestamp_seconds", "model_serving_exporter_build_info",
]


class Stack:
    def __init__(self, auth: dict, **settings: object):
        self.workspace = build_demo_workspace(minute_seconds=MINUTE_S)
        self.simulator = SimulatorServer(self.workspace).start()
        defaults = dict(listen="127.0.0.1:0", poll_interval_seconds=1, request_timeout_seconds=2,
                        retry_budget_seconds=1, max_concurrent_requests=8)
        self.settings = load_settings(overrides={**defaults, **settings})
        factory = client_factory(self.settings.request_timeout_seconds, self.settings.retry_budget_seconds,
                                 self.settings.max_concurrent_requests, host=self.simulator.url, **auth)
        self.daemon = Daemon(self.settings, DatabricksSource(factory),
                             minute_clock=lambda: self.workspace.timestamp_ms(self.workspace.current_minute) / 1000)

    def start(self) -> Stack:
        self.daemon.start()
        assert self.daemon.wait_ready(15), "no poll completed"
        return self

    def stop(self) -> None:
        self.daemon.stop()
        self.simulator.stop()

    def control(self, method: str, path: str, body: dict | None = None) -> None:
        requests.request(method, f"{self.simulator.url}/simulator/v1{path}", json=body, timeout=5).raise_for_status()

    def scrape(self) -> dict[tuple[str, frozenset], float]:
        text = requests.get(f"{self.daemon.url}/metrics", timeout=5).text
        return {(s.name, frozenset(s.labels.items())): s.value
                for fam in text_string_to_metric_families(text) for s in fam.samples}

    def value(self, name: str, **labels: str) -> float | None:
        if "serving_endpoint" in labels:  # an endpoint's series carry its workspace: here the one workspace's host
            labels.setdefault("workspace", host_label(self.simulator.url))
        return self.scrape().get((name, frozenset(labels.items())))

    def api(self) -> dict:
        return requests.get(f"{self.daemon.url}/api/v1/endpoints", timeout=5).json()


@pytest.fixture
def stack() -> Iterator[Stack]:
    s = Stack({"token": DEMO_TOKEN, "auth_type": "pat"}).start()
    yield s
    s.stop()


def wait_for(predicate: Callable[[], object], timeout: float = 20.0, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def full_window(stack: Stack) -> bool:
    return all(e["figures"]["minutes"] >= 4 for e in stack.api()["endpoints"])


def test_demo_shows_every_family_and_the_diagnoses(stack: Stack):
    wait_for(lambda: full_window(stack), what="a full window for every endpoint")
    samples = stack.scrape()
    names = {name for name, _ in samples}
    assert not [f for f in REQUIRED_FAMILIES if f not in names]
    endpoints = {dict(labels)["serving_endpoint"] for name, labels in samples if name == "model_serving_requests_per_second"}
    assert len(endpoints) >= 6
    whole = {"served_entity": ""}
    assert stack.value("model_serving_queue_depth", serving_endpoint="recommender", **whole) > 0
    assert stack.value("model_serving_queue_depth_method", serving_endpoint="recommender", method="queue_time", **whole) == 1
    assert stack.value("model_serving_target_breached", serving_endpoint="recommender", check="queue_depth", **whole) == 1
    assert stack.value("model_serving_error_ratio", serving_endpoint="support-chat", **whole) > 0.01
    assert stack.value("model_serving_error_ratio", serving_endpoint="fraud-scorer", **whole) < 0.01
    assert stack.value("model_serving_target_breached", serving_endpoint="fraud-scorer", check="error_ratio", **whole) == 0
    assert stack.value("model_serving_cpu_utilization_ratio", serving_endpoint="doc-embedder", **whole) > 0.8
    assert stack.value("model_serving_gpu_utilization_ratio", serving_endpoint="vision-classifier", **whole) < 0.2
    assert stack.value("model_serving_requests_per_second", serving_endpoint="search-ranker", **whole) > 200
    # The canary's 5xx are visible per served entity.
    assert stack.value("model_serving_error_ratio", serving_endpoint="support-chat", served_entity="support-chat-v4") > 0.2


def test_figures_follow_a_scenario_change(stack: Stack):
    whole = {"serving_endpoint": "fraud-scorer", "served_entity": ""}
    wait_for(lambda: stack.value("model_serving_error_ratio", **whole) is not None)
    assert stack.value("model_serving_error_ratio", **whole) < 0.01
    stack.control("POST", "/endpoints/fraud-scorer/scenario", {"preset": "error_burst"})
    wait_for(lambda: stack.value("model_serving_target_breached", check="error_ratio", **whole) == 1,
             what="fraud-scorer to breach its error target")
    assert stack.value("model_serving_error_ratio_by_class", **whole, **{"class": "5xx"}) > 0.01
    errors_before = stack.value("model_serving_request_errors_total", **whole, **{"class": "5xx"})
    wait_for(lambda: stack.value("model_serving_request_errors_total", **whole, **{"class": "5xx"}) > errors_before,
             what="the synthesised error counter to grow")
    stack.control("POST", "/endpoints/fraud-scorer/scenario", {"preset": "healthy"})
    wait_for(lambda: stack.value("model_serving_target_breached", check="error_ratio", **whole) == 0, timeout=30,
             what="recovery once the burst leaves the window")


# A hanging answer: the request timeout (2 s) outlasts this stack's poll deadline (0.8 s), so the deadline cuts it.
@pytest.mark.parametrize("fault,reason", [("http_500", "internal_error"), ("garbage", "parse_error"),
                                          ("http_429", "too_many_requests"), ("timeout", "deadline")])
def test_a_failing_endpoint_is_isolated_and_keeps_its_figures(stack: Stack, fault: str, reason: str):
    wait_for(lambda: stack.value("model_serving_requests_per_second", serving_endpoint="search-ranker", served_entity="") is not None)
    stack.control("POST", "/endpoints/search-ranker/fault", {"kind": fault, "retry_after": 1, "delay_s": 5})
    wait_for(lambda: stack.value("model_serving_exporter_up", serving_endpoint="search-ranker") == 0, what="up to drop")
    wait_for(lambda: (stack.value("model_serving_exporter_fetch_errors_total", serving_endpoint="search-ranker", call="metrics",
                                  reason=reason) or 0) >= 1, what=f"a {reason} failure to be counted")
    # Its last figures stay; every other endpoint stays up and fresh.
    assert stack.value("model_serving_requests_per_second", serving_endpoint="search-ranker", served_entity="") > 200
    assert stack.value("model_serving_exporter_up", serving_endpoint="fraud-scorer") == 1
    seen = stack.value("model_serving_exporter_last_success_timestamp_seconds", serving_endpoint="fraud-scorer")
    wait_for(lambda: stack.value("model_serving_exporter_last_success_timestamp_seconds", serving_endpoint="fraud-scorer") > seen,
             what="the healthy endpoint to keep being polled")
    status = next(e for e in stack.api()["endpoints"] if e["name"] == "search-ranker")["status"]
    assert status["up"] is False and status["last_error"].startswith((reason, "deadline"))
    stack.control("POST", "/endpoints/search-ranker/fault", {"kind": "none"})
    wait_for(lambda: stack.value("model_serving_exporter_up", serving_endpoint="search-ranker") == 1, what="recovery")


def test_vanished_endpoint_takes_its_series_with_it(stack: Stack):
    assert stack.value("model_serving_exporter_up", serving_endpoint="batch-scorer") == 1
    stack.control("DELETE", "/endpoints/batch-scorer")
    wait_for(lambda: not any(dict(labels).get("serving_endpoint") == "batch-scorer" for _, labels in stack.scrape()),
             what="batch-scorer's series to disappear")
    assert "batch-scorer" not in [e["name"] for e in stack.api()["endpoints"]]
    stack.control("POST", "/endpoints", {"name": "new-endpoint", "preset": "healthy"})
    wait_for(lambda: stack.value("model_serving_exporter_up", serving_endpoint="new-endpoint") == 1, what="discovery")


def test_oauth_m2m_survives_token_revocation_and_leaks_no_secret(caplog):
    caplog.set_level(logging.DEBUG)
    s = Stack({"client_id": DEMO_CLIENT_ID, "client_secret": DEMO_CLIENT_SECRET, "auth_type": "oauth-m2m"}).start()
    try:
        tokens_before = s.workspace.requests_of("token")
        assert tokens_before >= 1
        s.control("POST", "/tokens/revoke")
        wait_for(lambda: s.workspace.requests_of("token") > tokens_before, what="a new token after the 401")
        seen = s.value("model_serving_exporter_last_success_timestamp_seconds", serving_endpoint="fraud-scorer")
        wait_for(lambda: s.value("model_serving_exporter_last_success_timestamp_seconds", serving_endpoint="fraud-scorer") > seen,
                 what="polls to succeed with the new token")
        exposed = requests.get(f"{s.daemon.url}/metrics", timeout=5).text + requests.get(
            f"{s.daemon.url}/api/v1/endpoints", timeout=5).text + caplog.text
        issued = list(s.workspace._tokens)  # the access tokens the simulator handed out
        for secret in [DEMO_CLIENT_SECRET, *issued]:
            assert secret not in exposed
        assert 'reason="unauthenticated"' not in exposed  # the 401 was absorbed by re-authentication
    finally:
        s.stop()


def test_pat_never_appears_in_output_or_logs(stack: Stack, caplog):
    caplog.set_level(logging.DEBUG)
    stack.control("POST", "/endpoints/fraud-scorer/fault", {"kind": "http_403"})
    wait_for(lambda: stack.value("model_serving_exporter_up", serving_endpoint="fraud-scorer") == 0)
    exposed = (requests.get(f"{stack.daemon.url}/metrics", timeout=5).text
               + requests.get(f"{stack.daemon.url}/api/v1/endpoints", timeout=5).text + caplog.text)
    assert DEMO_TOKEN not in exposed


def test_readyz_only_after_the_first_poll():
    s = Stack({"token": DEMO_TOKEN, "auth_type": "pat"})
    s.daemon.http.start()
    try:
        assert requests.get(f"{s.daemon.url}/healthz", timeout=5).status_code == 200
        assert requests.get(f"{s.daemon.url}/readyz", timeout=5).status_code == 503
        s.daemon._poll()  # the scheduler's job: a poll, the workspace step, then publishing
        assert requests.get(f"{s.daemon.url}/readyz", timeout=5).status_code == 200
    finally:
        s.stop()


def test_live_exposition_passes_promtool(stack: Stack, tmp_path):
    promtool = require_binary("promtool")
    wait_for(lambda: full_window(stack))
    text = requests.get(f"{stack.daemon.url}/metrics", timeout=5).text
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), result.stdout + result.stderr
    # The Prometheus Operator puts `endpoint` on every target: no series of ours may carry it.
    samples = [s for f in text_string_to_metric_families(text) if f.name.startswith("model_serving_") for s in f.samples]
    assert [s.name for s in samples if "endpoint" in s.labels] == []
    assert {s.labels.get("serving_endpoint") for s in samples if s.name == "model_serving_exporter_up"} >= {"fraud-scorer"}
    assert {s.labels["platform"] for s in samples if s.name == "model_serving_endpoint_info"} == {"databricks"}


def test_demo_command_serves_and_stops_cleanly_on_sigterm(tmp_path):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "exporter", "demo", "--listen", f"127.0.0.1:{port}",
                             "--minute-seconds", "1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _ok(f"{url}/readyz"), timeout=30, what="the demo to become ready")
        assert "model_serving_requests_per_second" in requests.get(f"{url}/metrics", timeout=5).text
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
        assert proc.returncode == 0, out
        assert "received SIGTERM" in out and f"{url}/metrics" in out
    finally:
        if proc.poll() is None:
            proc.kill()


def _ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def test_demo_shows_at_least_eight_distinct_hints_with_numbers(stack: Stack):
    def active() -> dict[str, str]:
        return {h["id"]: h["detail"] for e in stack.api()["endpoints"] for h in e["hints"]}

    hints = wait_for(lambda: (lambda found: found if len(found) >= 8 else None)(active()), timeout=30,
                     what="eight distinct remediation rules")
    assert all(any(ch.isdigit() for ch in detail) for rule, detail in hints.items() if rule != "endpoint_not_ready")
    rules_on_metrics = {dict(labels)["rule"] for name, labels in stack.scrape() if name == "model_serving_remediation"}
    assert set(hints) <= rules_on_metrics | set(active())
    assert {"queueing", "errors_high", "route_optimization_recommended", "cpu_high"} <= rules_on_metrics
    recommender = next(e for e in stack.api()["endpoints"] if e["name"] == "recommender")
    assert recommender["recommendation"]["max_concurrency"] > 12  # more than its fixed 12 today


def test_oauth_token_is_refreshed_before_it_expires(caplog):
    caplog.set_level(logging.INFO)
    s = Stack({"client_id": DEMO_CLIENT_ID, "client_secret": DEMO_CLIENT_SECRET, "auth_type": "oauth-m2m"})
    s.workspace.token_lifetime_s = 2  # tokens the simulator issues now expire after 2 s
    s.start()
    try:
        first = s.workspace.requests_of("token")
        wait_for(lambda: s.workspace.requests_of("token") >= first + 2, timeout=15, what="two token refreshes")
        seen = s.value("model_serving_exporter_last_success_timestamp_seconds", serving_endpoint="fraud-scorer")
        wait_for(lambda: s.value("model_serving_exporter_last_success_timestamp_seconds", serving_endpoint="fraud-scorer") > seen)
        assert "re-authenticating" not in caplog.text  # refreshed ahead of expiry, never by a 401
        assert "unauthenticated" not in requests.get(f"{s.daemon.url}/metrics", timeout=5).text
    finally:
        s.stop()


# Hints that only make sense on Databricks Model Serving: its provisioned concurrency, autoscaling, route
# optimization, scale-to-zero and workspace limits have no counterpart on a self-hosted model server.
DATABRICKS_ONLY_HINTS = {"autoscaling_disabled", "route_optimization_recommended", "scale_to_zero_in_production",
                         "concurrency_limit_near", "qps_limit_near", "workspace_limit_near", "gpu_underused"}
DATABRICKS_TERMS = re.compile(r"provisioned.concurrency|route.optimi|scale.to.zero|workspace", re.I)


@pytest.fixture(scope="module")
def demo_self_hosted() -> Iterator[dict[str, dict]]:
    """The demo's own pieces (commands.Demo): the simulated vLLM and Triton servers polled next to the workspace.
    Yields the exporter's /api/v1/endpoints entries by name, read once the hints the tests look at are up."""
    from exporter.commands import Demo

    demo = Demo(load_settings(overrides={"listen": "127.0.0.1:0", "poll_interval_seconds": 1}), MINUTE_S)
    try:
        def endpoints() -> dict[str, dict] | None:
            found = {e["name"]: e for e in requests.get(f"{demo.daemon.url}/api/v1/endpoints", timeout=5).json()["endpoints"]}
            hosted = [e for e in found.values() if e["config"]["platform"] == "self-hosted"]
            ready = (len(hosted) == 2 and all(e["figures"]["minutes"] >= 3 and e["hints"] for e in hosted)
                     and "kv_cache_full" in hints_of(found.get("chat-assistant", {"hints": []}))
                     and "route_optimization_recommended" in hints_of(found.get("search-ranker", {"hints": []})))
            return found if ready else None

        yield wait_for(endpoints, 30, "both self-hosted endpoints with three minutes, chat-assistant's KV-cache hint "
                                      "and search-ranker's route-optimization hint")
    finally:
        demo.stop()


def hints_of(endpoint: dict) -> dict[str, str]:
    return {h["id"]: h["detail"] for h in endpoint["hints"]}


def test_demo_shows_its_self_hosted_endpoints_with_hints(demo_self_hosted: dict[str, dict]):
    """Figures from the servers' cumulative counters and the hints their states call for. Expected values from the
    shapes' settings (exporter/simulator/demo.py, model_servers/): chat-assistant's two vLLM replicas (64 sequences
    each) are offered ~15.5 requests/s, ~10 % more than they serve, so requests wait and the KV cache is ~97 % full;
    image-tagger (Triton, 24 concurrent executions) is offered ~250/s with its queue full at max_queue_size 400 and
    ~3-12 % of requests rejected."""
    chat, tagger = demo_self_hosted["chat-assistant"], demo_self_hosted["image-tagger"]
    assert (chat["config"]["server"], tagger["config"]["server"]) == ("vllm", "triton")
    assert 12 < chat["figures"]["qps"] < 19
    assert 220 < tagger["figures"]["qps"] < 280
    assert abs(tagger["figures"]["queue_depth"] - 400) < 20
    assert 0.02 < tagger["figures"]["error_ratio"] < 0.15
    chat_hints, tagger_hints = hints_of(chat), hints_of(tagger)
    assert {"queueing", "kv_cache_full"} <= set(chat_hints)
    assert {"queueing", "errors_high"} <= set(tagger_hints)
    assert "kv_cache_full" not in tagger_hints  # Triton serving an image model has no KV cache
    full = re.search(r"KV cache ([\d.]+)% full", chat_hints["kv_cache_full"])
    assert full and 93 <= float(full.group(1)) <= 100, chat_hints["kv_cache_full"]
    # A model server's capacity is its replicas: the queueing advice is a number of replicas, in its own terms.
    for name, hints in (("chat-assistant", chat_hints), ("image-tagger", tagger_hints)):
        assert re.search(r"run \d+ replicas \(add [1-9]\d*", hints["queueing"]), (name, hints["queueing"])
        assert not DATABRICKS_ONLY_HINTS & set(hints), (name, sorted(hints))
        assert not [d for d in hints.values() if DATABRICKS_TERMS.search(d)], (name, hints)
    assert all(any(ch.isdigit() for ch in d) for hints in (chat_hints, tagger_hints) for d in hints.values())
    # The Databricks endpoints are still there beside them, with their own platform's advice.
    assert {"fraud-scorer", "recommender"} <= set(demo_self_hosted)
    assert "route_optimization_recommended" in hints_of(demo_self_hosted["search-ranker"])


def test_demo_queueing_advice_sizes_replicas_for_the_load(demo_self_hosted: dict[str, dict]):
    """chat-assistant is offered ~10 % more than its 2 x 64 sequence slots serve (~141 concurrent requests at
    ~15.5 requests/s x ~9.1 s): with the 15 % headroom that is 3 replicas of 64 (4 at the busiest minute at most)."""
    detail = hints_of(demo_self_hosted["chat-assistant"])["queueing"]
    wanted = re.search(r"run (\d+) replicas", detail)
    assert wanted and int(wanted.group(1)) <= 4, detail


def test_demo_triton_rejections_are_advised_as_overload(demo_self_hosted: dict[str, dict]):
    """image-tagger's failures are all the overflow its full queue rejects (the simulator's only failure)."""
    hints = hints_of(demo_self_hosted["image-tagger"])
    assert "server errors lead" not in hints["errors_high"], hints["errors_high"]
