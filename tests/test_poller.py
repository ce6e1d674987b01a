"""The poller with a programmable in-memory source: scheduling of calls, isolation, freshness."""

from __future__ import annotations

import threading
import time

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from exporter.sinks.prometheus import ServingCollector
from exporter.config import load_settings
from exporter.model import EndpointInfo, ServedEntity
from exporter.pipeline.poller import Poller
from exporter.sources import ApiUsage, FetchError
from exporter.sources.databricks.metrics import observe

MINUTE_MS = 60_000


def body(requests: int = 600, ts_ms: int | None = 1763820000000, cpu: float = 40.0) -> bytes:
    ts = f" {ts_ms}" if ts_ms is not None else ""
    return (f"request_count_total {requests}{ts}\nrequest_4xx_count_total 0{ts}\nrequest_5xx_count_total 0{ts}\n"
            f'request_latency_ms_bucket{{le="50"}} {requests}{ts}\nrequest_latency_ms_bucket{{le="+Inf"}} {requests}{ts}\n'
            f"request_latency_ms_sum {requests * 20}{ts}\nrequest_latency_ms_count {requests}{ts}\n"
            f"cpu_usage_percentage {cpu}{ts}\n").encode()


class FakeSource:
    """Endpoints and bodies set by the test; counts every call; can fail or block on demand. Bodies are
    Databricks-shaped and go through the Databricks parser, as the real source's do."""

    platform = "fake"
    workspace = "fake.example.com"
    refresh_seconds = 60.0

    def __init__(self, names=("a", "b", "c")):
        self.usage = ApiUsage()
        self.infos = {n: EndpointInfo(name=n, ready=True, last_updated_ms=1) for n in names}
        self.bodies: dict[str, bytes] = {n: body() for n in names}
        self.failures: dict[str, Exception] = {}
        self.calls: list[tuple[str, str]] = []
        self.list_error: Exception | None = None
        self.block: dict[str, threading.Event] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()

    def list_endpoints(self, deadline=None):
        self.calls.append(("list", ""))
        if self.list_error:
            raise self.list_error
        return list(self.infos.values())

    def describe(self, name, deadline=None):
        self.calls.append(("detail", name))
        entity = ServedEntity(name=name, workload_type="CPU", compute="cpu", min_provisioned_concurrency=4,
                              max_provisioned_concurrency=8)
        return EndpointInfo(name=name, ready=True, last_updated_ms=self.infos[name].last_updated_ms, detailed=True,
                            route_optimized=True, served_entities=(entity,), tags=self.infos[name].tags)

    def close(self):
        pass

    def fetch(self, name, deadline=None):
        with self._lock:
            self.calls.append(("metrics", name))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if name in self.block:
                self.block[name].wait(10)
            time.sleep(0.01)
            if name in self.failures:
                raise self.failures[name]
            return observe(self.bodies[name], "text/plain; version=0.0.4")
        finally:
            with self._lock:
                self.in_flight -= 1

    def count(self, kind, name=""):
        return sum(1 for k, n in self.calls if k == kind and (not name or n == name))


def make(source=None, **settings):
    source = source or FakeSource()
    now = [1763820030.0]
    poller = Poller(source, load_settings(overrides=settings), clock=lambda: now[0])
    return source, poller, now


def report(snap, name):
    return next(r for r in snap.endpoints if r.info.name == name)


def test_concurrency_is_bounded():
    source, poller, _ = make(FakeSource([f"e{i}" for i in range(20)]), max_concurrent_requests=3)
    poller.poll()
    assert source.max_in_flight == 3


def test_details_are_refreshed_on_schedule_and_when_the_configuration_changes():
    source, poller, now = make(detail_refresh_seconds=600)
    poller.poll()
    poller.poll()
    assert source.count("detail", "a") == 1  # not re-read on every poll
    source.infos["a"] = EndpointInfo(name="a", ready=True, last_updated_ms=2)
    poller.poll()
    assert source.count("detail", "a") == 2  # last_updated changed: re-read now
    now[0] += 601
    poller.poll()
    assert source.count("detail", "b") == 2  # refresh interval elapsed


