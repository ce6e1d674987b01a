"""Scenario: the traffic, configuration and wire-format parameters of one simulated endpoint."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

ENTITY_LABELS = ("served_entity", "served_model", "served_model_name", "entity_name")
GPU_MEMORY_METRIC_NAMES = ("gpu_memory_usage_percentage", "gpu_mem_usage_percentage")

# Fields that describe how the metrics are written rather than the traffic: a preset swap keeps
# them (together with the endpoint's identity fields) so an endpoint does not change dialect.
FORMAT_FIELDS = frozenset(
    {"openmetrics", "timestamps", "entity_label", "cumulative_histogram",
     "gpu_memory_metric_name", "memory_as_fraction"}
)
KEPT_ON_PRESET = FORMAT_FIELDS | {"served_entities", "tags", "task"}

# Fields visible in the served-entity configuration: changing one bumps config_version.
ENTITY_CONFIG_FIELDS = (
    "workload_type", "workload_size", "scale_to_zero_enabled",
    "min_provisioned_concurrency", "max_provisioned_concurrency",
)
# Fields an entity override may change: the per-replica behaviour of that entity. Arrival rate
# and wire format belong to the endpoint.
ENTITY_OVERRIDABLE = frozenset(
    {"service_time_median_s", "service_time_sigma", "error_5xx_ratio", "error_4xx_ratio",
     "cpu_percent_at_full_busy", "cpu_percent_idle", "memory_percent",
     "gpu_percent_at_full_busy", "gpu_percent_idle", "gpu_memory_percent",
     "max_queue_per_concurrency", "deployment_state", "deployment_state_message",
     *ENTITY_CONFIG_FIELDS}
)


@dataclass(frozen=True)
class Scenario:
    """Parameters of one endpoint; immutable so a schedule of scenarios can be shared safely."""

    # Offered traffic: mean arrivals/s, a slow sine of this relative amplitude (period
    # 30 simulated minutes) plus ±5% seeded noise. An amplitude above 1 gives idle stretches.
    qps: float = 40.0
    qps_variation: float = 0.15
    # Service time per request: lognormal with this median (s) and log-space sigma.
    service_time_median_s: float = 0.030
    service_time_sigma: float = 0.4
    # Errors as shares of served requests (429s from a full queue come on top of 4xx).
    error_5xx_ratio: float = 0.0
    error_4xx_ratio: float = 0.001
    # Resource use: CPU/GPU move linearly from idle to full-busy with the busy fraction.
    cpu_percent_at_full_busy: float = 90.0
    cpu_percent_idle: float = 8.0
    memory_percent: float = 35.0
    gpu_percent_at_full_busy: float | None = None
    gpu_percent_idle: float = 1.0
    gpu_memory_percent: float | None = None
    # Served-entity configuration as the detail API reports it.
    workload_type: str = "CPU"
    workload_size: str = "Small"
    min_provisioned_concurrency: int = 4
    max_provisioned_concurrency: int = 16
    scale_to_zero_enabled: bool = False
    route_optimized: bool = False
    # An AI Gateway limit on the endpoint's calls per minute (all callers together), shown in the detail
    # configuration only: the simulator does not throttle by it.
    rate_limit_calls_per_minute: int | None = None
    max_queue_per_concurrency: float = 2.0
    emit_queue_time: bool = False
    state_ready: str = "READY"
    config_update: str = "NOT_UPDATING"
    deployment_state: str = "DEPLOYMENT_READY"
    deployment_state_message: str = ""
    task: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    # (entity name, traffic percentage); empty = one entity named after the endpoint.
    served_entities: tuple[tuple[str, int], ...] = ()
    # entity name -> {field: value} for fields in ENTITY_OVERRIDABLE.
    entity_overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # Wire-format variants seen (or plausible) in the real API.
    openmetrics: bool = False
    timestamps: bool = True
    entity_label: str | None = None
    cumulative_histogram: bool = False
    gpu_memory_metric_name: str = "gpu_memory_usage_percentage"
    memory_as_fraction: bool = False

    def __post_init__(self) -> None:
        # Normalise JSON-ish inputs (lists, ints) so equality and hashing behave.
        entities = tuple((str(n), int(p)) for n, p in (
            (e["name"], e["traffic_percentage"]) if isinstance(e, Mapping) else e
            for e in self.served_entities))
        object.__setattr__(self, "served_entities", entities)
        object.__setattr__(self, "tags", {str(k): str(v) for k, v in dict(self.tags).items()})
        object.__setattr__(self, "entity_overrides",
                           {str(k): dict(v) for k, v in dict(self.entity_overrides).items()})
        self._validate()

    def _validate(self) -> None:
        def require(ok: bool, message: str) -> None:
            if not ok:
                raise ValueError(message)

        require(self.qps >= 0 and self.qps_variation >= 0, "qps and qps_variation must be >= 0")
        require(self.service_time_median_s > 0 and self.service_time_sigma >= 0,
                "service_time_median_s must be > 0 and service_time_sigma >= 0")
        require(0 <= self.error_5xx_ratio and 0 <= self.error_4xx_ratio
                and self.error_5xx_ratio + self.error_4xx_ratio <= 1, "error ratios must sum to <= 1")
        require(0 <= self.min_provisioned_concurrency <= self.max_provisioned_concurrency,
                "need 0 <= min_provisioned_concurrency <= max_provisioned_concurrency")
        require(self.max_queue_per_concurrency >= 0, "max_queue_per_concurrency must be >= 0")
        require(self.rate_limit_calls_per_minute is None or self.rate_limit_calls_per_minute >= 0,
                "rate_limit_calls_per_minute must be null or >= 0")
        require(self.entity_label in (None, *ENTITY_LABELS),
                f"entity_label must be null or one of {ENTITY_LABELS}")
        require(self.gpu_memory_metric_name in GPU_MEMORY_METRIC_NAMES,
                f"gpu_memory_metric_name must be one of {GPU_MEMORY_METRIC_NAMES}")
        if self.served_entities:
            require(sum(p for _, p in self.served_entities) == 100,
                    "served_entities traffic percentages must sum to 100")
            require(len({n for n, _ in self.served_entities}) == len(self.served_entities),
                    "served entity names must be unique")
        for entity, patch in self.entity_overrides.items():
            unknown = set(patch) - ENTITY_OVERRIDABLE
            require(not unknown, f"entity_overrides[{entity!r}]: cannot override {sorted(unknown)}")

    @property
    def mean_service_time_s(self) -> float:
        return self.service_time_median_s * math.exp(self.service_time_sigma ** 2 / 2)

    @property
    def autoscaling(self) -> bool:
        return self.scale_to_zero_enabled or (
            self.min_provisioned_concurrency < self.max_provisioned_concurrency)

    def entities(self, endpoint_name: str) -> tuple[tuple[str, int], ...]:
        return self.served_entities or ((endpoint_name, 100),)

    def for_entity(self, entity: str) -> Scenario:
        """The scenario one served entity runs under (the endpoint's, plus its overrides)."""
        patch = self.entity_overrides.get(entity)
        return dataclasses.replace(self, **patch) if patch else self

    def patched(self, **changes: Any) -> Scenario:
        unknown = set(changes) - FIELD_NAMES
        if unknown:
            raise ValueError(f"unknown scenario fields: {sorted(unknown)}")
        return dataclasses.replace(self, **changes)

    def with_preset(self, preset: str, **changes: Any) -> Scenario:
        """The named preset, keeping this endpoint's entities, tags and format unless given."""
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; known: {sorted(PRESETS)}")
        kept = {name: getattr(self, name) for name in KEPT_ON_PRESET}
        return PRESETS[preset].patched(**{**kept, **changes})

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["served_entities"] = [{"name": n, "traffic_percentage": p} for n, p in self.served_entities]
        return d


FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(Scenario))


