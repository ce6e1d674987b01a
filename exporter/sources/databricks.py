"""Databricks Model Serving through the vendor SDK.

The SDK (`databricks-sdk`) gives us unified authentication exactly as Databricks
users already configure it — DATABRICKS_HOST + DATABRICKS_TOKEN, OAuth M2M with
DATABRICKS_CLIENT_ID/SECRET (token refreshed before expiry), config profiles — and
retries 429/503 honouring Retry-After. On a 401 we rebuild the client once so a
revoked or rotated OAuth token is replaced immediately. Responses are read as raw
JSON and parsed defensively: fields the platform adds or omits never fail a poll.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.config import Config
from databricks.sdk.errors import DatabricksError, Unauthenticated

from ..model import EndpointInfo, ServedEntity
from .base import FetchError, MetricsBody

log = logging.getLogger(__name__)

API = "/api/2.0/serving-endpoints"
MAX_BODY_BYTES = 16 * 1024 * 1024


class DatabricksSource:
    """The client is built on first use and rebuilt after a 401. Building it can need the network
    (host metadata, OAuth discovery), so a workspace that is unreachable at start-up is a failed
    poll to retry, not a crash loop."""

    def __init__(self, client_factory: Callable[[], WorkspaceClient], max_body_bytes: int = MAX_BODY_BYTES):
        self._factory = client_factory
        self._lock = threading.Lock()
        self._client: WorkspaceClient | None = None
        self._generation = 0
        self._max_body = max_body_bytes
        self.workspace: str | None = None

    # -- the three calls -------------------------------------------------

    def list_endpoints(self) -> list[EndpointInfo]:
        data = self._call("GET", API)
        if not isinstance(data, dict):  # never read a malformed answer as an empty workspace
            raise FetchError("bad_response", "endpoint list response is not a JSON object")
        items = data.get("endpoints") or []
        return [endpoint_from_json(item) for item in items if isinstance(item, dict) and item.get("name")]

    def describe(self, name: str) -> EndpointInfo:
        data = self._call("GET", f"{API}/{quote(name, safe='')}")
        if not isinstance(data, dict) or not data.get("name"):
            raise FetchError("bad_response", f"endpoint {name!r}: detail response is not an endpoint object")
        return endpoint_from_json(data, detailed=True)

    def fetch_metrics(self, name: str) -> MetricsBody:
        resp = self._call("GET", f"{API}/{quote(name, safe='')}/metrics", raw=True,
                          headers={"Accept": "text/plain"}, response_headers=["content-type"])
        stream = resp["contents"]
        try:
            body = stream.read(self._max_body + 1)
        except requests.RequestException as exc:
            raise FetchError("timeout" if isinstance(exc, requests.Timeout) else "connection",
                             f"reading metrics of {name!r}: {type(exc).__name__}") from None
        finally:
            stream.close()
        if len(body) > self._max_body:
            raise FetchError("too_large", f"metrics of {name!r} exceed {self._max_body} bytes")
        return MetricsBody(body, resp.get("content-type") or "")

    # -- plumbing --------------------------------------------------------

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        for attempt in (1, 2):
            client, generation = self._current()
            try:
                return client.api_client.do(method, path, **kwargs)
            except Unauthenticated as exc:
                if attempt == 2:
                    raise _fetch_error(exc, path) from None
                log.info("got 401 from %s; re-authenticating once", path)
                self._reauthenticate(generation)
            except (DatabricksError, requests.RequestException, TimeoutError, RuntimeError, ValueError) as exc:
                raise _fetch_error(exc, path) from None
        raise AssertionError("unreachable")

    def _current(self) -> tuple[WorkspaceClient, int]:
        with self._lock:
            if self._client is None:
                self._client = self._build()
            return self._client, self._generation

    def _reauthenticate(self, seen_generation: int) -> None:
        with self._lock:
            if self._generation == seen_generation:  # another thread may have done it already
                self._client = self._build()
                self._generation += 1

    def _build(self) -> WorkspaceClient:
        try:
            client = self._factory()
        except Exception as exc:  # the SDK raises ValueError for missing or rejected credentials; it masks secrets
            raise FetchError("auth", f"cannot authenticate to Databricks: {exc}") from None
        self.workspace = _host_label(client.config.host)
        return client


def client_factory(timeout_s: float, retry_budget_s: float, pool_size: int,
                   **auth: Any) -> Callable[[], WorkspaceClient]:
    """A factory for SDK clients sized for our pool. `auth` goes to the SDK unchanged (host, profile, or
    explicit credentials for the demo); whatever is not given comes from the SDK's environment/profile."""

    def factory() -> WorkspaceClient:
        config = Config(
            **{k: v for k, v in auth.items() if v is not None},
            http_timeout_seconds=timeout_s,
            retry_timeout_seconds=max(1, math.ceil(retry_budget_s)),  # the SDK reads 0 as "default 300"
            max_connection_pools=pool_size + 2,
            max_connections_per_pool=pool_size + 2,
        )
        client = WorkspaceClient(config=config)
        _size_plain_http_pool(client, pool_size + 2)  # + the list call and a token refresh beside the workers
        return client

    return factory


