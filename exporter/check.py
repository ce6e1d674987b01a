"""`serving-exporter check`: a one-shot production-readiness audit, for CI pipelines and cron jobs.

Each endpoint's configuration (and the traffic a running exporter's window saw, or one poll's, or the
traffic the caller expects) goes through the serving guide's production checklist: every item (`ITEMS`)
passes, fails with its numbers and the fix, or is skipped with the reason (its input is unknown). The
workspace as a whole gets one item more: the standard endpoints against the per-workspace limits
(pipeline/workspace.py). docs/check.md, generated from `ITEMS`, documents every check id; the JSON
output's schema is docs/check.schema.json.

Sizing before traffic: with an expected rate and mean latency, the guide's formula (required concurrency =
QPS x mean latency in seconds) gives the minimum to configure for the expected rate and the maximum for the
peak plus `headroom_ratio`; the endpoint's configuration is checked against them. Without expected traffic
the observed window is used the same way (quietest minute for the minimum, busiest for the maximum).
"""

from __future__ import annotations

import functools
import json
import math
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError

from .config import Settings
from .model import Check, EndpointInfo, Figures, RateLimit, ServedEntity, Severity, WorkspaceUsage
from .pipeline.rules import RULES, Context, Thresholds
from .pipeline.workspace import WorkspaceLimits, standard, usage
from .strict import ConfigError, Strict

SCHEMA_VERSION = 1
SEVERITIES: tuple[Severity, ...] = ("critical", "warning", "info")
RANK = {s: i for i, s in enumerate(SEVERITIES)}  # lower is more severe
LATENCY_CHECKS = ("latency_p50", "latency_p90", "latency_p99")
WORKSPACE = "workspace"  # the JUnit suite and text heading of the workspace-wide check
_RULE = {r.id: r for r in RULES}

Status = Literal["pass", "fail", "skip"]


# -- expected traffic --------------------------------------------------------------------------------


class Expected(Strict):
    """Traffic an endpoint is expected to serve: the basis for sizing before traffic."""

    qps: float = Field(gt=0, description="expected requests per second (the baseline the minimum must carry)")
    latency_ms: float = Field(gt=0, description="expected mean latency per request, in milliseconds (from a load test)")
    peak_qps: float | None = Field(None, gt=0, description="expected peak requests per second; default: qps")


class ExpectedFile(Strict):
    endpoints: dict[str, Expected] = Field(description="endpoint name -> expected traffic")


def read_expected(path: str | Path) -> dict[str, Expected]:
    """The expected traffic of a YAML file `endpoints: {NAME: {qps, latency_ms, peak_qps}}`; ConfigError if unusable."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: not valid YAML: {exc}"]) from None
    try:
        return ExpectedFile.model_validate(data).endpoints
    except ValidationError as exc:
        raise ConfigError([f"{path}: {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]) from None


# -- what each check sees ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizing:
    """Provisioned concurrency the traffic needs: min carries the baseline, max the peak plus headroom."""

    source: Literal["expected", "observed"]
    baseline_qps: float
    peak_qps: float
    latency_s: float
    min_concurrency: int
    max_concurrency: int

    @property
    def basis(self) -> str:
        qps = f"{self.baseline_qps:.3g}" + (f"–{self.peak_qps:.3g}" if self.peak_qps != self.baseline_qps else "")
        return f"{self.source}: {qps} QPS × {self.latency_s:.3g} s mean latency"


def size(baseline_qps: float, peak_qps: float, latency_s: float, t: Thresholds,
         source: Literal["expected", "observed"]) -> Sizing:
    """The guide's formula: required concurrency = QPS x mean latency in seconds (rounded up; the maximum with
    headroom_ratio), within the platform's limit per served entity."""
    low = max(0, math.ceil(baseline_qps * latency_s - 1e-9))
    high = max(1, low, math.ceil(peak_qps * latency_s * (1 + t.headroom_ratio) - 1e-9))
    return Sizing(source, baseline_qps, max(baseline_qps, peak_qps), latency_s, low, high)


