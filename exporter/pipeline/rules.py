"""Remediation hints: the rule table and the engine that applies it with hysteresis.

Each rule turns an action from the serving guide into a condition over an
endpoint's figures, configuration and state, plus a detail text carrying the
endpoint's own numbers. The table is data: docs/remediation.md is generated from
it (`python -m exporter.pipeline.rules`), and dashboards, alerts and runbooks link
rules by their stable `id`. The rule engine owns its settings (`remediation:`).

A hint fires only after its condition held for `fire_after_polls` consecutive polls
that brought new data (a new source minute, or a fresh configuration read for the
configuration-only rules), and clears after `clear_after_polls` polls without it, so
a value oscillating around a threshold does not flap. Missing data never fires a rule;
stale data (a failing fetch, no new minute) changes nothing.
"""

from __future__ import annotations

import functools

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import Field, field_validator

from ..model import Check, EndpointInfo, Figures, Hint, Recommendation, Replica, Severity, WorkspaceUsage
from ..strict import Strict, patch_of
from .selection import Selector

# -- settings (the `remediation:` section) ----------------------------------------------------


class Thresholds(Strict):
    """Numbers the remediation rules use besides the targets (docs/remediation.md says which rule uses which)."""

    headroom_ratio: float = Field(0.15, ge=0, le=2, description="spare capacity added to a recommended concurrency")
    saturation_ratio: float = Field(0.9, gt=0, description="load / capacity at or above which an endpoint counts as saturated")
    throttled_4xx_ratio: float = Field(0.005, ge=0, le=1, description="4xx share (429s included) that counts as throttling when saturated")
    oversize_factor: float = Field(3.0, gt=1, description="capacity this many times the peak need is oversized")
    variable_load_ratio: float = Field(1.5, gt=1, description="busiest / quietest minute QPS from which load counts as varying")
    route_optimization_qps: float = Field(200.0, gt=0, description="QPS above which a standard endpoint needs route optimization")
    route_optimized_qps_limit: float = Field(50_000.0, gt=0, description="QPS a route-optimized endpoint serves at most")
    strict_latency_seconds: float = Field(0.05, gt=0, description="a P50 target at or below this is strict (route optimization helps)")
    low_cpu_ratio: float = Field(0.3, ge=0, le=1, description="CPU below this while slow points outside the model")
    gpu_idle_ratio: float = Field(0.1, ge=0, le=1, description="GPU use below this is idle")
    concurrency_limit: int = Field(1024, ge=1, description="platform limit of provisioned concurrency per served entity")
    concurrency_limit_ratio: float = Field(0.8, gt=0, le=1, description="share of the limit from which it counts as near")
    batching_qps: float = Field(100.0, gt=0, description="QPS above which light requests are worth batching")
    light_request_seconds: float = Field(0.02, gt=0, description="mean service time below which a request is light")
    production_tags: list[str] = Field(default_factory=lambda: ["env=production", "env=prod", "environment=production", "environment=prod"],
                                       description="KEY=VALUE endpoint tags that mark production")
    fast_latency_target_seconds: float = Field(0.1, gt=0, description="a latency target under this needs route optimization (serving-exporter check)")


ThresholdsPatch = patch_of(Thresholds, "Only the keys written here override the global thresholds.", nullable=False)


class RemediationOverride(Strict):
    match: Selector
    disabled: list[str] = Field(default_factory=list, description="rule ids switched off for the matched endpoints")
    thresholds: ThresholdsPatch = Field(default_factory=ThresholdsPatch)  # type: ignore[valid-type]

    @field_validator("disabled")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        return _known_rules(value)


class Remediation(Strict):
    """Remediation hints: hysteresis, thresholds, and which rules run where."""

    fire_after_polls: int = Field(2, ge=1, description="consecutive polls with new data a condition must hold before its hint fires")
    clear_after_polls: int = Field(2, ge=1, description="consecutive polls without the condition before an active hint clears")
    sustained_polls: int = Field(10, ge=1, description="fire_after_polls for cost hints (oversized, idle GPU), which need a sustained pattern")
    disabled: list[str] = Field(default_factory=list, description="rule ids switched off everywhere")
    thresholds: Thresholds = Field(default_factory=Thresholds)
    overrides: list[RemediationOverride] = Field(default_factory=list, description="per-endpoint thresholds and disabled rules; later entries win")

    @field_validator("disabled")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        return _known_rules(value)

    def for_endpoint(self, info: EndpointInfo) -> tuple[Thresholds, frozenset[str]]:
        thresholds, disabled = self.thresholds, set(self.disabled)
        for override in self.overrides:
            if override.match.matches(info):
                changes = {k: getattr(override.thresholds, k) for k in override.thresholds.model_fields_set}
                thresholds = thresholds.model_copy(update=changes)
                disabled |= set(override.disabled)
        return thresholds, frozenset(disabled)


def _known_rules(ids: list[str]) -> list[str]:
    unknown = [i for i in ids if i not in RULE_IDS]
    if unknown:
        raise ValueError(f"unknown rule id(s) {', '.join(unknown)}; known: {', '.join(sorted(RULE_IDS))}")
    return ids