PRESETS: dict[str, Scenario] = {
    # Well within capacity: autoscaling keeps ~30% headroom, so no queue and no 5xx.
    "healthy": Scenario(),
    # Fixed capacity (autoscaling off) a few percent below the offered load: the queue stays
    # full and the overflow is answered 429.
    "queueing": Scenario(
        qps=90.0, qps_variation=0.05, service_time_median_s=0.123, service_time_sigma=0.5,
        min_provisioned_concurrency=12, max_provisioned_concurrency=12, workload_size="Medium",
        max_queue_per_concurrency=2.0, emit_queue_time=True, cpu_percent_at_full_busy=85.0,
        memory_percent=48.0),
    "error_burst": Scenario(
        qps=20.0, service_time_median_s=0.2, error_5xx_ratio=0.05, error_4xx_ratio=0.01,
        cpu_percent_at_full_busy=70.0, memory_percent=52.0),
    # Pinned at max concurrency with every replica close to fully busy.
    "cpu_saturated": Scenario(
        qps=18.0, qps_variation=0.04, service_time_median_s=0.4, service_time_sigma=0.3,
        min_provisioned_concurrency=4, max_provisioned_concurrency=8, workload_size="Medium",
        cpu_percent_at_full_busy=100.0, cpu_percent_idle=5.0, memory_percent=85.0),
    "high_qps_no_route_opt": Scenario(
        qps=260.0, qps_variation=0.1, service_time_median_s=0.008, service_time_sigma=0.35,
        route_optimized=False, cpu_percent_at_full_busy=75.0, memory_percent=30.0),
    "gpu_idle": Scenario(
        qps=2.0, qps_variation=0.3, service_time_median_s=0.05, service_time_sigma=0.3,
        workload_type="GPU_SMALL", min_provisioned_concurrency=4, max_provisioned_concurrency=4,
        cpu_percent_at_full_busy=40.0, cpu_percent_idle=3.0, memory_percent=28.0,
        gpu_percent_at_full_busy=90.0, gpu_percent_idle=1.5, gpu_memory_percent=20.0),
    # Amplitude above 1: traffic stops for part of each cycle and the endpoint scales to zero.
    "scale_to_zero": Scenario(
        qps=0.5, qps_variation=1.5, service_time_median_s=0.2, service_time_sigma=0.4,
        min_provisioned_concurrency=0, max_provisioned_concurrency=4, scale_to_zero_enabled=True,
        cpu_percent_at_full_busy=60.0, cpu_percent_idle=4.0, memory_percent=22.0),
}