@dataclass(frozen=True)
class Subject:
    """One endpoint as the checks see it."""

    info: EndpointInfo
    figures: Figures
    checks: tuple[Check, ...]
    targets: dict[str, float | None]
    t: Thresholds
    expected: Expected | None = None

    @functools.cached_property
    def context(self) -> Context:
        return Context(self.info, self.figures, {c.name: c for c in self.checks}, self.targets, self.t)

    @functools.cached_property
    def sizing(self) -> Sizing | None:
        if self.expected is not None:
            e = self.expected
            return size(e.qps, e.peak_qps or e.qps, e.latency_ms / 1000, self.t, "expected")
        f, service = self.figures, self.context.service_time
        if f.qps_min is None or f.qps_max is None or service is None:
            return None
        return size(f.qps_min, f.qps_max, service, self.t, "observed")


@dataclass(frozen=True)
class Outcome:
    status: Status
    message: str
    fix: str = ""
    numbers: Mapping[str, float | int | str | None] = field(default_factory=dict)


def ok(message: str, **numbers: Any) -> Outcome:
    return Outcome("pass", message, numbers=numbers)


def fail(message: str, fix: str, **numbers: Any) -> Outcome:
    return Outcome("fail", message, fix, numbers)


def skip(message: str) -> Outcome:
    return Outcome("skip", message)


NO_DETAIL = "the endpoint's detailed configuration was not read (see its status: the detail call failed?)"
NO_TRAFFIC = ("no traffic observed and none expected: give --expected-qps and --expected-latency-ms (or --expected FILE) "
              "to size before traffic")


# -- the checklist ---------------------------------------------------------------------------------------


def _deployment(s: Subject) -> Outcome:
    i = s.info
    if i.ready is None:
        return skip("the platform did not say whether the endpoint is ready")
    problems = _RULE["endpoint_not_ready"].detail(s.context)
    waiting = [f"{e.name} {e.deployment_state or 'not deployed'}" for e in i.served_entities
               if e.deployed is False and not e.deployment_failed]
    if problems is None and not waiting:
        return ok(f"state {i.state or 'ready'}, every served entity deployed")
    message = problems or f"served entities not deployed yet ({', '.join(waiting)}): the endpoint does not serve its configuration"
    return fail(message, "read the failed deployment's build and service logs, fix the model or configuration, "
                         "redeploy; promote only once the endpoint is ready with every served entity deployed",
                ready=i.state, config_update=i.config_update)


def _scale_to_zero(s: Subject) -> Outcome:
    if not s.info.detailed:
        return skip(NO_DETAIL)
    on = [e.name for e in s.info.served_entities if e.scale_to_zero_enabled]
    if not on:
        return ok("scale-to-zero is off")
    if not s.context.production:
        return ok(f"scale-to-zero is on ({', '.join(on)}), but the endpoint is not tagged production "
                  f"({', '.join(s.t.production_tags)})")
    keep = s.sizing.min_concurrency if s.sizing and s.sizing.min_concurrency > 0 else 1
    return fail(f"scale-to-zero is on for {', '.join(on)} although the endpoint is tagged production: the first request "
                "after an idle period waits for a cold start",
                f"set scale_to_zero_enabled: false and keep min_provisioned_concurrency at least {keep} for the baseline",
                scale_to_zero_entities=len(on), min_to_keep=keep)


def _configured_min(info: EndpointInfo) -> int | None:
    mins = [0 if e.scale_to_zero_enabled else e.min_provisioned_concurrency for e in info.served_entities]
    return sum(mins) if mins and all(m is not None for m in mins) else None  # type: ignore[misc]


def _min_below_baseline(s: Subject) -> Outcome:
    if not s.info.detailed:
        return skip(NO_DETAIL)
    sizing = s.sizing
    if sizing is None:
        return skip(NO_TRAFFIC)
    have = _configured_min(s.info)
    if have is None:
        return skip("the minimum follows the workload size (no min_provisioned_concurrency): set min/max provisioned "
                    f"concurrency explicitly; the baseline needs {sizing.min_concurrency}")
    numbers = dict(configured_min=have, required_min=sizing.min_concurrency, baseline_qps=sizing.baseline_qps,
                   latency_seconds=sizing.latency_s)
    if have >= sizing.min_concurrency:
        return ok(f"minimum {have} carries the baseline's {sizing.min_concurrency} ({sizing.basis})", **numbers)
    zero = " (scale-to-zero)" if any(e.scale_to_zero_enabled for e in s.info.served_entities) else ""
    return fail(f"minimum provisioned concurrency {have}{zero} is below the {sizing.min_concurrency} the baseline needs "
                f"({sizing.basis}): requests queue until autoscaling catches up",
                f"set min_provisioned_concurrency to at least {sizing.min_concurrency} (over the served entities, by "
                "traffic share); confirm the latency with a load test", **numbers)


