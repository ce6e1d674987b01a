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
from collections import defaultdict
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
    parsed = parse_metrics(body, content_type, max_entities)
    return Observation(parsed.endpoint, parsed.entities, parsed.timestamp_ms, fingerprint=fingerprint,
                       histograms="unknown")


def parse_metrics(body: str | bytes, content_type: str = "", max_entities: int = 50) -> ParsedMetrics:
    """Parse a metrics body; raise MetricsParseError on anything that is not an exposition."""
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
    """Collects the samples of one endpoint or entity before they become MinuteFigures."""

    def __init__(self) -> None:
        self.values: dict[str, list[float]] = defaultdict(list)
        self.buckets: dict[str, dict[float, float]] = defaultdict(dict)
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: dict[str, float] = defaultdict(float)

    def add_bucket(self, field_name: str, le: str | None, value: float) -> None:
        bound = _BOUNDS.get(le) if le is not None else None
        if bound is None:
            bound = _parse_le(le)
            if bound is None:
                return  # no or no numeric `le`: not a bucket
            if len(_BOUNDS) < 1024:
                _BOUNDS[le] = bound  # type: ignore[index]
        buckets = self.buckets[field_name]
        buckets[bound] = buckets.get(bound, 0.0) + value

    def add(self, kind: str, field_name: str, value: float) -> None:
        """One sample of a known metric other than a bucket (`_KNOWN` gives its kind and field)."""
        if kind == "value":
            self.values[field_name].append(value)
        elif kind == "percent":
            self.values[field_name].append(value / 100.0)
        elif kind == "sum":
            self.sums[field_name] += value / 1000.0  # ms -> s
        else:  # count
            self.counts[field_name] += value

    def merge(self, other: _Accumulator) -> None:
        for key, vals in other.values.items():
            self.values[key].extend(vals)
        for key, buckets in other.buckets.items():
            mine = self.buckets[key]
            for bound, count in buckets.items():
                mine[bound] = mine.get(bound, 0.0) + count
        for key, total in other.sums.items():
            self.sums[key] += total
        for key, total in other.counts.items():
            self.counts[key] += total

    def figures(self) -> MinuteFigures:
        kwargs: dict[str, object] = {}
        for key, vals in self.values.items():
            vals = [v for v in vals if not math.isnan(v)]
            if vals:
                kwargs[key] = sum(vals) if key in ADDITIVE else sum(vals) / len(vals)
        for key, buckets in self.buckets.items():
            hist = _histogram(buckets, self.sums.get(key, math.nan), self.counts.get(key))
            if hist is not None:
                kwargs[key] = hist
        return MinuteFigures(**kwargs)  # type: ignore[arg-type]


_BOUNDS: dict[str, float] = {}  # `le` text -> bound in seconds: the same few in every body (bounded)


def _parse_le(le: str | None) -> float | None:
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


def _assemble(found: Iterable[Sample], openmetrics: bool, max_entities: int) -> ParsedMetrics:
    unlabelled = _Accumulator()
    by_entity: dict[str, _Accumulator] = {}
    overflow = None  # entities past the cap: counted for the endpoint, not exposed
    entity_label = None
    newest_ts = None
    last_timestamp = None  # a body's samples mostly share one timestamp: converted once
    for name, labels, value, timestamp in found:
        known = _KNOWN.get(name)
        if known is None:
            continue  # unknown metric: ignored by design
        if timestamp is not None and timestamp != last_timestamp:  # NaN is never equal: always refused
            last_timestamp = timestamp
            ts = _timestamp_ms(timestamp)
            if newest_ts is None or ts > newest_ts:
                newest_ts = ts
        if labels and not _ENTITY_LABEL_SET.isdisjoint(labels):
            label, entity = _entity_of(labels)
        else:
            label, entity = None, None
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
        kind, field_name = known
        # Counts and percentages cannot be negative or infinite (NaN is "no value": skipped, as before); histogram
        # series cannot be NaN either. Such a body is refused whole: figures already stored stay as they were.
        if value < 0 or value == math.inf or (value != value and kind in _HISTOGRAM_KINDS):
            raise InvalidDataError(f"{name} is {value!r}: a count cannot be negative, infinite or NaN")
        if kind == "bucket":  # most samples: one call less
            acc.add_bucket(field_name, labels.get("le"), value)
        else:
            acc.add(kind, field_name, value)

    entities = {name: acc.figures() for name, acc in by_entity.items()}
    endpoint = unlabelled.figures()
    if by_entity or overflow:
        # Where the source reports only per-entity series, the endpoint is their sum (utilisation: mean).
        combined = _Accumulator()
        for acc in by_entity.values():
            combined.merge(acc)
        if overflow is not None:
            combined.merge(overflow)
        endpoint = _fill_missing(endpoint, combined.figures())
    return ParsedMetrics(endpoint, entities, newest_ts, entity_label, openmetrics)


def _fill_missing(primary: MinuteFigures, fallback: MinuteFigures) -> MinuteFigures:
    """Prefer the endpoint's own unlabelled series; fill what it lacks from the entities."""
    values = {k: getattr(primary, k) if getattr(primary, k) is not None else getattr(fallback, k)
              for k in MinuteFigures.__dataclass_fields__}
    return MinuteFigures(**values)


_HISTOGRAM_KINDS = frozenset({"bucket", "sum", "count"})
# Every metric name read, to (kind, field): one lookup per sample.
_KNOWN: dict[str, tuple[str, str]] = {
    **{name: ("value", field_name) for name, field_name in GAUGE_FIELDS.items()},
    **{name: ("percent", field_name) for name, field_name in PERCENT_FIELDS.items()},
    **{base + "_" + kind: (kind, field_name) for base, field_name in HISTOGRAM_FIELDS.items()
       for kind in ("bucket", "sum", "count")},
}
