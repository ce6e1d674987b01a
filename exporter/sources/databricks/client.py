"""The Databricks SDK client: built for our pool, and its errors turned into bounded reasons.

The SDK (`databricks-sdk`) gives unified authentication exactly as Databricks users
configure it — DATABRICKS_HOST + DATABRICKS_TOKEN, OAuth M2M with
DATABRICKS_CLIENT_ID/SECRET (token refreshed before expiry), config profiles — and
retries 429/503 honouring Retry-After.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import requests
import urllib3
from databricks.sdk.clock import RealClock
from databricks.sdk.errors import DatabricksError
from databricks.sdk.errors.platform import STATUS_CODE_MAPPING

from ..base import FetchError
from .sdk import Config, SdkClient


def client_factory(timeout_s: float, retry_budget_s: float, pool_size: int,
                   **auth: Any) -> Callable[[], SdkClient]:
    """A factory for SDK clients sized for our pool. `auth` goes to the SDK unchanged (host, profile, or
    explicit credentials for the demo); whatever is not given comes from the SDK's environment/profile."""

    clock = DeadlineClock()

    def factory() -> SdkClient:
        config = Config(
            **{k: v for k, v in auth.items() if v is not None},
            clock=clock,
            http_timeout_seconds=timeout_s,
            retry_timeout_seconds=max(1, math.ceil(retry_budget_s)),  # the SDK reads 0 as "default 300"
            max_connection_pools=pool_size + 2,
            max_connections_per_pool=pool_size + 2,
        )
        client = SdkClient.of(config)
        _size_plain_http_pool(client, pool_size + 2)  # + the list call and a token refresh beside the workers
        return client

    return factory


class RetryPastDeadline(Exception):
    """The SDK was about to wait `wait_s` before a retry, and the wait would pass the caller's deadline."""

    def __init__(self, wait_s: float):
        super().__init__(f"a retry in {wait_s:.3g}s would pass the deadline")
        self.wait_s = wait_s


class DeadlineClock(RealClock):
    """The SDK's clock, whose retry waits stop at the caller's deadline.

    The SDK's retry loop sleeps whatever Retry-After says, past its own retry budget: one listing
    answered 429 with `Retry-After: 60` held a whole poll for 62 s. Inside `until(deadline)` a wait
    that would end past the deadline raises RetryPastDeadline instead of sleeping. Per thread: the
    list call and the detail calls of one poll run on different threads."""

    def __init__(self) -> None:
        self._local = threading.local()

    @contextmanager
    def until(self, deadline: float) -> Iterator[None]:
        """`deadline` is time.monotonic()."""
        previous = getattr(self._local, "deadline", None)
        self._local.deadline = deadline
        try:
            yield
        finally:
            self._local.deadline = previous

    def sleep(self, seconds: float) -> None:
        deadline = getattr(self._local, "deadline", None)
        if deadline is not None and time.monotonic() + seconds >= deadline:
            raise RetryPastDeadline(seconds)
        super().sleep(seconds)


def fetch_error(exc: BaseException, path: str) -> FetchError:
    """A bounded reason and a message built from the status/error code only (no headers, no tokens)."""
    if isinstance(exc, (TimeoutError, RuntimeError)) and isinstance(exc.__cause__, (DatabricksError, requests.RequestException)):
        # The SDK gave up retrying (429/503 or a refused connection past the retry budget): report the last failure.
        error = fetch_error(exc.__cause__, path)
        return FetchError(error.reason, f"{error} (retries exhausted)")
    if isinstance(exc, DatabricksError):
        # The SDK's class per HTTP status (TooManyRequests, NotFound, ...) rather than its subclass per
        # error code (RequestLimitExceeded, ...): few, stable label values.
        status_class = next((c for c in type(exc).__mro__ if DatabricksError in c.__bases__), type(exc))
        reason = _snake(status_class.__name__)
        code = getattr(exc, "error_code", None) or ""
        return FetchError(reason, f"GET {path}: {type(exc).__name__} {code}".strip())
    if isinstance(exc, (requests.Timeout, TimeoutError)) or is_read_timeout(exc):
        return FetchError("timeout", f"GET {path}: timed out")
    if isinstance(exc, requests.ConnectionError):
        return FetchError("connection", f"GET {path}: connection failed")
    return FetchError("bad_response", f"GET {path}: {type(exc).__name__}")


def status_error(status: int, body: bytes, path: str) -> FetchError:
    """A non-2xx answer of the metrics hot path, with the same reason the SDK's error class would give."""
    code = ""
    try:
        data = json.loads(body[:4096]) if body[:1] == b"{" else None
        if isinstance(data, dict) and isinstance(data.get("error_code"), str) and _ERROR_CODE.fullmatch(data["error_code"]):
            code = data["error_code"]  # only a well-formed code: the body is the server's and could echo anything
    except ValueError:
        pass
    error_class = STATUS_CODE_MAPPING.get(status, DatabricksError)
    retried = " (retries exhausted)" if status in (429, 503) else ""
    return FetchError(_snake(error_class.__name__), f"GET {path}: {error_class.__name__} {code}".strip() + retried)


_ERROR_CODE = re.compile(r"[A-Z][A-Z0-9_]{0,79}")


def on_each_response(client: SdkClient, hook: Callable[[requests.Response], None]) -> None:
    """Call `hook` with every HTTP response the SDK's session receives, its own retries included."""
    session = getattr(getattr(client.api_client, "_api_client", None), "_session", None)
    if isinstance(session, requests.Session):
        session.hooks["response"].append(lambda resp, *args, **kwargs: hook(resp))


def is_read_timeout(exc: BaseException) -> bool:
    """requests reports a read timeout while streaming a body as a ConnectionError around urllib3's error."""
    return isinstance(exc, requests.ConnectionError) and any(
        isinstance(arg, urllib3.exceptions.ReadTimeoutError) for arg in exc.args)


# What may carry a credential in an error text: `token=...`, `"client_secret": "..."`, `Bearer ...`, a PAT.
_SECRET_FIELD = re.compile(r"""(?i)((?:access_|refresh_|id_)?token|secret|password|authorization|api[_-]?key)(["']?\s*[:=]\s*["']?)[^\s"',;}&]+""")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
_PAT = re.compile(r"\bdapi[0-9a-f]{16,}\b")


def redact(text: str, limit: int = 300) -> str:
    """An error text fit for logs and labels: credential-looking values masked, at most `limit` characters.
    The SDK masks its own configuration errors; this covers the rest (a token server's raw answer, ...)."""
    text = _SECRET_FIELD.sub(lambda m: m.group(1) + m.group(2) + "***", text)
    text = _BEARER.sub(lambda m: m.group(1) + " ***", text)
    text = _PAT.sub("***", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _snake(name: str) -> str:
    out = "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")
    return out if out != "databricks_error" else "api_error"


def host_label(host: str | None) -> str | None:
    """The workspace as a label value: the host without scheme or trailing slash."""
    return host.split("://", 1)[-1].rstrip("/") if host else None


def _size_plain_http_pool(client: SdkClient, pool_size: int) -> None:
    """The SDK sizes its connection pool for https only; a plain-http host (a local simulator or
    proxy) would otherwise fall back to requests' 10 connections and churn under concurrency."""
    session = getattr(getattr(client.api_client, "_api_client", None), "_session", None)
    if isinstance(session, requests.Session) and (client.config.host or "").startswith("http://"):
        session.mount("http://", requests.adapters.HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size))