# -- what a rule sees ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    """What a rule sees: one endpoint's figures, configuration, checks and thresholds."""

    info: EndpointInfo
    figures: Figures
    checks: dict[str, Check]
    targets: dict[str, float | None]
    t: Thresholds
    workspace: WorkspaceUsage | None = None  # the workspace step's totals (pipeline/workspace.py); None elsewhere
    replicas: tuple[Replica, ...] = ()  # self-hosted: the scrape targets of the last fetch

    # The properties are cached (on the instance's __dict__, which a frozen dataclass allows): one Context serves
    # every rule of one endpoint and poll, and several rules ask the same.
    @functools.cached_property
    def service_time(self) -> float | None:
        """Mean time in service: latency without the queue wait, when the platform reports it."""
        f = self.figures
        if f.latency_mean is None:
            return None
        return max(0.0, f.latency_mean - (f.queue_wait_mean or 0.0))

    def need(self, qps: float | None) -> float | None:
        """Concurrency a load needs without queueing: QPS x service time (Little's law)."""
        return qps * self.service_time if qps is not None and self.service_time is not None else None

    @functools.cached_property
    def capacity(self) -> float | None:
        """The most the endpoint can provision: the configured maximum, else what it has now."""
        return self.info.capacity or self.figures.provisioned_concurrency

    def suggest(self, concurrency: float) -> int:
        """A concurrency setting for this need: headroom added, rounded up, within the platform limit."""
        limit = self.t.concurrency_limit * max(1, len(self.info.served_entities))
        return int(min(limit, max(1, math.ceil(concurrency * (1 + self.t.headroom_ratio) - 1e-9))))

    @property
    def self_hosted(self) -> bool:
        """A self-hosted model server: scaled in replicas, none of a managed platform's settings apply."""
        return self.info.platform == SELF_HOSTED

    @functools.cached_property
    def replicas_up(self) -> int:
        return sum(r.up for r in self.replicas)

    @functools.cached_property
    def per_replica(self) -> float | None:
        """Concurrency one replica serves: the endpoint's configured capacity (replicas answering x per-replica
        concurrency, ServedEntity.sized_capacity) over the replicas answering."""
        cap = self.info.capacity
        return cap / self.replicas_up if cap and self.replicas_up else None

    def replicas_for(self, concurrency: float) -> int | None:
        """Replicas this need takes, headroom added; None when the per-replica concurrency is unknown."""
        if self.per_replica is None:
            return None
        return max(1, math.ceil(concurrency * (1 + self.t.headroom_ratio) / self.per_replica - 1e-9))

    def add_capacity(self, need: float) -> str:
        """What to do for a concurrency need above the capacity, in the platform's terms."""
        if not self.self_hosted:
            return f"raise max_provisioned_concurrency to at least {self.suggest(need)}"
        wanted = self.replicas_for(need)
        if wanted is None:
            return "add replicas (set per_replica_concurrency for a number)"
        return (f"run {wanted} replicas (add {max(0, wanted - self.replicas_up)}: {need:.1f} concurrent requests / "
                f"{self.per_replica:g} per replica, +{100 * self.t.headroom_ratio:g}% headroom)")

    def breached(self, *names: str) -> list[Check]:
        return [self.checks[n] for n in names if n in self.checks and self.checks[n].breached]

    @functools.cached_property
    def saturated(self) -> bool:
        need, cap = self.need(self.figures.qps), self.capacity
        queueing = bool(self.breached("queue_depth"))
        return queueing or (need is not None and bool(cap) and need >= self.t.saturation_ratio * cap)  # type: ignore[operator]

    @functools.cached_property
    def autoscaling_off(self) -> bool:
        entities = self.info.served_entities
        return bool(entities) and all(
            e.min_provisioned_concurrency is not None and e.min_provisioned_concurrency == e.max_provisioned_concurrency
            and not e.scale_to_zero_enabled for e in entities)

    @functools.cached_property
    def production(self) -> bool:
        tags = {f"{k}={v}".lower() for k, v in self.info.tags.items()}
        return any(t.lower() in tags for t in self.t.production_tags)


@dataclass(frozen=True)
class Rule:
    id: str
    severity: Severity
    summary: str  # static: safe as a label, stable across polls
    when: str  # docs: the condition in words
    why: str  # docs: why it matters
    action: str  # docs: what to do
    guide: str  # docs: the serving-guide action this implements
    needs: tuple[str, ...]  # Figures attributes that must be present; "config" = detailed configuration
    detail: Callable[[Context], str | None]  # the detail text when the condition holds, else None
    thresholds: tuple[str, ...] = ()  # docs: which thresholds/targets it uses
    sustained: bool = False  # fires after sustained_polls instead of fire_after_polls
    managed_only: bool = False  # advice on a managed platform's settings: never for self-hosted endpoints

    def applies(self, info: EndpointInfo) -> bool:
        return not (self.managed_only and info.platform == SELF_HOSTED)

    @functools.cached_property
    def uses_metrics(self) -> bool:
        return any(n != "config" for n in self.needs)

    @functools.cached_property
    def needs_config(self) -> bool:
        return "config" in self.needs

    @functools.cached_property
    def needed_figures(self) -> tuple[str, ...]:
        return tuple(n for n in self.needs if n != "config")


SELF_HOSTED = "self-hosted"  # EndpointInfo.platform of self-hosted model servers


# -- conditions ------------------------------------------------------------------------------


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _s(x: float) -> str:
    return f"{x:.3g} s"


def _latency_high(c: Context) -> str | None:
    over = c.breached("latency_p50", "latency_p90", "latency_p99")
    if not over:
        return None
    worst = over[-1]
    head = f"{worst.name.removeprefix('latency_').upper()} {_s(worst.value)} exceeds its target {_s(worst.target)}"  # type: ignore[arg-type]
    f = c.figures
    if f.queue_wait_mean is not None and f.latency_mean and f.queue_wait_mean >= 0.2 * f.latency_mean:
        return (f"{head}; queueing explains it: requests wait {_s(f.queue_wait_mean)} of the {_s(f.latency_mean)} "
                "mean latency — add capacity (see the queueing hint)")
    if f.queue_depth:
        return f"{head}; queueing explains it: {f.queue_depth:.1f} requests wait on average — add capacity"
    return (f"{head} without queueing: the time is spent serving (mean {_s(f.latency_mean or 0)}) — make the model "
            "faster (smaller, quantized or pruned), move heavy pre/post-processing out of the endpoint, keep payloads small")


def _errors_high(c: Context) -> str | None:
    if not c.breached("error_ratio"):
        return None
    f = c.figures
    e4, e5 = f.error_ratio_4xx or 0.0, f.error_ratio_5xx or 0.0
    head = f"error ratio {_pct(f.error_ratio or 0)} exceeds its target {_pct(c.targets['error_ratio'] or 0)} (5xx {_pct(e5)}, 4xx {_pct(e4)})"
    if e5 >= e4 and c.saturated:
        return (f"{head}: 5xx lead while the endpoint is saturated — an overloaded server answers 503 for what its "
                "full queue rejects (Triton: REJECTED), a capacity problem: add capacity (see the queueing hint), then "
                "read the service logs for what remains")
    if e5 >= e4:
        return f"{head}: server errors lead — read the endpoint's service logs and the model's errors"
    if c.saturated:
        return f"{head}: 4xx lead while the endpoint is saturated, so they are mostly 429s — a capacity problem (see the throttled and queueing hints)"
    return f"{head}: 4xx lead without saturation — check client requests (payloads, permissions) in the service logs"


def _throttled(c: Context) -> str | None:
    f = c.figures
    if (f.error_ratio_4xx or 0) < c.t.throttled_4xx_ratio or not c.saturated:
        return None
    need, base = c.need(f.qps), c.need(f.qps_min)
    head = (f"{_pct(f.error_ratio_4xx or 0)} of requests answered 4xx (429 included) while the endpoint is saturated "
            f"(load needs {need or 0:.1f} concurrent requests, capacity {c.capacity or 0:g}): make clients retry with "
            "exponential backoff and ")
    if c.self_hosted:
        return head + c.add_capacity(need or 0)
    return head + f"raise min_provisioned_concurrency to at least {c.suggest(base if base is not None else need or 0)}"