def _max_below_peak(s: Subject) -> Outcome:
    if not s.info.detailed:
        return skip(NO_DETAIL)
    sizing, cap = s.sizing, s.info.capacity
    if sizing is None:
        return skip(NO_TRAFFIC)
    if cap is None:
        return skip("the maximum provisioned concurrency is not known from the configuration")
    numbers = dict(configured_max=cap, required_max=sizing.max_concurrency, peak_qps=sizing.peak_qps,
                   latency_seconds=sizing.latency_s, headroom_ratio=s.t.headroom_ratio)
    if cap >= sizing.max_concurrency:
        return ok(f"maximum {cap:g} covers the peak's {sizing.max_concurrency} with headroom ({sizing.basis})", **numbers)
    need = sizing.peak_qps * sizing.latency_s
    return fail(f"maximum provisioned concurrency {cap:g} is below the {sizing.max_concurrency} the peak needs with "
                f"{100 * s.t.headroom_ratio:g}% headroom ({sizing.basis} = {need:.1f} concurrent requests): spikes queue and "
                "are answered 429", f"set max_provisioned_concurrency to at least {sizing.max_concurrency}", **numbers)


def _autoscaling(s: Subject) -> Outcome:
    if not s.info.detailed:
        return skip(NO_DETAIL)
    entities = s.info.served_entities
    if not entities or any(e.max_provisioned_concurrency is None for e in entities):
        return skip("scaling follows the workload size (no min/max provisioned concurrency)")
    if not s.context.autoscaling_off:
        return ok("autoscaling is on (min below max, or scale-to-zero)")
    fixed = entities[0].min_provisioned_concurrency
    sizing = s.sizing
    fix = (f"set min_provisioned_concurrency {sizing.min_concurrency} for the baseline and max_provisioned_concurrency "
           f"{sizing.max_concurrency} for peaks" if sizing and sizing.max_concurrency > sizing.min_concurrency
           else "set a minimum for the baseline traffic below a maximum for the peaks")
    return fail(f"autoscaling is off: min = max = {fixed} provisioned concurrency on every served entity, so capacity "
                "cannot follow demand (peaks queue, quiet hours pay for idle capacity)", fix, fixed_concurrency=fixed)


def _tightest_latency_target(s: Subject) -> tuple[str, float] | None:
    set_ = [(name, s.targets[name]) for name in LATENCY_CHECKS if s.targets.get(name) is not None]
    return min(set_, key=lambda kv: kv[1]) if set_ else None  # type: ignore[return-value]


def _route_optimization(s: Subject) -> Outcome:
    i = s.info
    if i.route_optimized is None:
        return skip(NO_DETAIL)
    if i.route_optimized:
        return ok("route-optimized")
    sizing = s.sizing
    reasons, numbers = [], {}
    if sizing is not None and sizing.peak_qps > s.t.route_optimization_qps:
        reasons.append(f"{sizing.peak_qps:.0f} QPS at peak ({sizing.source}) is above the ~{s.t.route_optimization_qps:g} "
                       "QPS the standard endpoints of a workspace share")
        numbers["peak_qps"] = sizing.peak_qps
    tight = _tightest_latency_target(s)
    if tight is not None and tight[1] < s.t.fast_latency_target_seconds:
        reasons.append(f"its {tight[0].removeprefix('latency_').upper()} target {1000 * tight[1]:g} ms is under "
                       f"{1000 * s.t.fast_latency_target_seconds:g} ms")
        numbers["latency_target_seconds"] = tight[1]
    if not reasons:
        peak = f"{sizing.peak_qps:.3g} QPS at peak and " if sizing else ""
        return ok(f"{peak}no latency target under {1000 * s.t.fast_latency_target_seconds:g} ms: a standard endpoint serves it")
    if i.kind != "custom":
        return skip(f"{' and '.join(reasons)}, but route optimization is for custom models only (this endpoint serves "
                    f"{i.kind.replace('_', ' ')}s): split the traffic over endpoints or workspaces instead")
    return fail(f"not route-optimized although {' and '.join(reasons)}",
                "enable route optimization (50,000+ QPS per workspace, less overhead per request). Route-optimized "
                "endpoints accept only OAuth tokens, not personal access tokens: move clients to a service principal first",
                **numbers)


