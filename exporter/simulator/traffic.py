"""Traffic model: one served entity, one simulated minute at a time.

A fluid model rather than per-request sampling, so 1,000 endpoints x one minute costs
milliseconds: arrivals and capacity are rates, the queue carries over between minutes, and
histograms are filled from the analytical lognormal / exponential CDFs.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import TYPE_CHECKING, Protocol

from .scenario import Scenario

if TYPE_CHECKING:
    from .invocations import LiveMinute

# Bucket bounds (ms) reported by the real API for its latency histograms, +Inf implied.
BUCKETS_MS: tuple[float, ...] = (
    5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 120000, 300000, 600000)
SINE_PERIOD_MIN = 30
# Autoscaling provisions this much more than load x mean service time: steady-state busy
# fraction 1/1.3, which keeps a healthy endpoint clear of queueing.
HEADROOM = 1.3
_STD_NORMAL = NormalDist()


@dataclass(frozen=True)
class Histogram:
    """Cumulative bucket counts for BUCKETS_MS plus +Inf (the last), and the sum in ms."""

    buckets: tuple[int, ...]
    sum_ms: float

    @property
    def count(self) -> int:
        return self.buckets[-1]

    def __add__(self, other: Histogram) -> Histogram:
        return Histogram(tuple(a + b for a, b in zip(self.buckets, other.buckets)),
                         self.sum_ms + other.sum_ms)


EMPTY_HISTOGRAM = Histogram((0,) * (len(BUCKETS_MS) + 1), 0.0)


def _histogram(n: int, cdf, mean_ms: float) -> Histogram:
    # Expected counts rounded; rounding a non-decreasing CDF keeps the buckets monotonic.
    buckets = tuple(min(n, round(n * cdf(le))) for le in BUCKETS_MS) + (n,)
    return Histogram(buckets, round(n * mean_ms, 3))


def histogram_of(values_ms: Sequence[float]) -> Histogram:
    """The histogram of measured values (the invocations served in a minute)."""
    if not values_ms:
        return EMPTY_HISTOGRAM
    ordered = sorted(values_ms)
    return Histogram(tuple(bisect.bisect_right(ordered, le) for le in BUCKETS_MS) + (len(ordered),),
                     round(sum(ordered), 3))


def shifted_lognormal_cdf(median: float, sigma: float, shift: float) -> Callable[[float], float]:
    """CDF of `shift` plus a lognormal of this median and log-space sigma (any time unit)."""
    log_median = math.log(median)

    def cdf(x: float) -> float:
        if x <= shift:
            return 0.0
        z = math.log(x - shift) - log_median
        if sigma == 0:
            return 1.0 if z >= 0 else 0.0
        return _STD_NORMAL.cdf(z / sigma)

    return cdf


def lognormal_mean(median: float, sigma: float) -> float:
    return median * math.exp(sigma ** 2 / 2)


def latency_histogram(n: int, median_ms: float, sigma: float, wait_ms: float) -> Histogram:
    """n latencies = lognormal service time shifted by the mean queue wait."""
    if n == 0:
        return EMPTY_HISTOGRAM
    return _histogram(n, shifted_lognormal_cdf(median_ms, sigma, wait_ms), lognormal_mean(median_ms, sigma) + wait_ms)


def queue_time_histogram(n: int, wait_ms: float) -> Histogram:
    """n queue waits, exponential around the mean wait (all zero when nothing queues)."""
    if n == 0:
        return EMPTY_HISTOGRAM
    if wait_ms <= 0:
        return _histogram(n, lambda x: 1.0, 0.0)
    return _histogram(n, lambda x: 1.0 - math.exp(-x / wait_ms), wait_ms)


class OfferedLoad(Protocol):
    qps: float
    qps_variation: float


@dataclass
class EntityState:
    """What carries over from one minute to the next for one served entity."""

    concurrency: int
    queue: float = 0.0
    # Running totals, for endpoints whose histograms are cumulative since start.
    latency_total: Histogram = EMPTY_HISTOGRAM
    queue_time_total: Histogram = EMPTY_HISTOGRAM


@dataclass(frozen=True)
class EntityMinute:
    """One served entity's figures for one minute (what the metrics text is rendered from)."""

    name: str
    requests: int
    count_4xx: int
    count_5xx: int
    rejected_429: int
    latency: Histogram
    queue_time: Histogram
    cpu_percent: float
    memory_percent: float
    gpu_percent: float | None
    gpu_memory_percent: float | None
    provisioned: int
    # Diagnostics for tests and the control API; never exported.
    offered_qps: float = 0.0
    queue_end: float = 0.0
    wait_ms: float = 0.0
    busy_slots: float = 0.0  # servers the simulated traffic kept busy on average (invocations use the rest)
    latency_total: Histogram = field(default=EMPTY_HISTOGRAM, repr=False)
    queue_time_total: Histogram = field(default=EMPTY_HISTOGRAM, repr=False)