_QUEUE_HOW = {"server": "the server's own count of waiting requests", "queue_time": "measured from queue time",
              "estimated": "estimated from load against capacity"}


def _queueing(c: Context) -> str | None:
    if not c.breached("queue_depth"):
        return None
    f = c.figures
    how = _QUEUE_HOW[f.queue_depth_method or "estimated"]
    text = f"queue depth {f.queue_depth:.1f} ({how}) over its target {c.targets['queue_depth']:g}"
    cap = c.capacity
    if c.self_hosted:
        return text + _queueing_self_hosted(c)
    need = c.need(f.qps_max if f.qps_max is not None else f.qps)
    if need is not None and cap and c.suggest(need) > cap:
        text += (f": the busiest minute needs {need:.1f} concurrent requests against at most {cap:g} — raise "
                 f"max_provisioned_concurrency to at least {c.suggest(need)}")
    elif need is not None:
        text += (f" although the maximum ({cap or 0:g}) covers the busiest minute's {need:.1f}: autoscaling lags bursts — "
                 f"raise min_provisioned_concurrency to at least {c.suggest(need)} and make clients retry with backoff")
    if c.autoscaling_off:
        text += "; autoscaling is off (min = max): enable it so capacity follows demand"
    return text


def _queueing_self_hosted(c: Context) -> str:
    """A model server queues when its running requests reach its concurrency (add replicas), or before that when
    something else holds requests back (an LLM server: a full KV cache admits no more sequences)."""
    f, cap = c.figures, c.capacity
    running = f.requests_running
    # Sized for the offered load (Little's law over the service time) and at least what runs now, not for running +
    # waiting: the waiting count is a backlog, bounded by clients giving up, and would over-size the fleet.
    need, basis = c.need(f.qps_max if f.qps_max is not None else f.qps), "the busiest minute's load"
    if running is not None and f.queue_depth_method == "server":
        if need is None:  # without a service time: what the server holds, counted by itself
            need, basis = running + (f.queue_depth or 0), f"{running:.1f} running + {f.queue_depth:.1f} waiting"
        elif running > need:
            need, basis = running, f"{running:.1f} running (more than the load's {need:.1f})"
    if running is not None and cap and running < c.t.saturation_ratio * cap:
        if c.breached("kv_cache_utilization"):
            return (f" with only {running:.1f} of {cap:g} running: the KV cache ({_pct(f.kv_cache_ratio or 0)}) is full, "
                    "so the server admits no more sequences — see the kv_cache_full hint")
        return (f" with only {running:.1f} of {cap:g} running: the server holds requests back below the configured "
                "concurrency — check its batch limits (e.g. --max-num-seqs) and per_replica_concurrency")
    if need is None:
        return ": add replicas"
    return f": {basis} need {need:.1f} concurrent requests against {cap or 0:g} — {c.add_capacity(need)}"


def _concurrency_undersized(c: Context) -> str | None:
    f, cap = c.figures, c.capacity
    need = c.need(f.qps)
    if need is None or not cap or need <= cap:
        return None
    what = "the replicas' concurrency" if c.self_hosted else "max provisioned concurrency"
    return (f"required concurrency {need:.1f} ({f.qps:.3g} QPS × {_s(c.service_time or 0)}) exceeds {what} "
            f"{cap:g}: {c.add_capacity(need)} (confirm with a load test)")


def _concurrency_oversized(c: Context) -> str | None:
    f = c.figures
    peak = c.need(f.qps_max)
    have = f.provisioned_concurrency
    if peak is None or not have or have <= c.t.oversize_factor * max(peak, 1.0):
        return None
    if c.self_hosted:
        wanted = c.replicas_for(peak)
        if wanted is None or wanted >= c.replicas_up:
            return None
        return (f"{c.replicas_up} replicas serve {have:g} concurrent requests but the busiest minute needs {peak:.1f} "
                f"({f.qps_max:.3g} QPS × {_s(c.service_time or 0)}): {wanted} replicas would do, to cut cost")
    return (f"{have:g} provisioned but the busiest minute needs {peak:.1f} ({f.qps_max:.3g} QPS × {_s(c.service_time or 0)}): "
            f"lower min_provisioned_concurrency to {c.suggest(c.need(f.qps_min) or 0)} and max_provisioned_concurrency to "
            f"{c.suggest(peak)} to cut cost")


def _autoscaling_disabled(c: Context) -> str | None:
    f = c.figures
    if not c.autoscaling_off:
        return None
    varies = f.qps_min is not None and f.qps_max is not None and f.qps_max >= c.t.variable_load_ratio * max(f.qps_min, 1e-9)
    queues = bool(c.breached("queue_depth"))
    if not (varies or queues):
        return None
    fixed = c.info.served_entities[0].min_provisioned_concurrency
    why = f"QPS ranged {f.qps_min:.3g}–{f.qps_max:.3g}" if varies else "requests queue"
    base, peak = c.need(f.qps_min), c.need(f.qps_max)
    advice = f": set min_provisioned_concurrency {c.suggest(base)} for the baseline and max {c.suggest(peak)} for peaks" \
        if base is not None and peak is not None else ": enable autoscaling"
    return f"autoscaling is off (min = max = {fixed}) while {why}{advice}"


def _route_optimization(c: Context) -> str | None:
    if c.info.route_optimized is not False or c.info.kind != "custom":
        return None
    qps, p50 = c.figures.qps, c.targets.get("latency_p50")
    if qps is not None and qps > c.t.route_optimization_qps:
        why = f"{qps:.0f} QPS exceeds the ~{c.t.route_optimization_qps:g} QPS a standard endpoint serves per workspace"
    elif p50 is not None and p50 <= c.t.strict_latency_seconds:
        why = f"its P50 target {_s(p50)} is strict and route optimization cuts per-request overhead"
    else:
        return None
    return (f"{why}: enable route optimization (50,000+ QPS, no client-concurrency cap). Route-optimized endpoints "
            "accept only OAuth tokens, not personal access tokens: move clients to a service principal first")


def _cpu_high(c: Context) -> str | None:
    if not c.breached("cpu_utilization"):
        return None
    return (f"CPU {_pct(c.figures.cpu_ratio or 0)} over its target {_pct(c.targets['cpu_utilization'] or 0)}: "
            f"move to a larger instance ({c.info.workload_type or 'workload'} → a larger size or type) or raise provisioned concurrency")


