"""Turn one Databricks `/metrics` body into per-minute figures.

The body is Prometheus text 0.0.4 or OpenMetrics. Its `*_total` series are
gauges holding the count for the last minute (not counters); latencies are in
milliseconds and utilisation in percent. This module converts to seconds and
ratios, groups series by served entity when some label names one, and ignores
every metric it does not know, so new platform metrics never break a poll.
Whether `request_latency_ms` is per minute or cumulative is not documented, so
the observation says "unknown" and the pipeline's window tells them apart.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass

from ...model import Histogram, MinuteFigures
from ..base import InvalidDataError, MetricsParseError, Observation
from ..exposition import Sample, samples

# Label names that may carry the served entity; none is confirmed by the vendor.
ENTITY_LABELS = ("served_entity", "served_entity_name", "served_model", "served_model_name", "entity_name")
_ENTITY_LABEL_SET = frozenset(ENTITY_LABELS)

GAUGE_FIELDS = {
    "request_count_total": "requests",
    "request_4xx_count_total": "errors_4xx",
    "request_5xx_count_total": "errors_5xx",
    "provisioned_concurrent_requests_total": "provisioned_concurrency",
}
PERCENT_FIELDS = {
    "cpu_usage_percentage": "cpu_ratio",
    "mem_usage_percentage": "memory_ratio",
    "gpu_usage_percentage": "gpu_ratio",
    # The GPU memory metric has been seen under both names.
    "gpu_memory_usage_percentage": "gpu_memory_ratio",
    "gpu_mem_usage_percentage": "gpu_memory_ratio",
}
HISTOGRAM_FIELDS = {"request_latency_ms": "latency", "model_queue_time_ms": "queue_time"}
# Fields that add up across entities (and across replicas, should the source split them).
ADDITIVE = {"requests", "errors_4xx", "errors_5xx", "provisioned_concurrency"}


@dataclass(frozen=True)
class ParsedMetrics:
    """One /metrics body: the endpoint's figures and, when labelled, each served entity's."""

    endpoint: MinuteFigures
    entities: dict[str, MinuteFigures]
    timestamp_ms: int | None  # newest explicit sample timestamp, if the source sent any
    entity_label: str | None  # which label named the served entity, if any
    openmetrics: bool


def observe(body: bytes, content_type: str = "", max_entities: int = 50, last: Observation | None = None) -> Observation:
    """The pipeline's view of one body; raises MetricsParseError (a FetchError) on anything that is not an exposition.
    `last`: the endpoint's previous observation, returned as it is when the body is byte for byte the same."""
    # Without sample timestamps the same minute can be served at two polls: the digest tells them apart.
    fingerprint = hashlib.blake2b(body, digest_size=16).digest()
    if last is not None and last.fingerprint == fingerprint:
        return last  # the platform serves each minute for a minute: polls in between need no parse
    endpoint, entities, timestamp_ms, _, _ = _parse(body, content_type, max_entities)
    return Observation(endpoint, entities, timestamp_ms, fingerprint=fingerprint, histograms="unknown")


def parse_metrics(body: str | bytes, content_type: str = "", max_entities: int = 50) -> ParsedMetrics:
    """Parse a metrics body; raise MetricsParseError on anything that is not an exposition."""
    return ParsedMetrics(*_parse(body, content_type, max_entities))


_Parsed = tuple[MinuteFigures, dict[str, MinuteFigures], "int | None", "str | None", bool]


def _parse(body: str | bytes, content_type: str, max_entities: int) -> _Parsed:
    """ParsedMetrics' fields in order, as a tuple: observe() needs no ParsedMetrics built per body."""
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MetricsParseError(f"body is not UTF-8 text: {exc}") from None
    openmetrics = "openmetrics" in content_type.lower() or body.rstrip().endswith("# EOF")
    try:
        return _assemble(samples(body, openmetrics), openmetrics, max_entities)
    except OverflowError:  # an integer value or timestamp of hundreds of digits, which no float holds
        raise MetricsParseError("a sample value or timestamp is out of range") from None


def _timestamp_ms(ts: object) -> int | None:
    if ts is None:
        return None
    seconds = float(ts.sec + ts.nsec / 1e9) if hasattr(ts, "sec") else float(ts)
    if not math.isfinite(seconds):
        raise MetricsParseError("a sample timestamp is not a finite number")
    if seconds > 1e11:  # an OpenMetrics body carrying milliseconds where seconds belong
        seconds /= 1000.0
    return int(round(seconds * 1000))