def test_include_exclude_filters_what_is_polled():
    source, poller, _ = make(endpoints={"include": [{"name": "a|b"}], "exclude": [{"name": "b"}]})
    snap = poller.poll()
    assert [r.info.name for r in snap.endpoints] == ["a"]
    assert source.count("metrics", "b") == 0 and snap.discovered == 3


def test_per_endpoint_targets_reach_the_exposition():
    source, poller, _ = make(target_overrides=[{"match": {"name": "b"}, "targets": {"cpu_utilization_ratio": 0.3}}])
    poller.poll()
    registry = CollectorRegistry()
    registry.register(ServingCollector(lambda: poller.snapshot))
    assert registry.get_sample_value("model_serving_target", {"workspace": "", "serving_endpoint": "b", "check": "cpu_utilization"}) == 0.3
    assert registry.get_sample_value("model_serving_target", {"workspace": "", "serving_endpoint": "a", "check": "cpu_utilization"}) == 0.8
    assert registry.get_sample_value("model_serving_target_breached",
                                     {"workspace": "", "serving_endpoint": "b", "served_entity": "", "check": "cpu_utilization"}) == 1


def test_a_failing_list_keeps_polling_known_endpoints():
    source, poller, _ = make()
    poller.poll()
    source.list_error = FetchError("temporarily_unavailable", "503")
    source.bodies["a"] = body(requests=1200, ts_ms=1763820060000)
    snap = poller.poll()
    assert snap.polls == {"success": 1, "list_failed": 1}
    assert report(snap, "a").endpoint.figures.minutes == 2 and report(snap, "a").status.up
    source.list_error = RuntimeError("a bug in the source")  # not even a FetchError: still contained
    assert len(poller.poll().endpoints) == 3


def test_an_unexpected_error_marks_only_that_endpoint_down():
    source, poller, _ = make()
    poller.poll()
    source.failures["b"] = KeyError("surprise")
    snap = poller.poll()
    assert not report(snap, "b").status.up and report(snap, "b").status.last_error.startswith("internal_error")
    assert report(snap, "b").endpoint.figures.minutes == 1  # its data is kept
    assert report(snap, "a").status.up and report(snap, "c").status.up
    assert snap.fetch_errors[("", "b", "metrics", "internal_error")] == 1


def test_a_hanging_endpoint_does_not_hold_the_poll_back():
    source, poller, _ = make(poll_interval_seconds=60, poll_deadline_seconds=0.3)
    poller.poll()
    source.block["c"] = threading.Event()
    started = time.monotonic()
    snap = poller.poll()
    assert time.monotonic() - started < 2
    assert report(snap, "a").status.up
    assert not report(snap, "c").status.up and "deadline" in report(snap, "c").status.last_error
    snap = poller.poll()  # still hanging: not fetched a second time
    assert source.count("metrics", "c") == 2
    source.block["c"].set()
    time.sleep(0.2)
    assert report(poller.poll(), "c").status.up


def test_vanished_endpoint_loses_its_state():
    source, poller, _ = make()
    poller.poll()
    del source.infos["c"]
    snap = poller.poll()
    assert [r.info.name for r in snap.endpoints] == ["a", "b"] and "c" not in poller.states


def test_a_body_served_again_without_timestamps_is_counted_once():
    source, poller, now = make()
    source.bodies["a"] = body(ts_ms=None)
    poller.poll()
    now[0] += 60  # a new clock minute, but the source has not refreshed
    snap = poller.poll()
    assert report(snap, "a").endpoint.counters.requests == 600
    source.bodies["a"] = body(requests=300, ts_ms=None)
    now[0] += 60
    assert report(poller.poll(), "a").endpoint.counters.requests == 900


def test_a_timestamp_far_in_the_future_is_not_trusted():
    source, poller, _ = make()
    source.bodies["a"] = body(ts_ms=(1763820030 + 86400) * 1000)
    snap = poller.poll()
    assert report(snap, "a").endpoint.figures.latest_minute_ms == 1763820000000  # keyed by the clock instead


