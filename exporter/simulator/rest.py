"""JSON bodies of the serving-endpoints list and detail APIs, shaped like the real ones."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

from .scenario import ENTITY_CONFIG_FIELDS, Scenario

CREATOR = "ml-platform@example.com"


@dataclass
class EndpointRecord:
    """Identity and bookkeeping of one endpoint, beside its scenario."""

    name: str
    id: str
    creation_timestamp: int
    last_updated_timestamp: int
    config_version: int = 1


def _entity_ref(entity: str) -> dict[str, Any]:
    # A Unity Catalog model name and a stable version derived from the entity's name.
    return {"name": entity,
            "entity_name": f"main.models.{entity.replace('-', '_')}",
            "entity_version": str(zlib.crc32(entity.encode()) % 9 + 1)}


def _base(record: EndpointRecord, sc: Scenario, entities: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": record.name,
        "id": record.id,
        "creator": CREATOR,
        "creation_timestamp": record.creation_timestamp,
        "last_updated_timestamp": record.last_updated_timestamp,
        "state": {"ready": sc.state_ready, "config_update": sc.config_update},
        "tags": [{"key": k, "value": v} for k, v in sc.tags.items()],
        "task": sc.task,
        "config": {"served_entities": entities},
    }


def list_item(record: EndpointRecord, sc: Scenario) -> dict[str, Any]:
    """An item of GET /api/2.0/serving-endpoints: no workload or scaling fields there."""
    return _base(record, sc, [_entity_ref(e) for e, _ in sc.entities(record.name)])


def detail(record: EndpointRecord, sc: Scenario, workspace_id: str) -> dict[str, Any]:
    """GET /api/2.0/serving-endpoints/{name}."""
    entities = []
    for entity, _ in sc.entities(record.name):
        esc = sc.for_entity(entity)
        entities.append({
            **_entity_ref(entity),
            **{f: getattr(esc, f) for f in ENTITY_CONFIG_FIELDS},
            "state": {"deployment": esc.deployment_state,
                      "deployment_state_message": esc.deployment_state_message},
        })
    body = _base(record, sc, entities)
    body["config"]["config_version"] = record.config_version
    body["config"]["traffic_config"] = {"routes": [
        {"served_model_name": e, "traffic_percentage": p} for e, p in sc.entities(record.name)]}
    body["route_optimized"] = sc.route_optimized
    if sc.route_optimized:
        body["endpoint_url"] = (f"https://{record.id}.{workspace_id}.serving.cloud.databricks.com"
                                f"/{workspace_id}/serving-endpoints/{record.name}/invocations")
    body["permission_level"] = "CAN_MANAGE"
    if sc.rate_limit_calls_per_minute is not None:
        body["ai_gateway"] = {"rate_limits": [
            {"calls": sc.rate_limit_calls_per_minute, "key": "endpoint", "renewal_period": "minute"}]}
    return body


def config_signature(sc: Scenario, endpoint: str) -> tuple[Any, ...]:
    """What the served-entity config shows; a change bumps config_version."""
    return tuple((e, p, tuple(getattr(sc.for_entity(e), f) for f in ENTITY_CONFIG_FIELDS))
                 for e, p in sc.entities(endpoint)) + (sc.route_optimized,)


def visible_signature(sc: Scenario, endpoint: str) -> tuple[Any, ...]:
    """Everything the REST APIs show; a change bumps last_updated_timestamp."""
    return config_signature(sc, endpoint) + (
        tuple(sc.tags.items()), sc.task, sc.state_ready, sc.config_update, sc.rate_limit_calls_per_minute,
        tuple((e, sc.for_entity(e).deployment_state) for e, _ in sc.entities(endpoint)))
