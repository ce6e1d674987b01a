"""Snapshot -> Datadog points and hint events: what the Datadog sink sends, and when.

Every family the Prometheus collector renders (exporter/collector.py) has a counterpart here,
named `model_serving.<family without the model_serving_ prefix>` (docs/datadog.md lists them).

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

from ..model import Counters, EndpointReport, Hint, Histogram, SeriesReport, Snapshot

PREFIX = "model_serving."
GAUGE, COUNT = 3, 1  # MetricIntakeType values of the v2 intake
SOURCE_MINUTE_S = 60  # the interval of the per-minute counts
REMEDIATION_DOCS = "https://github.com/serving-exporter/serving-exporter/blob/main/docs/remediation.md"


@dataclass(frozen=True)
class MetricDef:
    type: int  # GAUGE or COUNT
    unit: str | None  # a Datadog unit (docs.datadoghq.com/metrics/units), sent as the `unit` of every series
    per_unit: str | None  # settable only through the v1 metric metadata API (documented, not sent)
    description: str


def _g(unit: str | None, description: str, per_unit: str | None = None) -> MetricDef:
    return MetricDef(GAUGE, unit, per_unit, description)


def _c(unit: str | None, description: str) -> MetricDef:
    return MetricDef(COUNT, unit, None, description)


# Every metric the sink sends, without the `model_serving.` prefix.
METRICS: dict[str, MetricDef] = {
    # Window figures, per series (endpoint row and served entities), stamped with the source minute.
    # No unit sent: the intake takes no per-unit, and "request" alone would read as a count.
    "requests_per_second": _g(None, "Requests per second over the analysis window.", per_unit="second"),
    "latency_seconds": _g("second", "Latency percentile (tag percentile) over the analysis window."),
    "latency_mean_seconds": _g("second", "Mean request latency over the analysis window."),
    "error_ratio": _g("fraction", "Share of requests answered 4xx or 5xx (429 included) over the window."),
    "error_ratio_by_class": _g("fraction", "Share of requests answered with this status class (tag class) over the window."),
    "queue_depth": _g("request", "Requests waiting for a free slot, averaged over the window."),
    "queue_depth_method": _g(None, "1 for the method behind queue_depth (tag method: queue_time or estimated)."),
    "cpu_utilization_ratio": _g("fraction", "Average CPU utilisation over replicas and the window."),
    "memory_utilization_ratio": _g("fraction", "Average memory utilisation over replicas and the window."),
    "gpu_utilization_ratio": _g("fraction", "Average GPU utilisation over GPUs, replicas and the window."),
    "gpu_memory_utilization_ratio": _g("fraction", "Average GPU memory utilisation."),
    "provisioned_concurrency": _g("request", "Provisioned concurrency (platform gauge, else the configured maximum)."),
    "required_concurrency": _g("request", "Concurrency the load needs: QPS x mean latency."),
    "window_coverage_seconds": _g("second", "Source data in the analysis window: received minutes x 60."),
    "last_minute_timestamp_seconds": _g(None, "Start of the newest source minute received (Unix seconds)."),
    "target_breached": _g(None, "1 when the check's value (tag check) exceeds its target, else 0."),
    "target": _g(None, "Target of a check (tag check) for the endpoint."),
    "recommended_concurrency": _g("request", "Provisioned concurrency the window supports (tag bound: min, max)."),
    # Per-minute counts, per series, stamped with the source minute (Datadog COUNT, interval 60 s).
    "requests": _c("request", "Requests in the source minute."),
    "request_errors": _c("request", "Requests answered 4xx/5xx (tag class) in the source minute."),
    "request_duration_seconds.count": _c("request", "Latency observations in the source minute."),
    "request_duration_seconds.sum": _c("second", "Sum of the latencies observed in the source minute."),
    "request_duration_seconds.bucket": _c("request", "Observations at or below upper_bound in the source minute (cumulative buckets)."),
    # Configuration and state, per endpoint, stamped with the poll time.
    "endpoint_ready": _g(None, "1 when the endpoint is READY and its served entities are deployed."),
    "endpoint_info": _g(None, "1, tagged with the endpoint's configuration."),
    "served_entity_info": _g(None, "1, tagged with the served entity's configuration."),
    "configured_concurrency": _g("request", "Configured min/max provisioned concurrency of a served entity (tag bound)."),
    "remediation": _g(None, "1 while a remediation hint (tags rule, severity) is active."),
    "exporter_up": _g(None, "1 when the last metrics fetch for the endpoint succeeded."),
    "exporter_last_success_timestamp_seconds": _g(None, "Time of the last successful metrics fetch (Unix seconds)."),
    "exporter_fetch_duration_seconds": _g("second", "Duration of the endpoint's last metrics fetch."),
    # The exporter itself, stamped with the poll time.
    "exporter_poll_duration_seconds": _g("second", "Duration of the last complete poll of the workspace."),
    "exporter_last_poll_timestamp_seconds": _g(None, "Time the last poll completed (Unix seconds)."),
    "exporter_endpoints": _g(None, "Endpoints discovered in the workspace and selected by this replica (tag state)."),
    "exporter_polls": _c(None, "Polls of the workspace since the previous poll, by result (tag result)."),
    "exporter_fetch_errors": _c("error", "Failures since the previous poll, by endpoint, call and reason."),
}

# Collector gauge families fed by one Figures attribute (mirrors collector.GAUGES).
FIGURE_GAUGES = {
    "requests_per_second": "qps",
    "latency_mean_seconds": "latency_mean",
    "error_ratio": "error_ratio",
    "cpu_utilization_ratio": "cpu_ratio",
    "memory_utilization_ratio": "memory_ratio",
    "gpu_utilization_ratio": "gpu_ratio",
    "gpu_memory_utilization_ratio": "gpu_memory_ratio",
    "provisioned_concurrency": "provisioned_concurrency",
    "required_concurrency": "required_concurrency",
}
PERCENTILES = {"p50": "latency_p50", "p90": "latency_p90", "p99": "latency_p99"}
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


def _finite(value: float | None) -> bool:
    return value is not None and not math.isnan(value) and not math.isinf(value)


@dataclass
class _SeriesMemory:
    minute_ms: int  # last source minute sent
    counters: Counters  # the synthesised counters at that minute


@dataclass
class Translator:
    """Turns each new Snapshot into points and hint events; remembers what it already sent."""

    tags: Sequence[str] = ()
    histogram_buckets: bool = True
    events: bool = True
    clock: Callable[[], float] = time.time
    _series: dict[tuple[str, str | None], _SeriesMemory] = field(default_factory=dict)
    _exporter_counts: dict[tuple, float] = field(default_factory=dict)
    _hints: dict[str, dict[str, Hint]] = field(default_factory=dict)

    def translate(self, snap: Snapshot) -> tuple[list[Point], list[HintEvent]]:
        poll_ts = int(snap.completed_at_s if snap.completed_at_s is not None else self.clock())
        base = tuple(self.tags) + ((tag("workspace", snap.workspace),) if snap.workspace else ())
        if snap.shard[1] > 1:
            base += (tag("shard", snap.shard[0]),)
        points: list[Point] = []
        events: list[HintEvent] = []
        present = set()
        for report in snap.endpoints:
            name = report.info.name
            present.add(name)
            ep_tags = base + (tag("endpoint", name),)
            points.extend(self._endpoint_points(report, ep_tags, poll_ts))
            if self.events:
                events.extend(self._hint_events(name, report.hints, ep_tags, poll_ts))
        points.extend(self._exporter_points(snap, base, poll_ts))
        # Forget what vanished: its hints clear, and a returning series starts afresh.
        for name in [n for n in self._hints if n not in present]:
            if self.events:
                events.extend(self._hint_events(name, (), base + (tag("endpoint", name),), poll_ts, gone=True))
            del self._hints[name]
        for key in [k for k in self._series if k[0] not in present]:
            del self._series[key]
        return points, events

    # -- per endpoint -------------------------------------------------------------------------

    def _endpoint_points(self, report: EndpointReport, ep_tags: tuple[str, ...], poll_ts: int) -> Iterator[Point]:
        info, name = report.info, report.info.name
        rows = [(report.endpoint, ep_tags + ("level:endpoint",))]
        rows += [(e, ep_tags + ("level:served_entity", tag("served_entity", e.entity))) for e in report.entities]
        for series, tags in rows:
            minute = self._new_minute(name, series)
            if minute is None:
                continue
            ts = minute // 1000
            yield from self._series_points(name, series, tags, ts)
            if series.entity is None:  # endpoint-wide figures derived from the window
                for check in series.checks:
                    if check.target is not None:
                        yield _gauge("target", ts, check.target, ep_tags + (tag("check", check.name),))
                if report.recommendation is not None:
                    r = report.recommendation
                    yield _gauge("recommended_concurrency", ts, r.min_concurrency, ep_tags + ("bound:min",))
                    yield _gauge("recommended_concurrency", ts, r.max_concurrency, ep_tags + ("bound:max",))
            self._series[(name, series.entity)] = _SeriesMemory(minute, series.counters)
        # State and configuration at poll time.
        ready = info.ready == "READY" and all(e.deployment_state in (None, "DEPLOYMENT_READY") for e in info.served_entities)
        yield _gauge("endpoint_ready", poll_ts, float(ready), ep_tags)
        scale = (any(e.scale_to_zero_enabled for e in info.served_entities) if info.detailed else None)
        config = {"platform": info.platform, "endpoint_id": info.id, "workload_type": info.workload_type, "route_optimized": _flag(info.route_optimized),
                  "scale_to_zero": _flag(scale), "task": info.task, "kind": info.kind}
        yield _gauge("endpoint_info", poll_ts, 1.0, ep_tags + tuple(tag(k, v) for k, v in config.items() if v))
        for e in info.served_entities:
            e_tags = ep_tags + ("level:served_entity", tag("served_entity", e.name))
            detail = {"platform": info.platform, "entity_name": e.entity_name, "entity_version": e.entity_version, "workload_type": e.workload_type,
                      "workload_size": e.workload_size, "deployment_state": e.deployment_state, "kind": e.kind}
            yield _gauge("served_entity_info", poll_ts, 1.0, e_tags + tuple(tag(k, v) for k, v in detail.items() if v))
            for bound, value in (("min", e.min_provisioned_concurrency), ("max", e.max_provisioned_concurrency)):
                if value is not None:
                    yield _gauge("configured_concurrency", poll_ts, value, e_tags + (f"bound:{bound}",))
        for hint in report.hints:
            yield _gauge("remediation", poll_ts, 1.0, ep_tags + (tag("rule", hint.id), tag("severity", hint.severity)))
        status = report.status
        yield _gauge("exporter_up", poll_ts, 1.0 if status.up else 0.0, ep_tags)
        if status.last_success_s is not None:
            yield _gauge("exporter_last_success_timestamp_seconds", poll_ts, status.last_success_s, ep_tags)
        if status.duration_s is not None:
            yield _gauge("exporter_fetch_duration_seconds", poll_ts, status.duration_s, ep_tags)

    def _new_minute(self, endpoint: str, series: SeriesReport) -> int | None:
        """The series' source minute if it was not sent yet, else None."""
        minute = series.figures.latest_minute_ms
        if minute is None:
            return None
        sent = self._series.get((endpoint, series.entity))
        return minute if sent is None or minute > sent.minute_ms else None

    def _series_points(self, endpoint: str, series: SeriesReport, tags: tuple[str, ...], ts: int) -> Iterator[Point]:
        f = series.figures
        for metric, attr in FIGURE_GAUGES.items():
            yield from _maybe(metric, ts, getattr(f, attr), tags)
        for pct, attr in PERCENTILES.items():
            yield from _maybe("latency_seconds", ts, getattr(f, attr), tags + (f"percentile:{pct}",))
        yield from _maybe("error_ratio_by_class", ts, f.error_ratio_4xx, tags + ("class:4xx",))
        yield from _maybe("error_ratio_by_class", ts, f.error_ratio_5xx, tags + ("class:5xx",))
        if _finite(f.queue_depth):
            yield _gauge("queue_depth", ts, f.queue_depth, tags)  # type: ignore[arg-type]
            yield _gauge("queue_depth_method", ts, 1.0, tags + (tag("method", f.queue_depth_method or "estimated"),))
        yield _gauge("window_coverage_seconds", ts, 60.0 * f.minutes, tags)
        yield _gauge("last_minute_timestamp_seconds", ts, ts, tags)
        for check in series.checks:
            if check.evaluated:
                yield _gauge("target_breached", ts, 1.0 if check.breached else 0.0, tags + (tag("check", check.name),))
        # Per-minute counts: the counters' growth since the last minute sent (a reset counts from zero).
        sent = self._series.get((endpoint, series.entity))
        now, before = series.counters, (sent.counters if sent else Counters())
        yield _count("requests", ts, _delta(now.requests, before.requests), tags)
        yield _count("request_errors", ts, _delta(now.errors_4xx, before.errors_4xx), tags + ("class:4xx",))
        yield _count("request_errors", ts, _delta(now.errors_5xx, before.errors_5xx), tags + ("class:5xx",))
        duration = _histogram_delta(now.duration, before.duration)
        if duration is not None:
            yield _count("request_duration_seconds.count", ts, duration.count, tags)
            yield _count("request_duration_seconds.sum", ts, duration.sum, tags)
            if self.histogram_buckets:
                for bound, n in zip(duration.bounds, duration.counts):
                    yield _count("request_duration_seconds.bucket", ts, n, tags + (tag("upper_bound", _bound(bound)),))

    # -- the exporter ---------------------------------------------------------------------------

    def _exporter_points(self, snap: Snapshot, base: tuple[str, ...], ts: int) -> Iterator[Point]:
        if snap.poll_duration_s is not None:
            yield _gauge("exporter_poll_duration_seconds", ts, snap.poll_duration_s, base)
        if snap.completed_at_s is not None:
            yield _gauge("exporter_last_poll_timestamp_seconds", ts, snap.completed_at_s, base)
        yield _gauge("exporter_endpoints", ts, snap.discovered, base + ("state:discovered",))
        yield _gauge("exporter_endpoints", ts, len(snap.endpoints), base + ("state:selected",))
        counts: dict[tuple, float] = {("polls", r): snap.polls.get(r, 0.0) for r in ("success", "list_failed")}
        counts.update({("fetch_errors",) + k: v for k, v in snap.fetch_errors.items()})
        for key, value in sorted(counts.items()):
            growth = _delta(value, self._exporter_counts.get(key, 0.0))
            if key[0] == "polls":
                yield _count("exporter_polls", ts, growth, base + (tag("result", key[1]),))
            elif growth:
                endpoint, call, reason = key[1:]
                yield _count("exporter_fetch_errors", ts, growth,
                             base + (tag("endpoint", endpoint), tag("call", call), tag("reason", reason)))
        self._exporter_counts = counts

    # -- hint events ----------------------------------------------------------------------------

    def _hint_events(self, endpoint: str, hints: Iterable[Hint], ep_tags: tuple[str, ...], now: int,
                     gone: bool = False) -> Iterator[HintEvent]:
        before = self._hints.get(endpoint, {})
        active = {h.id: h for h in hints}
        for rule, hint in active.items():
            if rule not in before:
                yield _event(endpoint, hint, True, ep_tags, int(hint.since_s or now))
        for rule, hint in before.items():
            if rule not in active:
                yield _event(endpoint, hint, False, ep_tags, now, gone)
        self._hints[endpoint] = active


