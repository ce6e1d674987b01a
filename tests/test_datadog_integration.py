"""The Datadog sink in the running exporter, over real HTTP: the demo's figures reach a fake intake every
poll, a hanging intake delays neither polling nor /metrics, a restart during an outage sends what was spilled,
and no key leaks anywhere."""

from __future__ import annotations

import gzip
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable

import pytest
import requests

from exporter.config import load_settings
from exporter.daemon import Daemon
from exporter.simulator import DEMO_TOKEN, SimulatorServer, build_demo_workspace
from exporter.commands import build_sinks
from exporter.sinks.datadog.points import PREFIX
from exporter.sources.databricks import DatabricksSource, client_factory

from .fake_datadog import FakeDatadog
from .fake_datadog import no_datadog_environment  # noqa: F401 (an autouse fixture)

pytestmark = pytest.mark.integration

DEMO_ENDPOINTS = {"fraud-scorer", "recommender", "support-chat", "doc-embedder", "search-ranker", "vision-classifier",
                  "batch-scorer"}
# What every demo endpoint sends for every new source minute (the GPU gauges only where there is a GPU).
PER_MINUTE = ["requests_per_second", "latency_seconds", "latency_mean_seconds", "error_ratio", "error_ratio_by_class",
              "queue_depth", "cpu_utilization_ratio", "memory_utilization_ratio", "provisioned_concurrency",
              "window_coverage_seconds", "last_minute_timestamp_seconds", "target_breached", "requests", "request_errors"]