def test_a_skewed_clock_is_logged_when_it_starts_and_ends_not_at_every_poll(caplog):
    source, poller, now = make()
    caplog.set_level("INFO", logger="exporter.pipeline.poller")
    for _ in range(3):  # three polls of endpoint a a day ahead of the clock: one warning
        source.bodies["a"] = body(ts_ms=int(now[0] + 86400) * 1000)
        poller.poll()
        now[0] += 60
    ahead = [r for r in caplog.records if "ahead of the clock" in r.getMessage()]
    assert len(ahead) == 1 and ahead[0].levelname == "WARNING" and "metrics of a carry" in ahead[0].getMessage()
    source.bodies["a"] = body(ts_ms=int(now[0] // 60) * MINUTE_MS)  # its clock is right again
    poller.poll()
    now[0] += 60
    poller.poll()
    again = [r for r in caplog.records if "within 600s of the clock again" in r.getMessage()]
    assert len(again) == 1 and len([r for r in caplog.records if "ahead of the clock" in r.getMessage()]) == 1


def test_parse_errors_never_echo_the_body():
    source, poller, _ = make()
    source.bodies["a"] = b"<html>proxy error; request had Authorization: Bearer dapiSECRET123</html>"
    snap = poller.poll()
    assert "dapiSECRET123" not in report(snap, "a").status.last_error
    assert report(snap, "a").status.last_error.startswith("parse_error")


def test_render_failure_of_one_endpoint_leaves_no_partial_series(monkeypatch):
    source, poller, _ = make()
    poller.poll()
    from exporter.sinks import prometheus

    original = prometheus.endpoint_rows

    def flaky(rep, budget=None):
        rows = original(rep, budget)
        if rep.info.name == "b":
            yield next(rows)  # a partial render before the failure
            raise RuntimeError("boom")
        yield from rows

    monkeypatch.setattr(prometheus, "endpoint_rows", flaky)
    registry = CollectorRegistry()
    registry.register(ServingCollector(lambda: poller.snapshot))
    text = generate_latest(registry).decode()
    assert 'serving_endpoint="b"' not in text and 'model_serving_exporter_up{serving_endpoint="a",workspace=""} 1.0' in text
    assert "model_serving_exporter_render_errors 1.0" in text


@pytest.mark.parametrize("ts_order", [[0, 2, 1]])
def test_late_minutes_are_ignored(ts_order):
    source, poller, _ = make()
    for k in ts_order:
        source.bodies["a"] = body(requests=100 * (k + 1), ts_ms=1763820000000 + k * MINUTE_MS)
        poller.poll()
    assert report(poller.snapshot, "a").endpoint.counters.requests == 100 + 300


def test_an_idle_endpoint_repeating_the_same_body_still_advances_its_window():
    source, poller, now = make()
    source.bodies["a"] = body(requests=600, ts_ms=None)
    poller.poll()
    source.bodies["a"] = body(requests=0, ts_ms=None, cpu=0.0)
    for _ in range(6):  # one poll a minute, the same zeros every time
        now[0] += 60
        snap = poller.poll()
    assert report(snap, "a").endpoint.figures.qps == 0  # the busy minute has left the window


def test_deadline_failures_are_counted_each_poll():
    source, poller, _ = make(poll_interval_seconds=60, poll_deadline_seconds=0.2)
    poller.poll()
    source.block["c"] = threading.Event()
    poller.poll()
    snap = poller.poll()
    assert snap.fetch_errors[("", "c", "metrics", "deadline")] == 2
    source.block["c"].set()


def test_an_endpoint_whose_first_fetch_hangs_is_published_down_at_the_deadline():
    """Every selected endpoint has its success series from the first snapshot on (blackbox's probe_success):
    one whose first fetch hangs is down with reason deadline, not missing until its request times out."""
    source = FakeSource()
    source.block["c"] = threading.Event()
    _, poller, _ = make(source, poll_interval_seconds=60, poll_deadline_seconds=0.3)
    try:
        snap = poller.poll()
        assert [r.info.name for r in snap.endpoints] == ["a", "b", "c"]
        c = report(snap, "c")
        assert not c.status.up and c.status.last_success_s is None
        assert c.status.last_error == "deadline: still fetching after 0.3s"
        assert c.endpoint.figures.minutes == 0 and c.hints == () and c.recommendation is None
        assert snap.fetch_errors[("", "c", "metrics", "deadline")] == 1
        registry = CollectorRegistry()
        registry.register(ServingCollector(lambda: poller.snapshot))
        assert registry.get_sample_value("model_serving_exporter_up", {"workspace": "", "serving_endpoint": "c"}) == 0
        assert registry.get_sample_value("model_serving_exporter_last_success_timestamp_seconds",
                                         {"workspace": "", "serving_endpoint": "c"}) is None  # the never_fetched case of MetricsStale
        assert registry.get_sample_value("model_serving_target", {"workspace": "", "serving_endpoint": "c", "check": "error_ratio"}) == 0.01
        assert registry.get_sample_value("model_serving_exporter_up", {"workspace": "", "serving_endpoint": "a"}) == 1
    finally:
        source.block["c"].set()
    deadline = time.monotonic() + 5
    while poller.states[("", "c")].busy and time.monotonic() < deadline:
        time.sleep(0.01)
    assert report(poller.poll(), "c").status.up


def test_a_listing_reaches_a_busy_endpoint_only_when_its_worker_starts_again():
    """The scheduler never rewrites the state a hung worker owns: the new listing waits for the next worker."""
    source = FakeSource()
    _, poller, _ = make(source, poll_interval_seconds=60, poll_deadline_seconds=0.2, detail_refresh_seconds=3600)
    poller.poll()
    source.block["c"] = threading.Event()
    poller.poll()  # c's worker now hangs in its fetch
    before = poller.states[("", "c")].info
    source.infos["c"] = EndpointInfo(name="c", ready=True, last_updated_ms=1, tags={"team": "search"})
    snap = poller.poll()  # the scheduler lists the new tags while c's worker still runs
    assert poller.states[("", "c")].info is before and report(snap, "c").info.tags == {}
    source.block["c"].set()
    deadline = time.monotonic() + 5
    while poller.states[("", "c")].busy and time.monotonic() < deadline:
        time.sleep(0.01)
    snap = poller.poll()
    assert report(snap, "c").info.tags == {"team": "search"}
    assert report(snap, "c").info.detailed  # the detail the worker read is kept; the list brought the tags


@pytest.mark.parametrize("bad", [
    body(requests=-600, ts_ms=1763820060000),  # a negative count
    body(ts_ms=1763820060000).replace(b"request_count_total 600", b"request_count_total +Inf"),
    body(ts_ms=1763820060000) + body(ts_ms=1763820060000).split(b"\n")[0] + b"\n",  # a series twice
])
def test_invalid_data_is_refused_and_the_good_figures_stay(bad):
    source, poller, now = make(FakeSource(["a", "b"]))
    before = report(poller.poll(), "a")
    assert before.status.up and before.endpoint.figures.qps == pytest.approx(10.0)
    source.bodies["a"] = bad
    now[0] += 60
    after = report(poller.poll(), "a")
    assert not after.status.up and after.status.last_error.startswith("invalid_data:")
    assert after.endpoint.figures.qps == pytest.approx(10.0)  # the stored minute, not -10, +Inf or 20
    assert after.endpoint.counters.requests == before.endpoint.counters.requests
    assert report(poller.snapshot, "b").status.up  # the other endpoint is not affected
    assert poller.snapshot.fetch_errors[("", "a", "metrics", "invalid_data")] == 1
    source.bodies["a"] = body(ts_ms=1763820120000)
    now[0] += 60
    recovered = report(poller.poll(), "a")
    assert recovered.status.up and recovered.endpoint.counters.requests == 1200
