"""Datadog and disk faults against a real `serving-exporter run` process: the intake answering 500 for two
minutes, 413, 403, slowly (10 s) or not at all (connection refused), the process stopped while the intake is
down and restarted, and a spill directory that cannot be created or a disk that is full.

For every fault: the process stays up, polls keep their schedule and /metrics answers; the fault shows (the
sink's request and drop counters, a log line); and once the intake is back, every point the exporter made
arrives exactly once (same metric, tags and timestamp), with no gap in any series' poll timestamps, except
what the intake itself refused (403: dropped and counted, as the Datadog Agent does). The Datadog key appears
nowhere. Points are compared over the poll-clock series `model_serving.exporter_up` (one point per endpoint and
poll), and duplicates over every accepted point.
"""

from __future__ import annotations

import json
import resource
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ..fake_datadog import FakeDatadog
from ..fake_datadog import no_datadog_environment  # noqa: F401 (an autouse fixture)
from . import platform as p
from .exporter import POLL_S, Stack, assert_no_token, free_port, start_exporter, stop

pytestmark = [pytest.mark.faults, pytest.mark.integration]

ENDPOINTS = ("dd-1", "dd-2")
UP = "model_serving.exporter_up"
GAUGE = 3  # the v2 intake's type of a gauge point
OUTAGE_S = 120.0  # "the intake answers 500 for two minutes", as it happens, in real time


def sink_settings(spill: Path, **extra: object) -> dict[str, str]:
    datadog = {"spill_directory": str(spill), "request_timeout_seconds": 2, "backoff_initial_seconds": 0.5,
               "backoff_max_seconds": 4, "shutdown_flush_seconds": 2, "events": False, **extra}
    return {"SERVING_EXPORTER_DATADOG": json.dumps(datadog)}


def start(platform: p.Platform, fake_url: str, api_key: str, log: Path, spill: Path,
          preexec_fn: Callable[[], None] | None = None, **extra: object) -> Stack:
    env = {"DD_API_KEY": api_key, "SERVING_EXPORTER_DATADOG_URL": fake_url, **sink_settings(spill, **extra)}
    return start_exporter(platform, log, env=env, preexec_fn=preexec_fn)


def counter(stack: Stack, name: str, **labels: str) -> float:
    return stack.samples().get((name, frozenset(labels.items())), 0.0)


def requests_with(stack: Stack, result: str) -> float:
    return counter(stack, "model_serving_exporter_datadog_requests_total", api="series", result=result)