def _fetch_error(exc: BaseException, path: str) -> FetchError:
    """A bounded reason and a message built from the status/error code only (no headers, no tokens)."""
    if isinstance(exc, (TimeoutError, RuntimeError)) and isinstance(exc.__cause__, DatabricksError):
        # The SDK gave up retrying (429/503 past the retry budget): report what the server said.
        error = _fetch_error(exc.__cause__, path)
        return FetchError(error.reason, f"{error} (retries exhausted)")
    if isinstance(exc, DatabricksError):
        # The SDK's class per HTTP status (TooManyRequests, NotFound, ...) rather than its subclass per
        # error code (RequestLimitExceeded, ...): few, stable label values.
        status_class = next((c for c in type(exc).__mro__ if DatabricksError in c.__bases__), type(exc))
        reason = _snake(status_class.__name__)
        code = getattr(exc, "error_code", None) or ""
        return FetchError(reason, f"GET {path}: {type(exc).__name__} {code}".strip())
    if isinstance(exc, (requests.Timeout, TimeoutError)):
        return FetchError("timeout", f"GET {path}: timed out")
    if isinstance(exc, requests.ConnectionError):
        return FetchError("connection", f"GET {path}: connection failed")
    return FetchError("bad_response", f"GET {path}: {type(exc).__name__}")


def _snake(name: str) -> str:
    out = "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")
    return out if out != "databricks_error" else "api_error"


def _host_label(host: str | None) -> str | None:
    return host.split("://", 1)[-1].rstrip("/") if host else None


def _size_plain_http_pool(client: WorkspaceClient, pool_size: int) -> None:
    """The SDK sizes its connection pool for https only; a plain-http host (a local simulator or
    proxy) would otherwise fall back to requests' 10 connections and churn under concurrency."""
    session = getattr(getattr(client.api_client, "_api_client", None), "_session", None)
    if isinstance(session, requests.Session) and (client.config.host or "").startswith("http://"):
        session.mount("http://", requests.adapters.HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size))


# -- JSON → model, defensively -------------------------------------------


def endpoint_from_json(data: dict[str, Any], detailed: bool = False) -> EndpointInfo:
    state = data.get("state") if isinstance(data.get("state"), dict) else {}
    config = data.get("config") if isinstance(data.get("config"), dict) else {}
    routes = {}
    traffic = config.get("traffic_config") if isinstance(config.get("traffic_config"), dict) else {}
    for route in traffic.get("routes") or []:
        if isinstance(route, dict):
            key = route.get("served_entity_name") or route.get("served_model_name")
            if key:
                routes[key] = _float(route.get("traffic_percentage"))
    entities = config.get("served_entities") or config.get("served_models") or []
    return EndpointInfo(
        name=str(data["name"]),
        platform="databricks",
        id=_str(data.get("id")),
        ready=_str(state.get("ready")),
        config_update=_str(state.get("config_update")),
        tags={str(t["key"]): str(t.get("value", "")) for t in data.get("tags") or [] if isinstance(t, dict) and "key" in t},
        task=_str(data.get("task")),
        last_updated_ms=_int(data.get("last_updated_timestamp")),
        served_entities=tuple(_entity(e, routes) for e in entities if isinstance(e, dict) and e.get("name")),
        route_optimized=bool(data.get("route_optimized")) if detailed else None,
        detailed=detailed,
    )


def _entity(data: dict[str, Any], routes: dict[str, float | None]) -> ServedEntity:
    state = data.get("state") if isinstance(data.get("state"), dict) else {}
    kind = "external_model" if data.get("external_model") else "foundation_model" if data.get("foundation_model") else "custom"
    return ServedEntity(
        name=str(data["name"]),
        entity_name=_str(data.get("entity_name") or data.get("model_name")),
        entity_version=_str(data.get("entity_version") or data.get("model_version")),
        workload_type=_str(data.get("workload_type")),
        workload_size=_str(data.get("workload_size")),
        scale_to_zero_enabled=data.get("scale_to_zero_enabled") if isinstance(data.get("scale_to_zero_enabled"), bool) else None,
        min_provisioned_concurrency=_int(data.get("min_provisioned_concurrency")),
        max_provisioned_concurrency=_int(data.get("max_provisioned_concurrency")),
        deployment_state=_str(state.get("deployment")),
        kind=kind,
        traffic_percentage=routes.get(str(data["name"])),
    )


def _str(value: Any) -> str | None:
    return str(value) if value is not None and value != "" else None


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
