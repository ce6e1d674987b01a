"""endpoint_from_json on recorded-shape, partial and malformed serving-endpoint JSON.

The contract (exporter/sources/databricks/endpoints.py): a missing or mistyped field is
unknown (None), never an exception; Databricks' words are kept for display and mapped
here, and only here, to the neutral fields the pipeline decides on.
"""

from __future__ import annotations

import copy
import json
import random

import pytest

from exporter.model import EndpointInfo, RateLimit, ServedEntity
from exporter.sources.databricks.endpoints import endpoint_from_json

# A detail answer of GET /api/2.0/serving-endpoints/{name}, shaped after
# /work/shared/reference/databricks-serving-api.md (every documented field present, plus
# fields the exporter does not read, which must be ignored).
DETAIL = json.loads("""
{
  "name": "chat-prod",
  "id": "0f3c2a9be4d14f5d8a1e6b7c9d0e1f23",
  "creator": "ml-platform@example.com",
  "creation_timestamp": 1761000000000,
  "last_updated_timestamp": 1763819000000,
  "state": {"ready": "READY", "config_update": "NOT_UPDATING"},
  "tags": [{"key": "team", "value": "search"}, {"key": "cost-center", "value": "4711"}],
  "task": "llm/v1/chat",
  "route_optimized": true,
  "endpoint_url": "https://0f3c2a9b.serving.azuredatabricks.net/1234567890123456/serving-endpoints/chat-prod/invocations",
  "data_plane_info": {"query_info": {"endpoint_url": "https://example", "authorization_details": "[]"}},
  "permission_level": "CAN_MANAGE",
  "ai_gateway": {"rate_limits": [{"calls": 100, "key": "user", "renewal_period": "minute"}]},
  "pending_config": null,
  "config": {
    "config_version": 7,
    "served_entities": [
      {
        "name": "chat-v3",
        "entity_name": "main.models.chat",
        "entity_version": "3",
        "workload_size": "Small",
        "workload_type": "GPU_SMALL",
        "scale_to_zero_enabled": false,
        "state": {"deployment": "DEPLOYMENT_READY", "deployment_state_message": "Served entity is ready"},
        "creator": "ml-platform@example.com",
        "creation_timestamp": 1761000000000
      },
      {
        "name": "chat-v4",
        "entity_name": "main.models.chat",
        "entity_version": "4",
        "workload_size": "Medium",
        "workload_type": "CPU",
        "min_provisioned_concurrency": 4,
        "max_provisioned_concurrency": 12,
        "scale_to_zero_enabled": true,
        "burst_scaling_enabled": true,
        "state": {"deployment": "DEPLOYMENT_CREATING", "deployment_state_message": "Creating"}
      }
    ],
    "traffic_config": {"routes": [
      {"served_entity_name": "chat-v3", "traffic_percentage": 90},
      {"served_entity_name": "chat-v4", "traffic_percentage": 10}
    ]}
  }
}
""")

# An item of the list call: no workload or scaling fields, no route_optimized.
LIST_ITEM = {
    "name": "embed",
    "id": "ab12",
    "creator": "someone@example.com",
    "creation_timestamp": 1761000000000,
    "last_updated_timestamp": 1762000000000,
    "state": {"ready": "NOT_READY", "config_update": "IN_PROGRESS"},
    "task": "llm/v1/embeddings",
    "config": {"served_entities": [{"name": "bge", "entity_name": "system.ai.bge_large_en_v1_5",
                                    "entity_version": "1", "foundation_model": {"name": "bge-large-en"}}]},
}


def short(value) -> str:
    """A readable test id for long parameter values."""
    text = repr(value)
    return text if len(text) <= 24 else f"{text[:12]}...({len(text)} chars)"


def endpoint(**fields) -> dict:
    return {"name": "x", **fields}


def entity(**fields) -> dict:
    return {"name": "e", **fields}


def one_entity(detailed: bool = True, **fields) -> ServedEntity:
    info = endpoint_from_json(endpoint(config={"served_entities": [entity(**fields)]}), detailed=detailed)
    assert len(info.served_entities) == 1
    return info.served_entities[0]