def _concurrency_limit(s: Subject) -> Outcome:
    if not s.info.detailed:
        return skip(NO_DETAIL)
    limit, entities = s.t.concurrency_limit, s.info.served_entities
    over: list[str] = []
    for e in entities:
        if (e.max_provisioned_concurrency or 0) > limit:
            over.append(f"{e.name} is configured for max {e.max_provisioned_concurrency}")
        if s.sizing is not None:
            share = (e.traffic_percentage / 100) if e.traffic_percentage is not None else 1 / len(entities)
            need = s.sizing.max_concurrency * share
            if need > limit:
                over.append(f"{e.name} needs {need:.0f} at peak ({100 * share:g}% of the traffic)")
    if not over:
        return ok(f"every served entity within the platform's {limit:,} provisioned concurrency")
    return fail(f"provisioned concurrency per served entity above the platform's limit of {limit:,}: {'; '.join(over)}",
                "split the traffic over more served entities or endpoints, or cut the latency so that fewer requests "
                "are in flight", limit=limit)


def _gpu_light(s: Subject) -> Outcome:
    if not s.info.detailed:
        return skip(NO_DETAIL)
    if not any(e.is_gpu for e in s.info.served_entities):
        return ok("no GPU workload")
    if s.figures.gpu_ratio is None:
        return skip("GPU workload, but no GPU utilisation observed yet")
    detail = _RULE["gpu_underused"].detail(s.context)
    if detail is None:
        return ok(f"GPU use {100 * s.figures.gpu_ratio:.1f}% (at least {100 * s.t.gpu_idle_ratio:g}%)")
    return fail(detail, "serve the model on CPU if the latency allows, or pick a smaller GPU type",
                gpu_ratio=s.figures.gpu_ratio)


def _cpu_bound(s: Subject) -> Outcome:
    if not s.info.detailed:
        return skip(NO_DETAIL)
    entities = s.info.served_entities
    if any(e.compute != "cpu" for e in entities) or not entities:
        return ok("not a CPU workload") if any(e.is_gpu for e in entities) else skip("the workload type is not known")
    f = s.figures
    if f.cpu_ratio is None or f.latency_p99 is None:
        return skip("no latency or CPU observed yet")
    detail = _RULE["gpu_recommended"].detail(s.context)
    if detail is None:
        return ok(f"CPU {100 * f.cpu_ratio:.1f}%: not compute-bound against its latency targets")
    return fail(detail, "move the model to a GPU workload (the smallest GPU type first), or make it lighter",
                cpu_ratio=f.cpu_ratio, latency_p99_seconds=f.latency_p99)


def _rate_limits(s: Subject) -> Outcome:
    if not s.info.detailed:
        return skip(NO_DETAIL)
    limits = [r for r in s.info.rate_limits if r.per_endpoint and r.qps is not None]
    if not limits:
        return ok("no AI Gateway call limit on the endpoint as a whole")
    if s.sizing is None:
        return skip(NO_TRAFFIC)
    tightest = min(limits, key=lambda r: r.qps)  # type: ignore[arg-type,return-value]
    allowed, peak = tightest.qps or 0.0, s.sizing.peak_qps
    numbers = dict(limit_calls=tightest.calls, limit_period_seconds=tightest.renewal_seconds, limit_qps=allowed,
                   peak_qps=peak)
    if allowed >= peak:
        return ok(f"AI Gateway allows {allowed:.3g} QPS, above the {peak:.3g} at peak ({s.sizing.source})", **numbers)
    return fail(f"AI Gateway allows {tightest.calls} calls per {tightest.renewal_seconds:g} s ({allowed:.3g} QPS) for the "
                f"whole endpoint, below the {peak:.3g} QPS at peak ({s.sizing.source}): the calls beyond it are answered 429",
                f"raise the endpoint's AI Gateway rate limit to at least {math.ceil(peak * (tightest.renewal_seconds or 60))} "
                f"calls per {tightest.renewal_seconds:g} s", **numbers)


