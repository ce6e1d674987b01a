"""Plain data passed from the sources through analysis to the sinks.

Everything here is immutable once built: the poller produces new objects every
poll and the sinks (Prometheus collector, JSON API) only ever read them.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Literal

# ---------------------------------------------------------------------------
# Endpoint configuration, in the platform's own words where they are only shown
# (workload_type, state, deployment_state) and in neutral fields where the pipeline
# decides something (compute, ready, deployed, capacity). Sources fill both.


@dataclass(frozen=True)
class ServedEntity:
    name: str
    entity_name: str | None = None
    entity_version: str | None = None
    workload_type: str | None = None  # the platform's name for the compute, shown as is
    workload_size: str | None = None  # the platform's size name, shown as is
    compute: Literal["cpu", "gpu"] | None = None  # what the workload runs on, when the source knows
    scale_to_zero_enabled: bool | None = None
    min_provisioned_concurrency: int | None = None
    max_provisioned_concurrency: int | None = None
    sized_capacity: float | None = None  # concurrency the platform's size implies, where no maximum is configured
    deployment_state: str | None = None  # the platform's word, shown as is
    deployed: bool | None = None  # True: serving; False: not (yet or any more); None: not said
    deployment_failed: bool = False  # the last deployment failed or was aborted
    kind: Literal["custom", "foundation_model", "external_model"] = "custom"
    traffic_percentage: float | None = None

    @property
    def is_gpu(self) -> bool:
        return self.compute == "gpu"

    @property
    def capacity(self) -> float | None:
        """Configured maximum concurrency, if the configuration tells."""
        if self.max_provisioned_concurrency is not None:
            return float(self.max_provisioned_concurrency)
        return self.sized_capacity


@dataclass(frozen=True)
class RateLimit:
    """A gateway rate limit on calls to the endpoint (Databricks: AI Gateway `rate_limits`)."""

    calls: int | None  # calls allowed per renewal period; None: the limit is on tokens only
    renewal_seconds: float | None  # None: a period the source does not know
    key: str | None = None  # who the limit applies to: "endpoint" (all callers together), "user", ...; None: not said

    @property
    def per_endpoint(self) -> bool:
        """Whether the limit caps the endpoint's whole traffic (not each caller's)."""
        return self.key in (None, "endpoint")

    @property
    def qps(self) -> float | None:
        return self.calls / self.renewal_seconds if self.calls is not None and self.renewal_seconds else None


@dataclass(frozen=True)
class Replica:
    """One scrape target of a self-hosted endpoint (a replica of the model server) in the last fetch."""

    target: str  # its metrics URL, without credentials
    up: bool
    error: str | None = None  # a short reason when down, never a credential


@dataclass(frozen=True)
class EndpointInfo:
    """What the list call tells about an endpoint, enriched by the detail call when fetched."""

    name: str
    platform: str = ""  # the source's platform, e.g. databricks or self-hosted
    server: str | None = None  # self-hosted: the model server kind (vllm, triton, ...), once known
    id: str | None = None
    ready: bool | None = None  # the platform says the endpoint serves; None: not said
    state: str | None = None  # the platform's word for its readiness, shown as is
    config_update: str | None = None  # the platform's word for its configuration update, shown as is
    update_failed: bool = False  # the last configuration update failed or was cancelled
    tags: dict[str, str] = field(default_factory=dict)
    task: str | None = None
    last_updated_ms: int | None = None
    served_entities: tuple[ServedEntity, ...] = ()
    route_optimized: bool | None = None  # None until the detail call says, or where the platform has none
    detailed: bool = False  # whether workload/scaling fields are known
    rate_limits: tuple[RateLimit, ...] = ()  # from the detail call
    # The `workspace` label: the configured workspace name, or the host of the one workspace of `databricks:`;
    # None where there is no workspace (self-hosted). An endpoint is identified by (workspace, name): `key`.
    workspace: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        """What identifies the endpoint across sources: two workspaces may each have an endpoint `chat`."""
        return self.workspace or "", self.name

    @property
    def kind(self) -> str:
        """custom, foundation_model, external_model or mixed (for route-optimization eligibility)."""
        kinds = {e.kind for e in self.served_entities}
        return kinds.pop() if len(kinds) == 1 else ("mixed" if kinds else "custom")

    @property
    def workload_type(self) -> str | None:
        types = sorted({e.workload_type for e in self.served_entities if e.workload_type})
        return ",".join(types) or None

    @property
    def capacity(self) -> float | None:
        """Configured capacity summed over entities: the denominator for load estimates."""
        values = [e.capacity for e in self.served_entities]
        return sum(values) if values and all(v is not None for v in values) else None  # type: ignore[misc]

    @property
    def serving(self) -> bool:
        """Ready, with every served entity deployed (an entity that does not say counts as deployed)."""
        return self.ready is True and all(e.deployed is not False for e in self.served_entities)

    @property
    def scale_to_zero(self) -> bool | None:
        """Whether any served entity scales to zero; None until the detailed configuration is known."""
        return any(e.scale_to_zero_enabled for e in self.served_entities) if self.detailed else None


# ---------------------------------------------------------------------------
# One minute of health metrics.


@dataclass(frozen=True)
class Histogram:
    """Cumulative buckets in seconds; the last bound is +Inf."""

    bounds: tuple[float, ...]
    counts: tuple[float, ...]
    sum: float
    count: float

    def __post_init__(self) -> None:
        if len(self.bounds) != len(self.counts):
            raise ValueError("bounds and counts differ in length")

    def same_layout(self, other: Histogram) -> bool:
        return self.bounds == other.bounds

    def plus(self, other: Histogram) -> Histogram:
        return Histogram(
            self.bounds,
            tuple(map(operator.add, self.counts, other.counts)),
            self.sum + other.sum,
            self.count + other.count,
        )

    def minus(self, earlier: Histogram) -> Histogram | None:
        """The observations added since `earlier`, or None if any series went down (a reset)."""
        if not self.same_layout(earlier) or self.count < earlier.count:
            return None
        counts = tuple(map(operator.sub, self.counts, earlier.counts))
        if any(c < 0 for c in counts):
            return None
        return Histogram(self.bounds, counts, self.sum - earlier.sum, self.count - earlier.count)

    @property
    def mean(self) -> float | None:
        return self.sum / self.count if self.count > 0 else None


@dataclass(frozen=True)
class MinuteFigures:
    """Figures of one source minute for one endpoint or served entity, in base units (None = not reported).

    Counts are the minute's own (not cumulative); histograms are per minute too, unless the source says
    it cannot tell (`Observation.histograms`)."""

    requests: float | None = None
    errors_4xx: float | None = None
    errors_5xx: float | None = None
    latency: Histogram | None = None  # per-minute (cumulative sources are differenced first)
    queue_time: Histogram | None = None
    cpu_ratio: float | None = None
    memory_ratio: float | None = None
    gpu_ratio: float | None = None
    gpu_memory_ratio: float | None = None
    provisioned_concurrency: float | None = None
    # Self-hosted model servers: gauges summed over the replicas that answered, counts for the minute.
    queue_depth: float | None = None  # requests waiting, from the server's own gauge (measured, not estimated)
    requests_running: float | None = None  # requests being served now, the server's own gauge
    # LLM servers. Latency-like histograms in seconds, per minute; a histogram with the +Inf bound only
    # carries a mean (sum and count), never percentiles.
    ttft: Histogram | None = None  # time to first token
    tpot: Histogram | None = None  # time per output token (inter-token latency)
    prompt_tokens: float | None = None
    generation_tokens: float | None = None
    kv_cache_ratio: float | None = None  # KV-cache use 0-1 of the fullest replica
    preemptions: float | None = None


_MINUTE_FIELDS = tuple(f.name for f in fields(MinuteFigures))
_MINUTE_VALUES = operator.attrgetter(*_MINUTE_FIELDS)  # every field's value, read in C
_NONES = (None,) * len(_MINUTE_FIELDS)
_REPORTED: dict[tuple[bool, ...], frozenset[str]] = {}  # which fields are not None -> their names


def reported_fields(minute: MinuteFigures) -> frozenset[str]:
    """The fields a minute reports (not None); analysis skips the fields no minute of a window reports (most, for
    any one platform). One set per distinct combination, shared by the minutes that have it (a set per minute cost
    0.7 KB each). The window keeps each stored minute's, next to it: cached on the minute instead, it made CPython
    materialise the minute's `__dict__` (64 B more per minute, measured with tracemalloc)."""
    present = tuple(map(operator.is_not, _MINUTE_VALUES(minute), _NONES))
    names = _REPORTED.get(present)
    if names is None:
        if len(_REPORTED) >= 1024:  # a handful in practice; bounded all the same
            _REPORTED.clear()
        names = _REPORTED[present] = frozenset(name for name, there in zip(_MINUTE_FIELDS, present) if there)
    return names


