"""Durable Datadog delivery, time compressed (clocks injected, nothing waits on wall-clock minutes): a
30-minute intake outage at 1,000 endpoints delivered exactly once and oldest first after recovery, the
intake's one-hour age limit, a restart during an outage with a spill directory, and a spill directory
that fails."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from exporter.sinks.datadog.points import COUNT, GAUGE, PREFIX, Point
from exporter.sinks.datadog.settings import DatadogSettings
from exporter.sinks.datadog.sink import DatadogSink, DatadogTarget

from .fake_datadog import MAX_SENT_BYTES, FakeDatadog
from .fake_datadog import no_datadog_environment  # noqa: F401 (an autouse fixture)

T0 = 1_700_000_040  # the start of a minute (seconds)
POLL_OFFSET_S = 50  # poll-time points are stamped this long after their source minute


class ManualClock:
    def __init__(self, start: float):
        self.now = start

    def __call__(self) -> float:
        return self.now


class MinuteTranslator:
    """Stands in for the Translator: the "snapshot" m gives the points of source minute m of `endpoints`
    endpoints, two series stamped with the minute and one with the poll time, each value unique per
    series and minute (so a point sent twice, or for the wrong minute, shows)."""

    def __init__(self, endpoints: int):
        self.endpoints = endpoints

    def translate(self, m: int) -> tuple[list[Point], list]:
        return minute_points(m, self.endpoints), []


def minute_points(m: int, endpoints: int) -> list[Point]:
    ts, poll = T0 + 60 * m, T0 + 60 * m + POLL_OFFSET_S
    points = []
    for e in range(endpoints):
        tags = (f"endpoint:ep-{e:04d}", "level:endpoint", "workspace:adb-1.azuredatabricks.net")
        points += [Point(PREFIX + "requests", COUNT, ts, float(1000 * e + m), tags),
                   Point(PREFIX + "latency_seconds", GAUGE, ts, e + m / 1000, tuple(sorted(tags + ("percentile:p99",)))),
                   Point(PREFIX + "endpoint_ready", GAUGE, poll, float(m % 2), tags)]
    return points


def want(minutes, endpoints: int) -> dict[tuple, float]:
    return {(p.metric, p.tags, p.timestamp): p.value for m in minutes for p in minute_points(m, endpoints)}


class Run:
    """A sink with a stub translator, driven minute by minute: the poll of minute m completes at
    T0 + 60 m + 55 s (wall clock), and the sender's rounds run on a manual monotonic clock."""

    def __init__(self, fake: FakeDatadog, endpoints: int, **settings):
        options = {"backoff_initial_seconds": 1.0, "backoff_max_seconds": 30.0, "events": False, **settings}
        self.wall, self.mono = ManualClock(T0), ManualClock(1000.0)
        self.sink = DatadogSink(DatadogSettings(**options), DatadogTarget(fake.api_key, fake.url), clock=self.wall,
                                monotonic=self.mono, random=lambda: 0.5)
        self.sink.translator = MinuteTranslator(endpoints)  # type: ignore[assignment]

    def minute(self, m: int, offer: bool = True) -> None:
        """Minute m: its poll hands over the snapshot, then the sender runs every round due in the minute."""
        self.wall.now = T0 + 60 * m + 55
        end = self.mono.now + 60
        if offer:
            self.sink.offer(m)  # type: ignore[arg-type]
        while (wait := self.sink.step()) is not None and self.mono.now + wait < end:
            self.mono.now += wait
        self.mono.now = end

    def drain(self) -> None:
        for _ in range(10_000):
            wait = self.sink.step()
            if wait is None:
                return
            self.mono.now += wait
        raise AssertionError("the sink never became idle")


def received(fake: FakeDatadog) -> Counter:
    """(metric, tags, timestamp, value) of every point the intake accepted, with how often it came."""
    return Counter((m, tuple(sorted(tags)), ts, v) for m, ts, v, _, tags in fake.points())


def assert_exactly_once(fake: FakeDatadog, expected: dict[tuple, float]) -> None:
    got = received(fake)
    assert max(got.values()) == 1, "a point arrived twice"
    assert {(m, tags, ts): v for m, tags, ts, v in got} == expected


def assert_oldest_first(fake: FakeDatadog) -> None:
    spans = [(min(stamps), max(stamps)) for r in fake.requests_to("/api/v2/series", 202)
             if (stamps := [p["timestamp"] for s in r.body["series"] for p in s["points"]])]
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), "a request carried points older than an earlier one"


def exposition(sink: DatadogSink) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(sink.collector())
    return generate_latest(registry).decode()


@pytest.fixture
def fake():
    with FakeDatadog(full_check_series=100) as f:
        yield f