def _gauge(metric: str, ts: int, value: float, tags: tuple[str, ...]) -> Point:
    return Point(PREFIX + metric, GAUGE, ts, float(value), tuple(sorted(set(tags))))


def _count(metric: str, ts: int, value: float, tags: tuple[str, ...]) -> Point:
    return Point(PREFIX + metric, COUNT, ts, float(value), tuple(sorted(set(tags))))


def _maybe(metric: str, ts: int, value: float | None, tags: tuple[str, ...]) -> Iterator[Point]:
    if _finite(value):
        yield _gauge(metric, ts, value, tags)  # type: ignore[arg-type]


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


def _flag(value: bool | None) -> str | None:
    return None if value is None else str(value).lower()


def _event(endpoint: str, hint: Hint, active: bool, ep_tags: tuple[str, ...], when: int, gone: bool = False) -> HintEvent:
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
    key = f"serving-exporter:{endpoint}:{hint.id}"
    if len(key) > 100:  # the API's limit on `aggregation_key`
        key = "serving-exporter:" + hashlib.sha256(key.encode()).hexdigest()[:64]
    tags = tuple(sorted(set(ep_tags + (tag("rule", hint.id), tag("severity", hint.severity), "event_type:remediation_hint",
                                       f"hint_state:{state}"))))
    return HintEvent(endpoint, hint.id, active, title[:100], text, ALERT_TYPES.get(hint.severity, "info") if active else "success",
                     key, tags, when, "low" if hint.severity == "info" else "normal")