def _latency_target(s: Subject) -> Outcome:
    tight = _tightest_latency_target(s)
    if tight is not None:
        return ok(f"latency targets set (tightest {tight[0].removeprefix('latency_').upper()} {1000 * tight[1]:g} ms)")
    return fail("no latency target (P50, P90 and P99 all disabled): neither this check nor the alerts can tell a slow "
                "endpoint from a healthy one",
                "set targets.latency_p99_seconds (and P50/P90), globally or in a target_overrides entry for this endpoint")


@dataclass(frozen=True)
class Item:
    """One item of the production checklist (docs/check.md is generated from these)."""

    id: str
    severity: Severity
    title: str
    when: str  # docs: when it fails
    needs: str  # docs: what it reads
    evaluate: Callable[[Any], Outcome]  # a Subject; the workspace item: the WorkspaceUsage


ITEMS: tuple[Item, ...] = (
    Item("deployment_not_ready", "critical", "Endpoint not ready or a deployment failed",
         "the endpoint is not READY, its last configuration update failed or was canceled, or a served entity's "
         "deployment failed, was aborted or is still in progress", "the endpoint's state", _deployment),
    Item("scale_to_zero_in_production", "critical", "Scale-to-zero on a production endpoint",
         "a served entity scales to zero on an endpoint tagged production (remediation.thresholds.production_tags)",
         "configuration, tags", _scale_to_zero),
    Item("min_concurrency_below_baseline", "warning", "Minimum provisioned concurrency below the baseline",
         "the configured minimum (0 with scale-to-zero) is below ceil(baseline QPS × mean latency): the expected QPS, "
         "else the quietest observed minute", "configuration, traffic", _min_below_baseline),
    Item("max_concurrency_below_peak", "warning", "Maximum provisioned concurrency below the peak with headroom",
         "the configured maximum is below ceil(peak QPS × mean latency × (1 + headroom_ratio)): the expected peak, else "
         "the busiest observed minute", "configuration, traffic", _max_below_peak),
    Item("autoscaling_disabled", "warning", "Autoscaling off (min = max)",
         "every served entity has min = max provisioned concurrency and no scale-to-zero", "configuration",
         _autoscaling),
    Item("route_optimization_needed", "warning", "Route optimization needed",
         "a custom-model endpoint without route optimization expects or saw more than route_optimization_qps QPS at "
         "peak, or has a latency target under fast_latency_target_seconds (skipped for foundation and external models, "
         "which cannot be route-optimized)", "configuration, traffic, targets", _route_optimization),
    Item("concurrency_limit_exceeded", "critical", "Provisioned concurrency per served entity above the limit",
         "a served entity is configured, or would need at peak (by its traffic share), more than concurrency_limit "
         "(1,024) provisioned concurrency", "configuration, traffic", _concurrency_limit),
    Item("gpu_for_light_model", "info", "GPU workload for a light model",
         "a GPU workload's GPU use is below gpu_idle_ratio", "configuration, GPU use", _gpu_light),
    Item("cpu_compute_bound", "warning", "CPU workload that is compute-bound",
         "a CPU workload breaches a latency target with CPU at or above its target and no queue",
         "configuration, latency, CPU use", _cpu_bound),
    Item("rate_limit_below_expected", "warning", "AI Gateway rate limit below the expected rate",
         "an AI Gateway call limit on the endpoint as a whole (key `endpoint`, or no key) allows fewer calls per second than the "
         "peak QPS (expected, else observed); per-user and per-group limits are not compared",
         "configuration, traffic", _rate_limits),
    Item("latency_target_missing", "warning", "No latency target", "the P50, P90 and P99 targets are all disabled (null)",
         "targets", _latency_target),
)


