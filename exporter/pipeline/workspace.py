"""The limits a workspace sets on its standard endpoints together, and which endpoints to move first.

Standard (not route-optimized) endpoints share about 200 QPS per workspace and 192 to 1,024 concurrent
client requests per workspace, by region; route-optimized endpoints are outside both. So a workspace can
throttle every standard endpoint while each one looks healthy on its own. This step runs on a published
snapshot (after every endpoint's own analysis): it sums the standard endpoints' window QPS and their
concurrent requests (QPS x mean latency, Little's law), compares them with the limits (`workspace_limits:`),
and, when a share reaches the threshold, names the custom-model endpoints to move to route optimization
first, largest QPS first, until the rest fits under it. Each named endpoint gets the `workspace_limit_near`
hint (pipeline/rules.py), with the same hysteresis as the other hints.

A replica of a sharded deployment sees only its share of the endpoints, so its totals are partial: the
sum across shards is taken in PromQL (docs/metrics.md, the recording rules in alerts/prometheus/).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

from pydantic import Field

from ..model import EndpointInfo, Figures, Hint, Snapshot, WorkspaceUsage
from ..strict import Strict
from .rules import RULES, SELF_HOSTED, Context, RuleState

if TYPE_CHECKING:
    from ..config import Settings

RULE = next(r for r in RULES if r.id == "workspace_limit_near")


class WorkspaceLimits(Strict):
    """Per-workspace limits on standard endpoints (the `workspace_limits:` section)."""

    requests_per_second: float = Field(200.0, gt=0, description="QPS the standard (not route-optimized) endpoints of a workspace share (about 200)")
    concurrent_requests: float = Field(192.0, gt=0, description="concurrent client requests the standard endpoints of a workspace share: 192 to 1,024 by region; the default is the lowest")
    usage_ratio_threshold: float = Field(0.8, gt=0, le=1, description="share of either limit from which endpoints are named to move to route optimization (hint workspace_limit_near; alert ModelServingWorkspaceLimitNear)")


def standard(info: EndpointInfo) -> bool:
    """Counted against the workspace limits: a managed endpoint not known to be route-optimized (before the
    detailed configuration is read, an endpoint counts as standard, the platform's default). Self-hosted
    endpoints are outside the workspace."""
    return info.route_optimized is not True and info.platform != SELF_HOSTED


def usage(endpoints: Iterable[tuple[EndpointInfo, Figures]], limits: WorkspaceLimits) -> WorkspaceUsage:
    """The standard endpoints' totals against the limits, and the endpoints to move first when over the threshold."""
    rows = [(info, f.qps or 0.0, (f.qps or 0.0) * (f.latency_mean or 0.0)) for info, f in endpoints if standard(info)]
    qps, concurrent = sum(r[1] for r in rows), sum(r[2] for r in rows)
    threshold = limits.usage_ratio_threshold

    def ratio(q: float, c: float) -> float:
        return max(q / limits.requests_per_second, c / limits.concurrent_requests)

    candidates: list[tuple[str, float]] = []
    if ratio(qps, concurrent) >= threshold:
        for info, q, c in sorted(rows, key=lambda r: (-r[1], -r[2], r[0].name)):
            if ratio(qps, concurrent) < threshold or q <= 0:
                break
            if info.kind == "custom":  # only custom-model endpoints can be route-optimized
                candidates.append((info.name, q))
                qps, concurrent = qps - q, concurrent - c
    return WorkspaceUsage(qps=sum(r[1] for r in rows), concurrent_requests=sum(r[2] for r in rows), endpoints=len(rows),
                          qps_limit=limits.requests_per_second, concurrency_limit=limits.concurrent_requests,
                          threshold=threshold, candidates=tuple(candidates),
                          ratio_after=ratio(qps, concurrent) if candidates else None)


class WorkspaceAnalysis:
    """Adds the workspace usage and the `workspace_limit_near` hints to each snapshot. The hysteresis is the
    rule engine's (fire_after_polls, clear_after_polls), counted per endpoint over the polls it is applied to."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._state: dict[tuple[str, str], RuleState] = {}  # by EndpointInfo.key

    def apply(self, snap: Snapshot, immediate: bool = False) -> Snapshot:
        """The snapshot with its usage and hints. `immediate`: fire without hysteresis (one-shot commands)."""
        # Limits are per workspace: each workspace's standard endpoints are summed apart.
        by_workspace: dict[str, list[tuple[EndpointInfo, Figures]]] = {}
        for r in snap.endpoints:
            if standard(r.info):
                by_workspace.setdefault(r.info.workspace or "", []).append((r.info, r.endpoint.figures))
        if not by_workspace:
            by_workspace[snap.workspace or ""] = []  # no standard endpoint: the totals are zero, not absent
        found_in = {w: usage(rows, self.settings.workspace_limits) for w, rows in by_workspace.items()}
        named = {(w, name) for w, u in found_in.items() for name, _ in u.candidates}
        remediation = self.settings.remediation
        now = snap.completed_at_s or 0.0
        reports = []
        for report in snap.endpoints:
            info = report.info
            state = self._state.setdefault(info.key, RuleState())
            detail = None
            if info.key in named:  # the others' condition does not hold: no need for their settings
                thresholds, disabled = remediation.for_endpoint(info)
                if RULE.id not in disabled:
                    ctx = Context(info, report.endpoint.figures, {c.name: c for c in report.endpoint.checks},
                                  self.settings.targets_for(info), thresholds, workspace=found_in[info.workspace or ""])
                    detail = RULE.detail(ctx)
            state.advance(detail, 1 if immediate else remediation.fire_after_polls, remediation.clear_after_polls, now)
            if state.since_s is not None:
                hint = Hint(RULE.id, RULE.severity, RULE.summary, state.detail, state.since_s)
                report = replace(report, hints=report.hints + (hint,))
            reports.append(report)
        for gone in set(self._state) - {r.info.key for r in snap.endpoints}:
            del self._state[gone]
        return replace(snap, endpoints=tuple(reports), usages=found_in)