def wait(condition: Callable[[], object], what: str, stack: Stack, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert stack.proc.poll() is None, f"the exporter exited with {stack.proc.returncode}:\n{stack.log()}"
        if condition():
            return
        time.sleep(0.3)
    raise AssertionError(f"not reached within {timeout_s}s: {what}\n{stack.log()[-3000:]}")


def delivered(stack: Stack) -> bool:
    """Nothing waits for delivery any more."""
    return counter(stack, "model_serving_exporter_datadog_buffer_points") == 0


def polls_on_time(stack: Stack, n: int = 2) -> None:
    """The fault holds no poll: `n` polls complete within their schedule (and a generous margin)."""
    started = time.monotonic()
    stack.wait_polls(n, timeout_s=(n + 3) * POLL_S)
    assert time.monotonic() - started < (n + 3) * POLL_S
    assert stack.get("/healthz").status_code == 200


def up_points(fakes: list[FakeDatadog]) -> dict[str, list[int]]:
    """Endpoint -> the sorted timestamps of its exporter_up points, over every fake intake."""
    stamps: dict[str, list[int]] = {}
    for fake in fakes:
        for metric, ts, _, _, tags in fake.points():
            if metric == UP:
                endpoint = next(t.split(":", 1)[1] for t in tags if t.startswith("endpoint:"))
                stamps.setdefault(endpoint, []).append(ts)
    return {e: sorted(ts) for e, ts in stamps.items()}


def assert_exactly_once(fakes: list[FakeDatadog], restarted_at: float | None = None) -> None:
    """Each (metric, tags, timestamp) with one value: the intake keeps one value per timestamp, so a point sent
    again with the same value (a request whose answer timed out after the intake took it; a source minute the
    restarted process sees again) counts once, as far as the intake can tell; two values would be a conflict.

    One exception, by design: the window gauges (coverage, window means and percentiles) of the source minute both
    processes saw around a restart. The new process starts with an empty window, so its figures for that minute
    are of one minute, and the intake keeps the value sent last (docs/datadog.md, "Guarantee"). Counts never
    differ."""
    values: dict[tuple, set[float]] = {}
    for fake in fakes:
        for m, ts, value, kind, tags in fake.points():
            values.setdefault((m, ts, kind, tags), set()).add(value)
    conflicting = [k for k, v in values.items() if len(v) > 1
                   and not (k[2] == GAUGE and restarted_at is not None
                            and restarted_at - 120 <= k[1] <= restarted_at + 60)]
    assert not conflicting, f"{len(conflicting)} points arrived with different values, e.g. {conflicting[:3]}"
    for fake in fakes:
        assert fake.invalid == []


def gaps(stamps: list[int], allowed: list[tuple[float, float]]) -> list[tuple[int, int]]:
    """Consecutive poll timestamps further apart than a late poll explains, outside the `allowed` intervals."""
    return [(a, b) for a, b in zip(stamps, stamps[1:])
            if b - a > 3 * POLL_S and not any(lo <= a and b <= hi for lo, hi in allowed)]


def test_intake_faults_lose_no_point_and_hold_no_poll(tmp_path):
    platform = p.Platform()
    for name in ENDPOINTS:
        platform.metrics[name] = p.healthy
    port = free_port()
    fakes = [FakeDatadog(port=port, lifetime_s=900).start()]
    spill = tmp_path / "spill"
    stack = start(platform, fakes[0].url, fakes[0].api_key, tmp_path / "exporter.log", spill)
    refused: list[tuple[float, float]] = []  # (from, to) wall-clock seconds in which the intake refused the points
    try:
        wait(lambda: fakes[0].points(), "the first points delivered", stack)

        # 500 for two minutes: every poll's points wait, retried with backoff; then all arrive, oldest first.
        fakes[0].fail(500)
        outage_from = time.time()
        wait(lambda: requests_with(stack, "500") >= 1, "a 500 counted", stack)
        outage_end = time.monotonic() + OUTAGE_S
        while time.monotonic() < outage_end:
            polls_on_time(stack, n=4)
        outage_to = time.time()
        held = counter(stack, "model_serving_exporter_datadog_buffer_points")
        assert held >= OUTAGE_S / POLL_S / 2 * len(ENDPOINTS), held  # the outage's points are held
        assert counter(stack, "model_serving_exporter_datadog_points_total", outcome="retried") > 0
        fakes[0].heal()
        wait(lambda: delivered(stack), "the outage's points delivered", stack, timeout_s=90)
        assert "Datadog series answered 500" in stack.log()

        # 413: the batch is split and delivered.
        fakes[0].fail(413, times=1)
        wait(lambda: requests_with(stack, "413") >= 1, "a 413 counted", stack)
        wait(lambda: delivered(stack), "the split batch delivered", stack)
        assert "splitting the batch" in stack.log()

        # A slow intake (10 s per answer, past the sink's 2 s timeout): retried; polls and /metrics unaffected.
        fakes[0].hang(10)
        wait(lambda: requests_with(stack, "timeout") >= 1, "a timeout counted", stack)
        polls_on_time(stack, n=3)
        fakes[0].heal()
        wait(lambda: delivered(stack), "the slow intake's points delivered", stack)

        # Connection refused: the intake is gone, then back on the same address.
        fakes[0].stop()
        wait(lambda: requests_with(stack, "connection") >= 1, "a refused connection counted", stack)
        polls_on_time(stack, n=3)
        fakes.append(FakeDatadog(port=port, lifetime_s=600).start())
        wait(lambda: delivered(stack), "the points held while refused delivered", stack)

        # 403 (a revoked key): the payloads are dropped and counted, as retrying cannot help; delivery resumes.
        rejected_before = counter(stack, "model_serving_exporter_datadog_points_dropped_total", reason="rejected")
        since = time.time()
        fakes[-1].fail(403)
        wait(lambda: counter(stack, "model_serving_exporter_datadog_points_dropped_total", reason="rejected")
             > rejected_before, "points dropped as rejected", stack)
        polls_on_time(stack, n=2)
        fakes[-1].heal()
        refused.append((since - POLL_S, time.time() + POLL_S))
        got = len(fakes[-1].points())
        wait(lambda: len(fakes[-1].points()) > got and delivered(stack), "delivery resumed after the 403", stack)
        assert "check DD_API_KEY and DD_SITE" in stack.log()

        # Stopped while the intake is down: what is held is spilled, and the next process sends it.
        fakes[-1].fail(503)
        wait(lambda: counter(stack, "model_serving_exporter_datadog_buffer_points") >= 2 * len(ENDPOINTS),
             "points held", stack)
        assert_no_token(stack.log(), stack.get("/metrics").text)
        assert fakes[0].api_key not in stack.log() + stack.get("/metrics").text
        stack.proc.send_signal(signal.SIGTERM)
        assert stack.proc.wait(20) == 0
        assert list(spill.glob("*.json.gz")), "nothing spilled at shutdown"
        assert "waiting in" in stack.log()
    finally:
        stop(stack)
    fakes[-1].heal()
    restarted_at = time.time()
    second = start(platform, fakes[-1].url, fakes[-1].api_key, tmp_path / "exporter-2.log", spill)
    try:
        wait(lambda: not list(spill.glob("*.json.gz")) and delivered(second), "the spilled points sent", second)
        assert "from before the restart" in second.log()
    finally:
        stop(second)
        for fake in fakes:
            fake.stop()
        platform.close()

    assert_exactly_once(fakes, restarted_at)
    stamps = up_points(fakes)
    assert set(stamps) == set(ENDPOINTS)
    for endpoint, ts in stamps.items():
        # The first process's polls, then the second's: one gap at the restart, none anywhere else but the 403.
        found = gaps(ts, refused)
        assert len(found) <= 1, f"{endpoint}: points missing between {found}"
        # The outage's polls all arrived: one per poll interval, give or take a late poll on a loaded machine.
        during = [t for t in ts if outage_from <= t <= outage_to]
        assert len(during) >= 0.75 * (outage_to - outage_from) / POLL_S, (len(during), outage_to - outage_from)


def test_a_spill_directory_that_cannot_be_created_leaves_delivery_from_memory(tmp_path):
    """As a read-only file system would (a root process ignores permission bits, so the test blocks the path with
    a file instead): logged and counted at start, and the points go from memory."""
    platform = p.Platform()
    platform.metrics["dd-1"] = p.healthy
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with FakeDatadog(lifetime_s=300) as fake:
        stack = start(platform, fake.url, fake.api_key, tmp_path / "exporter.log", blocker / "spill")
        try:
            wait(lambda: len(up_points([fake]).get("dd-1", ())) >= 2, "points delivered from memory", stack)
            assert counter(stack, "model_serving_exporter_datadog_spill_errors_total", operation="open") == 1
            assert counter(stack, "model_serving_exporter_datadog_buffer_capacity_bytes", location="disk") == 0
            assert "is not usable" in stack.log()
        finally:
            stop(stack)
            platform.close()
        assert_exactly_once([fake])


def _full_disk() -> None:
    # Past 1 byte no file of the exporter's may grow: every spill write fails (EFBIG, as ENOSPC would). Python
    # ignores SIGXFSZ, so the write fails rather than killing the process.
    resource.setrlimit(resource.RLIMIT_FSIZE, (1, 1))


def test_a_full_disk_at_shutdown_is_counted_and_the_process_still_exits_in_time(tmp_path):
    platform = p.Platform()
    platform.metrics["dd-1"] = p.healthy
    spill = tmp_path / "spill"
    with FakeDatadog(lifetime_s=300) as fake:
        fake.fail(503)
        stack = start(platform, fake.url, fake.api_key, tmp_path / "exporter.log", spill, preexec_fn=_full_disk)
        try:
            wait(lambda: counter(stack, "model_serving_exporter_datadog_buffer_points") >= 2, "points held", stack)
            started = time.monotonic()
            stack.proc.send_signal(signal.SIGTERM)
            assert stack.proc.wait(20) == 0
            took = time.monotonic() - started
        finally:
            stop(stack)
            platform.close()
    log = stack.log()
    assert took < 15  # shutdown_flush_seconds 2 + a request timeout, well inside Kubernetes' 30 s
    assert "cannot spill Datadog points" in log and "File too large" in log
    assert "undelivered" in log  # counted as dropped at shutdown (model_serving_exporter_datadog_points_dropped)
    assert not list(spill.glob("*.json.gz")) and not list(spill.glob("*.tmp"))
    assert fake.api_key not in log