def _memory_high(c: Context) -> str | None:
    if not c.breached("memory_utilization"):
        return None
    return (f"memory {_pct(c.figures.memory_ratio or 0)} over its target {_pct(c.targets['memory_utilization'] or 0)}: "
            "move to a larger instance or spread the load over more concurrency; a smaller model also helps")


def _gpu_recommended(c: Context) -> str | None:
    entities = c.info.served_entities
    if not entities or any(e.compute != "cpu" for e in entities):
        return None
    types = {e.workload_type or e.compute or "" for e in entities}
    slow = c.breached("latency_p50", "latency_p90", "latency_p99")
    cpu_target = c.targets.get("cpu_utilization") or 0.8
    if not slow or (c.figures.cpu_ratio or 0) < cpu_target or c.breached("queue_depth"):
        return None  # queueing makes any model slow: capacity first
    return (f"{slow[-1].name.removeprefix('latency_').upper()} {_s(slow[-1].value)} over target with CPU at "  # type: ignore[arg-type]
            f"{_pct(c.figures.cpu_ratio or 0)} on a {'/'.join(sorted(types))} workload: the model is compute-bound — "
            "move it to a GPU workload (the smallest GPU type first), or make it lighter (quantize, prune)")


def _gpu_underused(c: Context) -> str | None:
    if not any(e.is_gpu for e in c.info.served_entities) or c.figures.gpu_ratio is None:
        return None
    if c.figures.gpu_ratio >= c.t.gpu_idle_ratio:
        return None
    return (f"GPU use {_pct(c.figures.gpu_ratio)} on {c.info.workload_type} at {c.figures.qps or 0:.3g} QPS: "
            "the GPU is mostly idle — serve on CPU if latency allows, pick a smaller GPU, or enable scale-to-zero outside production")


def _scale_to_zero(c: Context) -> str | None:
    if not any(e.scale_to_zero_enabled for e in c.info.served_entities):
        return None
    latency_target = any(c.targets.get(k) is not None for k in ("latency_p50", "latency_p90", "latency_p99"))
    if not (c.production or latency_target):
        return None
    why = "is tagged production" if c.production else "has a latency target"
    p99 = c.targets.get("latency_p99")
    target = f" (P99 target {_s(p99)})" if p99 is not None else ""
    base = c.need(c.figures.qps_min)
    keep = f" of at least {c.suggest(base)}" if base is not None else ""
    return (f"scale-to-zero is on although the endpoint {why}{target}: the first request after idle waits for a cold "
            f"start — disable scale-to-zero and keep a minimum provisioned concurrency{keep} for the baseline")


def _not_ready(c: Context) -> str | None:
    info = c.info
    problems = []
    if info.ready is False:
        problems.append(f"state {info.state or 'not ready'}")
    if info.update_failed:
        problems.append(f"config update {info.config_update or 'failed'}")
    problems += [f"{e.name} {e.deployment_state or 'deployment failed'}" for e in info.served_entities if e.deployment_failed]
    if not problems:
        return None
    return f"endpoint not serving as configured ({', '.join(problems)}): read the deployment's build and service logs, fix and redeploy"


def _external_dependency(c: Context) -> str | None:
    slow = c.breached("latency_p50", "latency_p90", "latency_p99")
    f = c.figures
    idle = f.cpu_ratio is not None and f.cpu_ratio < c.t.low_cpu_ratio and (f.gpu_ratio or 0) < c.t.low_cpu_ratio
    if not slow or not idle or c.breached("queue_depth"):
        return None
    return (f"{slow[-1].name.removeprefix('latency_').upper()} {_s(slow[-1].value)} over target with CPU at only "  # type: ignore[arg-type]
            f"{_pct(f.cpu_ratio)} and no queue: requests wait on something outside the model (feature lookups, external "
            "APIs) — measure each external call's latency and errors, watch its rate limits, and cache data read often")


def _concurrency_limit_near(c: Context) -> str | None:
    limit = c.t.concurrency_limit
    near = c.t.concurrency_limit_ratio * limit
    per_entity_need = (c.need(c.figures.qps_max) or 0) / max(1, len(c.info.served_entities))
    configured = max((e.max_provisioned_concurrency or 0 for e in c.info.served_entities), default=0)
    worst = max(per_entity_need, configured)
    if worst < near:
        return None
    return (f"{worst:.0f} concurrent requests per served entity is {_pct(worst / limit)} of the platform limit of {limit}: "
            "split traffic over more served entities or endpoints, or cut latency so fewer requests are in flight")


def _qps_limit_near(c: Context) -> str | None:
    qps, limit = c.figures.qps_max, c.t.route_optimized_qps_limit
    if qps is None or qps < c.t.concurrency_limit_ratio * limit:
        return None
    return (f"the busiest minute reached {qps:,.0f} QPS, {_pct(qps / limit)} of the ~{limit:,.0f} QPS a route-optimized "
            "endpoint serves: split the traffic over several endpoints before it hits the ceiling")


def _client_batching(c: Context) -> str | None:
    f, service = c.figures, c.service_time
    if f.qps is None or service is None or f.qps < c.t.batching_qps or service >= c.t.light_request_seconds:
        return None
    return (f"{f.qps:.0f} QPS of light requests (mean service {_s(service)}): if clients can send several inputs per "
            "call, batch them client-side to cut per-prediction overhead, and reuse connections (connection pooling)")


def _kv_cache_full(c: Context) -> str | None:
    if not c.breached("kv_cache_utilization"):
        return None
    f = c.figures
    text = f"KV cache {_pct(f.kv_cache_ratio or 0)} full (window mean of the fullest replica) over its target {_pct(c.targets['kv_cache_utilization'] or 0)}"
    if f.preemptions_per_second:
        text += f", {f.preemptions_per_second:.2g} preemptions/s (sequences evicted and recomputed)"
    if c.info.server in (None, "vllm", "ray-serve"):
        text += (": raise --gpu-memory-utilization if the GPU has memory to spare, lower --max-num-seqs or "
                 "--max-model-len so fewer or shorter sequences share the cache")
    else:
        text += ": give the KV cache more GPU memory, or admit fewer concurrent sequences or shorter contexts"
    target = c.targets["kv_cache_utilization"]
    if c.replicas_up and target:
        wanted = math.ceil(c.replicas_up * (f.kv_cache_ratio or 0) / target - 1e-9)  # the cache use spreads over more
        if wanted > c.replicas_up:
            return text + f", or run {wanted} replicas (add {wanted - c.replicas_up}) to bring it under target"
    return text + ", or add replicas"


