"""Every figure the exporter exports, defined once.

Each `Family` names a metric family (without the `model_serving_` prefix), its type, unit,
help text, labels, what it reads from a Snapshot, and how Datadog receives it. The
Prometheus collector (sinks/prometheus.py), the Datadog points (sinks/datadog/points.py),
the family tables of docs/metrics.md and docs/datadog.md (docs/generate.py) and the golden
exposition test all iterate this table: adding a figure is one entry here plus its
computation in the pipeline.

Scopes say what a family's `read` receives and which labels come first:

- `series`: a SeriesReport — the endpoint as a whole (`served_entity=""`) or one served entity;
  labels `workspace`, `serving_endpoint`, `served_entity`, then the family's own.
- `endpoint`: an EndpointReport; labels `workspace`, `serving_endpoint`, then the family's own.

`workspace` is `EndpointInfo.workspace`: the configured name of a `workspaces:` entry, the host of the one
workspace of `databricks:`, or "" (an absent label) for a self-hosted endpoint.
- `exporter`: the Snapshot; only the family's own labels.

`read` yields `(label values, value)`: a float for gauges and counters (None: no sample), a
Histogram for histograms, a dict of label → value for info families.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from . import __version__
from .model import EndpointReport, SeriesReport, Snapshot
from .pipeline.targets import SERVER_CHECKS

PREFIX = "model_serving_"
ENDPOINT_LABEL = "serving_endpoint"  # not `endpoint`: the Prometheus Operator puts that on every target
ENTITY_LABEL = "served_entity"  # "" is the endpoint as a whole
WORKSPACE_LABEL = "workspace"  # two workspaces may each have an endpoint of the same name
SCOPE_LABELS = {"series": (WORKSPACE_LABEL, ENDPOINT_LABEL, ENTITY_LABEL), "endpoint": (WORKSPACE_LABEL, ENDPOINT_LABEL),
                "exporter": ()}
# Units, in words the sinks translate (Datadog's names are in sinks/datadog/points.py).
Unit = Literal["seconds", "ratio", "requests", "requests_per_second", "tokens_per_second", "per_second", "errors",
               "timestamp", "replicas", ""]

Samples = Iterable[tuple[tuple[str, ...], Any]]


@dataclass(frozen=True)
class Datadog:
    """How the Datadog sink sends a family. `clock`: stamped with the series' source minute (sent once per
    new minute) or with the poll's time (sent every poll). Counters and histograms go as COUNTs of their
    growth since the last point sent; `skip_zero` leaves out a count that did not grow."""

    clock: Literal["minute", "poll"]
    skip_zero: bool = False


@dataclass(frozen=True)
class Family:
    name: str
    type: Literal["gauge", "counter", "histogram", "info"]
    scope: Literal["series", "endpoint", "exporter"]
    unit: Unit
    help: str
    reads: str  # for the docs: where the value comes from
    read: Callable[[Any], Samples]
    labels: tuple[str, ...] = ()  # after the scope's labels
    datadog: Datadog | None = None  # None: not sent to Datadog
    info_labels: tuple[str, ...] = ()  # info families: the keys of the value

    @property
    def prometheus_name(self) -> str:
        return PREFIX + self.name

    @property
    def label_names(self) -> tuple[str, ...]:
        return SCOPE_LABELS[self.scope] + self.labels


# -- readers ------------------------------------------------------------------------------------


def _figure(attr: str) -> Callable[[SeriesReport], Samples]:
    return lambda row: (((), getattr(row.figures, attr)),)


def _percentiles(prefix: str) -> Callable[[SeriesReport], Samples]:
    return lambda row: (((p,), getattr(row.figures, f"{prefix}_{p}")) for p in ("p50", "p90", "p99"))


def _error_classes(row: SeriesReport) -> Samples:
    return ((("4xx",), row.figures.error_ratio_4xx), (("5xx",), row.figures.error_ratio_5xx))


def _queue_method(row: SeriesReport) -> Samples:
    f = row.figures
    return (((f.queue_depth_method or "estimated",), 1.0),) if f.queue_depth is not None else ()


def _last_minute(row: SeriesReport) -> Samples:
    ms = row.figures.latest_minute_ms
    return (((), ms / 1000.0 if ms is not None else None),)


def _breached(row: SeriesReport) -> Samples:
    return (((c.name,), 1.0 if c.breached else 0.0) for c in row.checks if c.evaluated)


def _error_counts(row: SeriesReport) -> Samples:
    return ((("4xx",), row.counters.errors_4xx), (("5xx",), row.counters.errors_5xx))


def _configured(report: EndpointReport) -> Samples:
    for e in report.info.served_entities:
        for bound, value in (("min", e.min_provisioned_concurrency), ("max", e.max_provisioned_concurrency)):
            if value is not None:
                yield (e.name, bound), float(value)


def _targets(report: EndpointReport) -> Samples:
    # An LLM server's check only where the endpoint has the figure: others never carry its target series.
    return (((c.name,), c.target) for c in report.endpoint.checks
            if c.target is not None and (c.value is not None or c.name not in SERVER_CHECKS))


def _recommended(unit: str) -> Callable[[EndpointReport], Samples]:
    def read(report: EndpointReport) -> Samples:
        r = report.recommendation
        if r is None or r.unit != unit:
            return ()
        return (("min",), float(r.min_concurrency)), (("max",), float(r.max_concurrency))
    return read


def _replica_up(report: EndpointReport) -> Samples:
    return (((_without_userinfo(r.target),), 1.0 if r.up else 0.0) for r in report.replicas)


def _without_userinfo(url: str) -> str:
    """The source sends targets without credentials; a label must never carry one even if a URL slips through."""
    scheme, sep, rest = url.partition("://")
    host, slash, path = rest.partition("/")
    return f"{scheme}{sep}{host.rpartition('@')[2]}{slash}{path}" if sep else url


def _replicas_answering(report: EndpointReport) -> Samples:
    n = len(report.replicas)
    return (((), sum(r.up for r in report.replicas) / n),) if n else ()


def _flag(value: bool | None) -> str:
    return "" if value is None else str(value).lower()


def _endpoint_info(report: EndpointReport) -> Samples:
    info = report.info
    yield (), {"platform": info.platform, "server": info.server or "", "endpoint_id": info.id or "", "workload_type": info.workload_type or "",
               "route_optimized": _flag(info.route_optimized), "scale_to_zero": _flag(info.scale_to_zero),
               "task": info.task or "", "kind": info.kind}


def _entity_info(report: EndpointReport) -> Samples:
    for e in report.info.served_entities:
        yield (e.name,), {"platform": report.info.platform, "entity_name": e.entity_name or "",
                          "entity_version": e.entity_version or "", "workload_type": e.workload_type or "",
                          "workload_size": e.workload_size or "", "deployment_state": e.deployment_state or "",
                          "kind": e.kind}


def _build(_: Snapshot) -> Samples:
    return (((), {"version": __version__, "python_version": platform.python_version()}),)


def _polls(snap: Snapshot) -> Samples:
    return (((result,), snap.polls.get(result, 0.0)) for result in ("success", "list_failed"))


def _fetch_errors(snap: Snapshot) -> Samples:
    return (((workspace, endpoint, call, reason), n)
            for (workspace, endpoint, call, reason), n in sorted(snap.fetch_errors.items()))


def _workspace(read: Callable[[Any], float]) -> Callable[[Snapshot], Samples]:
    return lambda snap: (((w, str(snap.shard[0])), read(u)) for w, u in sorted(snap.usages.items()))


def _workspace_limits(snap: Snapshot) -> Samples:
    shard = str(snap.shard[0])
    for w, u in sorted(snap.usages.items()):
        yield (w, shard, "requests_per_second"), u.qps_limit
        yield (w, shard, "concurrent_requests"), u.concurrency_limit


def _workspace_ratios(snap: Snapshot) -> Samples:
    shard = str(snap.shard[0])
    for w, u in sorted(snap.usages.items()):
        yield (w, shard, "requests_per_second"), u.qps_ratio
        yield (w, shard, "concurrent_requests"), u.concurrency_ratio


def _reload(read: Callable[[Any], float]) -> Callable[[Snapshot], Samples]:
    return lambda snap: (((), read(snap.config_reload)),) if snap.config_reload is not None else ()


def _not_from_snapshot(_: Snapshot) -> Samples:
    return ()  # rendered by the sink itself (see the family's `reads`)


# -- the catalog --------------------------------------------------------------------------------

MINUTE, POLL = Datadog("minute"), Datadog("poll")

FAMILIES: tuple[Family, ...] = (
    # Window figures, per series.
    Family("requests_per_second", "gauge", "series", "requests_per_second", "Requests per second over the analysis window.",
           "Figures.qps", _figure("qps"), datadog=MINUTE),
    Family("latency_mean_seconds", "gauge", "series", "seconds", "Mean request latency over the analysis window.",
           "Figures.latency_mean", _figure("latency_mean"), datadog=MINUTE),
    Family("error_ratio", "gauge", "series", "ratio",
           "Share of requests answered 4xx or 5xx (429 included) over the window; 0 without requests.",
           "Figures.error_ratio", _figure("error_ratio"), datadog=MINUTE),
    Family("cpu_utilization_ratio", "gauge", "series", "ratio", "Average CPU utilisation over replicas and the window, 0-1.",
           "Figures.cpu_ratio", _figure("cpu_ratio"), datadog=MINUTE),
    Family("memory_utilization_ratio", "gauge", "series", "ratio",
           "Average memory utilisation over replicas and the window, 0-1.",
           "Figures.memory_ratio", _figure("memory_ratio"), datadog=MINUTE),
    Family("gpu_utilization_ratio", "gauge", "series", "ratio",
           "Average GPU utilisation over GPUs, replicas and the window, 0-1.",
           "Figures.gpu_ratio", _figure("gpu_ratio"), datadog=MINUTE),
    Family("gpu_memory_utilization_ratio", "gauge", "series", "ratio", "Average GPU memory utilisation, 0-1.",
           "Figures.gpu_memory_ratio", _figure("gpu_memory_ratio"), datadog=MINUTE),
    Family("provisioned_concurrency", "gauge", "series", "requests",
           "Provisioned concurrency now (the platform's gauge, else the configured capacity: the served entities' maximum provisioned concurrency or what their size implies).",
           "Figures.provisioned_concurrency", _figure("provisioned_concurrency"), datadog=MINUTE),
    Family("required_concurrency", "gauge", "series", "requests",
           "Concurrency the load needs: QPS x mean latency (Little's law).",
           "Figures.required_concurrency", _figure("required_concurrency"), datadog=MINUTE),
    Family("latency_seconds", "gauge", "series", "seconds",
           "Latency percentile over the analysis window, computed as PromQL histogram_quantile does.",
           "Figures.latency_p50, latency_p90, latency_p99", _percentiles("latency"), ("percentile",), MINUTE),
    Family("error_ratio_by_class", "gauge", "series", "ratio",
           "Share of requests answered with this status class over the window.",
           "Figures.error_ratio_4xx, error_ratio_5xx", _error_classes, ("class",), MINUTE),
    Family("queue_depth", "gauge", "series", "requests",
           "Requests waiting for a free slot, averaged over the window: the model server's own waiting-requests gauge "
           "where it has one; else measured by Little's law (arrival rate x mean queue wait) when the platform reports "
           "queue time; else estimated per minute as max(0, QPS x mean latency - provisioned concurrency). "
           "model_serving_queue_depth_method says which.",
           "Figures.queue_depth", _figure("queue_depth"), datadog=MINUTE),
    Family("queue_depth_method", "gauge", "series", "",
           "1 for the method behind model_serving_queue_depth: server (the server's own count), queue_time "
           "(measured) or estimated.",
           "Figures.queue_depth_method", _queue_method, ("method",), MINUTE),
    # Self-hosted model servers and LLM servers: absent where the server does not publish the signal.
    Family("requests_running", "gauge", "series", "requests",
           "Requests being served, the model server's own in-flight gauge summed over replicas, averaged over the window.",
           "Figures.requests_running", _figure("requests_running"), datadog=MINUTE),
    Family("time_to_first_token_seconds", "gauge", "series", "seconds",
           "LLM time to first token, percentile over the analysis window (as histogram_quantile; absent where the "
           "server gives sum and count only).",
           "Figures.ttft_p50, ttft_p90, ttft_p99", _percentiles("ttft"), ("percentile",), MINUTE),
    Family("time_to_first_token_mean_seconds", "gauge", "series", "seconds",
           "LLM mean time to first token over the analysis window.",
           "Figures.ttft_mean", _figure("ttft_mean"), datadog=MINUTE),
    Family("time_per_output_token_seconds", "gauge", "series", "seconds",
           "LLM time per output token (inter-token latency), percentile over the analysis window.",
           "Figures.tpot_p50, tpot_p90, tpot_p99", _percentiles("tpot"), ("percentile",), MINUTE),
    Family("time_per_output_token_mean_seconds", "gauge", "series", "seconds",
           "LLM mean time per output token over the analysis window.",
           "Figures.tpot_mean", _figure("tpot_mean"), datadog=MINUTE),
    Family("prompt_tokens_per_second", "gauge", "series", "tokens_per_second",
           "LLM prompt (prefill) tokens processed per second over the window.",
           "Figures.prompt_tokens_per_second", _figure("prompt_tokens_per_second"), datadog=MINUTE),
    Family("generation_tokens_per_second", "gauge", "series", "tokens_per_second",
           "LLM tokens generated per second over the window.",
           "Figures.generation_tokens_per_second", _figure("generation_tokens_per_second"), datadog=MINUTE),
    Family("kv_cache_utilization_ratio", "gauge", "series", "ratio",
           "LLM KV-cache use of the fullest replica, 0-1, averaged over the window.",
           "Figures.kv_cache_ratio", _figure("kv_cache_ratio"), datadog=MINUTE),
    Family("preemptions_per_second", "gauge", "series", "per_second",
           "LLM sequences preempted (evicted from the KV cache, recomputed or swapped) per second over the window.",
           "Figures.preemptions_per_second", _figure("preemptions_per_second"), datadog=MINUTE),
    Family("replica_up", "gauge", "endpoint", "",
           "Self-hosted: 1 when the replica (label replica: its metrics URL without credentials) answered the last "
           "fetch, else 0.", "EndpointReport.replicas", _replica_up, ("replica",), POLL),
    Family("replicas_answering_ratio", "gauge", "endpoint", "ratio",
           "Self-hosted: share of the endpoint's replicas that answered the last fetch, 0-1.",
           "EndpointReport.replicas", _replicas_answering, datadog=POLL),
    Family("configured_concurrency", "gauge", "endpoint", "requests",
           "Configured min/max provisioned concurrency of a served entity, where its configuration sets them.",
           "ServedEntity.min/max_provisioned_concurrency", _configured, ("served_entity", "bound"), POLL),
    Family("window_coverage_seconds", "gauge", "series", "seconds",
           "Source data in the analysis window: received minutes x 60 (0: no data yet).",
           "Figures.minutes x 60", lambda row: (((), 60.0 * row.figures.minutes),), datadog=MINUTE),
    Family("last_minute_timestamp_seconds", "gauge", "series", "timestamp", "Start of the newest source minute received.",
           "Figures.latest_minute_ms / 1000", _last_minute, datadog=MINUTE),
    Family("target", "gauge", "endpoint", "",
           "Target for a check (a check is breached when its value exceeds the target).",
           "the endpoint's targets (targets, target_overrides)", _targets, ("check",), MINUTE),
    Family("target_breached", "gauge", "series", "",
           "1 when the check's value exceeds its target, else 0 (absent: no data or no target).",
           "SeriesReport.checks", _breached, ("check",), MINUTE),
    Family("remediation", "gauge", "endpoint", "",
           "1 while a remediation hint is active for the endpoint (rule ids: docs/remediation.md; details: /api/v1/endpoints).",
           "EndpointReport.hints", lambda r: (((h.id, h.severity), 1.0) for h in r.hints), ("rule", "severity"), POLL),
    Family("recommended_concurrency", "gauge", "endpoint", "requests",
           "Provisioned concurrency the window supports: min for the quietest minute, max for the busiest, with headroom.",
           "EndpointReport.recommendation", _recommended("concurrency"), ("bound",), MINUTE),
    Family("recommended_replicas", "gauge", "endpoint", "replicas",
           "Self-hosted: replicas the window supports at the per-replica concurrency, min for the quietest minute, "
           "max for the busiest, with headroom.",
           "EndpointReport.recommendation (unit replicas)", _recommended("replicas"), ("bound",), MINUTE),
    Family("endpoint_ready", "gauge", "endpoint", "",
           "1 when the endpoint is ready and its served entities are deployed.",
           "EndpointInfo.serving", lambda r: (((), float(r.info.serving)),), datadog=POLL),
    # Only labels that change with the configuration; state lives in model_serving_endpoint_ready.
    Family("endpoint", "info", "endpoint", "", "Endpoint configuration.", "EndpointInfo", _endpoint_info, (), POLL,
           ("platform", "server", "endpoint_id", "workload_type", "route_optimized", "scale_to_zero", "task", "kind")),
    Family("served_entity", "info", "endpoint", "", "Served entity configuration.", "ServedEntity", _entity_info,
           ("served_entity",), POLL, ("platform", "entity_name", "entity_version", "workload_type", "workload_size",
                                      "deployment_state", "kind")),
    # Counters synthesised from the per-minute counts (Datadog: the per-minute counts themselves).
    Family("requests", "counter", "series", "requests",
           "Requests, accumulated by the exporter from the per-minute counts (resets when the exporter restarts).",
           "Counters.requests", lambda row: (((), row.counters.requests),), datadog=MINUTE),
    Family("request_errors", "counter", "series", "requests",
           "Requests answered 4xx/5xx, accumulated from the per-minute counts.",
           "Counters.errors_4xx, errors_5xx", _error_counts, ("class",), MINUTE),
    Family("request_duration_seconds", "histogram", "series", "seconds",
           "Request latency, accumulated from the per-minute histograms.",
           "Counters.duration", lambda row: (((), row.counters.duration),), datadog=MINUTE),
    # The exporter's view of each endpoint.
    Family("exporter_up", "gauge", "endpoint", "", "1 when the last metrics fetch for the endpoint succeeded.",
           "PollStatus.up", lambda r: (((), 1.0 if r.status.up else 0.0),), datadog=POLL),
    Family("exporter_last_success_timestamp_seconds", "gauge", "endpoint", "timestamp",
           "Time of the last successful metrics fetch for the endpoint.",
           "PollStatus.last_success_s", lambda r: (((), r.status.last_success_s),), datadog=POLL),
    Family("exporter_fetch_duration_seconds", "gauge", "endpoint", "seconds", "Duration of the endpoint's last metrics fetch.",
           "PollStatus.duration_s", lambda r: (((), r.status.duration_s),), datadog=POLL),
    # Each workspace's standard endpoints together (pipeline/workspace.py; label workspace: limits are per
    # workspace). A replica sees its shard's endpoints only (label shard_index): the workspace's figures are the
    # sum over shards (docs/metrics.md).
    Family("workspace_requests_per_second", "gauge", "exporter", "requests_per_second",
           "QPS of the standard (not route-optimized) endpoints of this shard, summed (window means); the workspace "
           "shares about 200 among them. Sum over shard_index.",
           "WorkspaceUsage.qps", _workspace(lambda u: u.qps), (WORKSPACE_LABEL, "shard_index"), POLL),
    Family("workspace_concurrent_requests", "gauge", "exporter", "requests",
           "Concurrent requests to the standard endpoints of this shard: the sum of QPS x mean latency (Little's law). "
           "Sum over shard_index.",
           "WorkspaceUsage.concurrent_requests", _workspace(lambda u: u.concurrent_requests), (WORKSPACE_LABEL, "shard_index"), POLL),
    Family("workspace_standard_endpoints", "gauge", "exporter", "",
           "Standard (not route-optimized) endpoints in this shard's workspace totals.",
           "WorkspaceUsage.endpoints", _workspace(lambda u: float(u.endpoints)), (WORKSPACE_LABEL, "shard_index"), POLL),
    Family("workspace_limit", "gauge", "exporter", "",
           "Limit the workspace sets on its standard endpoints together (workspace_limits): requests_per_second or "
           "concurrent_requests.", "workspace_limits", _workspace_limits, (WORKSPACE_LABEL, "shard_index", "limit"), POLL),
    Family("workspace_limit_usage_ratio", "gauge", "exporter", "ratio",
           "Share of a workspace limit the standard endpoints of this shard use. Sum over shard_index for the workspace's.",
           "WorkspaceUsage.qps_ratio, concurrency_ratio", _workspace_ratios, (WORKSPACE_LABEL, "shard_index", "limit"), POLL),
    Family("workspace_limit_usage_ratio_threshold", "gauge", "exporter", "ratio",
           "Share of a workspace limit from which the workspace_limit_near hint and the ModelServingWorkspaceLimitNear "
           "alert fire (workspace_limits.usage_ratio_threshold).",
           "WorkspaceUsage.threshold", _workspace(lambda u: u.threshold), (WORKSPACE_LABEL, "shard_index"), POLL),
    # The exporter itself.
    Family("exporter_build", "info", "exporter", "", "Version of serving-exporter.", "the package version",
           _build, info_labels=("version", "python_version")),
    Family("exporter_poll_duration_seconds", "gauge", "exporter", "seconds",
           "Duration of the last complete poll of the workspace.",
           "Snapshot.poll_duration_s", lambda s: (((), s.poll_duration_s),), datadog=POLL),
    Family("exporter_last_poll_timestamp_seconds", "gauge", "exporter", "timestamp", "Time the last poll completed.",
           "Snapshot.completed_at_s", lambda s: (((), s.completed_at_s),), datadog=POLL),
    Family("exporter_polls", "counter", "exporter", "", "Polls of the workspace by result.",
           "Snapshot.polls", _polls, ("result",), POLL),
    Family("exporter_fetch_errors", "counter", "exporter", "errors",
           "Failures by workspace, endpoint, call (detail, metrics) and reason (HTTP status class, timeout, parse_error, deadline, ...).",
           "Snapshot.fetch_errors", _fetch_errors, (WORKSPACE_LABEL, ENDPOINT_LABEL, "call", "reason"), Datadog("poll", skip_zero=True)),
    Family("exporter_list_errors", "counter", "exporter", "errors",
           "Failed listings of a workspace's (or the self-hosted) endpoints by reason; the endpoints listed last "
           "stay polled, and those of other workspaces are unaffected.",
           "Snapshot.list_errors", lambda s: ((key, n) for key, n in sorted(s.list_errors.items())),
           (WORKSPACE_LABEL, "reason"), Datadog("poll", skip_zero=True)),
    Family("exporter_discovery_errors", "counter", "exporter", "errors",
           "Failed target discoveries of a self-hosted endpoint by reason (dns, file_sd: the last good target list "
           "is kept), and listings that left it out because a Databricks endpoint has its name (name_clash).",
           "Snapshot.discovery_errors", lambda s: ((key, n) for key, n in sorted(s.discovery_errors.items())),
           (ENDPOINT_LABEL, "reason"), Datadog("poll", skip_zero=True)),
    Family("exporter_api_requests", "counter", "exporter", "requests",
           "Calls to the platform's API by workspace, call (list, detail, metrics, token) and outcome (2xx, 3xx, 429, 4xx, 5xx, "
           "timeout, connection), retries included: what the exporter costs the workspace's rate limits.",
           "Source.usage", lambda s: ((key, float(n)) for key, n in sorted(s.api_requests.items())),
           (WORKSPACE_LABEL, "call", "outcome"), Datadog("poll", skip_zero=True)),
    Family("exporter_api_retries", "counter", "exporter", "requests",
           "Calls to the platform's API repeated after a 429/503 (honouring Retry-After) or a dropped connection.",
           "Source.usage", lambda s: ((key, float(n)) for key, n in sorted(s.api_retries.items())), (WORKSPACE_LABEL, "call"),
           Datadog("poll", skip_zero=True)),
    Family("exporter_shard", "info", "exporter", "",
           "This replica's share of the endpoints (shard_index of shard_count).", "Snapshot.shard",
           lambda s: (((), {"shard_index": str(s.shard[0]), "shard_count": str(s.shard[1])}),),
           info_labels=("shard_index", "shard_count")),
    Family("exporter_endpoints", "gauge", "exporter", "",
           "Endpoints found in the workspace (discovered) and polled by this replica after filtering and sharding (selected).",
           "Snapshot.discovered, len(Snapshot.endpoints)",
           lambda s: ((("discovered",), float(s.discovered)), (("selected",), float(len(s.endpoints)))), ("state",), POLL),
    # Prometheus's own names for its reload outcome (prometheus_config_last_reload_*), under the exporter's prefix.
    Family("exporter_config_last_reload_successful", "gauge", "exporter", "",
           "1 when the last configuration reload (SIGHUP or POST /-/reload) was valid and applied, 0 when it was refused "
           "and the previous configuration stays in force.",
           "Snapshot.config_reload.successful", _reload(lambda r: float(r.successful)), datadog=POLL),
    Family("exporter_config_last_reload_success_timestamp_seconds", "gauge", "exporter", "timestamp",
           "Time of the last successful configuration load (the start, or a reload).",
           "Snapshot.config_reload.last_success_s", _reload(lambda r: r.last_success_s), datadog=POLL),
    Family("exporter_render_errors", "gauge", "exporter", "",
           "Endpoints left out of this exposition because they failed to render (a bug; see the log).",
           "counted while the snapshot is rendered", _not_from_snapshot),
)

BY_NAME = {f.name: f for f in FAMILIES}


def of_scope(scope: str) -> tuple[Family, ...]:
    return tuple(f for f in FAMILIES if f.scope == scope)


def samples(family: Family, subject: Any) -> Iterator[tuple[tuple[str, ...], Any]]:
    """The family's samples for one subject, without the absent (None) ones."""
    for labels, value in family.read(subject):
        if value is not None:
            yield labels, value


# -- docs -----------------------------------------------------------------------------------------

_TYPE_SUFFIX = {"counter": "_total", "info": "_info", "histogram": "_bucket/_sum/_count", "gauge": ""}


def markdown_table() -> str:
    """The family table of docs/metrics.md."""
    lines = ["| family | type | unit | labels | what it is | read from |", "|---|---|---|---|---|---|"]
    for f in FAMILIES:
        name = f"`{f.prometheus_name}{_TYPE_SUFFIX[f.type]}`"
        labels = ", ".join(f"`{n}`" for n in f.label_names + f.info_labels) or "—"
        lines.append(f"| {name} | {f.type} | {f.unit.replace('_', ' ') or '—'} | {labels} | {f.help} | {f.reads} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown_table())
