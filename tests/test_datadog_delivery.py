"""Delivery to a fake Datadog intake on loopback: complete polls, outages and recovery, a full buffer,
rate limits, timeouts, rejected and oversized batches, shutdown, and keys that never leak."""

from __future__ import annotations

import gzip
import json
import logging
import threading
import time
from collections import Counter

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from exporter.sinks.datadog.settings import DatadogSettings
from exporter.sinks.datadog.sink import MAX_COMPRESSED_BYTES, MAX_UNCOMPRESSED_BYTES, DatadogSink, DatadogTarget, pack
from exporter.sinks.datadog.points import COUNT, GAUGE, METRICS, PREFIX, Point, Translator
from exporter.sinks.datadog.delivery import Backoff, BoundedBuffer, exhausted, retry_after_seconds

from .fake_datadog import MAX_DECOMPRESSED_BYTES, MAX_SENT_BYTES, DemoPolls, FakeDatadog
from .fake_datadog import no_datadog_environment  # noqa: F401 (an autouse fixture)


class ManualClock:
    def __init__(self, start: float = 1000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def fake():
    with FakeDatadog() as f:
        yield f


@pytest.fixture(scope="module")
def demo():
    with DemoPolls() as p:
        yield p


def make_sink(fake: FakeDatadog, max_bytes: int = MAX_UNCOMPRESSED_BYTES, real_time: bool = False,
              **settings) -> tuple[DatadogSink, ManualClock]:
    """A sink driven by hand (no thread): `step()` sends, the manual monotonic clock stands in for waiting.
    With `real_time`, the sink uses the real clock (for tests that start its thread)."""
    options = {"backoff_initial_seconds": 1.0, "backoff_max_seconds": 8.0, "request_timeout_seconds": 0.5,
               "shutdown_flush_seconds": 0.2, **settings}
    mono = ManualClock()
    sink = DatadogSink(DatadogSettings(**options), DatadogTarget(fake.api_key, fake.url),
                       monotonic=time.monotonic if real_time else mono, random=lambda: 0.5, max_uncompressed_bytes=max_bytes)
    return sink, mono


def drain(sink: DatadogSink, mono: ManualClock, rounds: int = 500) -> list[float]:
    """Run rounds until the sink is idle, jumping the clock over every wait; returns the waits."""
    waits = []
    for _ in range(rounds):
        wait = sink.step()
        if wait is None:
            return waits
        waits.append(wait)
        mono.advance(wait)
    raise AssertionError("the sink never became idle")


def key(point) -> tuple:
    return point[0], point[1], round(point[2], 9), point[3], point[4]


def expected(snaps, **translator) -> list[tuple]:
    points = []
    t = Translator(**translator)
    for snap in snaps:
        got, _ = t.translate(snap)
        points += [(p.metric, p.timestamp, p.value, p.type, p.tags) for p in got]
    return points


def test_a_demo_poll_arrives_complete_compressed_and_valid(fake, demo):
    sink, mono = make_sink(fake, tags=["env:test", "team:ml"])
    snap = demo.poll()
    sink.offer(snap)
    drain(sink, mono)
    series_requests = fake.requests_to("/api/v2/series")
    assert series_requests and all(r.status == 202 and r.encoding == "gzip" for r in series_requests)
    assert fake.invalid == []
    assert all(r.sent_bytes <= MAX_SENT_BYTES for r in series_requests)
    assert sorted(map(key, fake.points())) == sorted(map(key, expected([snap], tags=["env:test", "team:ml"])))
    for s in fake.series():
        definition = METRICS[s["metric"].removeprefix(PREFIX)]
        assert s["type"] == definition.type
        assert s.get("unit") == definition.unit
        assert s.get("interval") == (60 if definition.type == COUNT else None)
        assert {"env:test", "team:ml"} <= set(s["tags"])
    minute = {r.info.name: r.endpoint.figures.latest_minute_ms // 1000 for r in snap.endpoints}
    for s in fake.series():
        if s["metric"] in (PREFIX + "requests_per_second", PREFIX + "requests") and "level:endpoint" in s["tags"]:
            endpoint = next(t for t in s["tags"] if t.startswith("endpoint:")).split(":", 1)[1]
            assert [p["timestamp"] for p in s["points"]] == [minute[endpoint]]
    assert sink.points["sent"] == len(fake.points()) and sink.points["dropped"] == 0


def test_an_outage_then_recovery_delivers_every_point_once_oldest_first(fake, demo):
    sink, mono = make_sink(fake, max_bytes=60_000)
    snaps = [demo.poll()]
    sink.offer(snaps[0])
    drain(sink, mono)
    delivered_before = len(fake.points())
    fake.fail(503)  # until healed
    waits = []
    for _ in range(4):  # four polls during the outage
        snaps.append(demo.poll())
        sink.offer(snaps[-1])
        wait = sink.step()
        waits.append(wait)
        mono.advance(wait)
    buffered = sink.backlog.points
    assert buffered > 0 and len(fake.points()) == delivered_before
    assert waits == [0.75, 1.5, 3.0, 6.0]  # exponential, jitter fixed at 0.75 of the step, capped at 8 * 0.75
    assert sink.points["retried"] > 0 and sink.points["dropped"] == 0
    fake.heal()
    drain(sink, mono)
    received = fake.points()
    want = expected(snaps)
    # Every point, exactly once: the same multiset, and as many as were produced. (Polls here are faster
    # than a second apart, so poll-time points of two polls can be identical; hence a multiset.)
    assert len(received) == len(want) and Counter(map(key, received)) == Counter(map(key, want))
    # Oldest first: the batches after recovery go out in poll order.
    order = {}
    for i, snap in enumerate(snaps):
        order.update({(r.info.name, r.endpoint.figures.latest_minute_ms // 1000): i for r in snap.endpoints})
    batches = [[order[(t.split(":", 1)[1], p["timestamp"])] for s in r.body["series"] if s["metric"] == PREFIX + "requests"
                for t in s["tags"] if t.startswith("endpoint:") for p in s["points"]]
               for r in fake.requests_to("/api/v2/series", 202)][1:]
    batches = [b for b in batches if b]
    assert len(batches) >= 2
    assert all(max(a) <= min(b) for a, b in zip(batches, batches[1:]))
    # Hint events that fired during the outage arrive once each.
    events = Counter((e["aggregation_key"], e["alert_type"] == "success") for e in fake.events())
    assert events and max(events.values()) == 1
    assert sink.points["sent"] == len(received) and sink.points["dropped"] == 0 and sink.backlog.points == 0
    assert len(received) - delivered_before == buffered  # what the outage held back, all of it, after recovery


def test_a_full_buffer_drops_the_oldest_and_counts_them(fake, demo):
    sink, mono = make_sink(fake)
    fake.fail(503)
    snaps = [demo.poll() for _ in range(3)]
    translator = Translator()
    per_snap = [[(p.metric, p.timestamp, p.value, p.type, p.tags) for p in translator.translate(snap)[0]] for snap in snaps]
    sink.backlog.memory_bytes = 2 * 8_000  # room for two of the demo's compressed polls (about 6 KB each), not three
    for snap in snaps:
        sink.offer(snap)
        mono.advance(sink.step() or 0)
    assert sink.backlog.points == len(per_snap[1]) + len(per_snap[2])
    assert sink.dropped["buffer_full"] == len(per_snap[0])
    fake.heal()
    drain(sink, mono)
    assert sorted(map(key, fake.points())) == sorted(map(key, per_snap[1] + per_snap[2]))  # the newest survived
    text = _exposition(sink)
    dropped = float(len(per_snap[0]))
    assert f'model_serving_exporter_datadog_points_total{{outcome="dropped"}} {dropped}' in text
    assert f'model_serving_exporter_datadog_points_dropped_total{{reason="buffer_full"}} {dropped}' in text
    assert 'model_serving_exporter_datadog_buffer_points 0.0' in text


def test_a_rate_limit_answer_is_honoured(fake, demo):
    sink, mono = make_sink(fake, events=False)
    sink.offer(demo.poll())
    fake.fail(429, times=1, headers={"X-RateLimit-Limit": "100", "X-RateLimit-Period": "60",
                                     "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "7"})
    wait = sink.step()
    assert 7.0 <= wait <= 7.7  # the reset, plus at most 10% jitter; not the 1 s backoff
    mono.advance(wait - 1)
    sink.step()
    assert len(fake.requests_to("/api/v2/series")) == 1  # nothing sent before the reset
    mono.advance(1)
    drain(sink, mono)
    assert len(fake.requests_to("/api/v2/series", 202)) >= 1 and sink.requests[("series", "429")] == 1


def test_retry_after_on_503_is_honoured(fake, demo):
    sink, mono = make_sink(fake, events=False)
    sink.offer(demo.poll())
    fake.fail(503, times=1, headers={"Retry-After": "20"})
    assert 20 <= sink.step() <= 21


def test_a_hanging_intake_times_out_and_never_blocks_offer(fake, demo):
    sink, _ = make_sink(fake, real_time=True, events=False, request_timeout_seconds=0.3, backoff_initial_seconds=0.05,
                        backoff_max_seconds=0.1)
    fake.hang(5)
    sink.start()
    try:
        snaps = [demo.poll() for _ in range(3)]
        started = time.monotonic()
        for snap in snaps:
            sink.offer(snap)
            time.sleep(0.2)
        assert time.monotonic() - started < 1.0  # offer never waited for the hanging intake
        deadline = time.monotonic() + 5
        while not sink.requests.get(("series", "timeout")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sink.requests[("series", "timeout")] >= 1
        fake.heal()
        deadline = time.monotonic() + 10
        while (sink.backlog.points or len(sink.events)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sink.backlog.points == 0 and sink.points["dropped"] == 0
    finally:
        sink.stop()
    assert Counter(map(key, fake.points())) >= Counter(map(key, expected(snaps)))  # all there (a timed-out batch may repeat)


def test_a_rejected_batch_is_dropped_not_retried(fake, demo, caplog):
    sink, mono = make_sink(fake, events=False)
    sink.offer(demo.poll())
    fake.fail(400, times=1)
    assert sink.step() is None  # nothing left: the batch was dropped
    assert sink.dropped["rejected"] > 0 and sink.points["retried"] == 0
    assert "rejected" in caplog.text


def test_an_oversized_batch_is_split(fake, demo):
    sink, mono = make_sink(fake, events=False)
    snap = demo.poll()
    sink.offer(snap)
    fake.fail(413, times=1)
    drain(sink, mono)
    assert sorted(map(key, fake.points())) == sorted(map(key, expected([snap])))
    assert len(fake.requests_to("/api/v2/series", 202)) >= 2


def test_points_older_than_the_intake_accepts_are_dropped(fake, demo):
    sink, mono = make_sink(fake)
    sink.clock = lambda: time.time() + 2 * 3600
    sink.offer(demo.poll())
    assert sink.step() is None or sink.backlog.points == 0
    assert sink.dropped["expired"] > 0 and fake.requests_to("/api/v2/series") == []


def test_stop_delivers_what_it_can_and_counts_the_rest(fake, demo):
    sink, _ = make_sink(fake, real_time=True, shutdown_flush_seconds=0.3, backoff_initial_seconds=0.1)
    fake.fail(503)
    sink.start()
    sink.offer(demo.poll())
    time.sleep(0.2)
    started = time.monotonic()
    sink.stop()
    assert time.monotonic() - started < 2.0
    assert sink.dropped["shutdown"] > 0 and sink.backlog.points == 0


def test_large_workspaces_are_sent_in_batches_within_the_documented_limits(fake):
    """1,000 endpoints' worth of points: every request within 512,000 bytes as sent and 5,242,880 decompressed."""
    points = [Point(PREFIX + "requests_per_second", GAUGE, 1_700_000_000 + 60 * (i % 3), 1000 * (i % 997) / 7.0,
                    tuple(sorted((f"endpoint:synthetic-{i // 30:04d}", f"check:c{i % 30}", "level:endpoint",
                                  "workspace:adb-1234567890.azuredatabricks.net"))))
              for i in range(60_000)]
    payloads = pack(points)
    assert len(payloads) >= 2 and sum(p.points for p in payloads) == len(points)
    for payload in payloads:
        text = gzip.decompress(payload.body)
        assert len(payload.body) <= MAX_COMPRESSED_BYTES and len(text) <= MAX_UNCOMPRESSED_BYTES
        assert text.decode() == json.dumps(json.loads(text))  # exactly what json.dumps makes of the body
    sink, mono = make_sink(fake, request_timeout_seconds=30)
    sink.clock = lambda: 1_700_000_000.0
    for payload in payloads:
        sink.backlog.append(payload)
    drain(sink, mono, rounds=20)
    accepted = fake.requests_to("/api/v2/series", 202)
    assert len(accepted) >= 2 and not fake.requests_to("/api/v2/series", 413)
    assert sum(len(s["points"]) for r in accepted for s in r.body["series"]) == len(points)
    assert max(r.sent_bytes for r in accepted) <= MAX_COMPRESSED_BYTES
    assert all(len(json.dumps(r.body)) <= MAX_DECOMPRESSED_BYTES for r in accepted)


def test_keys_never_appear_in_logs_metrics_or_reprs(fake, demo, caplog):
    caplog.set_level(logging.DEBUG)
    sink, mono = make_sink(fake)
    secret_target = DatadogTarget("dd-api-secret-4242", fake.url, "dd-app-secret-4343")
    assert "secret" not in repr(secret_target) and "secret" not in str(secret_target)
    bad = DatadogSink(DatadogSettings(), secret_target, monotonic=mono)  # the fake answers 403 to this key
    bad.offer(demo.poll())
    drain(bad, mono)
    fake.fail(503, times=1)
    sink.offer(demo.poll())
    drain(sink, mono)
    assert bad.dropped["rejected"] > 0
    exposed = caplog.text + _exposition(bad) + _exposition(sink) + repr(bad.__dict__.get("target"))
    for secret in ("dd-api-secret-4242", "dd-app-secret-4343", fake.api_key):
        assert secret not in exposed


# -- the pieces -----------------------------------------------------------------------------------


def test_backoff_is_exponential_capped_and_jittered():
    draws = iter([0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.5])
    b = Backoff(1.0, 4.0, random=lambda: next(draws))
    assert [b.failure() for _ in range(6)] == [0.5, 2.0, 2.0, 4.0, 2.0, 4.0]
    b.success()
    assert b.failure(server_hint_s=10) == 10.5  # server hint + up to 10% (at most 1 s) jitter


def test_retry_headers():
    assert retry_after_seconds({"X-RateLimit-Reset": "12"}, 0, rate_limited=True) == 12
    assert retry_after_seconds({"X-RateLimit-Reset": "12"}, 0) is None  # on a 5xx it only describes the period
    assert retry_after_seconds({"Retry-After": "3"}, 0) == 3
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:30 GMT"}, 1445412500) == 10
    assert retry_after_seconds({}, 0) is None
    assert exhausted({"X-RateLimit-Remaining": "0"}) and not exhausted({"X-RateLimit-Remaining": "3"})


def test_bounded_buffer_drops_the_oldest():
    buf = BoundedBuffer(3)
    assert buf.extend([1, 2]) == 0 and buf.extend([3, 4, 5]) == 2
    assert buf.head(10) == [3, 4, 5]
    buf.remove_head(1)
    assert buf.head(10) == [4, 5] and buf.clear() == 2 and len(buf) == 0


def test_offer_from_many_threads_is_safe(fake, demo):
    sink, mono = make_sink(fake)
    snap = demo.poll()
    threads = [threading.Thread(target=sink.offer, args=(snap,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    drain(sink, mono)
    assert sink.points["dropped"] == 0 and fake.invalid == []


def test_the_body_sent_is_the_packed_payload(fake, demo):
    """What is kept compressed in the backlog is sent byte for byte: a valid v2 body, exactly as json.dumps makes it."""
    sink, mono = make_sink(fake, events=False)
    sink.offer(demo.poll())
    sink._translate_pending()
    seq, payload = sink.backlog.head()
    drain(sink, mono)
    (request,) = fake.requests_to("/api/v2/series", 202)
    assert request.sent_bytes == len(payload.body) and request.encoding == "gzip" and fake.invalid == []
    assert json.dumps(request.body).encode() == gzip.decompress(payload.body)
    assert len(fake.points()) == payload.points == sink.points["sent"]


def _exposition(sink: DatadogSink) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(sink.collector())
    return generate_latest(registry).decode()