def test_a_30_minute_outage_at_1000_endpoints_is_delivered_exactly_once_oldest_first(fake):
    run = Run(fake, endpoints=1000)
    run.minute(0)
    assert len(received(fake)) == 3000
    fake.fail(503)  # the intake is down for minutes 1 to 30
    for m in range(1, 31):
        run.minute(m)
    sink = run.sink
    assert sink.backlog.points == 30 * 3000 and sink.points["dropped"] == 0  # all of it held, in memory
    assert sink.points["retried"] > 0 and len(received(fake)) == 3000
    held = sink.backlog.memory_used
    text = exposition(sink)
    assert f"model_serving_exporter_datadog_buffer_points {30 * 3000:.1f}" in text
    assert f'model_serving_exporter_datadog_buffer_bytes{{location="memory"}} {held:.1f}' in text
    fake.heal()
    run.minute(31)
    run.drain()
    assert_exactly_once(fake, want(range(32), 1000))
    assert_oldest_first(fake)
    assert fake.invalid == [] and not fake.requests_to("/api/v2/series", 413)
    assert all(r.sent_bytes <= MAX_SENT_BYTES for r in fake.requests_to("/api/v2/series"))
    assert sink.points["sent"] == 32 * 3000 and sink.points["dropped"] == 0 and sink.backlog.memory_used == 0
    assert held / (30 * 3000) < 30  # compressed: bytes a point held (about 300 as Python objects)


def test_points_older_than_the_intake_accepts_are_dropped_counted_and_never_sent(fake):
    run = Run(fake, endpoints=10)
    fake.fail(503)
    for m in range(70):  # 70 minutes down: the first ten are past the hour by the time it recovers
        run.minute(m)
    fake.heal()
    run.wall.now = T0 + 60 * 70 + 30  # the oldest point allowed: T0 + 630, between minute 10 and its poll time
    run.drain()
    oldest_allowed = T0 + 60 * 70 + 30 - 3600
    everything = want(range(70), 10)
    kept = {k: v for k, v in everything.items() if k[2] >= oldest_allowed}
    assert_exactly_once(fake, kept)  # minute 10's poll-time points came, its minute-stamped ones did not
    assert any(k[2] == T0 + 600 + POLL_OFFSET_S for k in kept) and not any(k[2] == T0 + 600 for k in kept)
    assert_oldest_first(fake)
    expired = len(everything) - len(kept)
    assert run.sink.dropped["expired"] == expired and run.sink.points["dropped"] == expired
    assert f'model_serving_exporter_datadog_points_dropped_total{{reason="expired"}} {expired:.1f}' in exposition(run.sink)


def test_a_restart_during_an_outage_loses_nothing_spilled(fake, tmp_path):
    spill = tmp_path / "spill"
    # The first process: memory for about two minutes of payloads, so older minutes spill as the outage goes on.
    first = Run(fake, endpoints=50, spill_directory=str(spill), shutdown_flush_seconds=0)
    first.sink.backlog.memory_bytes = 2 * 2_000
    fake.fail(503)
    for m in range(6):
        first.minute(m)
    assert first.sink.backlog.spilled_points > 0 and first.sink.backlog.disk_used > 0
    assert first.sink.dropped["buffer_full"] == 0
    first.sink._flush_before_exit()  # what the sender thread does on SIGTERM: the rest goes to disk
    first.sink.stop()
    assert first.sink.dropped["shutdown"] == 0 and len(list(spill.glob("*.json.gz"))) >= 6

    second = Run(fake, endpoints=50, spill_directory=str(spill))
    assert second.sink.backlog.points == 6 * 150  # found on disk, before anything new
    for m in range(6, 8):  # still down for two more minutes
        second.minute(m)
    fake.heal()
    second.minute(8)
    second.drain()
    assert_exactly_once(fake, want(range(9), 50))
    assert_oldest_first(fake)
    assert second.sink.points["dropped"] == 0 and not list(spill.glob("*.json.gz"))
    second.sink.stop()


def test_a_crash_loses_only_what_was_not_spilled_yet(fake, tmp_path):
    spill = tmp_path / "spill"
    first = Run(fake, endpoints=50, spill_directory=str(spill))
    first.sink.backlog.memory_bytes = 2 * 2_000
    fake.fail(503)
    for m in range(5):
        first.minute(m)
    on_disk = first.sink.backlog.spilled_points
    assert 0 < on_disk < 5 * 150
    first.sink.backlog.close()  # killed: no flush; the lock goes with the process

    fake.heal()
    second = Run(fake, endpoints=50, spill_directory=str(spill))
    second.drain()
    assert sum(received(fake).values()) == on_disk and max(received(fake).values()) == 1
    assert_oldest_first(fake)


