"""One replica's metrics body → a Reading: its cumulative counts and histograms (seconds) and its gauges, for
the endpoint and per model, by the table of its server kind (servers.py). Probe and scrape paths are never
traffic. Cumulative values are differenced between fetches in aggregate.py, not here."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

from ...model import Histogram
from ..base import FetchError, InvalidDataError, MetricsParseError
from ..exposition import samples
from .servers import SERVERS, Count, Gauge, GaugeRatio, Hist, Labels, Mean, Server, is_probe

INF = math.inf


class UnknownServer(FetchError):
    def __init__(self) -> None:
        super().__init__("unknown_server", "no metric of a known model server in the body (see docs/self-hosted.md)")


@dataclass
class Reading:
    """Cumulative counts and histograms since the server started, and the gauges' latest values with how they
    combine across replicas ("sum" or "max")."""

    counts: dict[str, float] = field(default_factory=dict)
    histograms: dict[str, Histogram] = field(default_factory=dict)
    gauges: dict[str, tuple[float, str]] = field(default_factory=dict)


@dataclass
class ReplicaReading:
    kind: str
    endpoint: Reading
    entities: dict[str, Reading]


def detect(names: set[str]) -> str | None:
    """The server kind whose metric names the body has (tables in order: Ray Serve before vLLM)."""
    for server in SERVERS.values():
        if any(name.startswith(server.markers) for name in names):
            return server.kind
    return None


def read(body: bytes, content_type: str, kind: str) -> ReplicaReading:
    """Raises MetricsParseError or InvalidDataError for a body that is not a valid exposition, UnknownServer
    when `kind` is auto and no known server's metrics are in it."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MetricsParseError(f"body is not UTF-8 text: {exc.reason}") from None
    openmetrics = "openmetrics" in content_type.lower() or text.rstrip().endswith("# EOF")
    try:
        found = samples(text, openmetrics)
    except OverflowError:
        raise InvalidDataError("a value too large for a float") from None
    index: dict[str, list[tuple[Labels, float]]] = defaultdict(list)
    for name, labels, value, _ in found:
        if is_probe(labels):
            continue
        index[name.removesuffix("_total")].append((labels, float(value)))
    if kind == "auto":
        kind = detect(set(index)) or ""
        if not kind:
            raise UnknownServer()
    return _apply(SERVERS[kind], index)


