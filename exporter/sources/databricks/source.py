"""Databricks Model Serving as a source: the endpoint list and detail, and each endpoint's metrics.

On a 401 the SDK client is rebuilt once, so a revoked or rotated OAuth token is
replaced immediately. Responses are read as raw JSON and parsed defensively
(endpoints.py); metrics bodies are read up to a size cap and parsed into the
pipeline's neutral figures (metrics.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import DatabricksError, Unauthenticated

from ...model import EndpointInfo
from ..base import FetchError, Observation
from .client import fetch_error, host_label, is_read_timeout, redact
from .endpoints import PLATFORM, endpoint_from_json
from .metrics import observe

log = logging.getLogger(__name__)

API = "/api/2.0/serving-endpoints"
MAX_BODY_BYTES = 16 * 1024 * 1024
REFRESH_SECONDS = 60.0  # the platform publishes a new minute about once a minute


class DatabricksSource:
    """The client is built on first use and rebuilt after a 401. Building it can need the network
    (host metadata, OAuth discovery), so a workspace that is unreachable at start-up is a failed
    poll to retry, not a crash loop."""

    platform = PLATFORM
    refresh_seconds = REFRESH_SECONDS

    def __init__(self, client_factory: Callable[[], WorkspaceClient], max_body_bytes: int = MAX_BODY_BYTES,
                 max_entities: int = 50):
        self._factory = client_factory
        self._lock = threading.Lock()
        self._client: WorkspaceClient | None = None
        self._generation = 0
        self._max_body = max_body_bytes
        self._max_entities = max_entities
        self.workspace: str | None = None

    # -- the three calls -------------------------------------------------

    def list_endpoints(self) -> list[EndpointInfo]:
        data = self._call("GET", API)
        if not isinstance(data, dict):  # never read a malformed answer as an empty workspace
            raise FetchError("bad_response", "endpoint list response is not a JSON object")
        items = data.get("endpoints")
        if items is None:  # an empty workspace omits the key
            return []
        if not isinstance(items, list):
            raise FetchError("bad_response", f"endpoint list response: 'endpoints' is a {type(items).__name__}, not a list")
        return [endpoint_from_json(item) for item in items if isinstance(item, dict) and item.get("name")]

    def describe(self, name: str) -> EndpointInfo:
        data = self._call("GET", f"{API}/{quote(name, safe='')}")
        if not isinstance(data, dict) or not data.get("name"):
            raise FetchError("bad_response", f"endpoint {name!r}: detail response is not an endpoint object")
        return endpoint_from_json(data, detailed=True)

    def fetch(self, name: str) -> Observation:
        body, content_type = self.read_metrics(name)
        return observe(body, content_type, self._max_entities)

    def read_metrics(self, name: str) -> tuple[bytes, str]:
        """The raw metrics body of one endpoint and its content type, at most `max_body_bytes`."""
        resp = self._call("GET", f"{API}/{quote(name, safe='')}/metrics", raw=True,
                          headers={"Accept": "text/plain"}, response_headers=["content-type"])
        stream = resp["contents"]
        try:
            body = stream.read(self._max_body + 1)
        except requests.RequestException as exc:
            timeout = isinstance(exc, requests.Timeout) or is_read_timeout(exc)
            raise FetchError("timeout" if timeout else "connection",
                             f"reading metrics of {name!r}: {type(exc).__name__}") from None
        finally:
            stream.close()
        if len(body) > self._max_body:
            raise FetchError("too_large", f"metrics of {name!r} exceed {self._max_body} bytes")
        return body, resp.get("content-type") or ""

    # -- plumbing --------------------------------------------------------

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        for attempt in (1, 2):
            client, generation = self._current()
            try:
                return client.api_client.do(method, path, **kwargs)
            except Unauthenticated as exc:
                if attempt == 2:
                    raise fetch_error(exc, path) from None
                log.info("got 401 from %s; re-authenticating once", path)
                self._reauthenticate(generation)
            except (DatabricksError, requests.RequestException, TimeoutError, RuntimeError, ValueError, TypeError) as exc:
                # TypeError: the SDK's do() fails on a JSON scalar body (e.g. `"x"`) instead of returning it.
                raise fetch_error(exc, path) from None
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
            raise FetchError("auth", f"cannot authenticate to Databricks: {redact(str(exc))}") from None
        self.workspace = host_label(client.config.host)
        return client
