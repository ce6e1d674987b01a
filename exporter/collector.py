"""Prometheus exposition, built at scrape time from the latest Snapshot.

Nothing here is a global gauge: every scrape renders the snapshot the last poll
published, so an endpoint that disappears takes its series with it. The figures
are a cache of the last poll (the source is per-minute and slow to query), which
`model_serving_exporter_last_success_timestamp_seconds` makes alertable.
"""

from __future__ import annotations

import logging
import platform
from collections.abc import Callable, Iterator

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from . import __version__
from .model import EndpointReport, SeriesReport, Snapshot

log = logging.getLogger(__name__)

SERIES = ["serving_endpoint", "served_entity"]  # served_entity is "" for the endpoint as a whole
QUEUE_HELP = (
    "Requests waiting for a free slot, averaged over the window: measured by Little's law (arrival rate x mean "
    "model_queue_time_ms) when the platform reports queue time, else estimated per minute as max(0, QPS x mean "
    "latency - provisioned concurrency). model_serving_queue_depth_method says which."
)
# Gauge families: name -> (help, Figures attribute).
GAUGES = {
    "model_serving_requests_per_second": ("Requests per second over the analysis window.", "qps"),
    "model_serving_latency_mean_seconds": ("Mean request latency over the analysis window.", "latency_mean"),
    "model_serving_error_ratio": ("Share of requests answered 4xx or 5xx (429 included) over the window; 0 without requests.", "error_ratio"),
    "model_serving_cpu_utilization_ratio": ("Average CPU utilisation over replicas and the window, 0-1.", "cpu_ratio"),
    "model_serving_memory_utilization_ratio": ("Average memory utilisation over replicas and the window, 0-1.", "memory_ratio"),
    "model_serving_gpu_utilization_ratio": ("Average GPU utilisation over GPUs, replicas and the window, 0-1.", "gpu_ratio"),
    "model_serving_gpu_memory_utilization_ratio": ("Average GPU memory utilisation, 0-1.", "gpu_memory_ratio"),
    "model_serving_provisioned_concurrency": ("Provisioned concurrency now (platform gauge, else the configured maximum).", "provisioned_concurrency"),
    "model_serving_required_concurrency": ("Concurrency the load needs: QPS x mean latency (Little's law).", "required_concurrency"),
}
PERCENTILES = {"p50": "latency_p50", "p90": "latency_p90", "p99": "latency_p99"}


class ServingCollector(Collector):
    """Renders whatever `snapshot()` returns; one endpoint failing to render never blanks the scrape."""

    def __init__(self, snapshot: Callable[[], Snapshot]):
        self._snapshot = snapshot

    def describe(self) -> list[Metric]:
        return []  # families depend on the data; registering must not trigger a poll

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        fam, errors = _Families(), 0
        for report in snap.endpoints:
            one = _Families()  # rendered apart, so a failure leaves none of the endpoint's series behind
            try:
                one.add_endpoint(report)
            except Exception:  # render the others; the failure shows in the log and the gauge
                log.exception("cannot render endpoint %s", report.info.name)
                errors += 1
                continue
            for into, family in zip(fam.all(), one.all()):
                into.samples.extend(family.samples)
        yield from fam.all()
        yield from _exporter_families(snap, errors)


