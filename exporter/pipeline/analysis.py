"""Figures over the analysis window, and checks against targets.

Inputs are the stored per-minute figures of one endpoint or served entity; the
output is immutable. Definitions (also in docs/metrics.md):

- QPS = requests in the window / (minutes × 60 s).
- error ratio = (4xx + 5xx) / requests; 0 when there were no requests; None when the source counts no errors.
- latency percentiles: PromQL `histogram_quantile` over the window's merged histogram.
- required concurrency = QPS × mean latency (Little's law: requests in flight).
- queue depth, in order of precedence: the server's own waiting-requests gauge averaged over the window
  (method "server": a count, not an inference); else arrival rate × mean queue wait (Little's law), where the
  platform reports queue time ("queue_time"); else estimated per minute as max(0, QPS × mean latency −
  provisioned concurrency), averaged over the window ("estimated").
- TTFT and TPOT percentiles and means: as latency, from the window's merged histograms. A histogram with only the
  +Inf bound (a server publishing sum and count only) gives a mean and no percentiles; a rank above the highest
  finite bound reports that bound, as histogram_quantile does.
- tokens and preemptions per second: the window's counts / the seconds of the minutes that report them.
- requests running and KV-cache use: means over the window (like the CPU/GPU utilisation figures; the bursts a
  mean smooths show as preemptions, which vLLM does when its cache is full).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..model import Check, Figures, Histogram, MinuteFigures, reported_fields
from .quantile import histogram_quantiles
from .targets import CHECKS


def analyze(minutes: Sequence[tuple[int, MinuteFigures]], configured_capacity: float | None = None,
            reported: frozenset[str] | None = None) -> Figures:
    """Derive the window's figures from (minute_key, figures) pairs sorted by key. `reported`: the fields any of
    the minutes reports (model.reported_fields), when the caller keeps them; else found here."""
    if not minutes:
        return Figures()
    rows = [m for _, m in minutes]
    # Fields no minute reports stay None without being looked at: a platform reports few of them.
    if reported is None:
        reported = frozenset().union(*map(reported_fields, rows))
    counted = [m for m in rows if m.requests is not None] if "requests" in reported else []
    span_s = 60.0 * len(counted)
    requests = sum(m.requests for m in counted)  # type: ignore[misc]
    qps = requests / span_s if counted else None

    # Errors only from minutes whose request count is known, so the ratio keeps one denominator.
    errors_4xx = _total(counted, "errors_4xx") if "errors_4xx" in reported else None
    errors_5xx = _total(counted, "errors_5xx") if "errors_5xx" in reported else None
    # A source that counts no errors at all (KServe's own model server) has no error ratio: unknown, not 0.
    known = errors_4xx is not None or errors_5xx is not None
    ratio = (lambda n: (n or 0.0) / requests if requests > 0 else 0.0) if known else (lambda n: None)

    def mean(field: str) -> float | None:
        return _mean(rows, field) if field in reported else None

    def per_second(field: str) -> float | None:
        return _per_second(rows, field) if field in reported else None

    def distribution(field: str) -> tuple[float | None, float | None, float | None, float | None]:
        return _distribution(rows, field) if field in reported else (None, None, None, None)

    p50, p90, p99, mean_latency = distribution("latency")
    ttft = distribution("ttft")
    tpot = distribution("tpot")

    provisioned = _latest(rows, "provisioned_concurrency") if "provisioned_concurrency" in reported else None
    if provisioned is None:
        provisioned = configured_capacity
    required = qps * mean_latency if qps is not None and mean_latency is not None else None

    queue_depth, method, queue_wait = None, None, None
    queued = [m.queue_time for m in rows if m.queue_time is not None] if "queue_time" in reported else []
    if queued:
        waited, count = sum(h.sum for h in queued), sum(h.count for h in queued)
        queue_wait = waited / count if count else None
    waiting = mean("queue_depth")
    if waiting is not None:
        # The server counts its waiting requests itself; Little's law over queue time sees only the requests
        # that left the queue, so it lags a queue that grows.
        queue_depth, method = waiting, "server"
    elif queued:
        # Little's law over the minutes that report queue time: arrivals/s x mean wait = total wait / span.
        queue_depth, method = waited / (60.0 * len(queued)), "queue_time"
    else:
        # Per minute, so that a scale-up late in the window does not hide the queue before it.
        excess = [max(0.0, m.requests / 60.0 * latency - cap) for m in counted  # type: ignore[operator]
                  if m.latency is not None and (latency := m.latency.mean) is not None
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
        error_ratio=ratio((errors_4xx or 0.0) + (errors_5xx or 0.0)),
        error_ratio_4xx=ratio(errors_4xx),
        error_ratio_5xx=ratio(errors_5xx),
        queue_depth=queue_depth,
        queue_wait_mean=queue_wait,
        queue_depth_method=method,
        cpu_ratio=mean("cpu_ratio"),
        memory_ratio=mean("memory_ratio"),
        gpu_ratio=mean("gpu_ratio"),
        gpu_memory_ratio=mean("gpu_memory_ratio"),
        provisioned_concurrency=provisioned,
        required_concurrency=required,
        requests_running=mean("requests_running"),
        ttft_p50=ttft[0], ttft_p90=ttft[1], ttft_p99=ttft[2], ttft_mean=ttft[3],
        tpot_p50=tpot[0], tpot_p90=tpot[1], tpot_p99=tpot[2], tpot_mean=tpot[3],
        prompt_tokens_per_second=per_second("prompt_tokens"),
        generation_tokens_per_second=per_second("generation_tokens"),
        kv_cache_ratio=mean("kv_cache_ratio"),
        preemptions_per_second=per_second("preemptions"),
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
        "ttft_p99": figures.ttft_p99,
        "tpot_p99": figures.tpot_p99,
        "kv_cache_utilization": figures.kv_cache_ratio,
    }
    found = []
    for name in CHECKS:
        value, target = values[name], targets.get(name)
        if value is None:  # most checks of most endpoints (no GPU, no LLM figures): one shared, immutable Check
            key = (name, target)
            check = _NO_VALUE.get(key)
            if check is None:
                if len(_NO_VALUE) >= 1024:
                    _NO_VALUE.clear()
                check = _NO_VALUE[key] = Check(name, None, target)
            found.append(check)
        else:
            found.append(Check(name, value, target))
    return tuple(found)


_NO_VALUE: dict[tuple[str, float | None], Check] = {}  # (check name, target) -> Check without a value


def _total(rows: Sequence[MinuteFigures], field: str) -> float | None:
    values = [getattr(m, field) for m in rows if getattr(m, field) is not None]
    return sum(values) if values else None


def _mean(rows: Sequence[MinuteFigures], field: str) -> float | None:
    values = [getattr(m, field) for m in rows if getattr(m, field) is not None]
    return sum(values) / len(values) if values else None


def _per_second(rows: Sequence[MinuteFigures], field: str) -> float | None:
    """The window's count / the seconds of the minutes that report it."""
    values = [getattr(m, field) for m in rows if getattr(m, field) is not None]
    return sum(values) / (60.0 * len(values)) if values else None


def _distribution(rows: Sequence[MinuteFigures], field: str) -> tuple[float | None, float | None, float | None, float | None]:
    """P50, P90, P99 and mean of the window's merged histograms of `field`. With the +Inf bound only (sum and
    count, no buckets) histogram_quantile has nothing to interpolate in: the percentiles are None, never guessed."""
    merged = _merge([getattr(m, field) for m in rows])
    if merged is None:
        return None, None, None, None
    p50, p90, p99 = map(_finite, histogram_quantiles((0.5, 0.9, 0.99), zip(merged.bounds, merged.counts)))
    return p50, p90, p99, merged.mean


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