# ---------------------------------------------------------------------------
# A recorded-shape detail object, every field


def test_detail_object_every_field():
    info = endpoint_from_json(copy.deepcopy(DETAIL), detailed=True)
    assert info == EndpointInfo(
        name="chat-prod",
        platform="databricks",
        id="0f3c2a9be4d14f5d8a1e6b7c9d0e1f23",
        ready=True,
        state="READY",
        config_update="NOT_UPDATING",
        update_failed=False,
        tags={"team": "search", "cost-center": "4711"},
        task="llm/v1/chat",
        last_updated_ms=1763819000000,
        served_entities=(
            ServedEntity(
                name="chat-v3", entity_name="main.models.chat", entity_version="3",
                workload_type="GPU_SMALL", workload_size="Small", compute="gpu",
                scale_to_zero_enabled=False, min_provisioned_concurrency=None, max_provisioned_concurrency=None,
                sized_capacity=4.0, deployment_state="DEPLOYMENT_READY", deployed=True, deployment_failed=False,
                kind="custom", traffic_percentage=90.0,
            ),
            ServedEntity(
                name="chat-v4", entity_name="main.models.chat", entity_version="4",
                workload_type="CPU", workload_size="Medium", compute="cpu",
                scale_to_zero_enabled=True, min_provisioned_concurrency=4, max_provisioned_concurrency=12,
                sized_capacity=16.0, deployment_state="DEPLOYMENT_CREATING", deployed=False, deployment_failed=False,
                kind="custom", traffic_percentage=10.0,
            ),
        ),
        route_optimized=True,
        detailed=True,
        rate_limits=(RateLimit(calls=100, renewal_seconds=60.0, key="user"),),
    )
    # Derived properties on the same object.
    assert [e.capacity for e in info.served_entities] == [4.0, 12.0]  # max_provisioned_concurrency wins over Medium
    assert info.capacity == 16.0
    assert info.kind == "custom"
    assert info.workload_type == "CPU,GPU_SMALL"
    assert info.serving is False  # chat-v4 is still deploying
    assert info.scale_to_zero is True
    assert info.served_entities[0].is_gpu and not info.served_entities[1].is_gpu


def test_detail_does_not_modify_its_input():
    data = copy.deepcopy(DETAIL)
    endpoint_from_json(data, detailed=True)
    assert data == DETAIL


def test_list_item_is_not_detailed():
    info = endpoint_from_json(LIST_ITEM)
    assert info.detailed is False
    assert info.route_optimized is None
    assert info.scale_to_zero is None
    assert (info.name, info.id, info.task, info.last_updated_ms) == ("embed", "ab12", "llm/v1/embeddings", 1762000000000)
    assert (info.ready, info.state, info.config_update, info.update_failed) == (False, "NOT_READY", "IN_PROGRESS", False)
    (bge,) = info.served_entities
    assert bge.kind == "foundation_model"
    assert (bge.entity_name, bge.entity_version) == ("system.ai.bge_large_en_v1_5", "1")
    assert (bge.compute, bge.workload_type, bge.sized_capacity, bge.capacity, bge.deployed) == (None, None, None, None, None)
    assert info.capacity is None


@pytest.mark.parametrize("detailed, route_optimized, expected", [
    (False, True, None), (False, False, None), (False, None, None),
    (True, True, True), (True, False, False), (True, None, False),
    (True, "true", False), (True, 1, False),
])
def test_route_optimized_only_when_detailed(detailed, route_optimized, expected):
    data = endpoint() if route_optimized is None else endpoint(route_optimized=route_optimized)
    info = endpoint_from_json(data, detailed=detailed)
    assert info.route_optimized is expected
    assert info.detailed is detailed


# ---------------------------------------------------------------------------
# Minimal and partial objects


@pytest.mark.parametrize("detailed", [False, True])
def test_minimal_object(detailed):
    info = endpoint_from_json({"name": "x"}, detailed=detailed)
    assert info == EndpointInfo(name="x", platform="databricks", route_optimized=False if detailed else None,
                                detailed=detailed)
    assert (info.ready, info.state, info.config_update, info.update_failed) == (None, None, None, False)
    assert (info.id, info.task, info.last_updated_ms, info.tags, info.served_entities) == (None, None, None, {}, ())
    assert info.capacity is None and info.kind == "custom" and info.workload_type is None
    assert info.serving is False  # readiness unknown is not serving


