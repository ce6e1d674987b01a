"""Snapshot -> Datadog points and hint events: what the Datadog sink sends, and when.

Every family of the catalog (exporter/catalog.py) with a `datadog` entry is sent, named
`model_serving.<family>` (counters without `_total`; the histogram as `.count`, `.sum` and
`.bucket`), tagged with its labels; docs/datadog.md lists them.

Two clocks stamp the points:

* **Source minute.** A series' window figures (QPS, latency, error ratios, queue depth,
  utilisation, concurrency, coverage, breaches, targets, the recommendation) and its per-minute
  counts are stamped with the series' newest source minute (`Figures.latest_minute_ms`) and sent
  once per minute: the translator remembers, per series, the last minute it sent, and a snapshot
  whose minute is not newer sends nothing for that series. The counts are the growth of the
  exporter's synthesised counters since the last minute sent, so a minute is never counted twice
  (and a minute skipped by the poller is counted in the next one, never lost).
* **Poll time.** What describes the exporter's view rather than the source (up, last success,
  fetch duration, readiness, configuration, active hints, poll statistics) is stamped with the
  poll's completion time and sent every poll, so it keeps flowing while the source is stale.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ...catalog import ENDPOINT_LABEL, ENTITY_LABEL, FAMILIES, WORKSPACE_LABEL, Family, samples
from ..budget import SeriesBudget
from ...model import EndpointReport, Hint, Histogram, SeriesReport, Snapshot

PREFIX = "model_serving."
GAUGE, COUNT = 3, 1  # MetricIntakeType values of the v2 intake
SOURCE_MINUTE_S = 60  # the interval of the per-minute counts
REMEDIATION_DOCS = "https://github.com/serving-exporter/serving-exporter/blob/main/docs/remediation.md"
# Datadog's tag for the serving endpoint. The Prometheus label is `serving_endpoint` to dodge the Prometheus
# Operator's `endpoint` target label; Datadog has no such clash, so its tag stays `endpoint`.
TAG_KEYS = {ENDPOINT_LABEL: "endpoint"}
# Catalog units -> Datadog units (docs.datadoghq.com/metrics/units). The v2 intake takes no per-unit, so
# requests_per_second goes without a unit; its per-unit is documented for the metadata API.
UNITS = {"seconds": "second", "ratio": "fraction", "requests": "request", "errors": "error"}
PER_UNITS = {"requests_per_second": "second", "tokens_per_second": "second", "per_second": "second"}
HISTOGRAM_PARTS = ("count", "sum", "bucket")  # .sum in the family's unit, .count and .bucket count requests


@dataclass(frozen=True)
class MetricDef:
    type: int  # GAUGE or COUNT
    unit: str | None  # a Datadog unit, sent as the `unit` of every series
    per_unit: str | None  # settable only through the v1 metric metadata API (documented, not sent)
    family: Family  # its help, labels and clock


def _metric_defs() -> dict[str, MetricDef]:
    defs: dict[str, MetricDef] = {}
    for f in FAMILIES:
        if f.datadog is None:
            continue
        unit, per_unit = UNITS.get(f.unit), PER_UNITS.get(f.unit)
        if f.type == "histogram":
            for part in HISTOGRAM_PARTS:
                defs[f"{f.name}.{part}"] = MetricDef(COUNT, unit if part == "sum" else "request", None, f)
        elif f.type == "info":  # as in Prometheus: a gauge of 1 named <family>_info, tagged with the configuration
            defs[f"{f.name}_info"] = MetricDef(GAUGE, None, None, f)
        else:
            defs[f.name] = MetricDef(COUNT if f.type == "counter" else GAUGE, unit, per_unit, f)
    return defs


# Every metric the sink sends, without the `model_serving.` prefix.
METRICS: dict[str, MetricDef] = _metric_defs()
_SENT = tuple(f for f in FAMILIES if f.datadog is not None)
SERIES_FAMILIES = tuple(f for f in _SENT if f.scope == "series")
ENDPOINT_MINUTE = tuple(f for f in _SENT if f.scope == "endpoint" and f.datadog.clock == "minute")  # type: ignore[union-attr]
ENDPOINT_POLL = tuple(f for f in _SENT if f.scope == "endpoint" and f.datadog.clock == "poll")  # type: ignore[union-attr]
EXPORTER_FAMILIES = tuple(f for f in _SENT if f.scope == "exporter")
ALERT_TYPES = {"critical": "error", "warning": "warning", "info": "info"}


@dataclass(frozen=True, slots=True)
class Point:
    """One value of one series. `metric` is the full Datadog name; `tags` are sorted."""

    metric: str
    type: int
    timestamp: int
    value: float
    tags: tuple[str, ...]

    @property
    def series_key(self) -> tuple[str, int, tuple[str, ...]]:
        return self.metric, self.type, self.tags


@dataclass(frozen=True)
class HintEvent:
    """A remediation hint activating (alert_type from its severity) or clearing (success)."""

    endpoint: str
    rule: str
    active: bool
    title: str
    text: str
    alert_type: str
    aggregation_key: str
    tags: tuple[str, ...]
    date_happened: int
    priority: str = "normal"


_TAG_INVALID = re.compile(r"[^a-z0-9_.:/-]")


def tag(key: str, value: object) -> str:
    """`key:value` as Datadog stores it: lower case, other characters as `_`, at most 200 characters
    (docs.datadoghq.com/getting_started/tagging/#define-tags)."""
    return _TAG_INVALID.sub("_", f"{key}:{value}".lower())[:200]


def label_tags(names: Sequence[str], values: Sequence[str]) -> tuple[str, ...]:
    """Prometheus labels as Datadog tags. `served_entity` becomes a `level` (endpoint for "", the endpoint as
    a whole; served_entity otherwise, with the entity's tag), so a query selects one level as PromQL selects
    `served_entity=""`."""
    tags: list[str] = []
    for name, value in zip(names, values):
        if name == ENTITY_LABEL:
            tags += ["level:endpoint"] if value == "" else ["level:served_entity", tag(ENTITY_LABEL, value)]
        elif value != "":
            tags.append(tag(TAG_KEYS.get(name, name), value))
    return tuple(tags)


def _finite(value: float) -> bool:
    return not math.isnan(value) and not math.isinf(value)


@dataclass
class _SeriesMemory:
    minute_ms: int  # last source minute sent
    sent: dict[tuple[str, tuple[str, ...]], Any]  # (family, labels) -> counter value or Histogram at that minute


@dataclass
class Translator:
    """Turns each new Snapshot into points and hint events; remembers what it already sent."""

    tags: Sequence[str] = ()
    histogram_buckets: bool = True
    budget: SeriesBudget = field(default_factory=SeriesBudget)
    events: bool = True
    clock: Callable[[], float] = time.time
    # Per endpoint, by EndpointInfo.key (workspace, name): two workspaces may each have an endpoint `chat`.
    _series: dict[tuple[tuple[str, str], str | None], _SeriesMemory] = field(default_factory=dict)
    _exporter_counts: dict[tuple[str, tuple[str, ...]], Any] = field(default_factory=dict)
    _hints: dict[tuple[str, str], dict[str, Hint]] = field(default_factory=dict)

    def translate(self, snap: Snapshot) -> tuple[list[Point], list[HintEvent]]:
        poll_ts = int(snap.completed_at_s if snap.completed_at_s is not None else self.clock())
        base = tuple(self.tags)
        if snap.shard[1] > 1:
            base += (tag("shard", snap.shard[0]),)
        points: list[Point] = []
        events: list[HintEvent] = []
        present = set()
        for report in snap.endpoints:
            key = report.info.key
            present.add(key)
            ep_tags = base + _endpoint_tags(key)  # the endpoint's own workspace (none: self-hosted)
            points.extend(self._endpoint_points(report, ep_tags, poll_ts))
            if self.events:
                events.extend(self._hint_events(key, report.hints, ep_tags, poll_ts))
        counts: dict[tuple[str, tuple[str, ...]], Any] = {}
        exporter_tags = base + ((tag(WORKSPACE_LABEL, snap.workspace),) if snap.workspace else ())
        for family in EXPORTER_FAMILIES:
            for labels, value in samples(family, snap):
                points.extend(self._points(family, labels, value, exporter_tags, poll_ts, self._exporter_counts, counts))
        self._exporter_counts = counts
        # Forget what vanished: its hints clear, and a returning series starts afresh.
        for key in [k for k in self._hints if k not in present]:
            if self.events:
                events.extend(self._hint_events(key, (), base + _endpoint_tags(key), poll_ts, gone=True))
            del self._hints[key]
        for key in [k for k in self._series if k[0] not in present]:
            del self._series[key]
        return points, events

    # -- per endpoint -------------------------------------------------------------------------

    def _endpoint_points(self, report: EndpointReport, ep_tags: tuple[str, ...], poll_ts: int) -> Iterator[Point]:
        name = report.info.key
        for series in self.budget.rows(report):
            minute = self._new_minute(name, series)
            if minute is None:
                continue
            ts = minute // 1000
            memory = self._series.get((name, series.entity))
            sent = memory.sent if memory else {}
            now: dict[tuple[str, tuple[str, ...]], Any] = {}
            row = ep_tags + label_tags((ENTITY_LABEL,), (series.entity or "",))
            for family in SERIES_FAMILIES:
                if not self.budget.keeps(family):
                    continue
                for labels, value in samples(family, series):
                    yield from self._points(family, labels, value, row, ts, sent, now)
            if series.entity is None:  # endpoint-wide figures derived from the window
                for family in ENDPOINT_MINUTE:
                    if not self.budget.keeps(family):
                        continue
                    for labels, value in samples(family, report):
                        yield from self._points(family, labels, value, ep_tags, ts, sent, now)
            self._series[(name, series.entity)] = _SeriesMemory(minute, now)
        # State and configuration at poll time.
        for family in ENDPOINT_POLL:
            if not self.budget.keeps(family):
                continue
            for labels, value in samples(family, report):
                yield from self._points(family, labels, value, ep_tags, poll_ts, {}, {})

    def _new_minute(self, endpoint: tuple[str, str], series: SeriesReport) -> int | None:
        """The series' source minute if it was not sent yet, else None."""
        minute = series.figures.latest_minute_ms
        if minute is None:
            return None
        sent = self._series.get((endpoint, series.entity))
        return minute if sent is None or minute > sent.minute_ms else None

    def _points(self, family: Family, labels: tuple[str, ...], value: Any, tags: tuple[str, ...], ts: int,
                sent: dict, now: dict) -> Iterator[Point]:
        """One catalog sample as points. Counters and histograms: their growth since `sent` (a reset counts
        from zero); `now` records what this point leaves sent."""
        tags = tags + tuple(t for t in label_tags(family.labels, labels) if t not in tags)  # workspace: once
        metric = PREFIX + family.name
        if family.type == "gauge":
            if _finite(value):
                yield _point(metric, GAUGE, ts, value, tags)
        elif family.type == "info":
            yield _point(metric + "_info", GAUGE, ts, 1.0,
                         tags + tuple(tag(k, v) for k, v in value.items() if v))
        elif family.type == "counter":
            now[(family.name, labels)] = value
            growth = _delta(value, sent.get((family.name, labels), 0.0))
            if growth or not family.datadog.skip_zero:  # type: ignore[union-attr]
                yield _point(metric, COUNT, ts, growth, tags)
        else:  # histogram
            now[(family.name, labels)] = value
            delta = _histogram_delta(value, sent.get((family.name, labels)))
            if delta is not None:
                yield _point(metric + ".count", COUNT, ts, delta.count, tags)
                yield _point(metric + ".sum", COUNT, ts, delta.sum, tags)
                if self.histogram_buckets:
                    for bound, n in zip(delta.bounds, delta.counts):
                        yield _point(metric + ".bucket", COUNT, ts, n, tags + (tag("upper_bound", _bound(bound)),))

    # -- hint events ----------------------------------------------------------------------------

    def _hint_events(self, key: tuple[str, str], hints: Iterable[Hint], ep_tags: tuple[str, ...], now: int,
                     gone: bool = False) -> Iterator[HintEvent]:
        before = self._hints.get(key, {})
        active = {h.id: h for h in hints}
        workspace, endpoint = key  # the workspace is in the tags and the aggregation key
        for rule, hint in active.items():
            if rule not in before:
                yield _event(endpoint, hint, True, ep_tags, int(hint.since_s or now), workspace=workspace)
        for rule, hint in before.items():
            if rule not in active:
                yield _event(endpoint, hint, False, ep_tags, now, gone, workspace)
        self._hints[key] = active


def _point(metric: str, type_: int, ts: int, value: float, tags: tuple[str, ...]) -> Point:
    return Point(metric, type_, ts, float(value), tuple(sorted(set(tags))))


def _delta(now: float, before: float) -> float:
    return now - before if now >= before else now  # a counter that went down restarted from zero


def _histogram_delta(now: Histogram | None, before: Histogram | None) -> Histogram | None:
    if now is None:
        return None
    if before is None:
        return now
    return now.minus(before) or now  # a new layout or a decrease restarts the histogram


def _bound(bound: float) -> str:
    return "inf" if math.isinf(bound) else format(bound, "g")


def _endpoint_tags(key: tuple[str, str]) -> tuple[str, ...]:
    workspace, name = key
    return ((tag(WORKSPACE_LABEL, workspace),) if workspace else ()) + (tag(TAG_KEYS[ENDPOINT_LABEL], name),)


def _event(endpoint: str, hint: Hint, active: bool, ep_tags: tuple[str, ...], when: int, gone: bool = False,
           workspace: str = "") -> HintEvent:
    state = "active" if active else "cleared"
    title = f"{endpoint}: {hint.summary}" + ("" if active else " (cleared)")
    if active:
        lead = f"**{hint.severity}** remediation hint `{hint.id}` is active on endpoint `{endpoint}`."
    elif gone:
        lead = f"Remediation hint `{hint.id}` on endpoint `{endpoint}` cleared: the endpoint is no longer polled."
    else:
        lead = f"Remediation hint `{hint.id}` on endpoint `{endpoint}` cleared (its condition no longer holds)."
    detail = f"{'Detail' if active else 'Last detail'}: {hint.detail}" if hint.detail else ""
    text = "%%% \n" + "\n\n".join(p for p in (lead, detail, f"Rule: {REMEDIATION_DOCS}#{hint.id}") if p) + "\n %%%"
    if len(text) > 4000:  # the API's limit on `text`
        text = text[:3990] + "…\n %%%"
    key = f"serving-exporter:{workspace + '/' if workspace else ''}{endpoint}:{hint.id}"
    if len(key) > 100:  # the API's limit on `aggregation_key`
        key = "serving-exporter:" + hashlib.sha256(key.encode()).hexdigest()[:64]
    tags = tuple(sorted(set(ep_tags + (tag("rule", hint.id), tag("severity", hint.severity), "event_type:remediation_hint",
                                       f"hint_state:{state}"))))
    return HintEvent(endpoint, hint.id, active, title[:100], text, ALERT_TYPES.get(hint.severity, "info") if active else "success",
                     key, tags, when, "low" if hint.severity == "info" else "normal")


def markdown_table() -> str:
    """The metric table of docs/datadog.md, from the catalog."""
    lines = ["| metric | type | unit | stamped with | extra tags |", "|---|---|---|---|---|"]
    for name, d in METRICS.items():
        f = d.family
        clock = f.datadog.clock if f.datadog else ""
        stamped = "poll" if clock == "poll" else "source minute" + (" (endpoint row)" if f.scope == "endpoint" else "")
        tags = [f"`{TAG_KEYS.get(n, n)}`" for n in f.labels]
        if f.type == "info":
            tags.append("configuration")
        if name.endswith(".bucket"):
            tags.append("`upper_bound`")
        if f.scope == "exporter" and ENDPOINT_LABEL not in f.labels:
            tags.append("(no `endpoint`)")
        if f.datadog and f.datadog.skip_zero:
            tags.append("only when non-zero")
        kind = "count" if d.type == COUNT else "gauge (1)" if f.type == "info" else "gauge"
        unit = d.unit or (f"(request/{d.per_unit})" if d.per_unit else "")
        lines.append(f"| `{PREFIX}{name}` | {kind} | {unit} | {stamped} | {', '.join(tags)} |")
    return "\n".join(lines) + "\n"
