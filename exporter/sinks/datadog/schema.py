"""Strict checks of JSON bodies against datadog-api-client's own models (the API's OpenAPI schema).

The client's deserializer is lenient on purpose: a value it cannot parse becomes an `UnparsedObject`
and unknown keys are kept. `schema_errors` deserializes and then walks the result, reporting
anything unparsed, any unknown key and any missing required field. The monitor and dashboard files
are checked with it before a sync, and the fake Datadog API in the tests checks every body with it.
"""

from __future__ import annotations

import inspect
import json
from functools import lru_cache
from typing import Any

from datadog_api_client import ApiClient, Configuration
from datadog_api_client.model_utils import ModelNormal, OpenApiModel, UnparsedObject


@lru_cache(maxsize=1)
def _client() -> ApiClient:
    return ApiClient(Configuration(discard_unknown_keys=False))


def parse(data: Any, model: type) -> Any:
    """`data` (a dict, or JSON text) as an instance of `model`, leniently (see schema_errors)."""
    text = data if isinstance(data, str) else json.dumps(data)
    return _client().deserialize(text, (model,), True)


def schema_errors(data: Any, model: type) -> list[str]:
    """Problems of `data` against `model`, as `path: problem` lines (empty when valid)."""
    try:
        parsed = parse(data, model)
    except Exception as exc:  # the client raises for hard type errors (e.g. a string where a list is due)
        return [f"$: {type(exc).__name__}: {exc}".splitlines()[0]]
    return _walk(parsed, "$")


@lru_cache(maxsize=None)
def _required(model: type) -> tuple[str, ...]:
    params = inspect.signature(model.__init__).parameters.values()
    return tuple(p.name for p in params if p.default is p.empty and p.kind is p.POSITIONAL_OR_KEYWORD and p.name != "self_")


def _walk(value: Any, path: str) -> list[str]:
    problems: list[str] = []
    if isinstance(value, OpenApiModel):
        state = value.__dict__  # attribute access on these models recurses on missing names
        store = state.get("_data_store", {})
        if isinstance(value, UnparsedObject):
            return [f"{path}: does not match the schema ({_short(store)})"]
        if isinstance(value, ModelNormal):
            unknown = sorted(set(store) - set(type(value).attribute_map))
            if unknown:
                problems.append(f"{path}: unknown key(s) {', '.join(unknown)} in {type(value).__name__}")
            missing = [n for n in _required(type(value)) if n not in store]
            if missing:
                problems.append(f"{path}: missing required {', '.join(missing)} in {type(value).__name__}")
        for key, item in store.items():
            problems += _walk(item, f"{path}.{key}")
        for instance in state.get("_composed_instances") or []:
            problems += _walk(instance, path)
        if not problems and state.get("_unparsed"):
            problems.append(f"{path}: a value of {type(value).__name__} does not match the schema")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            problems += _walk(item, f"{path}[{i}]")
    return problems


def _short(store: dict) -> str:
    text = json.dumps(store, default=str, sort_keys=True)
    return text if len(text) <= 120 else text[:117] + "..."