def test_platform_is_databricks():
    assert endpoint_from_json(copy.deepcopy(DETAIL)).platform == "databricks"
    assert endpoint_from_json({"name": "x"}).platform == "databricks"


def test_name_is_a_string():
    assert endpoint_from_json({"name": 42}).name == "42"


@pytest.mark.parametrize("value", ["READY", 5, 1.5, True, [], ["ready"], None, ""], ids=repr)
@pytest.mark.parametrize("field", ["state", "config", "tags"])
def test_top_level_objects_of_the_wrong_type_are_unknown(field, value):
    info = endpoint_from_json(endpoint(**{field: value}), detailed=True)
    assert (info.ready, info.state, info.config_update, info.update_failed) == (None, None, None, False)
    assert info.tags == {}
    assert info.served_entities == ()


@pytest.mark.parametrize("value", ["chat-v3", 5, True, {"name": "e"}, None], ids=repr)
@pytest.mark.parametrize("field", ["served_entities", "served_models"])
def test_entity_lists_of_the_wrong_type_are_empty(field, value):
    info = endpoint_from_json(endpoint(config={field: value}), detailed=True)
    assert info.served_entities == ()
    assert info.capacity is None


@pytest.mark.parametrize("value", ["x", 5, [], [1, 2], None], ids=repr)
def test_traffic_config_of_the_wrong_type_leaves_traffic_unknown(value):
    info = endpoint_from_json(endpoint(config={"served_entities": [entity()], "traffic_config": value}))
    assert [e.name for e in info.served_entities] == ["e"]
    assert info.served_entities[0].traffic_percentage is None


@pytest.mark.parametrize("value", ["x", 5, {"served_entity_name": "e", "traffic_percentage": 100}, None], ids=repr)
def test_routes_of_the_wrong_type_leave_traffic_unknown(value):
    info = endpoint_from_json(endpoint(config={"served_entities": [entity()], "traffic_config": {"routes": value}}))
    assert info.served_entities[0].traffic_percentage is None


def test_route_items_of_the_wrong_type_are_skipped():
    routes = ["e", 7, None, ["e", 50], {"traffic_percentage": 30}, {"served_entity_name": "e", "traffic_percentage": 60}]
    info = endpoint_from_json(endpoint(config={"served_entities": [entity()], "traffic_config": {"routes": routes}}))
    assert info.served_entities[0].traffic_percentage == 60.0


@pytest.mark.parametrize("value", ["DEPLOYMENT_READY", 5, [], None], ids=repr)
def test_entity_state_of_the_wrong_type_is_unknown(value):
    e = one_entity(state=value)
    assert (e.deployment_state, e.deployed, e.deployment_failed) == (None, None, False)


def test_tags():
    tags = [{"key": "a", "value": "1"}, {"key": "b"}, {"value": "no key"}, "c", 5, None, ["k", "v"],
            {"key": 7, "value": 8}]
    assert endpoint_from_json(endpoint(tags=tags)).tags == {"a": "1", "b": "", "7": "8"}


def test_tag_with_null_value_is_empty_not_the_string_none():
    assert endpoint_from_json(endpoint(tags=[{"key": "team", "value": None}])).tags == {"team": ""}


# ---------------------------------------------------------------------------
# Served entities


@pytest.mark.parametrize("nameless", [{}, {"name": ""}, {"name": None}, {"entity_name": "m", "workload_type": "CPU"}],
                         ids=repr)
def test_entity_without_a_name_is_skipped(nameless):
    info = endpoint_from_json(endpoint(config={"served_entities": [nameless, entity(name="kept"), "str", 3, None]}))
    assert [e.name for e in info.served_entities] == ["kept"]


def test_entity_name_is_a_string():
    assert one_entity(name=3).name == "3"