def _entity_of(labels: dict[str, str]) -> tuple[str | None, str | None]:
    for name in ENTITY_LABELS:
        value = labels.get(name)
        if value:
            return name, value
    return None, None


class _Accumulator:
    """Collects the samples of one endpoint or entity before they become MinuteFigures. Plain dicts filled
    in _assemble's loop (no method call per sample); the arithmetic is the same, in the same order."""

    __slots__ = ("values", "buckets", "sums", "counts")

    def __init__(self) -> None:
        self.values: dict[str, list[float]] = {}  # plain gauges (percentages already ratios), in sample order
        self.buckets: dict[str, dict[float, float]] = {}  # field -> bound in seconds -> count
        self.sums: dict[str, float] = {}  # histogram sums, in seconds
        self.counts: dict[str, float] = {}

    def merge(self, other: _Accumulator) -> None:
        for key, vals in other.values.items():
            mine = self.values.get(key)
            if mine is None:
                self.values[key] = list(vals)
            else:
                mine.extend(vals)
        for key, buckets in other.buckets.items():
            mine_buckets = self.buckets.get(key)
            if mine_buckets is None:
                mine_buckets = self.buckets[key] = {}
            for bound, count in buckets.items():
                mine_buckets[bound] = mine_buckets.get(bound, 0.0) + count
        for key, total in other.sums.items():
            self.sums[key] = self.sums.get(key, 0.0) + total
        for key, total in other.counts.items():
            self.counts[key] = self.counts.get(key, 0.0) + total

    def fields(self) -> dict[str, object]:
        """The MinuteFigures fields this accumulator has a figure for (never None)."""
        kwargs: dict[str, object] = {}
        isnan = math.isnan
        for key, vals in self.values.items():
            # NaN is "no value". isnan also raises OverflowError on an integer no float holds, as it always did.
            if any(map(isnan, vals)):
                vals = [v for v in vals if not isnan(v)]
                if not vals:
                    continue
            total = sum(vals)
            kwargs[key] = total if key in ADDITIVE else total / len(vals)
        for key, buckets in self.buckets.items():
            hist = _histogram(buckets, self.sums.get(key, math.nan), self.counts.get(key))
            if hist is not None:
                kwargs[key] = hist
        return kwargs


# What _assemble does with the samples of one head (a name and its label dict): the metric's kind and field, the
# bucket bound in seconds, the entity label and value. The fast parser hands out one label dict per distinct head,
# shared by its samples across bodies and polls, so the dict's identity keys the plan: one lookup per sample
# instead of the name, entity and `le` lookups. Each plan holds its dict, so the id cannot be reused by another
# dict while the entry exists. Bounded like the parser's caches (emptied when full); plain dict operations.
_Plan = tuple[dict[str, str], str, "str | None", "str | None", "float | None", "str | None", "str | None"]
_PLANS: dict[int, _Plan] = {}
_PLANS_SIZE = 8192


def _plan(name: str, labels: dict[str, str]) -> _Plan:
    kind, field_name = _KNOWN.get(name, (None, None))
    if labels and not _ENTITY_LABEL_SET.isdisjoint(labels):
        label, entity = _entity_of(labels)
    else:
        label, entity = None, None
    bound = _bound(labels.get("le")) if kind == "bucket" else None
    plan = (labels, name, kind, field_name, bound, label, entity)
    if len(_PLANS) >= _PLANS_SIZE:
        _PLANS.clear()
    _PLANS[id(labels)] = plan
    return plan


def _bound(le: str | None) -> float | None:
    """The bucket bound in seconds of an `le` label; None without one or when it is not a number."""
    if le is None:
        return None
    try:
        bound = float(le)
    except ValueError:
        return None
    return bound if math.isinf(bound) else bound / 1000.0  # ms -> s


def _histogram(buckets: dict[float, float], total: float, count: float | None) -> Histogram | None:
    if math.inf not in buckets:
        return None  # without a +Inf bucket no quantile is defined (as in PromQL)
    bounds = tuple(sorted(buckets))
    counts = tuple(map(buckets.__getitem__, bounds))
    return Histogram(bounds, counts, total if not math.isnan(total) else 0.0, count if count is not None else counts[-1])


