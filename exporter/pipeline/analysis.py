"""Figures over the analysis window, and checks against targets.

Inputs are the stored per-minute figures of one endpoint or served entity; the
output is immutable. Definitions (also in docs/metrics.md):

- QPS = requests in the window / (minutes × 60 s).
- error ratio = (4xx + 5xx) / requests; 0 when there were no requests.
- latency percentiles: PromQL `histogram_quantile` over the window's merged histogram.
- required concurrency = QPS × mean latency (Little's law: requests in flight).
- queue depth, measured: arrival rate × mean queue wait (Little's law), where the platform reports queue time;
  estimated (no queue-time metric): per minute max(0, QPS × mean latency − provisioned
  concurrency), averaged over the window.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..model import Check, Figures, Histogram, MinuteFigures
from .quantile import histogram_quantiles
from .targets import CHECKS


def analyze(minutes: Sequence[tuple[int, MinuteFigures]], configured_capacity: float | None = None) -> Figures:
    """Derive the window's figures from (minute_key, figures) pairs sorted by key."""
    if not minutes:
        return Figures()
    rows = [m for _, m in minutes]
    counted = [m for m in rows if m.requests is not None]
    span_s = 60.0 * len(counted)
    requests = sum(m.requests for m in counted)  # type: ignore[misc]
    qps = requests / span_s if counted else None

    # Errors only from minutes whose request count is known, so the ratio keeps one denominator.
    errors_4xx = _total(counted, "errors_4xx")
    errors_5xx = _total(counted, "errors_5xx")
    ratio = (lambda n: (n or 0.0) / requests if requests > 0 else 0.0) if counted else (lambda n: None)

    latency = _merge([m.latency for m in rows])
    mean_latency = latency.mean if latency else None
    p50, p90, p99 = (map(_finite, histogram_quantiles((0.5, 0.9, 0.99), zip(latency.bounds, latency.counts)))
                     if latency else (None, None, None))

    provisioned = _latest(rows, "provisioned_concurrency")
    if provisioned is None:
        provisioned = configured_capacity
    required = qps * mean_latency if qps is not None and mean_latency is not None else None

    queue_depth, method, queue_wait = None, None, None
    queued = [m.queue_time for m in rows if m.queue_time is not None]
    if queued:
        # Little's law over the minutes that report queue time: arrivals/s x mean wait = total wait / span.
        waited, count = sum(h.sum for h in queued), sum(h.count for h in queued)
        queue_depth, method = waited / (60.0 * len(queued)), "queue_time"
        queue_wait = waited / count if count else None
    else:
        # Per minute, so that a scale-up late in the window does not hide the queue before it.
        excess = [max(0.0, m.requests / 60.0 * m.latency.mean - cap) for m in rows
                  if m.requests is not None and m.latency is not None and m.latency.mean is not None
                  and (cap := m.provisioned_concurrency if m.provisioned_concurrency is not None else configured_capacity) is not None]
        if excess:
            queue_depth, method = sum(excess) / len(excess), "estimated"

    return Figures(
        minutes=len(rows),
        latest_minute_ms=minutes[-1][0] * 60_000,
        qps=qps,
        qps_min=min(m.requests for m in counted) / 60.0 if counted else None,  # type: ignore[type-var]
        qps_max=max(m.requests for m in counted) / 60.0 if counted else None,  # type: ignore[type-var]
        latency_p50=p50,
        latency_p90=p90,
        latency_p99=p99,
        latency_mean=mean_latency,
        error_ratio=ratio((errors_4xx or 0.0) + (errors_5xx or 0.0)) if counted else None,
        error_ratio_4xx=ratio(errors_4xx),
        error_ratio_5xx=ratio(errors_5xx),
        queue_depth=queue_depth,
        queue_wait_mean=queue_wait,
        queue_depth_method=method,
        cpu_ratio=_mean(rows, "cpu_ratio"),
        memory_ratio=_mean(rows, "memory_ratio"),
        gpu_ratio=_mean(rows, "gpu_ratio"),
        gpu_memory_ratio=_mean(rows, "gpu_memory_ratio"),
        provisioned_concurrency=provisioned,
        required_concurrency=required,
    )


def checks(figures: Figures, targets: dict[str, float | None]) -> tuple[Check, ...]:
    """One Check per known check name, pairing the window's value with its target."""
    values = {
        "latency_p50": figures.latency_p50,
        "latency_p90": figures.latency_p90,
        "latency_p99": figures.latency_p99,
        "error_ratio": figures.error_ratio,
        "queue_depth": figures.queue_depth,
        "cpu_utilization": figures.cpu_ratio,
        "memory_utilization": figures.memory_ratio,
        "gpu_utilization": figures.gpu_ratio,
    }
    return tuple(Check(name, values[name], targets.get(name)) for name in CHECKS)


def _total(rows: Sequence[MinuteFigures], field: str) -> float | None:
    values = [getattr(m, field) for m in rows if getattr(m, field) is not None]
    return sum(values) if values else None


def _mean(rows: Sequence[MinuteFigures], field: str) -> float | None:
    values = [getattr(m, field) for m in rows if getattr(m, field) is not None]
    return sum(values) / len(values) if values else None


def _latest(rows: Sequence[MinuteFigures], field: str) -> float | None:
    for m in reversed(rows):
        if getattr(m, field) is not None:
            return getattr(m, field)
    return None


def _merge(histograms: Sequence[Histogram | None]) -> Histogram | None:
    """Sum the window's histograms that share the newest layout (layout changes are rare)."""
    present = [h for h in histograms if h is not None]
    if not present:
        return None
    newest = present[-1]
    same = [newest, *(h for h in present[:-1] if h.same_layout(newest))]  # this order: the same floats as before
    if len(same) == 1:
        return newest
    return Histogram(newest.bounds, tuple(map(sum, zip(*(h.counts for h in same)))),
                     sum(h.sum for h in same), sum(h.count for h in same))


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else value