def _ttft_high(c: Context) -> str | None:
    if not c.breached("ttft_p99"):
        return None
    f = c.figures
    head = f"TTFT P99 {_s(f.ttft_p99)} exceeds its target {_s(c.targets['ttft_p99'])}"  # type: ignore[arg-type]
    wait, first = f.queue_wait_mean, f.ttft_mean
    if wait is not None and first:
        if wait >= 0.5 * first:
            return (f"{head}; queueing leads: requests wait {_s(wait)} of the {_s(first)} mean TTFT before prefill "
                    "starts — add replicas (see the queueing hint)")
        return (f"{head}; prefill leads: {_s(max(0.0, first - wait))} of the {_s(first)} mean TTFT is after the queue "
                f"({_s(wait)}) — long prompts: enable prefix caching and chunked prefill, shorten prompts or cap "
                "--max-model-len, or use tensor parallelism or a faster GPU")
    if c.breached("queue_depth"):
        return f"{head} while {f.queue_depth:.1f} requests wait: queueing likely leads — add replicas (see the queueing hint)"
    return (f"{head}; the server reports no queue time to tell queueing from prefill (TGI: derive it from queue + "
            "prefill) — check the queue depth and prompt lengths")


def _tpot_high(c: Context) -> str | None:
    if not c.breached("tpot_p99"):
        return None
    f = c.figures
    text = f"TPOT P99 {_s(f.tpot_p99)} exceeds its target {_s(c.targets['tpot_p99'])}: decoding is slow"  # type: ignore[arg-type]
    if f.requests_running is not None and c.replicas_up:
        text += f" with {f.requests_running / c.replicas_up:.1f} sequences per replica in the batch"
    if f.preemptions_per_second:
        text += f" and {f.preemptions_per_second:.2g} preemptions/s"
    return (text + " — lower --max-num-seqs (smaller batches decode faster per token) and add replicas for the "
            "throughput, or use a quantized model, speculative decoding or a faster GPU")


def _replicas_down(c: Context) -> str | None:
    down = [r for r in c.replicas if not r.up]
    if not down:
        return None
    total = len(c.replicas)
    which = "; ".join(f"{r.target}: {r.error or 'down'}" for r in down[:3]) + (f" and {len(down) - 3} more" if len(down) > 3 else "")
    return (f"{total - len(down)} of {total} replicas answer ({_pct((total - len(down)) / total)}): {which} — check those "
            "pods (restarts, OOM kills, readiness) and the service discovery; the rest carry their load meanwhile")


def _names(names: list[str], most: int = 3) -> str:
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def _workspace_limit_near(c: Context) -> str | None:
    w = c.workspace
    rank = w.rank.get(c.info.name) if w else None
    if w is None or rank is None:
        return None
    names = [name for name, _ in w.candidates]
    order = "first" if rank == 0 else f"as number {rank + 1}, after {_names(names[:rank])}"
    return (f"the workspace's {w.endpoints} standard endpoints use {_pct(w.qps_ratio)} of its ~{w.qps_limit:g} QPS "
            f"({w.qps:.0f} QPS) and {_pct(w.concurrency_ratio)} of its {w.concurrency_limit:g} concurrent requests "
            f"({w.concurrent_requests:.0f}), over the {_pct(w.threshold)} threshold: enable route optimization on this "
            f"endpoint ({w.candidates[rank][1]:.0f} QPS) {order}; moving {_names(names)} leaves "
            f"{_pct(w.ratio_after or 0)}. Route-optimized endpoints accept only OAuth tokens, not personal access "
            "tokens: move clients to a service principal first")