def test_legacy_served_models():
    data = endpoint(config={
        "served_models": [
            {"name": "m-1", "model_name": "fraud", "model_version": "1", "workload_size": "Large",
             "scale_to_zero_enabled": True, "state": {"deployment": "DEPLOYMENT_FAILED"}},
            {"name": "m-2", "model_name": "fraud", "model_version": "2", "workload_size": "Small",
             "workload_type": "GPU_MEDIUM"},
        ],
        "traffic_config": {"routes": [{"served_model_name": "m-1", "traffic_percentage": 25},
                                      {"served_model_name": "m-2", "traffic_percentage": 75}]},
    })
    info = endpoint_from_json(data, detailed=True)
    m1, m2 = info.served_entities
    assert (m1.name, m1.entity_name, m1.entity_version) == ("m-1", "fraud", "1")
    assert (m2.name, m2.entity_name, m2.entity_version) == ("m-2", "fraud", "2")
    assert (m1.sized_capacity, m2.sized_capacity, info.capacity) == (64.0, 4.0, 68.0)
    assert (m1.traffic_percentage, m2.traffic_percentage) == (25.0, 75.0)
    assert (m1.deployed, m1.deployment_failed, m2.deployed) == (False, True, None)
    assert (m1.compute, m2.compute) == (None, "gpu")
    assert m1.scale_to_zero_enabled is True and m2.scale_to_zero_enabled is None


def test_served_entities_win_over_served_models():
    info = endpoint_from_json(endpoint(config={"served_entities": [entity(name="new")],
                                               "served_models": [entity(name="old")]}))
    assert [e.name for e in info.served_entities] == ["new"]


def test_empty_served_entities_fall_back_to_served_models():
    info = endpoint_from_json(endpoint(config={"served_entities": [], "served_models": [entity(name="old")]}))
    assert [e.name for e in info.served_entities] == ["old"]


def test_entity_name_fields_prefer_entity_over_model():
    e = one_entity(entity_name="new", model_name="old", entity_version="2", model_version="1")
    assert (e.entity_name, e.entity_version) == ("new", "2")


def test_entity_version_as_number_is_a_string():
    assert one_entity(entity_version=3).entity_version == "3"


# -- numbers ---------------------------------------------------------------

NUMBERS = [
    (4, 4), ("4", 4), (12.0, 12), (12.9, 12), (0, 0),
    (True, None), (False, None), ("abc", None), ("", None), ("12.5", None), (None, None),
    (float("inf"), None), (float("-inf"), None), (float("nan"), None),
    ([4], None), ({"value": 4}, None), (10**30, 10**30), ("9" * 5000, None),
]


@pytest.mark.parametrize("value, expected", NUMBERS, ids=short)
@pytest.mark.parametrize("field", ["min_provisioned_concurrency", "max_provisioned_concurrency"])
def test_provisioned_concurrency_numbers(field, value, expected):
    e = one_entity(**{field: value})
    assert getattr(e, field) == expected
    assert getattr(e, field) is None or type(getattr(e, field)) is int


@pytest.mark.parametrize("value, expected", NUMBERS, ids=short)
def test_last_updated_timestamp_numbers(value, expected):
    got = endpoint_from_json(endpoint(last_updated_timestamp=value)).last_updated_ms
    assert got == expected
    assert got is None or type(got) is int


def test_huge_json_number_parsed_as_inf_is_unknown():
    # json.loads turns 1e400 into float('inf'): int() of it overflows.
    data = json.loads('{"name": "x", "last_updated_timestamp": 1e400, "config": {"served_entities": '
                      '[{"name": "e", "min_provisioned_concurrency": 1e400, "max_provisioned_concurrency": -1e400}]}}')
    info = endpoint_from_json(data)
    assert info.last_updated_ms is None
    (e,) = info.served_entities
    assert (e.min_provisioned_concurrency, e.max_provisioned_concurrency, e.capacity) == (None, None, None)