def _assemble(found: Iterable[Sample], openmetrics: bool, max_entities: int) -> _Parsed:
    unlabelled = _Accumulator()
    by_entity: dict[str, _Accumulator] = {}
    overflow = None  # entities past the cap: counted for the endpoint, not exposed
    entity_label = None
    newest_ts = None
    last_timestamp = None  # a body's samples mostly share one timestamp: converted once
    plans = _PLANS
    for name, labels, value, timestamp in found:
        plan = plans.get(id(labels))
        if plan is None or plan[0] is not labels or plan[1] != name:
            plan = _plan(name, labels)
        _, _, kind, field_name, bound, label, entity = plan
        if kind is None:
            continue  # unknown metric: ignored by design
        if timestamp is not None and timestamp != last_timestamp:  # NaN is never equal: always refused
            last_timestamp = timestamp
            ts = _timestamp_ms(timestamp)
            if newest_ts is None or ts > newest_ts:
                newest_ts = ts
        if entity is None:
            acc = unlabelled
        else:
            entity_label = entity_label or label
            acc = by_entity.get(entity)
            if acc is None:
                if len(by_entity) < max_entities:
                    acc = by_entity[entity] = _Accumulator()
                else:
                    acc = overflow = overflow or _Accumulator()
        # Counts and percentages cannot be negative or infinite (NaN is "no value": skipped, as before); histogram
        # series cannot be NaN either. Such a body is refused whole: figures already stored stay as they were.
        if not 0 <= value < _INF and (value == value or kind in _HISTOGRAM_KINDS):
            raise InvalidDataError(f"{name} is {value!r}: a count cannot be negative, infinite or NaN")
        # The additions below are _Accumulator's, inline: most samples are buckets, and a call per sample cost more
        # than the addition. Each starts from 0.0, as the accumulators always did (so a total is a float).
        if kind == "bucket":
            if bound is None:
                continue  # no or no numeric `le`: not a bucket
            buckets = acc.buckets.get(field_name)
            if buckets is None:
                buckets = acc.buckets[field_name] = {}
            buckets[bound] = buckets.get(bound, 0.0) + value
        elif kind == "value" or kind == "percent":
            if kind == "percent":
                value = value / 100.0
            vals = acc.values.get(field_name)
            if vals is None:
                acc.values[field_name] = [value]
            else:
                vals.append(value)
        elif kind == "sum":
            acc.sums[field_name] = acc.sums.get(field_name, 0.0) + value / 1000.0  # ms -> s
        else:  # count
            acc.counts[field_name] = acc.counts.get(field_name, 0.0) + value

    entity_fields = {name: acc.fields() for name, acc in by_entity.items()}
    entities = {name: MinuteFigures(**kwargs) for name, kwargs in entity_fields.items()}  # type: ignore[arg-type]
    fields = unlabelled.fields()
    if by_entity or overflow:
        # Where the source reports only per-entity series, the endpoint is their sum (utilisation: mean); the
        # endpoint's own unlabelled series win where both exist.
        if overflow is None and len(by_entity) == 1:
            # One entity: merged into an empty accumulator it would be copied (its totals start from 0.0, so none is
            # -0.0 and 0.0 + x is x): the sum over the entities is its own figures.
            (combined,) = entity_fields.values()
        else:
            total = _Accumulator()
            for acc in by_entity.values():
                total.merge(acc)
            if overflow is not None:
                total.merge(overflow)
            combined = total.fields()
        fields = {**combined, **fields}
    return MinuteFigures(**fields), entities, newest_ts, entity_label, openmetrics  # type: ignore[arg-type]


_HISTOGRAM_KINDS = frozenset({"bucket", "sum", "count"})
_INF = math.inf
# Every metric name read, to (kind, field): one lookup per sample.
_KNOWN: dict[str, tuple[str, str]] = {
    **{name: ("value", field_name) for name, field_name in GAUGE_FIELDS.items()},
    **{name: ("percent", field_name) for name, field_name in PERCENT_FIELDS.items()},
    **{base + "_" + kind: (kind, field_name) for base, field_name in HISTOGRAM_FIELDS.items()
       for kind in ("bucket", "sum", "count")},
}