RULES: tuple[Rule, ...] = (
    Rule("endpoint_not_ready", "critical", "Endpoint is not ready or its last deployment failed",
         "the platform says the endpoint is not ready, its last configuration update failed or was cancelled, or a served entity's deployment failed or was aborted",
         "An endpoint that is not ready, or whose last update failed, serves an old configuration or nothing at all.",
         "Read the build and service logs of the failed deployment, fix the model or configuration, redeploy.",
         "Production readiness", ("config",), _not_ready),
    Rule("errors_high", "critical", "Error ratio above target",
         "the error-ratio check is breached (4xx + 5xx over requests, window)",
         "Failed requests are failed predictions; the split by status class tells a broken model (5xx) from missing capacity (429).",
         "5xx-led: read the service logs and the model's errors. 429-led while saturated: a capacity problem — raise concurrency.",
         "Error rate: read the service logs; check for capacity problems", ("error_ratio",), _errors_high, ("target error_ratio",)),
    Rule("queueing", "critical", "Requests are queueing",
         "the queue-depth check is breached",
         "Queued requests wait before they are served, so latency rises; past a threshold the platform answers 429.",
         "Raise provisioned concurrency (the detail gives the number for the busiest minute) or enable autoscaling.",
         "Queue depth: raise provisioned concurrency or enable autoscaling; Troubleshooting: queueing",
         ("queue_depth",), _queueing, ("target queue_depth", "headroom_ratio")),
    Rule("throttled", "warning", "Requests rejected (429) while saturated",
         "4xx ratio >= throttled_4xx_ratio while the endpoint is saturated (queueing, or load >= saturation_ratio x capacity)",
         "429s mean the endpoint protects itself from more load than it can serve; clients without backoff make it worse.",
         "Make clients retry with exponential backoff; raise min_provisioned_concurrency for baseline traffic and bursts.",
         "Troubleshooting: queueing (429); Client levers: error handling and retries",
         ("error_ratio_4xx", "qps", "latency_mean"), _throttled, ("throttled_4xx_ratio", "saturation_ratio", "headroom_ratio")),
    Rule("latency_high", "warning", "Latency percentile above target",
         "a latency check (P50, P90 or P99) is breached; the detail says whether queueing explains it",
         "Latency is what the application feels; queueing and slow serving need opposite fixes, so the detail says which it is.",
         "If queueing: add capacity. Otherwise: smaller/quantized/pruned model, move heavy pre/post-processing out, keep payloads small.",
         "Latency: check for queueing; optimise the model or the client; Model levers",
         ("latency_p99",), _latency_high, ("targets latency_p50/p90/p99",)),
    Rule("concurrency_undersized", "warning", "Required concurrency exceeds provisioned capacity",
         "QPS x mean service time > the configured max provisioned concurrency (or current provisioned)",
         "Little's law: QPS x service time requests are in flight; with fewer slots than that, requests queue or are rejected.",
         "Raise max_provisioned_concurrency to the number in the detail (required x (1 + headroom)); confirm with a load test.",
         "Provisioned concurrency: required = QPS x latency; maximum high enough for spikes",
         ("qps", "latency_mean"), _concurrency_undersized, ("headroom_ratio",)),
    Rule("concurrency_oversized", "info", "Provisioned concurrency far above need (cost)",
         "provisioned concurrency > oversize_factor x the busiest minute's need, for sustained_polls polls",
         "Provisioned concurrency is paid for whether used or not.",
         "Lower min/max provisioned concurrency to the numbers in the detail to cut cost.",
         "Cost: serve for less while keeping the targets; Provisioned concurrency: maximum under cost control",
         ("qps_max", "latency_mean", "provisioned_concurrency"), _concurrency_oversized,
         ("oversize_factor", "headroom_ratio"), sustained=True),
    Rule("autoscaling_disabled", "warning", "Autoscaling off while load varies or queues",
         "every served entity has min = max provisioned concurrency (no scale-to-zero) while busiest/quietest minute QPS >= variable_load_ratio or requests queue",
         "With min = max, capacity cannot follow demand: peaks queue and quiet periods waste capacity.",
         "Enable autoscaling: min for the baseline, max for peaks (numbers in the detail).",
         "Provisioned concurrency: enable autoscaling so capacity follows demand",
         ("config", "qps_min", "qps_max"), _autoscaling_disabled, ("variable_load_ratio", "headroom_ratio"), managed_only=True),
    Rule("route_optimization_recommended", "warning", "Route optimization recommended",
         "a custom-model endpoint without route optimization serves > route_optimization_qps QPS or has a P50 target <= strict_latency_seconds",
         "A standard endpoint serves about 200 QPS per workspace; route optimization lifts that to 50,000+ and cuts overhead.",
         "Enable route optimization; clients must then use OAuth tokens (service principal), not personal access tokens.",
         "Route optimization: workloads over 200 QPS, strict latency; custom models only; OAuth only",
         ("config", "qps"), _route_optimization, ("route_optimization_qps", "strict_latency_seconds"), managed_only=True),
    Rule("replicas_down", "warning", "Some replicas of a self-hosted endpoint do not answer",
         "a self-hosted endpoint's scrape targets do not all answer (share of replicas answering < 1)",
         "A replica that does not answer serves nothing, or serves unwatched: the others carry its load, so they queue sooner.",
         "Check the named pods (restarts, OOM kills, readiness) and the service discovery (DNS, file_sd).",
         "Troubleshooting: capacity lost to failed replicas", (), _replicas_down),
    Rule("kv_cache_full", "warning", "LLM server KV cache near full",
         "the KV-cache check is breached (window mean of the fullest replica's KV-cache use over its target)",
         "With its KV cache full an LLM server admits no more sequences (they queue) and preempts running ones "
         "(recomputed or swapped), so TTFT and TPOT rise.",
         "vLLM: raise --gpu-memory-utilization if memory allows, lower --max-num-seqs or --max-model-len; or add "
         "replicas (the detail gives the number).",
         "Capacity: LLM server memory (KV cache) limits concurrency", ("kv_cache_ratio",), _kv_cache_full,
         ("target kv_cache_utilization_ratio",)),
    Rule("ttft_high", "warning", "Time to first token above target",
         "the TTFT P99 check is breached; the detail says whether queue time or prefill leads",
         "Time to first token is the wait a chat user sees; queueing and slow prefill need opposite fixes.",
         "Queue-led: add replicas. Prefill-led: prefix caching, chunked prefill, shorter prompts, a faster GPU.",
         "Latency: check for queueing; optimise the model", ("ttft_p99",), _ttft_high, ("target ttft_p99_seconds",)),
    Rule("tpot_high", "warning", "Time per output token above target",
         "the TPOT P99 check is breached",
         "Time per output token sets the streaming speed; large decode batches and preemptions slow every stream.",
         "Lower --max-num-seqs and add replicas for the throughput; a quantized model or speculative decoding.",
         "Latency: optimise the model; Model levers", ("tpot_p99",), _tpot_high, ("target tpot_p99_seconds",)),
    Rule("cpu_high", "warning", "CPU above target",
         "the CPU-utilisation check is breached",
         "Above 80% CPU there is no room for bursts; latency grows as the instance saturates.",
         "Move to a larger instance type/size or raise provisioned concurrency.",
         "CPU/memory use: move to a larger instance type or raise concurrency", ("cpu_ratio",), _cpu_high,
         ("target cpu_utilization_ratio",)),
    Rule("memory_high", "warning", "Memory above target",
         "the memory-utilisation check is breached",
         "Above 80% memory a burst or a large payload risks running out of memory.",
         "Move to a larger instance type or raise provisioned concurrency; a smaller model uses less.",
         "CPU/memory use: move to a larger instance type or raise concurrency", ("memory_ratio",), _memory_high,
         ("target memory_utilization_ratio",)),
    Rule("gpu_recommended", "info", "Compute-bound on CPU: consider a GPU",
         "a CPU workload breaches a latency target while CPU is at or above its target and requests do not queue",
         "A compute-bound model on a saturated CPU stays slow whatever the concurrency; a GPU speeds up heavy models.",
         "Move the model to a GPU workload, or make it lighter (quantization, pruning).",
         "Instance type: move to GPU when inference latency is high or the model needs specialised compute",
         ("config", "latency_p99", "cpu_ratio"), _gpu_recommended, ("target cpu_utilization_ratio",)),
    Rule("gpu_underused", "info", "GPU mostly idle (cost)",
         "a GPU workload averages GPU use below gpu_idle_ratio, for sustained_polls polls",
         "GPU instances cost far more than CPU ones; an idle GPU is money spent for nothing.",
         "Serve on CPU if latency allows, choose a smaller GPU, or scale to zero outside production.",
         "Instance type: start on CPU; GPUs cost more", ("config", "gpu_ratio"), _gpu_underused, ("gpu_idle_ratio",),
         sustained=True, managed_only=True),
    Rule("scale_to_zero_in_production", "warning", "Scale-to-zero on a production or latency-bound endpoint",
         "scale-to-zero is enabled on an endpoint tagged as production (production_tags) or with a latency target",
         "After scaling to zero, the next request waits for a cold start: latency spikes a production user notices.",
         "Disable scale-to-zero and keep a minimum provisioned concurrency for baseline traffic.",
         "Production readiness; Provisioned concurrency: minimum for baseline traffic", ("config",), _scale_to_zero,
         ("production_tags",), managed_only=True),
    Rule("external_dependency_suspected", "warning", "Slow with idle CPU and no queue: external calls suspected",
         "a latency check is breached while CPU (and GPU, if any) < low_cpu_ratio and queue depth is within target",
         "Slow requests on an idle, unqueued endpoint spend their time waiting, typically on external calls.",
         "Measure the latency and errors of each external call, watch their rate limits, cache frequently read data.",
         "Troubleshooting: external API bottlenecks", ("latency_p99", "cpu_ratio"), _external_dependency, ("low_cpu_ratio",)),
    Rule("concurrency_limit_near", "warning", "Near the per-entity provisioned-concurrency limit",
         "the busiest minute's need per served entity, or a configured maximum, reaches concurrency_limit_ratio x concurrency_limit",
         "Provisioned concurrency cannot exceed 1,024 per served entity; beyond it the endpoint cannot scale further.",
         "Split traffic over more served entities or endpoints, or cut latency.",
         "Route optimization limits: provisioned concurrency 1,024 per served entity",
         ("config",), _concurrency_limit_near, ("concurrency_limit", "concurrency_limit_ratio"), managed_only=True),
    Rule("qps_limit_near", "warning", "Near the QPS ceiling of a route-optimized endpoint",
         "the busiest minute's QPS reaches concurrency_limit_ratio x route_optimized_qps_limit",
         "Above about 50,000 QPS even a route-optimized endpoint needs attention; the guide names it a trigger.",
         "Split traffic over several endpoints (or workspaces) and shed load on the client (batching).",
         "When an endpoint needs attention: more than 50,000 QPS to one endpoint", ("qps_max",), _qps_limit_near,
         ("route_optimized_qps_limit", "concurrency_limit_ratio"), managed_only=True),
    Rule("workspace_limit_near", "warning", "Workspace limit of standard endpoints near: move this endpoint first",
         "the standard (not route-optimized) endpoints together reach usage_ratio_threshold of the workspace's QPS or "
         "concurrent-request limit (workspace_limits); names custom-model endpoints, largest QPS first, until the rest "
         "is under the threshold",
         "Standard endpoints share about 200 QPS and 192-1,024 concurrent requests per workspace: past a limit the "
         "workspace throttles all of them, also those that look healthy on their own.",
         "Enable route optimization on the named endpoints in the order given (clients must then use OAuth tokens). "
         "With sharded replicas each sees part of the workspace: use the alert ModelServingWorkspaceLimitNear.",
         "Route optimization limits: about 200 QPS and 192-1,024 concurrent requests per workspace for standard endpoints",
         ("config", "qps"), _workspace_limit_near,
         ("workspace_limits.requests_per_second", "workspace_limits.concurrent_requests",
          "workspace_limits.usage_ratio_threshold"), managed_only=True),
    Rule("client_batching_suggested", "info", "Many light requests: batch on the client",
         "QPS >= batching_qps with mean service time < light_request_seconds",
         "For light requests the fixed per-request overhead dominates; batching several inputs per call removes most of it.",
         "Batch several inputs per request on the client; reuse connections (connection pooling).",
         "Model levers: batching; Client levers: connection pooling, payload size",
         ("qps", "latency_mean"), _client_batching, ("batching_qps", "light_request_seconds")),
)
RULE_IDS = frozenset(r.id for r in RULES)