class _Families:
    def __init__(self) -> None:
        g = GaugeMetricFamily
        self.gauges = {name: g(name, help_, labels=SERIES) for name, (help_, _) in GAUGES.items()}
        self.latency = g("model_serving_latency_seconds", "Latency percentile over the analysis window, computed as PromQL histogram_quantile does.", labels=SERIES + ["percentile"])
        self.error_class = g("model_serving_error_ratio_by_class", "Share of requests answered with this status class over the window.", labels=SERIES + ["class"])
        self.queue = g("model_serving_queue_depth", QUEUE_HELP, labels=SERIES)
        self.queue_method = g("model_serving_queue_depth_method", "1 for the method behind model_serving_queue_depth: queue_time (measured) or estimated.", labels=SERIES + ["method"])
        self.configured = g("model_serving_configured_concurrency", "Configured min/max provisioned concurrency of a served entity, where its configuration sets them.", labels=SERIES + ["bound"])
        self.coverage = g("model_serving_window_coverage_seconds", "Source data in the analysis window: received minutes x 60 (0: no data yet).", labels=SERIES)
        self.minute_ts = g("model_serving_last_minute_timestamp_seconds", "Start of the newest source minute received.", labels=SERIES)
        self.target = g("model_serving_target", "Target for a check (a check is breached when its value exceeds the target).", labels=["serving_endpoint", "check"])
        self.breached = g("model_serving_target_breached", "1 when the check's value exceeds its target, else 0 (absent: no data or no target).", labels=SERIES + ["check"])
        self.remediation = g("model_serving_remediation", "1 while a remediation hint is active for the endpoint (rule ids: docs/remediation.md; details: /api/v1/endpoints).", labels=["serving_endpoint", "rule", "severity"])
        self.recommended = g("model_serving_recommended_concurrency", "Provisioned concurrency the window supports: min for the quietest minute, max for the busiest, with headroom.", labels=["serving_endpoint", "bound"])
        self.ready = g("model_serving_endpoint_ready", "1 when the endpoint is READY and its served entities are deployed.", labels=["serving_endpoint"])
        # Only labels that change with the configuration; state lives in model_serving_endpoint_ready.
        self.info = InfoMetricFamily("model_serving_endpoint", "Endpoint configuration.", labels=[
            "serving_endpoint", "platform", "endpoint_id", "workload_type", "route_optimized", "scale_to_zero", "task", "kind"])
        self.entity_info = InfoMetricFamily("model_serving_served_entity", "Served entity configuration.", labels=[
            "serving_endpoint", "served_entity", "platform", "entity_name", "entity_version", "workload_type", "workload_size",
            "deployment_state", "kind"])
        self.requests = CounterMetricFamily("model_serving_requests", "Requests, accumulated by the exporter from the per-minute counts (resets when the exporter restarts).", labels=SERIES)
        self.errors = CounterMetricFamily("model_serving_request_errors", "Requests answered 4xx/5xx, accumulated from the per-minute counts.", labels=SERIES + ["class"])
        self.duration = HistogramMetricFamily("model_serving_request_duration_seconds", "Request latency, accumulated from the per-minute histograms.", labels=SERIES)
        self.up = g("model_serving_exporter_up", "1 when the last metrics fetch for the endpoint succeeded.", labels=["serving_endpoint"])
        self.last_success = g("model_serving_exporter_last_success_timestamp_seconds", "Time of the last successful metrics fetch for the endpoint.", labels=["serving_endpoint"])
        self.fetch_duration = g("model_serving_exporter_fetch_duration_seconds", "Duration of the endpoint's last metrics fetch.", labels=["serving_endpoint"])

    def add_endpoint(self, report: EndpointReport) -> None:
        info, name = report.info, report.info.name
        self._add_series(name, report.endpoint)
        for entity in report.entities:
            self._add_series(name, entity)
        for check in report.endpoint.checks:
            if check.target is not None:
                self.target.add_metric([name, check.name], check.target)
        self.ready.add_metric([name], float(info.ready == "READY" and all(
            e.deployment_state in (None, "DEPLOYMENT_READY") for e in info.served_entities)))
        self.info.add_metric([name], {
            "platform": info.platform, "endpoint_id": info.id or "", "workload_type": info.workload_type or "", "route_optimized": _flag(info.route_optimized),
            "scale_to_zero": _flag(any(e.scale_to_zero_enabled for e in info.served_entities) if info.detailed else None),
            "task": info.task or "", "kind": info.kind,
        })
        for e in info.served_entities:
            self.entity_info.add_metric([name, e.name], {
                "platform": info.platform, "entity_name": e.entity_name or "", "entity_version": e.entity_version or "",
                "workload_type": e.workload_type or "", "workload_size": e.workload_size or "",
                "deployment_state": e.deployment_state or "", "kind": e.kind,
            })
            for bound, value in (("min", e.min_provisioned_concurrency), ("max", e.max_provisioned_concurrency)):
                if value is not None:
                    self.configured.add_metric([name, e.name, bound], value)
        if report.recommendation is not None:
            r = report.recommendation
            self.recommended.add_metric([name, "min"], r.min_concurrency)
            self.recommended.add_metric([name, "max"], r.max_concurrency)
        for hint in report.hints:
            self.remediation.add_metric([name, hint.id, hint.severity], 1.0)
        status = report.status
        self.up.add_metric([name], 1.0 if status.up else 0.0)
        if status.last_success_s is not None:
            self.last_success.add_metric([name], status.last_success_s)
        if status.duration_s is not None:
            self.fetch_duration.add_metric([name], status.duration_s)

    def _add_series(self, endpoint: str, series: SeriesReport) -> None:
        labels = [endpoint, series.entity or ""]
        f = series.figures
        self.coverage.add_metric(labels, 60.0 * f.minutes)
        if f.latest_minute_ms is not None:
            self.minute_ts.add_metric(labels, f.latest_minute_ms / 1000.0)
        for name, (_, attr) in GAUGES.items():
            value = getattr(f, attr)
            if value is not None:
                self.gauges[name].add_metric(labels, value)
        for pct, attr in PERCENTILES.items():
            if getattr(f, attr) is not None:
                self.latency.add_metric(labels + [pct], getattr(f, attr))
        for cls, value in (("4xx", f.error_ratio_4xx), ("5xx", f.error_ratio_5xx)):
            if value is not None:
                self.error_class.add_metric(labels + [cls], value)
        if f.queue_depth is not None:
            self.queue.add_metric(labels, f.queue_depth)
            self.queue_method.add_metric(labels + [f.queue_depth_method or "estimated"], 1.0)
        for check in series.checks:
            if check.evaluated:
                self.breached.add_metric(labels + [check.name], 1.0 if check.breached else 0.0)
        c = series.counters
        self.requests.add_metric(labels, c.requests)
        self.errors.add_metric(labels + ["4xx"], c.errors_4xx)
        self.errors.add_metric(labels + ["5xx"], c.errors_5xx)
        if c.duration is not None:
            buckets = [(floatToGoString(b), n) for b, n in zip(c.duration.bounds, c.duration.counts)]
            self.duration.add_metric(labels, buckets, c.duration.sum)

    def all(self) -> Iterator[Metric]:
        yield from self.gauges.values()
        yield from (self.latency, self.error_class, self.queue, self.queue_method, self.configured, self.coverage, self.minute_ts,
                    self.target, self.breached, self.remediation, self.recommended, self.ready, self.info, self.entity_info, self.requests,
                    self.errors, self.duration, self.up, self.last_success, self.fetch_duration)