def _workspace_outcome(found: WorkspaceUsage) -> Outcome:
    numbers = dict(qps=found.qps, qps_limit=found.qps_limit, concurrent_requests=found.concurrent_requests,
                   concurrency_limit=found.concurrency_limit, usage_ratio=found.ratio, threshold=found.threshold)
    shares = (f"the {found.endpoints} standard endpoints use {100 * found.qps_ratio:.0f}% of the ~{found.qps_limit:g} QPS "
              f"({found.qps:.0f} QPS) and {100 * found.concurrency_ratio:.0f}% of the {found.concurrency_limit:g} concurrent "
              f"requests ({found.concurrent_requests:.0f}) the workspace allows them")
    if found.ratio < found.threshold:
        return ok(f"{shares}: under the {100 * found.threshold:g}% threshold", **numbers)
    if not found.candidates:
        return fail(f"{shares}: over the {100 * found.threshold:g}% threshold, and no custom-model endpoint can move",
                    "spread the traffic over more workspaces, or cut it (client-side batching)", **numbers)
    order = ", ".join(f"{name} ({qps:.0f} QPS)" for name, qps in found.candidates)
    return fail(f"{shares}: over the {100 * found.threshold:g}% threshold", f"enable route optimization on {order}, in this "
                f"order (leaves {100 * (found.ratio_after or 0):.0f}%); route-optimized endpoints accept only OAuth tokens",
                **numbers)


WORKSPACE_ITEM = Item(
    "workspace_limit_near", "warning", "Standard endpoints near the workspace's limits",
    "the standard (not route-optimized) endpoints together use at least workspace_limits.usage_ratio_threshold of "
    "the workspace's QPS or concurrent-request limit; the finding names the custom-model endpoints to move to route "
    "optimization first, largest QPS first", "every endpoint's configuration and traffic", _workspace_outcome)
ITEM_IDS = frozenset(i.id for i in (*ITEMS, WORKSPACE_ITEM))


# -- the audit ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    endpoint: str | None  # None: the workspace
    check: str
    severity: Severity
    status: Status
    message: str
    fix: str = ""
    numbers: Mapping[str, Any] = field(default_factory=dict)

    def blocking(self, fail_on: Severity) -> bool:
        return self.status == "fail" and RANK[self.severity] <= RANK[fail_on]


@dataclass(frozen=True)
class Audit:
    source: str
    fail_on: Severity
    endpoints: tuple[tuple[str, Sizing | None], ...]
    results: tuple[Result, ...]
    usage: WorkspaceUsage | None
    note: str | None = None  # e.g. that the totals are one shard's
    at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    @property
    def exit_code(self) -> int:
        return 1 if any(r.blocking(self.fail_on) for r in self.results) else 0

    def of(self, endpoint: str | None) -> list[Result]:
        return [r for r in self.results if r.endpoint == endpoint]


def audit(entries: Sequence[Mapping[str, Any]], settings: Settings, *, only: Sequence[str] = (),
          expected: Mapping[str, Expected] | None = None, fail_on: Severity = "warning", source: str = "",
          shard: tuple[int, int] = (0, 1), limits: WorkspaceLimits | None = None) -> Audit:
    """Check the endpoints of an /api/v1/endpoints document (`entries`), all or `only` those named. The
    workspace check counts every endpoint, and applies when a checked endpoint is standard (not route-optimized);
    its `limits` default to the settings'. Raises LookupError naming endpoints that are not there."""
    expected = expected or {}
    names = [e["name"] for e in entries]
    missing = [n for n in [*only, *expected] if n not in names]
    if missing:
        raise LookupError(f"no endpoint named {', '.join(repr(n) for n in dict.fromkeys(missing))} "
                          f"(the workspace has {', '.join(names) or 'none'})")
    subjects = []
    for entry in entries:
        info, figures, checks = from_json(entry)
        thresholds, _ = settings.remediation.for_endpoint(info)
        subjects.append(Subject(info, figures, checks, {c.name: c.target for c in checks}, thresholds,
                                expected.get(info.name)))
    results, sized = [], []
    for s in subjects:
        if only and s.info.name not in only:
            continue
        sized.append((s.info.name, s.sizing))
        for item in ITEMS:
            o = item.evaluate(s)
            results.append(Result(s.info.name, item.id, item.severity, o.status, o.message, o.fix, dict(o.numbers)))
    found = usage(((s.info, _traffic(s)) for s in subjects), limits or settings.workspace_limits)
    if only and not any(standard(s.info) for s in subjects if s.info.name in only):
        o = skip("the endpoints checked are route-optimized: the workspace's limits on standard endpoints do not apply")
    else:
        o = WORKSPACE_ITEM.evaluate(found)
    results.append(Result(None, WORKSPACE_ITEM.id, WORKSPACE_ITEM.severity, o.status, o.message, o.fix, dict(o.numbers)))
    note = (f"the exporter is shard {shard[0]} of {shard[1]}: the workspace totals cover its endpoints only "
            "(sum across shards: docs/metrics.md)") if shard[1] > 1 else None
    return Audit(source, fail_on, tuple(sized), tuple(results), found, note)