def offered_qps(sc: Scenario | OfferedLoad, minute: int, phase: int, rng: random.Random) -> float:
    """Mean arrival rate of the endpoint in this minute: slow sine plus ±5% noise."""
    wave = 1.0 + sc.qps_variation * math.sin(2 * math.pi * (minute + phase) / SINE_PERIOD_MIN)
    return sc.qps * max(0.0, wave) * (1.0 + rng.uniform(-0.05, 0.05))


def next_concurrency(sc: Scenario, lam: float, previous: int | None) -> int:
    """Provisioned concurrency for this minute, following load with autoscaling lag."""
    if not sc.autoscaling:
        return sc.max_provisioned_concurrency
    if sc.scale_to_zero_enabled and lam * 60 < 0.5:
        return 0
    lowest = max(sc.min_provisioned_concurrency, 1)
    target = min(sc.max_provisioned_concurrency,
                 max(lowest, math.ceil(lam * sc.mean_service_time_s * HEADROOM)))
    if previous:  # at most x2 / half per minute; a cold start (0 or none yet) jumps straight there
        target = min(max(target, math.ceil(previous / 2)), previous * 2)
    return target


def _jitter(rng: random.Random, value: float, spread: float) -> float:
    return round(min(100.0, max(0.0, value + rng.uniform(-spread, spread))), 1)


def _mean_queue(start: float, end: float, net_inflow: float) -> float:
    """Time-averaged fluid queue over a minute: it moves from `start` at `net_inflow`/s until
    it reaches `end` (empty, or the cap), then stays there."""
    if start == end:
        return start
    moving_s = min(60.0, abs(end - start) / abs(net_inflow)) if net_inflow else 60.0
    return ((start + end) / 2 * moving_s + end * (60.0 - moving_s)) / 60.0


def queue_minute(queue0: float, lam: float, mu: float, queue_cap: float) -> tuple[float, float, float, float]:
    """One minute of a fluid queue in front of servers completing at most `mu` requests/s, arrivals `lam`/s,
    the queue starting at `queue0` and holding at most `queue_cap`: (served, turned away, queue at the end,
    mean wait in seconds)."""
    arrivals, capacity = lam * 60.0, mu * 60.0
    backlog = queue0 + arrivals - capacity
    if backlog <= 0:  # everything waiting or arriving is served; the queue drains
        served, queue1, rejected = queue0 + arrivals, 0.0, 0.0
    else:  # capacity-bound: the queue fills up to its cap, the overflow is turned away
        served, queue1 = capacity, min(backlog, queue_cap)
        rejected = min(arrivals, backlog - queue1)
    # Little's law: mean wait = mean queue length / throughput.
    mean_queue = _mean_queue(queue0, queue1, lam - mu)
    wait_s = mean_queue / (served / 60.0) if mean_queue and served else 0.0
    return served, rejected, queue1, wait_s