# -- the engine ------------------------------------------------------------------------------


@dataclass
class RuleState:
    """One rule's hysteresis for one endpoint (also the workspace rule's, pipeline/workspace.py)."""

    held: int = 0  # consecutive fresh evaluations where the condition held
    missed: int = 0  # ... where it did not
    since_s: float | None = None  # set while active
    detail: str = ""
    hint: Hint | None = field(default=None, compare=False, repr=False)  # the last one built: reused while unchanged

    def advance(self, detail: str | None, fire_after: int, clear_after: int, now_s: float) -> None:
        """One evaluation with new data: `detail` when the condition holds, else None. The hint fires after
        `fire_after` holding evaluations in a row and clears after `clear_after` missing ones."""
        if detail is not None:
            self.held, self.missed, self.detail = self.held + 1, 0, detail
            if self.since_s is None and self.held >= fire_after:
                self.since_s = now_s
        else:
            self.held, self.missed = 0, self.missed + 1
            if self.since_s is not None and self.missed >= clear_after:
                self.since_s = None


@dataclass
class HintMemory:
    """Per-endpoint hysteresis state, owned by the poller's state for that endpoint."""

    rules: dict[str, RuleState] = field(default_factory=dict)
    last_minute_ms: int | None = None


def advise(settings: Remediation, info: EndpointInfo, figures: Figures, checks: tuple[Check, ...],
           targets: dict[str, float | None], memory: HintMemory, *, metrics_fresh: bool, config_fresh: bool,
           now_s: float, replicas: tuple[Replica, ...] = ()) -> tuple[tuple[Hint, ...], Recommendation | None]:
    """`evaluate` and `recommend` together, over one Context (the poller's step for every endpoint and poll)."""
    ctx, disabled = _context(settings, info, figures, checks, targets, replicas)
    hints = _evaluate(settings, ctx, disabled, memory, metrics_fresh=metrics_fresh, config_fresh=config_fresh,
                      now_s=now_s)
    return hints, _recommend(ctx)


def evaluate(settings: Remediation, info: EndpointInfo, figures: Figures, checks: tuple[Check, ...],
             targets: dict[str, float | None], memory: HintMemory, *, metrics_fresh: bool,
             config_fresh: bool, now_s: float, replicas: tuple[Replica, ...] = ()) -> tuple[Hint, ...]:
    """Advance every rule's hysteresis by one poll and return the active hints."""
    ctx, disabled = _context(settings, info, figures, checks, targets, replicas)
    return _evaluate(settings, ctx, disabled, memory, metrics_fresh=metrics_fresh, config_fresh=config_fresh,
                     now_s=now_s)


def _context(settings: Remediation, info: EndpointInfo, figures: Figures, checks: tuple[Check, ...],
             targets: dict[str, float | None], replicas: tuple[Replica, ...]) -> tuple[Context, frozenset[str]]:
    thresholds, disabled = settings.for_endpoint(info)
    return Context(info, figures, {c.name: c for c in checks}, targets, thresholds, replicas=replicas), disabled


