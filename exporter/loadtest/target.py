"""Where the load goes and with which credentials.

A Databricks endpoint name is looked up with the exporter's credentials (the SDK's variables and
profiles: PAT, or OAuth M2M refreshed by the SDK): a standard endpoint is invoked on the workspace,
`POST <host>/serving-endpoints/<name>/invocations`; a route-optimized one on its `endpoint_url`, which
takes OAuth tokens only. Anything starting with http:// or https:// is used as the URL itself (a
self-hosted model server), without credentials unless `--auth databricks`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

from ..model import EndpointInfo

AUTH_MODES = ("auto", "databricks", "none")
# The SDK's Authorization header is re-read at most this often (it refreshes OAuth tokens itself).
HEADERS_TTL_SECONDS = 1.0


class TargetError(Exception):
    """The endpoint cannot be load tested as asked; the message names no credential."""


@dataclass(frozen=True)
class Target:
    url: str
    auth: Literal["databricks", "none"]
    info: EndpointInfo  # for the per-endpoint targets and thresholds of the configuration
    description: str  # what it is, for the plan printed before the run
    auth_type: str | None = None  # the SDK's auth type (pat, oauth-m2m, ...), never the credential


def is_url(endpoint: str) -> bool:
    return endpoint.startswith(("http://", "https://"))


def resolve(endpoint: str, auth: str, host: str | None, profile: str | None, timeout_s: float,
            retry_budget_s: float) -> Target:
    """The target for ENDPOINT (a Databricks endpoint name, or a URL)."""
    if is_url(endpoint):
        mode: Literal["databricks", "none"] = "databricks" if auth == "databricks" else "none"
        auth_type = _config(host, profile).auth_type if mode == "databricks" else None
        return Target(endpoint, mode, EndpointInfo(name=endpoint), "a URL (self-hosted server)", auth_type)
    if auth == "none":
        raise TargetError("a Databricks endpoint name needs Databricks credentials; --auth none is for a URL")
    from ..sources.databricks import client_factory
    from ..sources.databricks.client import fetch_error, redact
    from ..sources.databricks.endpoints import endpoint_from_json

    path = f"/api/2.0/serving-endpoints/{quote(endpoint, safe='')}"
    try:
        client = client_factory(timeout_s, retry_budget_s, 1, host=host, profile=profile)()
    except Exception as exc:  # the SDK raises ValueError for missing or rejected credentials; it masks secrets
        raise TargetError(f"cannot authenticate to Databricks: {redact(str(exc))}") from None
    try:
        data: Any = client.api_client.do("GET", path)
    except Exception as exc:
        raise TargetError(f"cannot read endpoint {endpoint!r}: {fetch_error(exc, path)}") from None
    if not isinstance(data, dict) or not data.get("name"):
        raise TargetError(f"cannot read endpoint {endpoint!r}: unexpected answer to GET {path}")
    info = endpoint_from_json(data, detailed=True)
    auth_type = client.config.auth_type
    if info.route_optimized:
        url = data.get("endpoint_url")
        if not isinstance(url, str) or not is_url(url):
            raise TargetError(f"endpoint {endpoint!r} is route-optimized but its detail has no endpoint_url")
        if auth_type == "pat":
            raise TargetError(f"endpoint {endpoint!r} is route-optimized: it takes OAuth tokens only, not a personal "
                              "access token; set DATABRICKS_CLIENT_ID and DATABRICKS_CLIENT_SECRET (a service principal)")
        description = "Databricks, route-optimized (its endpoint_url)"
    else:
        url = f"{client.config.host.rstrip('/')}/serving-endpoints/{quote(endpoint, safe='')}/invocations"
        description = "Databricks"
    if not info.serving:
        description += f", NOT READY (state {info.state or '?'})"
    return Target(url, "databricks", info, description, auth_type)


def _config(host: str | None, profile: str | None) -> Any:
    from databricks.sdk.config import Config

    try:
        return Config(**{k: v for k, v in {"host": host, "profile": profile}.items() if v is not None})
    except Exception as exc:
        from ..sources.databricks.client import redact

        raise TargetError(f"cannot authenticate to Databricks: {redact(str(exc))}") from None


class AuthHeaders:
    """The Authorization header for each request: the SDK's current one, re-read at most every
    HEADERS_TTL_SECONDS (the SDK refreshes OAuth tokens before they expire). After a 401 the SDK
    configuration is rebuilt, so a revoked token is replaced. `build` returns a databricks-sdk Config."""

    def __init__(self, build: Callable[[], Any] | None, clock: Callable[[], float] = time.monotonic):
        self._build, self._clock = build, clock
        self._config: Any = None
        self._built_at = 0.0
        self._cached: tuple[float, dict[str, str]] | None = None
        self._lock = threading.Lock()

    @classmethod
    def for_plan(cls, auth: str, host: str | None, profile: str | None) -> AuthHeaders:
        return cls((lambda: _config(host, profile)) if auth == "databricks" else None)

    def headers(self) -> dict[str, str]:
        if self._build is None:
            return {}
        cached = self._cached
        if cached is not None and self._clock() - cached[0] < HEADERS_TTL_SECONDS:
            return cached[1]
        with self._lock:
            if self._config is None:
                self._config, self._built_at = self._build(), self._clock()
            headers = dict(self._config.authenticate())
            self._cached = (self._clock(), headers)
            return headers

    def rejected(self) -> None:
        """The endpoint answered 401: rebuild the configuration before the next request (at most once
        per HEADERS_TTL_SECONDS, however many clients saw the 401)."""
        with self._lock:
            if self._config is not None and self._clock() - self._built_at >= HEADERS_TTL_SECONDS:
                self._config, self._cached = None, None