def simulate_minute(sc: Scenario, name: str, lam: float, state: EntityState | None,
                    rng: random.Random, live: LiveMinute | None = None) -> tuple[EntityMinute, EntityState]:
    """Advance one served entity by one minute under offered load `lam` (requests/s), adding the
    invocations `live` served in that minute (invocations.py) to its counts, histograms and load."""
    c = next_concurrency(sc, lam, state.concurrency if state else None)
    queue0 = state.queue if state else 0.0
    mean_s = sc.mean_service_time_s
    mu = c / mean_s  # completions/s when every slot is busy
    queue_cap = sc.max_queue_per_concurrency * c

    served, rejected, queue1, wait_s = queue_minute(queue0, lam, mu, queue_cap)
    wait_ms = wait_s * 1000.0

    n_served, n_rejected = round(served), round(rejected)
    n_5xx = round(n_served * sc.error_5xx_ratio)
    n_4xx = min(n_served - n_5xx, round(n_served * sc.error_4xx_ratio)) + n_rejected

    latency = latency_histogram(n_served, sc.service_time_median_s * 1000.0,
                                sc.service_time_sigma, wait_ms)
    queue_time = queue_time_histogram(n_served, wait_ms)
    busy_slots = min(float(c), served / 60.0 * mean_s)
    n_requests, live_busy = n_served + n_rejected, 0.0
    if live is not None:
        n_requests += live.requests
        n_rejected += live.rejected_429
        n_5xx += live.count_5xx
        n_4xx += live.count_4xx + live.rejected_429
        latency = latency + histogram_of(live.latencies_ms)
        queue_time = queue_time + histogram_of(live.waits_ms)
        live_busy = live.busy_s / 60.0
    busy = min(1.0, (busy_slots + live_busy) / c) if c else 0.0

    def utilisation(idle: float, full: float) -> float:
        return _jitter(rng, idle + (full - idle) * busy, 1.5) if c else 0.0

    gpu = gpu_mem = None
    if sc.gpu_percent_at_full_busy is not None:
        gpu = utilisation(sc.gpu_percent_idle, sc.gpu_percent_at_full_busy)
    cpu = utilisation(sc.cpu_percent_idle, sc.cpu_percent_at_full_busy)
    mem = _jitter(rng, sc.memory_percent, 1.0) if c else 0.0
    if sc.gpu_memory_percent is not None:
        gpu_mem = _jitter(rng, sc.gpu_memory_percent, 0.5) if c else 0.0

    new_state = EntityState(
        concurrency=c, queue=queue1,
        latency_total=(state.latency_total if state else EMPTY_HISTOGRAM) + latency,
        queue_time_total=(state.queue_time_total if state else EMPTY_HISTOGRAM) + queue_time)
    minute = EntityMinute(
        name=name, requests=n_requests, count_4xx=n_4xx, count_5xx=n_5xx,
        rejected_429=n_rejected, latency=latency, queue_time=queue_time, cpu_percent=cpu,
        memory_percent=mem, gpu_percent=gpu, gpu_memory_percent=gpu_mem, provisioned=c,
        offered_qps=lam, queue_end=queue1, wait_ms=wait_ms, busy_slots=busy_slots,
        latency_total=new_state.latency_total, queue_time_total=new_state.queue_time_total)
    return minute, new_state


@dataclass(frozen=True)
class EndpointMinute:
    """All served entities of one endpoint for one simulated minute."""

    minute: int
    timestamp_ms: int
    scenario: Scenario
    entities: tuple[EntityMinute, ...]

    def summary(self) -> dict[str, float | int | None]:
        """Endpoint-level ground truth for this minute (control API, tests)."""
        t = self.total()
        return {"minute": self.minute, "timestamp_ms": self.timestamp_ms,
                "offered_qps": round(t.offered_qps, 3), "requests": t.requests,
                "count_4xx": t.count_4xx, "count_5xx": t.count_5xx,
                "rejected_429": t.rejected_429, "served": t.latency.count,
                "mean_latency_ms": round(t.latency.sum_ms / t.latency.count, 3)
                if t.latency.count else None,
                "queue_wait_ms": round(t.wait_ms, 3), "queue_end": round(t.queue_end, 3),
                "provisioned": t.provisioned, "cpu_percent": t.cpu_percent,
                "memory_percent": t.memory_percent, "gpu_percent": t.gpu_percent,
                "gpu_memory_percent": t.gpu_memory_percent}

    def total(self) -> EntityMinute:
        """Endpoint-level figures: counts and histograms add up; utilisation is averaged over
        replicas, weighting each entity by its provisioned concurrency."""
        if len(self.entities) == 1:
            return self.entities[0]
        es = self.entities
        c = sum(e.provisioned for e in es)

        def mean(attr: str) -> float | None:
            values = [(getattr(e, attr), e.provisioned) for e in es]
            if any(v is None for v, _ in values):
                return None
            return round(sum(v * w for v, w in values) / c, 1) if c else 0.0

        def add(attr: str):
            total = getattr(es[0], attr)
            for e in es[1:]:
                total = total + getattr(e, attr)
            return total

        queue_time = add("queue_time")
        return EntityMinute(
            name="", requests=add("requests"), count_4xx=add("count_4xx"),
            count_5xx=add("count_5xx"), rejected_429=add("rejected_429"), latency=add("latency"),
            queue_time=queue_time, cpu_percent=mean("cpu_percent"),
            memory_percent=mean("memory_percent"), gpu_percent=mean("gpu_percent"),
            gpu_memory_percent=mean("gpu_memory_percent"), provisioned=c,
            offered_qps=add("offered_qps"), queue_end=add("queue_end"), busy_slots=add("busy_slots"),
            wait_ms=queue_time.sum_ms / queue_time.count if queue_time.count else 0.0,
            latency_total=add("latency_total"),
            queue_time_total=add("queue_time_total"))