# ---------------------------------------------------------------------------
# Results of analysis.

@dataclass(frozen=True)
class Check:
    name: str
    value: float | None
    target: float | None

    @property
    def evaluated(self) -> bool:
        return self.value is not None and self.target is not None and not math.isnan(self.value)

    @property
    def breached(self) -> bool:
        """A check is breached when its value exceeds its target; no data or no target never breaches."""
        return self.evaluated and self.value > self.target  # type: ignore[operator]


@dataclass(frozen=True)
class Counters:
    """Cumulative counters synthesised from per-minute counts, so Prometheus can take rates."""

    requests: float = 0.0
    errors_4xx: float = 0.0
    errors_5xx: float = 0.0
    duration: Histogram | None = None


@dataclass(frozen=True)
class Figures:
    """What analysis derives over the window for one endpoint or served entity."""

    minutes: int = 0  # source minutes in the window
    latest_minute_ms: int | None = None
    qps: float | None = None
    qps_min: float | None = None  # quietest and busiest source minute in the window
    qps_max: float | None = None
    latency_p50: float | None = None
    latency_p90: float | None = None
    latency_p99: float | None = None
    latency_mean: float | None = None
    error_ratio: float | None = None
    error_ratio_4xx: float | None = None
    error_ratio_5xx: float | None = None
    queue_depth: float | None = None
    queue_wait_mean: float | None = None  # seconds, when the platform reports queue time
    queue_depth_method: Literal["queue_time", "server", "estimated"] | None = None
    cpu_ratio: float | None = None
    memory_ratio: float | None = None
    gpu_ratio: float | None = None
    gpu_memory_ratio: float | None = None
    provisioned_concurrency: float | None = None
    required_concurrency: float | None = None
    # Self-hosted and LLM servers (None where the server does not publish the signal).
    requests_running: float | None = None
    ttft_p50: float | None = None
    ttft_p90: float | None = None
    ttft_p99: float | None = None
    ttft_mean: float | None = None
    tpot_p50: float | None = None
    tpot_p90: float | None = None
    tpot_p99: float | None = None
    tpot_mean: float | None = None
    prompt_tokens_per_second: float | None = None
    generation_tokens_per_second: float | None = None
    kv_cache_ratio: float | None = None
    preemptions_per_second: float | None = None


