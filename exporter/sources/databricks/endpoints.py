"""Databricks serving-endpoint JSON (list and detail) → EndpointInfo, defensively.

Fields the platform adds or omits never fail a poll: a missing or mistyped field is
unknown (None), never an error. Databricks' own words (workload types and sizes,
readiness and deployment states) are kept for display and turned here, and only here,
into the neutral fields the pipeline decides on.
"""

from __future__ import annotations

import math
from typing import Any

from ...model import EndpointInfo, RateLimit, ServedEntity

PLATFORM = "databricks"

# Provisioned concurrency of the legacy workload sizes (upper end of each range: Small 4, Medium 8-16,
# Large 16-64), for entities configured by size rather than by min/max provisioned concurrency.
WORKLOAD_SIZE_CONCURRENCY = {"Small": 4, "Medium": 16, "Large": 64}
CPU_WORKLOAD_TYPES = ("CPU", "CPU_MEDIUM", "CPU_LARGE")
# GPU_SMALL, GPU_MEDIUM, GPU_LARGE, GPU_XLARGE, GPU_XLARGE_8, MULTIGPU_MEDIUM, and any newer GPU type.
GPU_MARKER = "GPU"

READY = "READY"
FAILED_UPDATES = ("UPDATE_FAILED", "UPDATE_CANCELED")
DEPLOYMENT_READY = "DEPLOYMENT_READY"
FAILED_DEPLOYMENTS = ("DEPLOYMENT_FAILED", "DEPLOYMENT_ABORTED")
# AI Gateway rate limits: `renewal_period` (the API knows "minute" only) in seconds.
RENEWAL_PERIODS = {"minute": 60.0}


def endpoint_from_json(data: dict[str, Any], detailed: bool = False) -> EndpointInfo:
    """An endpoint object of `GET /api/2.0/serving-endpoints` (detailed=False) or of the detail call."""
    state = _dict(data.get("state"))
    config = _dict(data.get("config"))
    routes = {}
    for route in _list(_dict(config.get("traffic_config")).get("routes")):
        if isinstance(route, dict):
            key = route.get("served_entity_name") or route.get("served_model_name")
            if key:
                routes[str(key)] = _float(route.get("traffic_percentage"))
    entities = _list(config.get("served_entities")) or _list(config.get("served_models"))
    ready = _word(state.get("ready"))
    config_update = _word(state.get("config_update"))
    return EndpointInfo(
        name=str(data["name"]),
        platform=PLATFORM,
        id=_str(data.get("id")),
        ready=None if ready is None else ready == READY,
        state=ready,
        config_update=config_update,
        update_failed=config_update in FAILED_UPDATES,
        tags={str(t["key"]): _str(t.get("value")) or "" for t in _list(data.get("tags")) if isinstance(t, dict) and "key" in t},
        task=_str(data.get("task")),
        last_updated_ms=_int(data.get("last_updated_timestamp")),
        served_entities=tuple(_entity(e, routes) for e in entities if isinstance(e, dict) and e.get("name")),
        route_optimized=data.get("route_optimized") is True if detailed else None,
        detailed=detailed,
        rate_limits=tuple(_rate_limit(r) for r in _list(_dict(data.get("ai_gateway")).get("rate_limits"))
                          if isinstance(r, dict)),
    )


def _rate_limit(data: dict[str, Any]) -> RateLimit:
    period = _word(data.get("renewal_period"))
    return RateLimit(calls=_int(data.get("calls")), renewal_seconds=RENEWAL_PERIODS.get(period.lower()) if period else None,
                     key=_word(data.get("key")))


def _entity(data: dict[str, Any], routes: dict[str, float | None]) -> ServedEntity:
    state = _dict(data.get("state"))
    kind = "external_model" if data.get("external_model") else "foundation_model" if data.get("foundation_model") else "custom"
    workload_type = _word(data.get("workload_type"))
    workload_size = _word(data.get("workload_size"))
    deployment = _word(state.get("deployment"))
    return ServedEntity(
        name=str(data["name"]),
        entity_name=_str(data.get("entity_name") or data.get("model_name")),
        entity_version=_str(data.get("entity_version") or data.get("model_version")),
        workload_type=workload_type,
        workload_size=workload_size,
        compute=compute_of(workload_type),
        scale_to_zero_enabled=data.get("scale_to_zero_enabled") if isinstance(data.get("scale_to_zero_enabled"), bool) else None,
        min_provisioned_concurrency=_int(data.get("min_provisioned_concurrency")),
        max_provisioned_concurrency=_int(data.get("max_provisioned_concurrency")),
        sized_capacity=float(WORKLOAD_SIZE_CONCURRENCY[workload_size]) if workload_size in WORKLOAD_SIZE_CONCURRENCY else None,
        deployment_state=deployment,
        deployed=None if deployment is None else deployment == DEPLOYMENT_READY,
        deployment_failed=deployment in FAILED_DEPLOYMENTS,
        kind=kind,
        traffic_percentage=routes.get(str(data["name"])),
    )


def compute_of(workload_type: str | None) -> str | None:
    """cpu or gpu for a workload type; None for an unknown one."""
    if workload_type is None:
        return None
    if workload_type.upper() in CPU_WORKLOAD_TYPES:
        return "cpu"
    return "gpu" if GPU_MARKER in workload_type.upper() else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _word(value: Any) -> str | None:
    """One of the platform's words (a state, a workload type): only a non-empty string, else unknown."""
    return value if isinstance(value, str) and value else None


def _str(value: Any) -> str | None:
    """A name, id or version: a non-empty string, or a number written as one; anything else is unknown."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def _float(value: Any) -> float | None:
    """A finite number, from a JSON number or a numeric string; anything else is unknown."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _int(value: Any) -> int | None:
    """An integer from a JSON number (a fraction truncated) or an integer string; anything else is unknown."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        return int(value)
    except (ValueError, OverflowError):  # "12.5", "abc", inf, nan
        return None