def exporter_limits(doc: Mapping[str, Any]) -> WorkspaceLimits | None:
    """The workspace limits a running exporter applies (its /api/v1/endpoints `workspace_usage`), if it says."""
    u = doc.get("workspace_usage")
    if not isinstance(u, Mapping):
        return None
    return WorkspaceLimits(requests_per_second=u["qps_limit"], concurrent_requests=u["concurrency_limit"],
                           usage_ratio_threshold=u["threshold"])


def _traffic(s: Subject) -> Figures:
    """The figures the workspace totals count: the expected traffic where given (sizing before traffic)."""
    e = s.expected
    return s.figures if e is None else Figures(qps=e.qps, latency_mean=e.latency_ms / 1000)


def from_json(entry: Mapping[str, Any]) -> tuple[EndpointInfo, Figures, tuple[Check, ...]]:
    """An endpoint of /api/v1/endpoints back into the pipeline's objects. Keys this version does not know (a
    newer exporter's) are left out, so `check` reads exporters of other versions."""
    config = dict(entry["config"])
    config["served_entities"] = tuple(_dataclass(ServedEntity, e) for e in config.get("served_entities") or ())
    config["rate_limits"] = tuple(_dataclass(RateLimit, r) for r in config.get("rate_limits") or ())
    info = _dataclass(EndpointInfo, config)
    figures = _dataclass(Figures, entry.get("figures") or {})
    checks = tuple(Check(c["check"], c.get("value"), c.get("target")) for c in entry.get("checks") or ())
    return info, figures, checks


def _dataclass(cls: type, data: Mapping[str, Any]) -> Any:
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in known})


# -- output ---------------------------------------------------------------------------------------------------


def to_json(a: Audit) -> dict[str, Any]:
    """The JSON output (schema: docs/check.schema.json)."""
    failed = [r for r in a.results if r.status == "fail"]
    return {
        "schema_version": SCHEMA_VERSION,
        "source": a.source,
        "generated_at": a.at.isoformat(timespec="seconds"),
        "fail_on": a.fail_on,
        "exit_code": a.exit_code,
        "summary": {
            "endpoints": len(a.endpoints),
            "checks": len(a.results),
            "passed": sum(r.status == "pass" for r in a.results),
            "failed": len(failed),
            "skipped": sum(r.status == "skip" for r in a.results),
            "blocking": sum(r.blocking(a.fail_on) for r in a.results),
            "failed_by_severity": {s: sum(r.severity == s for r in failed) for s in SEVERITIES},
        },
        "note": a.note,
        "endpoints": [{"name": name, "sizing": _sizing_json(sizing)} for name, sizing in a.endpoints],
        "workspace": None if a.usage is None else {
            "standard_endpoints": a.usage.endpoints, "qps": a.usage.qps, "qps_limit": a.usage.qps_limit,
            "concurrent_requests": a.usage.concurrent_requests, "concurrency_limit": a.usage.concurrency_limit,
            "usage_ratio": a.usage.ratio, "threshold": a.usage.threshold,
            "move_first": [{"endpoint": n, "qps": q} for n, q in a.usage.candidates]},
        "results": [{"endpoint": r.endpoint, "check": r.check, "severity": r.severity, "status": r.status,
                     "blocking": r.blocking(a.fail_on), "message": r.message, "fix": r.fix or None,
                     "numbers": dict(r.numbers)} for r in a.results],
    }


def _sizing_json(s: Sizing | None) -> dict[str, Any] | None:
    if s is None:
        return None
    return {"source": s.source, "baseline_qps": s.baseline_qps, "peak_qps": s.peak_qps, "latency_seconds": s.latency_s,
            "min_concurrency": s.min_concurrency, "max_concurrency": s.max_concurrency, "basis": s.basis}