@dataclass(frozen=True)
class SeriesReport:
    """Figures, checks and counters for an endpoint (entity None) or one served entity."""

    entity: str | None
    figures: Figures
    checks: tuple[Check, ...]
    counters: Counters
    # Each window minute analysed on its own, oldest first (the status page's charts); endpoint series only.
    # A lazy sequence from the poller (pipeline/window.py PerMinute): analysed when a page reads it.
    minutes: Sequence[Figures] = ()


@dataclass(frozen=True)
class PollStatus:
    up: bool
    last_success_s: float | None  # wall-clock time of the last successful metrics fetch
    last_error: str | None = None  # a short reason, never a credential
    duration_s: float | None = None


Severity = Literal["critical", "warning", "info"]


@dataclass(frozen=True)
class Hint:
    """An active remediation hint (see exporter/rules.py)."""

    id: str
    severity: Severity
    summary: str
    detail: str
    since_s: float


@dataclass(frozen=True)
class Recommendation:
    """Provisioned-concurrency settings the window's data supports (self-hosted endpoints: replicas)."""

    min_concurrency: int  # in `unit`
    max_concurrency: int
    basis: str
    unit: Literal["concurrency", "replicas"] = "concurrency"


@dataclass(frozen=True)
class EndpointReport:
    info: EndpointInfo
    endpoint: SeriesReport
    entities: tuple[SeriesReport, ...]
    status: PollStatus
    hints: tuple[Hint, ...] = ()
    recommendation: Recommendation | None = None
    replicas: tuple[Replica, ...] = ()  # self-hosted: each scrape target in the last fetch