@pytest.mark.parametrize("value, expected", [
    (50, 50.0), ("50", 50.0), (33.3, 33.3), (0, 0.0),
    (True, None), ("abc", None), (None, None), ([50], None), ({}, None),
], ids=repr)
def test_traffic_percentage_numbers(value, expected):
    routes = [{"served_entity_name": "e", "traffic_percentage": value}]
    info = endpoint_from_json(endpoint(config={"served_entities": [entity()], "traffic_config": {"routes": routes}}))
    assert info.served_entities[0].traffic_percentage == expected


@pytest.mark.parametrize("value, expected", [
    (True, True), (False, False), ("true", None), (1, None), (0, None), ("yes", None), (None, None), ([], None),
], ids=repr)
def test_scale_to_zero_only_from_a_bool(value, expected):
    assert one_entity(scale_to_zero_enabled=value).scale_to_zero_enabled is expected


# -- neutral mappings ------------------------------------------------------


@pytest.mark.parametrize("ready, expected", [
    ("READY", True), ("NOT_READY", False), ("SOMETHING_NEW", False), (None, None), ("", None),
])
def test_ready(ready, expected):
    info = endpoint_from_json(endpoint(state={"ready": ready}))
    assert info.ready is expected
    assert info.state == (ready or None)


def test_ready_missing_from_state_is_unknown():
    assert endpoint_from_json(endpoint(state={"config_update": "NOT_UPDATING"})).ready is None


@pytest.mark.parametrize("value", [True, 1, ["READY"], {"value": "READY"}], ids=repr)
def test_mistyped_ready_is_unknown(value):
    info = endpoint_from_json(endpoint(state={"ready": value}))
    assert info.ready is None


@pytest.mark.parametrize("config_update, failed", [
    ("NOT_UPDATING", False), ("IN_PROGRESS", False), ("UPDATE_FAILED", True), ("UPDATE_CANCELED", True),
    ("update_failed", False), (None, False), ("SOMETHING_NEW", False),
])
def test_update_failed(config_update, failed):
    info = endpoint_from_json(endpoint(state={"ready": "READY", "config_update": config_update}))
    assert info.update_failed is failed
    assert info.config_update == config_update
    assert info.ready is True  # a failed update leaves the previous config serving


@pytest.mark.parametrize("workload_type, compute", [
    ("CPU", "cpu"), ("CPU_MEDIUM", "cpu"), ("CPU_LARGE", "cpu"), ("cpu", "cpu"),
    ("GPU_SMALL", "gpu"), ("GPU_MEDIUM", "gpu"), ("GPU_LARGE", "gpu"), ("GPU_XLARGE", "gpu"),
    ("GPU_XLARGE_8", "gpu"), ("MULTIGPU_MEDIUM", "gpu"), ("GPU_FUTURE_9000", "gpu"),
    ("TPU_SMALL", None), ("CPU_SMALL", None), ("", None), (None, None), (5, None),
])
def test_compute(workload_type, compute):
    e = one_entity(workload_type=workload_type)
    assert e.compute == compute
    assert e.is_gpu is (compute == "gpu")
    assert e.workload_type == (workload_type or None if isinstance(workload_type, str) else None)


def test_mistyped_workload_type_is_unknown_compute():
    assert one_entity(workload_type=["GPU_SMALL"]).compute is None


@pytest.mark.parametrize("deployment, deployed, failed", [
    ("DEPLOYMENT_READY", True, False),
    ("DEPLOYMENT_CREATING", False, False),
    ("DEPLOYMENT_RECOVERING", False, False),
    ("DEPLOYMENT_FAILED", False, True),
    ("DEPLOYMENT_ABORTED", False, True),
    ("DEPLOYMENT_SOMETHING_NEW", False, False),
    (None, None, False),
    ("", None, False),
])
def test_deployment_states(deployment, deployed, failed):
    e = one_entity(state={"deployment": deployment, "deployment_state_message": "msg"})
    assert e.deployed is deployed
    assert e.deployment_failed is failed
    assert e.deployment_state == (deployment or None)


@pytest.mark.parametrize("value", [True, 1, ["DEPLOYMENT_READY"]], ids=repr)
def test_mistyped_deployment_is_unknown(value):
    assert one_entity(state={"deployment": value}).deployed is None