def _evaluate(settings: Remediation, ctx: Context, disabled: frozenset[str], memory: HintMemory, *,
              metrics_fresh: bool, config_fresh: bool, now_s: float) -> tuple[Hint, ...]:
    figures = ctx.figures
    new_minute = metrics_fresh and figures.latest_minute_ms is not None and figures.latest_minute_ms != memory.last_minute_ms
    if new_minute:
        memory.last_minute_ms = figures.latest_minute_ms
    applied, skipped = _plan(settings, disabled, ctx.self_hosted)
    states, active = memory.rules, []
    for rule_id in skipped:  # a rule switched off for this endpoint forgets its state
        state = states.get(rule_id)
        if state is not None and (state.held or state.missed or state.since_s is not None):
            states[rule_id] = RuleState()
    clear_after = settings.clear_after_polls
    for rule, fire_after, uses_metrics, needs_config in applied:
        state = states.get(rule.id)
        if state is None:
            state = states[rule.id] = RuleState()
        if (new_minute or not uses_metrics) and (config_fresh or not needs_config):  # else no new data
            state.advance(rule.detail(ctx) if _present(rule, ctx) else None, fire_after, clear_after, now_s)
        if state.since_s is not None:
            hint = state.hint
            if hint is None or hint.detail != state.detail or hint.since_s != state.since_s:
                hint = state.hint = Hint(rule.id, rule.severity, rule.summary, state.detail, state.since_s)
            active.append(hint)
    return tuple(active)


# The rules that apply, each with its fire-after count and what it reads (metrics, configuration), and the ids of
# those that do not; by (fire_after_polls, sustained_polls, the rule table, disabled ids, self-hosted). The same few
# combinations serve every endpoint and poll.
_Plan = tuple[tuple[tuple[Rule, int, bool, bool], ...], tuple[str, ...]]
_PLANS: dict[tuple, _Plan] = {}


def _plan(settings: Remediation, disabled: frozenset[str], self_hosted: bool) -> _Plan:
    key = (settings.fire_after_polls, settings.sustained_polls, id(RULES), disabled, self_hosted)
    plan = _PLANS.get(key)
    if plan is None:
        if len(_PLANS) >= 256:
            _PLANS.clear()
        skipped = tuple(r.id for r in RULES if r.id in disabled or (r.managed_only and self_hosted))
        applied = tuple((r, settings.sustained_polls if r.sustained else settings.fire_after_polls,
                         r.uses_metrics, r.needs_config) for r in RULES if r.id not in skipped)
        plan = _PLANS[key] = (applied, skipped)
    return plan


def conditions_now(settings: Remediation, info: EndpointInfo, figures: Figures, checks: tuple[Check, ...],
                   targets: dict[str, float | None], replicas: tuple[Replica, ...] = ()) -> tuple[tuple[Rule, str], ...]:
    """Rules whose condition holds on these figures, without hysteresis (for one-shot commands)."""
    ctx, disabled = _context(settings, info, figures, checks, targets, replicas)
    found = []
    for rule in RULES:
        if rule.id not in disabled and rule.applies(info) and _present(rule, ctx):
            detail = rule.detail(ctx)
            if detail is not None:
                found.append((rule, detail))
    return tuple(found)


def recommend(settings: Remediation, info: EndpointInfo, figures: Figures, checks: tuple[Check, ...],
              targets: dict[str, float | None], replicas: tuple[Replica, ...] = ()) -> Recommendation | None:
    """Provisioned concurrency the window supports: min for the quietest minute, max for the busiest. Self-hosted
    endpoints: replicas, from the per-replica concurrency (None while it is unknown)."""
    return _recommend(_context(settings, info, figures, checks, targets, replicas)[0])


def _recommend(ctx: Context) -> Recommendation | None:
    figures, thresholds = ctx.figures, ctx.t
    base, peak = ctx.need(figures.qps_min), ctx.need(figures.qps_max)
    if base is None or peak is None:
        return None
    basis = (f"QPS {figures.qps_min:.3g}–{figures.qps_max:.3g} per minute over {figures.minutes} min × "
             f"{ctx.service_time:.3g} s mean service time, +{100 * thresholds.headroom_ratio:g}% headroom")
    if ctx.self_hosted:
        low, high = ctx.replicas_for(base), ctx.replicas_for(peak)
        if low is None or high is None:
            return None
        return Recommendation(min_concurrency=low, max_concurrency=max(low, high),
                              basis=f"{basis}, {ctx.per_replica:g} concurrent requests per replica", unit="replicas")
    low = ctx.suggest(base)
    return Recommendation(min_concurrency=low, max_concurrency=max(low, ctx.suggest(peak)), basis=basis)


def _present(rule: Rule, ctx: Context) -> bool:
    if rule.needs_config and not ctx.info.detailed:
        return False
    figures = ctx.figures
    for name in rule.needed_figures:
        if getattr(figures, name) is None:
            return False
    return True


# -- docs/remediation.md ---------------------------------------------------------------------


def markdown() -> str:
    defaults = Thresholds()
    remediation = Remediation()
    lines = [
        "# Remediation hints",
        "",
        "<!-- Generated from exporter/pipeline/rules.py by `python docs/generate.py`; CI checks it is current. -->",
        "",
        "Each rule turns an action from the serving guide into a hint with the endpoint's own numbers. A hint fires after",
        f"its condition held for `remediation.fire_after_polls` ({remediation.fire_after_polls}) consecutive polls with new data",
        f"(`sustained_polls`, {remediation.sustained_polls}, for cost hints) and clears after `clear_after_polls`",
        f"({remediation.clear_after_polls}) polls without it. Missing data never fires a rule; stale data changes nothing.",
        "Hints appear in `/api/v1/endpoints` (`hints`), as `model_serving_remediation{serving_endpoint,rule,severity} 1`, and in",
        "`serving-exporter recommend`. Disable rules with `remediation.disabled` or per endpoint in `remediation.overrides`.",
        "",
        "| rule | severity | summary |",
        "|---|---|---|",
        *[f"| [`{r.id}`](#{r.id}) | {r.severity} | {r.summary} |" for r in RULES],
        "",
    ]
    for r in RULES:
        used = []
        for name in r.thresholds:
            value = getattr(defaults, name, None)
            used.append(f"`{name}` = {value}" if value is not None else name)
        lines += [
            f"## {r.id}",
            "",
            f"**{r.severity}** — {r.summary}.",
            "",
            f"- **Fires when** {r.when}{' (sustained)' if r.sustained else ''}.",
            f"- **Why:** {r.why}",
            f"- **What to do:** {r.action}",
            f"- **Serving-guide action:** {r.guide}.",
            f"- **Needs:** {', '.join('the detailed endpoint configuration' if n == 'config' else f'`{n}`' for n in r.needs)}.",
            f"- **Thresholds:** {', '.join(used) if used else 'none'}.",
            *(["- **Managed platforms only:** never for self-hosted endpoints (scaled in replicas)."] if r.managed_only else []),
            "",
        ]
    lines += ["## Thresholds", "", "Set under `remediation.thresholds` (globally) or `remediation.overrides[].thresholds`.", "",
              "| key | default | meaning |", "|---|---|---|"]
    for name, info in Thresholds.model_fields.items():
        lines.append(f"| `{name}` | `{getattr(defaults, name)}` | {info.description} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown())
