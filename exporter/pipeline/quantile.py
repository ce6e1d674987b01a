"""Quantiles from cumulative histogram buckets, with PromQL's `histogram_quantile` semantics.

The figures this exporter reports must agree with what an operator gets from
`histogram_quantile(q, rate(model_serving_request_duration_seconds_bucket[5m]))`,
so this follows Prometheus's classic-histogram algorithm step for step: sort by
upper bound, merge equal bounds, smooth float noise, force monotonic counts, then
interpolate linearly inside the bucket holding the rank, assuming a lower bound of
0 for the first bucket and reporting the highest finite bound when the rank falls
into the +Inf bucket.
"""

from __future__ import annotations

import bisect
import math
import operator
from collections.abc import Iterable

_PRECISION_TOLERANCE = 1e-12


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float:
    """Return the q-quantile of cumulative `(upper_bound, count)` buckets.

    Edge cases match Prometheus: NaN for NaN q, no +Inf bucket, fewer than two
    buckets or no observations; -Inf for q < 0 and +Inf for q > 1.
    """
    return histogram_quantiles((q,), buckets)[0]


def histogram_quantiles(qs: Iterable[float], buckets: Iterable[tuple[float, float]]) -> list[float]:
    """`histogram_quantile` for several q over the same buckets, preparing them once."""
    ordered = sorted(buckets, key=_BOUND)
    if not ordered or not math.isinf(ordered[-1][0]) or ordered[-1][0] < 0:
        return [_edge(q) if math.isnan(q) or not 0 <= q <= 1 else math.nan for q in qs]
    bounds, counts = _coalesce(ordered)
    _correct_precision(counts)
    if not all(map(operator.le, counts, counts[1:])):  # mostly already monotonic: checked in C first
        _ensure_monotonic(counts)
    return [_quantile(q, bounds, counts) for q in qs]


def _edge(q: float) -> float:
    return math.nan if math.isnan(q) else -math.inf if q < 0 else math.inf


def _quantile(q: float, bounds: list[float], counts: list[float]) -> float:
    if math.isnan(q) or not 0 <= q <= 1:
        return _edge(q)
    if len(bounds) < 2:
        return math.nan
    observations = counts[-1]
    if observations == 0:
        return math.nan

    rank = q * observations
    # First bucket (ignoring +Inf) whose cumulative count reaches the rank.
    b = bisect.bisect_left(counts, rank, 0, len(counts) - 1)
    if b == len(bounds) - 1:
        return bounds[-2]
    if b == 0 and bounds[0] <= 0:
        return bounds[0]
    start, end, count = 0.0, bounds[b], counts[b]
    if b > 0:
        start = bounds[b - 1]
        count -= counts[b - 1]
        rank -= counts[b - 1]
    return start + (end - start) * _go_div(rank, count)


def _go_div(a: float, b: float) -> float:
    """IEEE division as Go does it: x/0 is ±Inf and 0/0 is NaN (an empty bucket at q=0)."""
    if b == 0:
        return math.nan if a == 0 or math.isnan(a) else math.copysign(math.inf, a)
    return a / b


_BOUND = operator.itemgetter(0)


def _coalesce(ordered: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
    """Merge buckets that share an upper bound (as PromQL does), summing their counts."""
    bounds = [bound for bound, _ in ordered]
    if len(set(bounds)) == len(bounds):  # the usual case: nothing to merge
        return bounds, [float(count) for _, count in ordered]
    bounds = []
    counts: list[float] = []
    for bound, count in ordered:
        if bounds and bounds[-1] == bound:
            counts[-1] += count
        else:
            bounds.append(bound)
            counts.append(float(count))
    return bounds, counts


def _correct_precision(counts: list[float]) -> None:
    """Flatten differences so small they can only be float error (relative 1e-12)."""
    prev = counts[0]
    for i in range(1, len(counts)):
        delta = abs(counts[i] - prev)
        if delta == 0:
            continue
        if counts[i] != 0 and delta / counts[i] <= _PRECISION_TOLERANCE:
            counts[i] = prev
        else:
            prev = counts[i]


def _ensure_monotonic(counts: list[float]) -> None:
    """Raise any count that dips below an earlier one: the envelope PromQL uses."""
    highest = counts[0]
    for i in range(1, len(counts)):
        if counts[i] > highest:
            highest = counts[i]
        elif counts[i] < highest:
            counts[i] = highest