def _apply(server: Server, index: dict[str, list[tuple[Labels, float]]]) -> ReplicaReading:
    endpoint = Reading()
    entities: dict[str, Reading] = defaultdict(Reading)

    def entity_of(labels: Labels) -> str | None:
        for label in server.entity_labels:
            if labels.get(label):
                return labels[label]
        return None

    def choose(names) -> tuple[int, tuple[str, ...]] | None:  # type: ignore[no-untyped-def]
        for i, alternative in enumerate(names):
            group = (alternative,) if isinstance(alternative, str) else alternative
            if any(_present(index, n) for n in group):
                return i, group
        return None

    for spec in server.specs:
        if isinstance(spec, Count):
            chosen = choose(spec.names)
            if chosen is None:
                continue
            if not spec.entities_only:
                endpoint.counts.setdefault(spec.field, 0.0)
            for name in chosen[1]:
                for labels, value in index.get(name, ()):
                    if not math.isfinite(value) or value < 0:
                        raise InvalidDataError(f"counter {name} holds {value}")
                    if spec.where is not None and not spec.where(labels):
                        continue
                    if not spec.entities_only:
                        endpoint.counts[spec.field] += value
                    entity = entity_of(labels)
                    if entity is not None:
                        counts = entities[entity].counts
                        counts[spec.field] = counts.get(spec.field, 0.0) + value
        elif isinstance(spec, Hist):
            chosen = choose(spec.names)
            if chosen is None:
                continue
            unit = spec.unit[chosen[0]] if isinstance(spec.unit, tuple) else spec.unit
            for name in chosen[1]:
                for labels, histogram in _histograms(index, name, unit):
                    _add_histogram(endpoint, spec.field, histogram)
                    entity = entity_of(labels)
                    if entity is not None:
                        _add_histogram(entities[entity], spec.field, histogram)
        elif isinstance(spec, Mean):
            if not (_present(index, spec.sum) and _present(index, spec.count)):
                continue
            by_scope: dict[str | None, list[float]] = defaultdict(lambda: [0.0, 0.0])
            for position, name in enumerate((spec.sum, spec.count)):
                for labels, value in index[name]:
                    if not math.isfinite(value) or value < 0:
                        raise InvalidDataError(f"counter {name} holds {value}")
                    by_scope[None][position] += value
                    entity = entity_of(labels)
                    if entity is not None:
                        by_scope[entity][position] += value
            for scope, (total, count) in by_scope.items():
                target = endpoint if scope is None else entities[scope]
                target.histograms[spec.field] = Histogram((INF,), (count,), total / spec.unit, count)
        elif isinstance(spec, Gauge):
            chosen = choose(spec.names)
            if chosen is None:
                continue
            values = [(labels, value / spec.unit) for name in chosen[1] for labels, value in index.get(name, ())
                      if math.isfinite(value)]
            if not values:
                continue
            combine = sum if spec.combine == "sum" else max
            endpoint.gauges[spec.field] = (combine(v for _, v in values), spec.combine)
            per_entity: dict[str, list[float]] = defaultdict(list)
            for labels, value in values:
                entity = entity_of(labels)
                if entity is not None:
                    per_entity[entity].append(value)
            for entity, found in per_entity.items():
                entities[entity].gauges[spec.field] = (combine(found), spec.combine)
        elif isinstance(spec, GaugeRatio):
            used = sum(v for _, v in index.get(spec.used, ()) if math.isfinite(v))
            total = sum(v for _, v in index.get(spec.total, ()) if math.isfinite(v))
            if total > 0:
                endpoint.gauges[spec.field] = (used / total, "max")
    return ReplicaReading(server.kind, endpoint, dict(entities))


def _present(index: dict[str, list], name: str) -> bool:
    return name in index or f"{name}_count" in index


def _histograms(index: dict[str, list[tuple[Labels, float]]], name: str, unit: float
                ) -> list[tuple[Labels, Histogram]]:
    """Each series of a histogram (by its labels without `le`), cumulative, bounds and sum divided by `unit`."""
    series: dict[tuple, dict] = {}

    def entry(labels: Labels) -> dict:
        key = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        return series.setdefault(key, {"labels": labels, "buckets": [], "sum": None, "count": None})

    for labels, value in index.get(f"{name}_bucket", ()):
        try:
            bound = float(labels.get("le", ""))
        except ValueError:
            raise InvalidDataError(f"{name}_bucket has a bucket bound that is not a number") from None
        entry(labels)["buckets"].append((bound / unit if math.isfinite(bound) else bound, value))
    for suffix in ("sum", "count"):
        for labels, value in index.get(f"{name}_{suffix}", ()):
            entry(labels)[suffix] = value
    found = []
    for item in series.values():
        buckets = sorted(item["buckets"])
        if not buckets or buckets[-1][0] != INF:
            continue  # no +Inf bucket: not a histogram Prometheus could take a quantile of either
        counts = tuple(c for _, c in buckets)
        if any(not math.isfinite(c) or c < 0 for c in counts):
            raise InvalidDataError(f"histogram {name} has a bucket count that is negative or not finite")
        count = item["count"] if item["count"] is not None else counts[-1]
        total = (item["sum"] or 0.0) / unit
        found.append((item["labels"], Histogram(tuple(b for b, _ in buckets), counts, total, count)))
    return found


def _add_histogram(reading: Reading, field_name: str, histogram: Histogram) -> None:
    current = reading.histograms.get(field_name)
    if current is None:
        reading.histograms[field_name] = histogram
    elif current.same_layout(histogram):
        reading.histograms[field_name] = current.plus(histogram)
    # else: a series with other buckets (a second version of the server, say) cannot be merged; left out.