@pytest.mark.parametrize("deployment, serving", [
    ("DEPLOYMENT_READY", True), ("DEPLOYMENT_CREATING", False), ("DEPLOYMENT_FAILED", False), (None, True),
])
def test_serving_needs_ready_and_every_entity_deployed(deployment, serving):
    data = endpoint(state={"ready": "READY"}, config={"served_entities": [
        entity(name="a", state={"deployment": "DEPLOYMENT_READY"}),
        entity(name="b", state={} if deployment is None else {"deployment": deployment}),
    ]})
    assert endpoint_from_json(data).serving is serving


@pytest.mark.parametrize("size, capacity", [("Small", 4.0), ("Medium", 16.0), ("Large", 64.0),
                                            ("small", None), ("XL", None), ("", None), (None, None), (4, None)])
def test_sized_capacity(size, capacity):
    e = one_entity(workload_size=size)
    assert e.sized_capacity == capacity
    assert e.capacity == capacity


@pytest.mark.parametrize("fields, capacity", [
    ({"workload_size": "Large", "max_provisioned_concurrency": 8}, 8.0),
    ({"workload_size": "Small", "max_provisioned_concurrency": 0}, 0.0),  # 0 is a value, not "missing"
    ({"workload_size": "Medium", "max_provisioned_concurrency": "abc"}, 16.0),  # unknown maximum: the size's
    ({"workload_size": "Medium", "min_provisioned_concurrency": 2}, 16.0),  # the minimum is no capacity
    ({"max_provisioned_concurrency": 24}, 24.0),
    ({"min_provisioned_concurrency": 4}, None),
])
def test_capacity_precedence(fields, capacity):
    e = one_entity(**fields)
    assert e.capacity == capacity
    assert e.capacity is None or type(e.capacity) is float


def test_endpoint_capacity_is_unknown_when_one_entity_is():
    data = endpoint(config={"served_entities": [entity(name="a", workload_size="Small"), entity(name="b")]})
    info = endpoint_from_json(data)
    assert [e.capacity for e in info.served_entities] == [4.0, None]
    assert info.capacity is None


@pytest.mark.parametrize("fields, kind", [
    ({}, "custom"),
    ({"entity_name": "main.models.x"}, "custom"),
    ({"foundation_model": {"name": "llama"}}, "foundation_model"),
    ({"external_model": {"name": "gpt-4o", "provider": "openai"}}, "external_model"),
    ({"external_model": {"name": "x"}, "foundation_model": {"name": "y"}}, "external_model"),
    ({"external_model": None, "foundation_model": None}, "custom"),
])
def test_kind(fields, kind):
    assert one_entity(**fields).kind == kind


def test_endpoint_kind_mixed():
    data = endpoint(config={"served_entities": [entity(name="a"), entity(name="b", external_model={"name": "m"})]})
    assert endpoint_from_json(data).kind == "mixed"


def test_traffic_by_served_entity_name_and_by_served_model_name():
    data = endpoint(config={
        "served_entities": [entity(name="a"), entity(name="b"), entity(name="c")],
        "traffic_config": {"routes": [
            {"served_entity_name": "a", "traffic_percentage": 70},
            {"served_model_name": "b", "traffic_percentage": 30},
            {"served_entity_name": "not-served", "traffic_percentage": 100},
        ]},
    })
    assert [(e.name, e.traffic_percentage) for e in endpoint_from_json(data).served_entities] == [
        ("a", 70.0), ("b", 30.0), ("c", None)]


def test_route_prefers_served_entity_name_over_served_model_name():
    routes = [{"served_entity_name": "a", "served_model_name": "b", "traffic_percentage": 40}]
    data = endpoint(config={"served_entities": [entity(name="a"), entity(name="b")], "traffic_config": {"routes": routes}})
    assert [e.traffic_percentage for e in endpoint_from_json(data).served_entities] == [40.0, None]


def test_route_matches_a_numeric_entity_name():
    routes = [{"served_entity_name": 1, "traffic_percentage": 100}]
    data = endpoint(config={"served_entities": [entity(name=1)], "traffic_config": {"routes": routes}})
    assert endpoint_from_json(data).served_entities[0].traffic_percentage == 100.0