def to_text(a: Audit) -> str:
    lines = [f"serving-exporter check: {len(a.endpoints)} endpoint(s) from {a.source}; failing on {a.fail_on} or worse", ""]
    sizing = dict(a.endpoints)
    for name in [*(n for n, _ in a.endpoints), None]:
        results = a.of(name)
        failed = [r for r in results if r.status == "fail"]
        failed.sort(key=lambda r: RANK[r.severity])
        counts = ", ".join(f"{n} {s}" for s in SEVERITIES if (n := sum(r.severity == s for r in failed)))
        verdict = "FAIL" if any(r.blocking(a.fail_on) for r in results) else "ok"
        passed, skipped = sum(r.status == "pass" for r in results), sum(r.status == "skip" for r in results)
        lines.append(f"{name or WORKSPACE}  {verdict}  ({counts + '; ' if counts else ''}{passed} passed, {skipped} skipped)")
        for r in failed:
            lines.append(f"  {r.severity:<8} {r.check}: {r.message}")
            lines.append(f"  {'':<8} fix: {r.fix}")
        if name is not None and sizing.get(name):
            s = sizing[name]
            lines.append(f"  sizing: min {s.min_concurrency}, max {s.max_concurrency}  [{s.basis}]")  # type: ignore[union-attr]
        if name is None and a.note:
            lines.append(f"  note: {a.note}")
    failed = [r for r in a.results if r.status == "fail"]
    by = ", ".join(f"{sum(r.severity == s for r in failed)} {s}" for s in SEVERITIES)
    lines += ["", f"{len(failed)} finding(s) ({by}) in {len(a.results)} checks; exit {a.exit_code}"]
    return "\n".join(lines) + "\n"


def to_junit(a: Audit) -> str:
    """JUnit XML: a test suite per endpoint (and one for the workspace), a test case per check. A finding at or
    above --fail-on is a <failure>, a skipped check <skipped>; a finding below the level passes, with the finding
    in <system-out>, so CI shows it without failing on it."""
    root = ET.Element("testsuites", name="serving-exporter check")
    totals = [0, 0]
    for name in [*(n for n, _ in a.endpoints), None]:
        results = a.of(name)
        suite = ET.SubElement(root, "testsuite", name=name or WORKSPACE, tests=str(len(results)),
                              failures=str(sum(r.blocking(a.fail_on) for r in results)), errors="0",
                              skipped=str(sum(r.status == "skip" for r in results)), time="0",
                              timestamp=a.at.strftime("%Y-%m-%dT%H:%M:%S"))
        ET.SubElement(ET.SubElement(suite, "properties"), "property", name="source", value=a.source)
        for r in results:
            case = ET.SubElement(suite, "testcase", classname=f"serving-exporter.{name or WORKSPACE}", name=r.check,
                                 time="0")
            text = f"{r.message}\nfix: {r.fix}" + "".join(f"\n{k}: {v}" for k, v in r.numbers.items())
            if r.blocking(a.fail_on):
                ET.SubElement(case, "failure", type=r.severity, message=f"{r.severity}: {r.message}").text = text
            elif r.status == "fail":
                ET.SubElement(case, "system-out").text = f"{r.severity} finding, below --fail-on {a.fail_on}: {text}"
            elif r.status == "skip":
                ET.SubElement(case, "skipped", message=r.message)
        totals[0] += len(results)
        totals[1] += int(suite.get("failures", "0"))
    root.set("tests", str(totals[0]))
    root.set("failures", str(totals[1]))
    root.set("errors", "0")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


FORMATS: dict[str, Callable[[Audit], str]] = {
    "text": to_text, "json": lambda a: json.dumps(to_json(a), indent=1) + "\n", "junit": to_junit}


# -- docs/check.md -----------------------------------------------------------------------------------------------


def markdown() -> str:
    rows = [f"| [`{i.id}`](#{i.id}) | {i.severity} | {i.title} |" for i in (*ITEMS, WORKSPACE_ITEM)]
    sections = []
    for i in (*ITEMS, WORKSPACE_ITEM):
        scope = "the workspace (one result, `endpoint` null)" if i is WORKSPACE_ITEM else "each endpoint"
        sections += [f"### {i.id}", "", f"**{i.severity}** — {i.title}. Checked for {scope}.", "",
                     f"- **Fails when** {i.when}.", f"- **Reads:** {i.needs}.", ""]
    return "\n".join(["| check | severity | title |", "|---|---|---|", *rows, "", *sections])


if __name__ == "__main__":
    sys.stdout.write(markdown())
