"""Production targets per check, globally and per endpoint. A check is breached when its value exceeds its
target; the defaults come from the serving guide."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from ..model import EndpointInfo
from ..strict import Strict, patch_of
from .selection import Selector

# Target key -> check name. The check names are the `check` label values; None as a target disables a check.
TARGET_CHECKS = {
    "latency_p50_seconds": "latency_p50",
    "latency_p90_seconds": "latency_p90",
    "latency_p99_seconds": "latency_p99",
    "error_ratio": "error_ratio",
    "queue_depth": "queue_depth",
    "cpu_utilization_ratio": "cpu_utilization",
    "memory_utilization_ratio": "memory_utilization",
    "gpu_utilization_ratio": "gpu_utilization",
    "ttft_p99_seconds": "ttft_p99",
    "tpot_p99_seconds": "tpot_p99",
    "kv_cache_utilization_ratio": "kv_cache_utilization",
}
CHECKS = tuple(TARGET_CHECKS.values())
# Checks only some model servers feed (LLM servers): their target is exported only where the endpoint has the
# figure, so an endpoint that can never have it does not carry target series for it.
SERVER_CHECKS = frozenset({"ttft_p99", "tpot_p99", "kv_cache_utilization"})


class Targets(Strict):
    """Production targets; a value is breached when exceeded. Defaults from the serving guide."""

    latency_p50_seconds: float | None = Field(0.1, ge=0)
    latency_p90_seconds: float | None = Field(0.25, ge=0)
    latency_p99_seconds: float | None = Field(0.5, ge=0)
    error_ratio: float | None = Field(0.01, ge=0, le=1)
    queue_depth: float | None = Field(0.0, ge=0)
    cpu_utilization_ratio: float | None = Field(0.8, ge=0, le=1)
    memory_utilization_ratio: float | None = Field(0.8, ge=0, le=1)
    gpu_utilization_ratio: float | None = Field(None, ge=0, le=1)
    # LLM servers. MLPerf Inference's server-scenario limits for interactive LLM serving (Llama 2 70B):
    # TTFT P99 2 s and TPOT P99 200 ms (5 tokens/s per stream, about reading speed).
    ttft_p99_seconds: float | None = Field(2.0, ge=0, description="time to first token, P99 (LLM servers)")
    tpot_p99_seconds: float | None = Field(0.2, ge=0, description="time per output token, P99 (LLM servers)")
    # Above about 90% of its blocks vLLM starts preempting (recomputing or swapping) running sequences.
    kv_cache_utilization_ratio: float | None = Field(0.9, ge=0, le=1, description="KV-cache use of the fullest replica, window mean (LLM servers)")

    def by_check(self) -> dict[str, float | None]:
        return {TARGET_CHECKS[k]: getattr(self, k) for k in TARGET_CHECKS}


TargetPatch = patch_of(Targets, "Only the keys written here override; `null` disables a check for the matched endpoints.",
                       nullable=True)


class TargetOverride(Strict):
    match: Selector
    targets: TargetPatch  # type: ignore[valid-type]


def targets_for(targets: Targets, overrides: Sequence[TargetOverride], info: EndpointInfo) -> dict[str, float | None]:
    """Check name -> target for one endpoint: the global targets, then every matching override in order."""
    merged = targets.by_check()
    for override in overrides:
        if override.match.matches(info):
            for key in override.targets.model_fields_set:
                merged[TARGET_CHECKS[key]] = getattr(override.targets, key)
    return merged