# ---------------------------------------------------------------------------
# Property: arbitrary JSON in every field never raises (seeded, no hypothesis installed)


def _json_value(rng: random.Random, depth: int = 0):
    scalars = [None, True, False, 0, -1, 1, 2**63, 1e400, -1e400, 0.5, "", "READY", "DEPLOYMENT_FAILED",
               "UPDATE_FAILED", "GPU_SMALL", "CPU", "Small", "abc", "1e400", "nan", "9" * 5000, "e", "\x00\u2603"]
    if depth >= 3 or rng.random() < 0.5:
        return rng.choice(scalars)
    if rng.random() < 0.5:
        return [_json_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    keys = ["name", "key", "value", "ready", "deployment", "served_entity_name", "served_model_name",
            "traffic_percentage", "routes", "x"]
    return {rng.choice(keys): _json_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}


ENDPOINT_FIELDS = ["id", "state", "config", "tags", "task", "last_updated_timestamp", "route_optimized", "ai_gateway"]
STATE_FIELDS = ["ready", "config_update"]
CONFIG_FIELDS = ["served_entities", "served_models", "traffic_config"]
ENTITY_FIELDS = ["entity_name", "entity_version", "model_name", "model_version", "workload_type", "workload_size",
                 "scale_to_zero_enabled", "min_provisioned_concurrency", "max_provisioned_concurrency", "state",
                 "external_model", "foundation_model"]


def _random_endpoint(rng: random.Random) -> dict:
    def fill(fields):
        return {f: _json_value(rng) for f in fields if rng.random() < 0.7}

    def maybe(good, fields_of_good):
        return _json_value(rng) if rng.random() < 0.2 else {**good, **fields_of_good}

    entities = []
    for _ in range(rng.randint(0, 4)):
        e = {"name": rng.choice(["a", "b", "", None, 3, ["a"]]), **fill(ENTITY_FIELDS)}
        if rng.random() < 0.5:
            e["state"] = maybe({}, {"deployment": _json_value(rng)})
        entities.append(e if rng.random() < 0.9 else _json_value(rng))
    routes = [maybe({}, {"served_entity_name": rng.choice(["a", "b", _json_value(rng)]),
                         "traffic_percentage": _json_value(rng)}) for _ in range(rng.randint(0, 3))]
    config = {**fill(CONFIG_FIELDS),
              rng.choice(["served_entities", "served_models"]): entities if rng.random() < 0.8 else _json_value(rng),
              "traffic_config": maybe({}, {"routes": routes if rng.random() < 0.8 else _json_value(rng)})}
    data = {"name": rng.choice(["ep", "a/b c", 7]), **fill(ENDPOINT_FIELDS)}
    data["state"] = maybe({}, fill(STATE_FIELDS))
    data["config"] = maybe({}, config)
    if rng.random() < 0.5:
        data["tags"] = [maybe({}, {"key": _json_value(rng), "value": _json_value(rng)}) for _ in range(3)]
    return data


def _check_types(info: EndpointInfo, detailed: bool) -> None:
    assert isinstance(info.name, str) and info.platform == "databricks" and info.detailed is detailed
    assert info.ready in (True, False, None)
    assert isinstance(info.update_failed, bool)
    assert info.last_updated_ms is None or type(info.last_updated_ms) is int
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in info.tags.items())
    assert info.route_optimized in ((True, False) if detailed else (None,))
    for limit in info.rate_limits:
        assert limit.calls is None or type(limit.calls) is int
        assert limit.renewal_seconds in (None, 60.0) and (limit.key is None or isinstance(limit.key, str))
    assert info.capacity is None or isinstance(info.capacity, float)
    assert info.kind in ("custom", "foundation_model", "external_model", "mixed")
    for e in info.served_entities:
        assert isinstance(e.name, str) and e.name
        assert e.compute in ("cpu", "gpu", None)
        assert e.deployed in (True, False, None) and isinstance(e.deployment_failed, bool)
        assert e.scale_to_zero_enabled in (True, False, None)
        for n in (e.min_provisioned_concurrency, e.max_provisioned_concurrency):
            assert n is None or type(n) is int
        assert e.sized_capacity in (None, 4.0, 16.0, 64.0)
        assert e.traffic_percentage is None or isinstance(e.traffic_percentage, float)
        assert e.kind in ("custom", "foundation_model", "external_model")
        for text in (e.entity_name, e.entity_version, e.workload_type, e.workload_size, e.deployment_state):
            assert text is None or (isinstance(text, str) and text)