@dataclass(frozen=True)
class WorkspaceUsage:
    """The standard (not route-optimized) endpoints of a snapshot together, against the limits the platform
    sets per workspace on them (pipeline/workspace.py)."""

    qps: float  # summed window QPS
    concurrent_requests: float  # summed QPS x mean latency (Little's law)
    endpoints: int  # standard endpoints counted
    qps_limit: float
    concurrency_limit: float
    threshold: float  # share of a limit from which endpoints are named to move
    candidates: tuple[tuple[str, float], ...] = ()  # (endpoint, QPS) to move to route optimization first, in order
    ratio_after: float | None = None  # the larger share once the candidates moved

    @property
    def qps_ratio(self) -> float:
        return self.qps / self.qps_limit

    @property
    def concurrency_ratio(self) -> float:
        return self.concurrent_requests / self.concurrency_limit

    @property
    def ratio(self) -> float:
        return max(self.qps_ratio, self.concurrency_ratio)

    @functools.cached_property
    def rank(self) -> dict[str, int]:
        """Candidate endpoint -> its place in the order, from 0."""
        return {name: i for i, (name, _) in enumerate(self.candidates)}


@dataclass(frozen=True)
class ConfigReload:
    """The outcome of the last configuration (re)load: whether it was valid and applied, and when one last was."""

    successful: bool
    last_success_s: float


@dataclass(frozen=True)
class Snapshot:
    """Everything the sinks expose, replaced atomically after each poll."""

    endpoints: tuple[EndpointReport, ...] = ()
    completed_at_s: float | None = None
    poll_duration_s: float | None = None
    polls: dict[str, float] = field(default_factory=dict)  # outcome -> count
    fetch_errors: dict[tuple[str, str, str, str], float] = field(default_factory=dict)  # (workspace, endpoint, call, reason) -> count
    list_errors: dict[tuple[str, str], float] = field(default_factory=dict)  # (workspace, reason) -> failed listings
    # Self-hosted: (endpoint, reason) -> failed target discoveries (dns, file_sd) and listings that left the
    # endpoint out for a Databricks namesake (name_clash).
    discovery_errors: dict[tuple[str, str], float] = field(default_factory=dict)
    api_requests: dict[tuple[str, str, str], float] = field(default_factory=dict)  # (workspace, call, outcome) -> count
    api_retries: dict[tuple[str, str], float] = field(default_factory=dict)  # (workspace, call) -> count
    discovered: int = 0
    workspace: str | None = None
    shard: tuple[int, int] = (0, 1)  # (index, count)
    # This replica's standard endpoints against the limits of their workspace, by workspace (`workspace` label).
    usages: dict[str, WorkspaceUsage] = field(default_factory=dict)
    config_reload: ConfigReload | None = None  # set by the daemon (a one-shot poll has none)

    @property
    def usage(self) -> WorkspaceUsage | None:
        """The workspace usage where the snapshot has one workspace (None with several: see `usages`)."""
        return next(iter(self.usages.values())) if len(self.usages) == 1 else None

    @property
    def ready(self) -> bool:
        """Ready once a poll has listed the workspace successfully."""
        return self.polls.get("success", 0) > 0