def test_a_spill_directory_that_cannot_be_created_is_a_counted_failure(fake, tmp_path, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    run = Run(fake, endpoints=5, spill_directory=str(blocker / "spill"))
    run.minute(0)
    assert_exactly_once(fake, want([0], 5))  # delivery goes on from memory
    assert run.sink.backlog.errors["open"] == 1 and run.sink.backlog.directory is None
    assert "not usable" in caplog.text and "memory only" in caplog.text
    text = exposition(run.sink)
    assert 'model_serving_exporter_datadog_spill_errors_total{operation="open"} 1.0' in text
    assert 'model_serving_exporter_datadog_buffer_capacity_bytes{location="disk"} 0.0' in text


def test_a_spill_directory_failing_while_running_is_a_counted_failure_not_a_crash(fake, tmp_path, caplog):
    """The directory vanishes under the exporter (as a full or read-only disk, every write fails): the
    failures are logged and counted, what cannot be kept is dropped and counted, and delivery goes on."""
    spill = tmp_path / "spill"
    run = Run(fake, endpoints=50, spill_directory=str(spill))
    run.sink.backlog.memory_bytes = 2 * 2_000
    fake.fail(503)
    shutil.rmtree(spill)
    for m in range(5):
        run.minute(m)
    sink = run.sink
    assert sink.backlog.errors["write"] >= 1 and sink.backlog.spilled_points == 0
    assert sink.dropped["buffer_full"] == 5 * 150 - sink.backlog.points > 0
    assert "cannot spill Datadog points" in caplog.text
    fake.heal()
    run.minute(5)
    run.drain()
    got = received(fake)
    assert max(got.values()) == 1 and len(got) == sink.points["sent"] == 6 * 150 - sink.dropped["buffer_full"]
    assert f'model_serving_exporter_datadog_spill_errors_total{{operation="write"}} {sink.backlog.errors["write"]:.1f}' in exposition(sink)


def test_the_spill_directory_is_bounded_by_bytes(fake, tmp_path):
    spill = tmp_path / "spill"
    run = Run(fake, endpoints=50, spill_directory=str(spill))
    run.sink.backlog.memory_bytes, run.sink.backlog.disk_bytes = 2_000, 3 * 2_000
    fake.fail(503)
    for m in range(8):
        run.minute(m)
    assert run.sink.backlog.disk_used <= 3 * 2_000
    assert sum(f.stat().st_size for f in spill.glob("*.json.gz")) == run.sink.backlog.disk_used
    assert run.sink.dropped["buffer_full"] > 0
    fake.heal()
    run.drain()
    got = received(fake)
    assert len(got) == sum(got.values()) == 8 * 150 - run.sink.dropped["buffer_full"]
    newest = want([7], 50)
    assert all((m, tags, ts) in {(k[0], k[1], k[2]) for k in got} for m, tags, ts in newest)  # the newest survived


def test_two_processes_cannot_share_a_spill_directory(fake, tmp_path, caplog):
    spill = tmp_path / "spill"
    first = Run(fake, endpoints=1, spill_directory=str(spill))
    second = Run(fake, endpoints=1, spill_directory=str(spill))
    assert first.sink.backlog.directory == spill and second.sink.backlog.directory is None
    assert "used by another exporter process" in caplog.text
    first.sink.backlog.close()


def test_the_old_buffer_points_key_says_what_replaced_it():
    with pytest.raises(ValueError, match="buffer_points was replaced by buffer_bytes"):
        DatadogSettings(buffer_points=100_000)


FULL_DISK_CHILD = r"""
import logging, resource, signal, sys
from pathlib import Path
from exporter.sinks.datadog.backlog import Backlog, Payload

logging.basicConfig(level=logging.WARNING, format="%(message)s")
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead of killing
resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))  # no file may grow past 1,000 bytes: the disk is "full"
dropped = []
backlog = Backlog(4000, lambda reason, n: dropped.append((reason, n)), Path(sys.argv[1]), 10**6)
for i in range(5):
    backlog.append(Payload(bytes(1500), 10, i, i))
print(backlog.errors["write"], sum(n for _, n in dropped), backlog.points, backlog.spilled_points)
"""


def test_a_full_disk_is_a_counted_failure(tmp_path):
    """A real failing write (the kernel refuses to grow the file) in a process of its own: each failure
    is counted, logged once, and what cannot be kept is dropped and counted; nothing is raised."""
    child = subprocess.run([sys.executable, "-c", FULL_DISK_CHILD, str(tmp_path / "spill")], capture_output=True,
                           text=True, timeout=60, cwd=Path(__file__).resolve().parent.parent)
    assert child.returncode == 0, child.stderr
    errors, dropped, waiting, spilled = map(int, child.stdout.split())
    assert (errors, dropped, waiting, spilled) == (3, 30, 20, 0)  # 2 of 5 payloads fit in memory; 3 could not spill
    assert child.stderr.count("cannot spill Datadog points") == 1 and "File too large" in child.stderr
    assert not list((tmp_path / "spill").glob("*.tmp"))  # no half-written file left behind
