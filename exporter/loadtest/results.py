"""From per-step measurements to the knee and the provisioned concurrency to configure (pure functions).

The knee is the highest step, before the first that fails, whose latency percentiles meet their
targets and whose error share is below the error-ratio target. The serving guide's formula then gives
the concurrency a load needs: QPS x mean service time. The service time is the mean latency of the
least-loaded step (the fewest clients, so the least queueing), and the headroom and the rounding are
those of `serving-exporter recommend` (pipeline/rules.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from ..model import EndpointInfo, Figures
from ..pipeline.rules import Context, Thresholds

# Latency checks of the knee: (target key in targets_for(), StepResult attribute, label).
LATENCY_CHECKS = (("latency_p50", "p50_s", "P50"), ("latency_p90", "p90_s", "P90"), ("latency_p99", "p99_s", "P99"))
DEFAULT_ERROR_RATIO = 0.01  # the knee's error limit when the error_ratio target is switched off (null)


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending sequence (q in 0..1)."""
    if not ordered:
        return None
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass(frozen=True)
class StepResult:
    """One step as measured by the clients (its first WARMUP_SHARE not included)."""

    users: int
    seconds: float  # measured time
    requests: int  # answers of any kind, and failed connections
    ok: int  # 2xx answers
    errors_429: int
    p50_s: float | None  # latency percentiles and mean over the 2xx answers
    p90_s: float | None
    p99_s: float | None
    mean_s: float | None
    cpu_percent: float | None = None  # the load generator's own CPU, highest sample in the step
    cpu_warning: bool = False  # Locust's warning: the generator may be the bottleneck

    @classmethod
    def measure(cls, users: int, seconds: float, latencies_ok_s: Sequence[float], requests: int, errors_429: int,
                cpu_percent: float | None = None, cpu_warning: bool = False) -> StepResult:
        ordered = sorted(latencies_ok_s)
        return cls(users, seconds, requests, len(ordered), errors_429, percentile(ordered, 0.5), percentile(ordered, 0.9),
                   percentile(ordered, 0.99), sum(ordered) / len(ordered) if ordered else None, cpu_percent, cpu_warning)

    @property
    def rps(self) -> float:
        """Achieved throughput: 2xx answers per second."""
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    @property
    def error_ratio(self) -> float:
        return (self.requests - self.ok) / self.requests if self.requests else 0.0

    @property
    def ratio_429(self) -> float:
        return self.errors_429 / self.requests if self.requests else 0.0

    @property
    def in_flight(self) -> float | None:
        """Requests outstanding on average (Little's law): close to the clients unless they wait elsewhere."""
        return self.rps * self.mean_s if self.mean_s is not None else None


@dataclass(frozen=True)
class Recommendation:
    min_concurrency: int
    max_concurrency: int
    required_concurrency: float  # the knee's throughput x service time, before headroom
    basis: str


@dataclass(frozen=True)
class Analysis:
    steps: tuple[StepResult, ...]
    failures: tuple[tuple[str, ...], ...]  # per step, why it misses the targets (empty: meets them)
    knee: int | None  # index into steps
    service_time_s: float | None
    recommendation: Recommendation | None

    def server_concurrency(self, step: StepResult) -> float | None:
        """Servers the step's throughput keeps busy (QPS x service time); the clients beyond them queue."""
        return step.rps * self.service_time_s if self.service_time_s is not None else None

    def to_json(self) -> dict:
        steps = []
        for step, failed in zip(self.steps, self.failures):
            steps.append({**asdict(step), "rps": step.rps, "error_ratio": step.error_ratio, "ratio_429": step.ratio_429,
                          "in_flight": step.in_flight, "server_concurrency": self.server_concurrency(step),
                          "meets_targets": not failed, "misses": list(failed)})
        return {"steps": steps, "knee": None if self.knee is None else steps[self.knee],
                "service_time_s": self.service_time_s,
                "recommendation": asdict(self.recommendation) if self.recommendation else None}


def misses(step: StepResult, targets: dict[str, float | None]) -> tuple[str, ...]:
    """Why a step does not meet the targets (empty when it does)."""
    found = []
    if step.ok == 0:
        found.append("no successful request")
    for key, attr, label in LATENCY_CHECKS:
        value, target = getattr(step, attr), targets.get(key)
        if target is not None and value is not None and value > target:
            found.append(f"{label} {value:.3g} s > {target:g} s")
    limit = error_limit(targets)
    if step.error_ratio >= limit:
        found.append(f"errors {100 * step.error_ratio:.1f}% >= {100 * limit:g}%")
    return tuple(found)


def knee_rule(targets: dict[str, float | None]) -> str:
    """The knee's conditions in words, e.g. `P99 <= 0.5 s, errors < 1%`."""
    wanted = [f"{label} <= {targets[key]:g} s" for key, _, label in LATENCY_CHECKS if targets.get(key) is not None]
    return ", ".join(wanted + [f"errors < {100 * error_limit(targets):g}%"])


def error_limit(targets: dict[str, float | None]) -> float:
    limit = targets.get("error_ratio")
    return DEFAULT_ERROR_RATIO if limit is None else limit


def analyse(steps: Sequence[StepResult], targets: dict[str, float | None], thresholds: Thresholds, info: EndpointInfo,
            baseline_qps: float | None = None, peak_qps: float | None = None) -> Analysis:
    """The knee and the recommendation. `baseline_qps`/`peak_qps`: the traffic expected in production, for
    the minimum and the maximum; each defaults to the knee's throughput (what the endpoint carried within targets)."""
    failures = tuple(misses(s, targets) for s in steps)
    knee = None
    for i, failed in enumerate(failures):
        if failed:
            break
        knee = i
    usable = [s for s in steps if s.mean_s is not None and s.error_ratio < error_limit(targets)]
    service = min(usable, key=lambda s: s.users).mean_s if usable else None
    rec = None
    if knee is not None and service is not None:
        knee_rps = steps[knee].rps
        base, peak = baseline_qps or knee_rps, peak_qps or knee_rps
        suggest = Context(info, Figures(), {}, {}, thresholds).suggest  # the rounding and limit `recommend` uses
        low = suggest(base * service)
        qps = (f"baseline {base:.3g} / peak {peak:.3g} QPS" if baseline_qps or peak_qps
               else f"knee throughput {knee_rps:.3g} QPS")
        basis = (f"{qps} x {service:.3g} s mean service time (latency at {min(usable, key=lambda s: s.users).users} clients),"
                 f" +{100 * thresholds.headroom_ratio:g}% headroom")
        rec = Recommendation(low, max(low, suggest(peak * service)), knee_rps * service, basis)
    return Analysis(tuple(steps), failures, knee, service, rec)