def test_arbitrary_json_in_every_field_never_raises():
    rng = random.Random(20251122)
    for _ in range(1500):
        data = _random_endpoint(rng)
        for detailed in (False, True):
            _check_types(endpoint_from_json(data, detailed=detailed), detailed)


def test_arbitrary_json_for_every_single_field_never_raises():
    """Each field in turn replaced by each value of a set of hostile JSON values, the rest well formed."""
    hostile = [None, True, 0, -1, 1e400, float("nan"), "", "abc", "9" * 5000, [], [None], [[]], {}, {"x": None},
               [{"name": None}], {"name": "a"}]
    for value in hostile:
        for field in ENDPOINT_FIELDS:
            data = copy.deepcopy(DETAIL)
            data[field] = value
            _check_types(endpoint_from_json(data, detailed=True), True)
        for field in STATE_FIELDS:
            data = copy.deepcopy(DETAIL)
            data["state"][field] = value
            _check_types(endpoint_from_json(data, detailed=True), True)
        for field in ["served_entities", "traffic_config", "config_version"]:
            data = copy.deepcopy(DETAIL)
            data["config"][field] = value
            _check_types(endpoint_from_json(data, detailed=True), True)
        for field in ENTITY_FIELDS + ["name"]:
            data = copy.deepcopy(DETAIL)
            data["config"]["served_entities"][1][field] = value
            info = endpoint_from_json(data, detailed=True)
            _check_types(info, True)
            assert info.served_entities[0].name == "chat-v3"  # the other entity is untouched
        for field in ["calls", "key", "renewal_period"]:
            data = copy.deepcopy(DETAIL)
            data["ai_gateway"]["rate_limits"][0][field] = value
            _check_types(endpoint_from_json(data, detailed=True), True)
        data = copy.deepcopy(DETAIL)
        data["ai_gateway"]["rate_limits"] = value
        _check_types(endpoint_from_json(data, detailed=True), True)
        for field in ["served_entity_name", "traffic_percentage"]:
            data = copy.deepcopy(DETAIL)
            data["config"]["traffic_config"]["routes"][0][field] = value
            info = endpoint_from_json(data, detailed=True)
            _check_types(info, True)
            assert info.served_entities[1].traffic_percentage == 10.0


# ---------------------------------------------------------------------------
# AI Gateway rate limits


@pytest.mark.parametrize("limit,expected", [
    ({"calls": 120, "key": "endpoint", "renewal_period": "minute"}, RateLimit(120, 60.0, "endpoint")),
    ({"calls": 30, "key": "user", "renewal_period": "minute"}, RateLimit(30, 60.0, "user")),
    ({"tokens": 5000, "key": "endpoint", "renewal_period": "minute"}, RateLimit(None, 60.0, "endpoint")),
    ({"calls": 10, "renewal_period": "hour"}, RateLimit(10, None, None)),  # a period we do not know: no rate
])
def test_rate_limits(limit, expected):
    info = endpoint_from_json(endpoint(ai_gateway={"rate_limits": [limit]}), detailed=True)
    assert info.rate_limits == (expected,)


def test_rate_limit_rates_and_scope():
    assert RateLimit(120, 60.0, "endpoint").qps == 2.0 and RateLimit(120, 60.0, "endpoint").per_endpoint
    assert RateLimit(120, 60.0, None).per_endpoint  # not said: the whole endpoint, the conservative reading
    assert not RateLimit(120, 60.0, "user").per_endpoint
    assert RateLimit(None, 60.0, "endpoint").qps is None and RateLimit(10, None, None).qps is None


def test_no_ai_gateway_no_rate_limits():
    assert endpoint_from_json(endpoint(), detailed=True).rate_limits == ()