def wait_for(predicate: Callable[[], object], timeout: float = 20.0, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class DatadogStack:
    """Simulator + daemon (1 s polls, 1 s simulated minutes) with the sink built as `run` builds it."""

    def __init__(self, fake: FakeDatadog, monkeypatch: pytest.MonkeyPatch, **datadog: object):
        monkeypatch.setenv("DD_API_KEY", fake.api_key)
        monkeypatch.setenv("SERVING_EXPORTER_DATADOG_URL", fake.url)
        self.workspace = build_demo_workspace(minute_seconds=1.0)
        self.simulator = SimulatorServer(self.workspace).start()
        self.settings = load_settings(overrides=dict(listen="127.0.0.1:0", poll_interval_seconds=1, request_timeout_seconds=2,
                                                     retry_budget_seconds=1, max_concurrent_requests=8,
                                                     datadog={"tags": ["env:test"], "request_timeout_seconds": 0.5,
                                                              "backoff_initial_seconds": 0.1, "backoff_max_seconds": 0.5,
                                                              "shutdown_flush_seconds": 1, **datadog}))
        self.sinks = build_sinks(self.settings)
        assert len(self.sinks) == 1
        factory = client_factory(2, 1, 8, host=self.simulator.url, token=DEMO_TOKEN, auth_type="pat")
        self.daemon = Daemon(self.settings, DatabricksSource(factory), sinks=self.sinks,
                             minute_clock=lambda: self.workspace.timestamp_ms(self.workspace.current_minute) / 1000)

    def __enter__(self) -> DatadogStack:
        self.daemon.start()
        assert self.daemon.wait_ready(15)
        return self

    def __exit__(self, *exc: object) -> None:
        self.daemon.stop()
        self.simulator.stop()

    def get(self, path: str) -> requests.Response:
        return requests.get(f"{self.daemon.url}{path}", timeout=5)


def minutes_by_endpoint(fake: FakeDatadog) -> dict[str, dict[int, set[str]]]:
    """endpoint -> source minute -> metric names received for the endpoint as a whole."""
    seen: dict[str, dict[int, set[str]]] = defaultdict(lambda: defaultdict(set))
    for metric, ts, _, _, tags in fake.points():
        if "level:endpoint" in tags:
            endpoint = next(t for t in tags if t.startswith("endpoint:")).split(":", 1)[1]
            seen[endpoint][ts].add(metric.removeprefix(PREFIX))
    return seen


def complete_minutes(fake: FakeDatadog, self_hosted: frozenset[str] = frozenset()) -> int:
    """How many source minutes arrived complete for every demo workspace endpoint, once points arrived for every
    endpoint expected (the workspace's and `self_hosted`) and for no other."""
    seen = minutes_by_endpoint(fake)
    if set(seen) != DEMO_ENDPOINTS | self_hosted:
        return 0
    common = set.intersection(*(set(m) for m in seen.values()))
    return sum(all(set(PER_MINUTE) <= seen[e][ts] for e in DEMO_ENDPOINTS) for ts in common)


def test_every_figure_of_every_demo_endpoint_arrives_each_minute(monkeypatch):
    with FakeDatadog() as fake, DatadogStack(fake, monkeypatch) as stack:
        wait_for(lambda: complete_minutes(fake) >= 3, what="three complete minutes for every endpoint")
        text = stack.get("/metrics").text
        assert 'model_serving_exporter_datadog_points_total{outcome="sent"}' in text
        assert "model_serving_exporter_datadog_last_success_timestamp_seconds" in text
    assert fake.invalid == [] and all(r.encoding == "gzip" for r in fake.requests_to("/api/v2/series"))
    gpu = minutes_by_endpoint(fake)["vision-classifier"]
    assert any("gpu_utilization_ratio" in names for names in gpu.values())
    assert all("env:test" in tags for *_, tags in fake.points())
    assert fake.events(), "the demo's remediation hints arrive as events"
    # No source minute's count was sent twice.
    counts = [(ts, tags) for metric, ts, _, _, tags in fake.points() if metric == PREFIX + "requests"]
    assert len(counts) == len(set(counts))


def test_a_hanging_intake_delays_neither_polling_nor_metrics(monkeypatch):
    with FakeDatadog() as fake, DatadogStack(fake, monkeypatch) as stack:
        wait_for(lambda: fake.requests_to("/api/v2/series", 202), what="a first delivery")
        fake.hang(30)
        polled = stack.daemon.snapshot().completed_at_s
        sink = stack.sinks[0]
        wait_for(lambda: sink.requests.get(("series", "timeout")), what="a timed-out request")
        for _ in range(5):
            started = time.monotonic()
            assert stack.get("/metrics").status_code == 200
            assert time.monotonic() - started < 1.0
            time.sleep(0.2)
        assert stack.daemon.snapshot().completed_at_s > polled  # polls went on
        assert sink.backlog.points > 0
        fake.heal()
        wait_for(lambda: sink.backlog.points == 0, what="the backlog to drain")
        assert sink.points["dropped"] == 0


def test_keys_never_appear_in_logs_metrics_or_the_api(monkeypatch, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    with FakeDatadog() as fake, DatadogStack(fake, monkeypatch) as stack:
        monkeypatch.setenv("DD_APP_KEY", fake.app_key)
        wait_for(lambda: fake.requests_to("/api/v2/series", 202), what="a first delivery")
        fake.fail(403, times=2, path_prefix="/api/")
        fake.fail(503, times=2, path_prefix="/api/v2/series")
        wait_for(lambda: stack.sinks[0].requests.get(("series", "503")), what="a 503")
        fake.heal()
        exposed = stack.get("/metrics").text + stack.get("/api/v1/endpoints").text
        from exporter.cli import main

        main(["check-config"])
    exposed += caplog.text + capsys.readouterr().out
    assert "Datadog" in caplog.text  # the failures were logged ...
    for secret in (fake.api_key, fake.app_key):
        assert secret not in exposed  # ... without a key


def test_the_demo_command_delivers_to_the_url_override():
    with FakeDatadog() as fake, socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DD_", "SERVING_EXPORTER_", "DATABRICKS_"))}
        env.update(DD_API_KEY=fake.api_key, SERVING_EXPORTER_DATADOG_URL=fake.url)
        proc = subprocess.Popen([sys.executable, "-m", "exporter", "demo", "--listen", f"127.0.0.1:{port}",
                                 "--minute-seconds", "1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            # The demo command also polls its simulated self-hosted model servers.
            wait_for(lambda: complete_minutes(fake, frozenset({"chat-assistant", "image-tagger"})) >= 2, timeout=30,
                     what="two complete minutes from the demo")
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, out
        assert "Datadog sink on" in out and fake.api_key not in out
        assert fake.invalid == []


def test_a_restart_during_an_outage_sends_what_was_spilled(monkeypatch, tmp_path):
    """The exporter stops while the intake is down: what it held waits in the spill directory, and the
    next exporter sends it once the intake is back."""
    spill = tmp_path / "spill"
    with FakeDatadog() as fake:
        fake.fail(503)
        with DatadogStack(fake, monkeypatch, spill_directory=str(spill)) as stack:
            sink = stack.sinks[0]
            wait_for(lambda: sink.backlog.points > 1000, what="points held through the outage")
        assert sink.dropped["shutdown"] == 0 and sink.points["dropped"] == 0
        spilled = Counter()
        for path in spill.glob("*.json.gz"):
            body = json.loads(gzip.decompress(path.read_bytes()))
            spilled.update((s["metric"], p["timestamp"], p["value"], tuple(s["tags"])) for s in body["series"] for p in s["points"])
        assert sum(spilled.values()) == sink.backlog.points > 1000
        assert not fake.requests_to("/api/v2/series", 202)
        fake.heal()
        with DatadogStack(fake, monkeypatch, spill_directory=str(spill)):
            wait_for(lambda: not list(spill.glob("*.json.gz")), what="the spilled points to be sent")
        got = Counter((m, ts, v, tuple(tags)) for m, ts, v, _, tags in fake.points())
        assert not spilled - got  # every spilled point arrived