def _flag(value: bool | None) -> str:
    return "" if value is None else str(value).lower()


def _exporter_families(snap: Snapshot, render_errors: int) -> Iterator[Metric]:
    info = InfoMetricFamily("model_serving_exporter_build", "Version of serving-exporter.")
    info.add_metric([], {"version": __version__, "python_version": platform.python_version()})
    yield info
    duration = GaugeMetricFamily("model_serving_exporter_poll_duration_seconds", "Duration of the last complete poll of the workspace.")
    if snap.poll_duration_s is not None:
        duration.add_metric([], snap.poll_duration_s)
    yield duration
    last = GaugeMetricFamily("model_serving_exporter_last_poll_timestamp_seconds", "Time the last poll completed.")
    if snap.completed_at_s is not None:
        last.add_metric([], snap.completed_at_s)
    yield last
    polls = CounterMetricFamily("model_serving_exporter_polls", "Polls of the workspace by result.", labels=["result"])
    for result in ("success", "list_failed"):
        polls.add_metric([result], snap.polls.get(result, 0.0))
    yield polls
    errors = CounterMetricFamily("model_serving_exporter_fetch_errors", "Failures by endpoint, call (detail, metrics) and reason (HTTP status class, timeout, parse_error, deadline, ...).", labels=["serving_endpoint", "call", "reason"])
    for (endpoint, call, reason), n in sorted(snap.fetch_errors.items()):
        errors.add_metric([endpoint, call, reason], n)
    yield errors
    shard = InfoMetricFamily("model_serving_exporter_shard", "This replica's share of the endpoints (shard_index of shard_count).")
    shard.add_metric([], {"shard_index": str(snap.shard[0]), "shard_count": str(snap.shard[1])})
    yield shard
    endpoints = GaugeMetricFamily("model_serving_exporter_endpoints", "Endpoints found in the workspace (discovered) and polled by this replica after filtering and sharding (selected).", labels=["state"])
    endpoints.add_metric(["discovered"], snap.discovered)
    endpoints.add_metric(["selected"], len(snap.endpoints))
    yield endpoints
    render = GaugeMetricFamily("model_serving_exporter_render_errors", "Endpoints that failed to render in this scrape (a bug; see the log).")
    render.add_metric([], render_errors)
    yield render
