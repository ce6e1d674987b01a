"""Databricks Model Serving as a source: the endpoint list and detail, and each endpoint's metrics.

The SDK does configuration and authentication (PAT, OAuth M2M with refresh, profiles)
and the rare calls, list and detail. The metrics call, one per endpoint per poll, goes
through the lean client in ../http.py with the SDK's current auth headers. On a 401
the SDK client is rebuilt once, so a revoked or rotated token is replaced at once.
Responses are read as raw JSON and parsed defensively (endpoints.py); metrics bodies
are read up to a size cap and parsed into the pipeline's neutral figures (metrics.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import requests
from databricks.sdk.errors import DatabricksError, Unauthenticated

from ... import __version__
from ...model import EndpointInfo
from ..base import ApiUsage, FetchError, Observation
from ..http import HttpClient
from .client import DeadlineClock, RetryPastDeadline, fetch_error, host_label, on_each_response, redact, status_error
from .endpoints import PLATFORM, endpoint_from_json
from .metrics import observe
from .sdk import SdkClient

log = logging.getLogger(__name__)

API = "/api/2.0/serving-endpoints"
MAX_BODY_BYTES = 16 * 1024 * 1024
REFRESH_SECONDS = 60.0  # the platform publishes a new minute about once a minute
# On the event loop, the SDK's auth headers are re-read at most this often: reading them can block on an OAuth
# refresh, so it happens on a thread. A token the SDK replaced is used at most this long after (a 401 re-reads).
AUTH_HEADERS_TTL_S = 1.0


class DatabricksSource:
    """The client is built on first use and rebuilt after a 401. Building it can need the network
    (host metadata, OAuth discovery), so a workspace that is unreachable at start-up is a failed
    poll to retry, not a crash loop."""

    platform = PLATFORM
    refresh_seconds = REFRESH_SECONDS

    def __init__(self, client_factory: Callable[[], SdkClient], *, timeout_s: float = 10.0,
                 retry_budget_s: float = 30.0, pool_size: int = 16, max_body_bytes: int = MAX_BODY_BYTES,
                 max_entities: int = 50, name: str | None = None):
        self._factory = client_factory
        self._name = name  # the configured workspace name (`workspaces:`); None: the host names it
        self._lock = threading.Lock()
        self._built: tuple[SdkClient, int] | None = None  # the SDK client and its generation (+1 per rebuild)
        self._headers: tuple[int, float, dict[str, str]] | None = None  # (generation, read at, auth headers)
        self._http_client: HttpClient | None = None
        self._timeout_s = timeout_s
        self._retry_budget_s = retry_budget_s
        self._pool_size = pool_size
        self._max_body = max_body_bytes
        self._max_entities = max_entities
        self._authorization: str | None = None  # the last Authorization header, to see token refreshes
        self._sdk_call = threading.local()  # which call the SDK is making on this thread, for its responses
        self.usage = ApiUsage()
        self.workspace: str | None = name  # the `workspace` label of its endpoints (host_label: once the client is built)
        self._observed: dict[str, Observation] = {}  # each endpoint's last observation, to skip parsing a body again
        self._listed: dict[str, tuple[dict, EndpointInfo]] = {}  # each listed endpoint's last JSON and what it read as

    def close(self) -> None:
        with self._lock:
            http, self._http_client = self._http_client, None
        if http is not None:
            http.close()

    # -- the three calls -------------------------------------------------

    def list_endpoints(self, deadline: float | None = None) -> list[EndpointInfo]:
        data = self._call("list", "GET", API, deadline=deadline)
        if not isinstance(data, dict):  # never read a malformed answer as an empty workspace
            raise FetchError("bad_response", "endpoint list response is not a JSON object")
        items = data.get("endpoints")
        if items is None:  # an empty workspace omits the key
            return []
        if not isinstance(items, list):
            raise FetchError("bad_response", f"endpoint list response: 'endpoints' is a {type(items).__name__}, not a list")
        listed, read = [], {}
        for item in items:
            if isinstance(item, dict) and item.get("name"):
                cached = self._listed.get(item["name"])  # an endpoint's JSON rarely changes between polls
                info = cached[1] if cached is not None and cached[0] == item else self._info(item)
                read[info.name] = (item, info)
                listed.append(info)
        self._listed = read
        for gone in self._observed.keys() - read.keys():  # a set built at once: fetches may add meanwhile
            self._observed.pop(gone, None)
        return listed

    def describe(self, name: str, deadline: float | None = None) -> EndpointInfo:
        data = self._call("detail", "GET", f"{API}/{quote(name, safe='')}", deadline=deadline)
        if not isinstance(data, dict) or not data.get("name"):
            raise FetchError("bad_response", f"endpoint {name!r}: detail response is not an endpoint object")
        return self._info(data, detailed=True)

    def _info(self, data: dict, detailed: bool = False) -> EndpointInfo:
        return replace(endpoint_from_json(data, detailed=detailed), workspace=self.workspace)

    def fetch(self, name: str, deadline: float | None = None) -> Observation:
        return self._observe(name, *self.read_metrics(name, deadline))

    async def fetch_async(self, name: str, deadline: float | None = None) -> Observation:
        """`fetch` as a coroutine on `loop`: what the poller runs."""
        return self._observe(name, *await self.read_metrics_async(name, deadline))

    def _observe(self, name: str, body: bytes, content_type: str) -> Observation:
        observed = self._observed[name] = observe(body, content_type, self._max_entities, self._observed.get(name))
        return observed

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._http().loop

    def read_metrics(self, name: str, deadline: float | None = None) -> tuple[bytes, str]:
        """The raw metrics body of one endpoint and its content type, at most `max_body_bytes`.
        `deadline` (time.monotonic()) bounds the call with its retries; default: the retry budget.
        From a thread other than the loop's: the auth headers are read fresh, here."""
        if deadline is None:
            deadline = time.monotonic() + self._retry_budget_s
        client, generation = self._current()
        headers = self._auth_headers(client, generation)
        return self._http().run(self._read_metrics(name, deadline, client, generation, headers),
                                timeout=max(0.0, deadline - time.monotonic()) + 2 * self._timeout_s + 5)

    async def read_metrics_async(self, name: str, deadline: float | None = None) -> tuple[bytes, str]:
        loop = asyncio.get_running_loop()
        built = self._built or await loop.run_in_executor(None, self._current)  # building may need the network
        client, generation = built
        headers = self._fresh_headers(generation) or await loop.run_in_executor(None, self._auth_headers, client, generation)
        return await self._read_metrics(name, deadline, client, generation, headers)

    async def _read_metrics(self, name: str, deadline: float | None, client: SdkClient, generation: int,
                            headers: dict[str, str]) -> tuple[bytes, str]:
        path = f"{API}/{quote(name, safe='')}/metrics"
        if deadline is None:
            deadline = time.monotonic() + self._retry_budget_s
        for attempt in (1, 2):
            try:
                resp = await self._http().fetch(f"{(client.config.host or '').rstrip('/')}{path}",
                                                {**headers, "Accept": "text/plain"}, call="metrics",
                                                timeout_s=self._timeout_s, deadline=deadline, max_body=self._max_body)
            except FetchError as exc:
                raise FetchError(exc.reason, f"GET {path}: {exc}") from None
            if resp.status == 401 and attempt == 1:
                log.info("got 401 from %s; re-authenticating once", path)
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(None, self._reauthenticate, generation)
                client, generation = await loop.run_in_executor(None, self._current)
                headers = await loop.run_in_executor(None, self._auth_headers, client, generation)
                continue
            if not 200 <= resp.status < 300:
                raise status_error(resp.status, resp.body, path)
            return resp.body, resp.headers.get("content-type", "")
        raise AssertionError("unreachable")

    # -- plumbing --------------------------------------------------------

    def _call(self, call: str, method: str, path: str, deadline: float | None = None, **kwargs: Any) -> Any:
        """A call through the SDK (its retries included, never waiting past `deadline` nor past the retry
        budget); each HTTP answer is counted by `_sdk_response`."""
        budget_end = time.monotonic() + self._retry_budget_s
        deadline = budget_end if deadline is None else min(deadline, budget_end)
        for attempt in (1, 2):
            client, generation = self._current()
            self._sdk_call.name, self._sdk_call.answers, self._sdk_call.status = call, 0, None
            clock = getattr(client.config, "clock", None)
            try:
                with clock.until(deadline) if isinstance(clock, DeadlineClock) else contextlib.nullcontext():
                    return client.api_client.do(method, path, **kwargs)
            except RetryPastDeadline as exc:
                status = self._sdk_call.status
                if status is None:  # no answer yet (a refused connection, say): the poll's deadline came first
                    raise FetchError("deadline", f"{method} {path}: {exc}") from None
                error = status_error(status, b"", path)  # the reason of the last answer, as the metrics call gives it
                raise FetchError(error.reason, f"{error}; {exc}") from None
            except Unauthenticated as exc:
                if attempt == 2:
                    raise fetch_error(exc, path) from None
                log.info("got 401 from %s; re-authenticating once", path)
                self._reauthenticate(generation)
            except (DatabricksError, requests.RequestException, TimeoutError, RuntimeError, ValueError, TypeError) as exc:
                # TypeError: the SDK's do() fails on a JSON scalar body (e.g. `"x"`) instead of returning it.
                error = fetch_error(exc, path)
                if error.reason in ("timeout", "connection"):  # no answer to count
                    self.usage.count(call, error.reason)
                raise error from None
            finally:
                if self._sdk_call.answers > 1:
                    for _ in range(self._sdk_call.answers - 1):
                        self.usage.retry(call)
                self._sdk_call.name = None
        raise AssertionError("unreachable")

    def _sdk_response(self, resp: requests.Response) -> None:
        call = getattr(self._sdk_call, "name", None)
        if call is not None:
            self._sdk_call.answers += 1
            self._sdk_call.status = resp.status_code
            self.usage.count(call, ApiUsage.outcome(resp.status_code))

    def _fresh_headers(self, generation: int) -> dict[str, str] | None:
        cached = self._headers
        if cached is not None and cached[0] == generation and time.monotonic() - cached[1] < AUTH_HEADERS_TTL_S:
            return cached[2]
        return None

    def _auth_headers(self, client: SdkClient, generation: int) -> dict[str, str]:
        """The SDK's current auth headers (it refreshes OAuth tokens before they expire). A changed
        Authorization header is counted as one token call: the SDK makes them outside our view."""
        try:
            headers = client.config.authenticate()
        except Exception as exc:  # the SDK raises ValueError, requests errors, ...; it masks secrets
            error = fetch_error(exc, "token")
            self.usage.count("token", error.reason if error.reason in ("timeout", "connection") else "4xx")
            raise FetchError("auth", f"cannot authenticate to Databricks: {redact(str(exc))}") from None
        authorization = headers.get("Authorization")
        if authorization != self._authorization:
            with self._lock:  # one count per change, however many threads see it
                if authorization != self._authorization:
                    if client.config.auth_type != "pat":  # a PAT is read, not fetched
                        self.usage.count("token", "2xx")
                    self._authorization = authorization
        self._headers = (generation, time.monotonic(), headers)
        return headers

    def _http(self) -> HttpClient:
        with self._lock:
            if self._http_client is None:
                self._http_client = HttpClient(self.usage, self._pool_size, f"serving-exporter/{__version__}")
            return self._http_client

    def _current(self) -> tuple[SdkClient, int]:
        built = self._built
        if built is not None:
            return built
        with self._lock:
            if self._built is None:
                self._built = (self._build(), 0)
            return self._built

    def _reauthenticate(self, seen_generation: int) -> None:
        with self._lock:
            generation = self._built[1] if self._built else -1
            if generation == seen_generation:  # another thread may have done it already
                self._built = (self._build(), generation + 1)

    def _build(self) -> SdkClient:
        try:
            client = self._factory()
        except Exception as exc:  # the SDK raises ValueError for missing or rejected credentials; it masks secrets
            raise FetchError("auth", f"cannot authenticate to Databricks: {redact(str(exc))}") from None
        if self._name is None:
            self.workspace = host_label(client.config.host)
        on_each_response(client, self._sdk_response)
        return client
