"""DatabricksSource and the SDK error classification.

Three kinds of fake:
- a bare fake SDK client behind the factory seam: `.config` (host, auth_type, `authenticate()` giving the
  bearer header) and `.api_client.do(method, path, **kwargs)`, whose `do` returns or raises what a test says
  (the list and detail calls go through the SDK);
- a real HTTP server on 127.0.0.1 (`server` fixture) for the metrics call, which goes through HttpClient
  (asyncio + httptools): each request gets the `Reply` a test queued (status, headers, body, or a network fault), and the
  server records what it received;
- the SDK's own `_BaseClient` (retry loop, error parser) over a canned requests adapter and a fake clock, so
  errors and retries of the list and detail calls are exactly what the installed SDK produces.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import Message
from pathlib import Path
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

import pytest
import requests
from databricks.sdk import errors as sdk_errors
from databricks.sdk._base_client import _BaseClient
from databricks.sdk.clock import Clock
from databricks.sdk.errors import DatabricksError, platform
from databricks.sdk.retries import retried
from requests.structures import CaseInsensitiveDict

from exporter.sources.base import FetchError, MetricsParseError, Observation
from exporter.sources.databricks import DatabricksSource
from exporter.sources.databricks.client import fetch_error, host_label
from exporter.sources.databricks.source import API, MAX_BODY_BYTES

SECRET = "dapiSECRET0123456789abcdef"
BEARER = f"Bearer {SECRET}"
HOST = "https://adb-1234567890123456.7.azuredatabricks.net"
WORKSPACE = "adb-1234567890123456.7.azuredatabricks.net"

METRICS = b"""# TYPE request_count_total gauge
request_count_total{workspaceId="1234567890123456"} 600 1763820000000
# TYPE request_5xx_count_total gauge
request_5xx_count_total{workspaceId="1234567890123456"} 6 1763820000000
# TYPE request_latency_ms histogram
request_latency_ms_bucket{workspaceId="1234567890123456",le="10.0"} 300 1763820000000
request_latency_ms_bucket{workspaceId="1234567890123456",le="250.0"} 590 1763820000000
request_latency_ms_bucket{workspaceId="1234567890123456",le="+Inf"} 600 1763820000000
request_latency_ms_sum{workspaceId="1234567890123456"} 30000.0 1763820000000
request_latency_ms_count{workspaceId="1234567890123456"} 600 1763820000000
# TYPE cpu_usage_percentage gauge
cpu_usage_percentage{workspaceId="1234567890123456"} 25.0 1763820000000
"""
TEXT_PLAIN = "text/plain; version=0.0.4; charset=utf-8"
WAIT_S = 5.0  # how long a test waits for a condition before failing; nothing waits this long when all is well


# ---------------------------------------------------------------------------
# Fakes


class FakeConfig:
    """The part of the SDK's Config the source reads. `token` may be changed (a refreshed OAuth token)."""

    def __init__(self, host: str | None, token: str, auth_type: str):
        self.host = host
        self.token = token
        self.auth_type = auth_type
        self.authentications = 0

    def authenticate(self) -> dict[str, str]:
        self.authentications += 1
        return {"Authorization": f"Bearer {self.token}"}


def _no_sdk_call(method: str, path: str, **kwargs: Any) -> Any:
    raise AssertionError(f"unexpected SDK call {method} {path}")


class FakeClient:
    def __init__(self, do: Callable[..., Any] = _no_sdk_call, host: str | None = HOST, token: str = SECRET,
                 auth_type: str = "pat"):
        self.config = FakeConfig(host, token, auth_type)
        self.calls: list[tuple[str, str, dict]] = []

        def record(method: str, path: str, **kwargs: Any) -> Any:
            self.calls.append((method, path, kwargs))
            return do(method, path, **kwargs)

        self.api_client = SimpleNamespace(do=record)


def answering(value: Any) -> Callable[..., Any]:
    def do(method: str, path: str, **kwargs: Any) -> Any:
        return value
    return do


def raising(exc: BaseException) -> Callable[..., Any]:
    def do(method: str, path: str, **kwargs: Any) -> Any:
        raise exc
    return do


class Factory:
    """Hands out the given clients in order (the last one again and again); counts calls."""

    def __init__(self, *clients: FakeClient | BaseException):
        self.clients = list(clients)
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self):
        with self.lock:
            self.calls += 1
            item = self.clients[min(self.calls, len(self.clients)) - 1]
        if isinstance(item, BaseException):
            raise item
        return item


_OPEN_SOURCES: list[DatabricksSource] = []


def _close_open_sources() -> None:
    while _OPEN_SOURCES:
        _OPEN_SOURCES.pop().close()


@pytest.fixture(autouse=True)
def _close_sources():
    """Every source a test makes is closed (its event-loop thread stopped), whatever the test's outcome."""
    yield
    _close_open_sources()


def source_with(*clients: FakeClient | BaseException, **kwargs: Any) -> tuple[DatabricksSource, Factory]:
    factory = Factory(*clients)
    source = DatabricksSource(factory, **kwargs)
    _OPEN_SOURCES.append(source)
    return source, factory


def assert_no_secret(text: str) -> None:
    assert SECRET not in text
    assert "Bearer" not in text


# -- a real HTTP server for the metrics call ---------------------------------


@dataclass
class Reply:
    """What the server does with one request. By default: 200 with METRICS as Prometheus text."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": TEXT_PLAIN})
    body: bytes = METRICS
    repeat: int = 1  # the body is sent `repeat` times over: a huge body without holding it in memory
    length: int | None = None  # the Content-Length announced; default: the body's
    chunked: bool = False  # Transfer-Encoding: chunked, one chunk per repeat
    cut: bool = False  # close the connection once the body is sent, whatever was announced
    drop: bool = False  # close the connection without answering
    stall: str | None = None  # "headers": answer nothing; "body": send the headers and body, then nothing more
    pace_s: float | None = None  # send the body one byte per `pace_s` seconds


def json_body(error_code: str | None, message: str) -> bytes:
    return json.dumps({"message": message} if error_code is None else {"error_code": error_code, "message": message}).encode()


def error_reply(status: int, error_code: str | None, message: str, **headers: str) -> Reply:
    return Reply(status, {"Content-Type": "application/json", **headers}, json_body(error_code, message))


@dataclass(frozen=True)
class Seen:
    path: str  # the request target exactly as it came on the wire
    headers: Message
    port: int  # the client's port: the same port is the same (pooled) connection


class MetricsServer:
    """A ThreadingHTTPServer on 127.0.0.1 and a free port. `reply(...)` queues what the next requests get (the
    last queued reply is repeated); `requests` is what it received; `wait_done(n)` waits until `n` requests
    were handled to the end, and gives the body bytes the server managed to send for each."""

    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self.sent: list[int] = []
        self.release = threading.Event()  # ends stalls and paced bodies
        self._replies: list[Reply] = [Reply()]
        self._cond = threading.Condition()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01},
                                        name="metrics-server", daemon=True)
        self._thread.start()

    def reply(self, *replies: Reply) -> None:
        with self._cond:
            self._replies = list(replies)

    def client(self, **kwargs: Any) -> FakeClient:
        return FakeClient(host=self.url, **kwargs)

    def wait_done(self, n: int) -> list[int]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.sent) >= n, WAIT_S), f"{len(self.sent)} of {n} requests handled"
            return list(self.sent)

    def close(self) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()  # joins the handler threads
        self._thread.join(WAIT_S)

    def _next(self, seen: Seen) -> Reply:
        with self._cond:
            self.requests.append(seen)
            return self._replies.pop(0) if len(self._replies) > 1 else self._replies[0]

    def _done(self, sent: int) -> None:
        with self._cond:
            self.sent.append(sent)
            self._cond.notify_all()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real server: the client pools connections
    disable_nagle_algorithm = True  # else the body, written after the headers, waits for a delayed ACK (40 ms)
    timeout = WAIT_S  # a client that neither sends nor closes cannot hold a handler thread for long

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        server: MetricsServer = self.server.owner  # type: ignore[attr-defined]
        reply = server._next(Seen(self.path, self.headers, self.client_address[1]))
        sent = 0
        try:
            if reply.drop or reply.stall == "headers":
                if reply.stall:
                    server.release.wait(WAIT_S)
                self.close_connection = True
                return
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            if reply.chunked:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Content-Length", str(len(reply.body) * reply.repeat if reply.length is None
                                                       else reply.length))
            self.end_headers()
            for i in range(reply.repeat):
                if reply.chunked:  # a cut chunked body announces more than its last chunk carries
                    extra = 100 if reply.cut and i == reply.repeat - 1 else 0
                    self.wfile.write(b"%x\r\n" % (len(reply.body) + extra))
                if reply.pace_s is None:
                    self.wfile.write(reply.body)
                    sent += len(reply.body)
                else:
                    for byte in range(len(reply.body)):
                        if server.release.wait(reply.pace_s):
                            break
                        self.wfile.write(reply.body[byte:byte + 1])
                        sent += 1
                if reply.chunked and not (reply.cut and i == reply.repeat - 1):
                    self.wfile.write(b"\r\n")
            if reply.chunked and not reply.cut:
                self.wfile.write(b"0\r\n\r\n")
            if reply.stall == "body":
                server.release.wait(WAIT_S)
            if reply.cut or reply.stall or reply.pace_s is not None:
                self.close_connection = True
        except (BrokenPipeError, ConnectionResetError):  # the client closed the connection
            self.close_connection = True
        finally:
            server._done(sent)


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)  # HttpClient honours proxy settings: none for 127.0.0.1


@pytest.fixture
def server(no_proxy):
    srv = MetricsServer()
    try:
        yield srv
    finally:
        _close_open_sources()  # first, so the server's keep-alive handlers see their connections close
        srv.close()


def metrics_source(server: MetricsServer, *clients: FakeClient, **kwargs: Any) -> tuple[DatabricksSource, Factory]:
    """A source whose clients point at `server`, with short timeouts (a test never waits long on one)."""
    kwargs = {"timeout_s": 2, "retry_budget_s": 2, **kwargs}
    return source_with(*(clients or (server.client(),)), **kwargs)


def free_port() -> int:
    """A port nothing listens on (bound and released at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the SDK's own client over canned HTTP answers ---------------------------


class FakeClock(Clock):
    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.slept: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds



class CannedAdapter(requests.adapters.BaseAdapter):
    """Answers every request with `answer(request)`: a requests.Response or an exception to raise."""

    def __init__(self, answer: Callable[[requests.PreparedRequest], Any]):
        super().__init__()
        self.answer = answer
        self.requests: list[requests.PreparedRequest] = []

    def send(self, request, **kwargs):
        self.requests.append(request)
        result = self.answer(request)
        if isinstance(result, BaseException):
            raise result
        return result

    def close(self) -> None:
        pass


def http_response(request: requests.PreparedRequest, status: int = 200, body: bytes | Any = b"",
                  headers: dict[str, str] | None = None) -> requests.Response:
    resp = requests.Response()
    resp.status_code = status
    resp.reason = {200: "OK", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests",
                   503: "Service Unavailable"}.get(status, "Error")
    resp.headers = CaseInsensitiveDict(headers or {})
    resp.request = request
    resp.url = request.url
    resp.encoding = "utf-8"
    resp._content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return resp


class SdkClient:
    """What client_factory builds, minus authentication and the network: the SDK's _BaseClient (retries, error
    parsing) over a canned adapter. Every request carries a bearer token, as a real one would."""

    def __init__(self, answer: Callable[[requests.PreparedRequest], Any], retry_timeout_s: int = 5,
                 host: str = HOST):
        self.clock = FakeClock()
        self.base = _BaseClient(retry_timeout_seconds=retry_timeout_s, clock=self.clock,
                                header_factory=lambda: {"Authorization": BEARER})
        self.adapter = CannedAdapter(answer)
        self.base._session.mount("https://", self.adapter)
        self.config = SimpleNamespace(host=host)
        self.api_client = SimpleNamespace(do=lambda method, path, **kw: self.base.do(method, f"{host}{path}", **kw))


def json_error(status: int, error_code: str | None, message: str, **headers: str):
    body = {"message": message} if error_code is None else {"error_code": error_code, "message": message}
    return lambda request: http_response(request, status, body, {"Content-Type": "application/json", **headers})


def sdk_retries_exhausted(exc: BaseException, max_attempts: int | None = None) -> BaseException:
    """The exception the SDK's retry loop raises when `exc` keeps coming back (TimeoutError, or RuntimeError
    with max_attempts), with `exc` as its __cause__."""

    def always() -> None:
        raise exc

    call = retried(timeout=timedelta(seconds=5), is_retryable=_BaseClient._is_retryable, clock=FakeClock(),
                   max_attempts=max_attempts)(always)
    with pytest.raises((TimeoutError, RuntimeError)) as info:
        call()
    assert info.value.__cause__ is exc
    return info.value


# ---------------------------------------------------------------------------
# fetch_error: the SDK's status classes


STATUS_REASONS = {
    sdk_errors.BadRequest: "bad_request",
    sdk_errors.Unauthenticated: "unauthenticated",
    sdk_errors.PermissionDenied: "permission_denied",
    sdk_errors.NotFound: "not_found",
    sdk_errors.ResourceConflict: "resource_conflict",
    sdk_errors.TooManyRequests: "too_many_requests",
    sdk_errors.Cancelled: "cancelled",
    sdk_errors.InternalError: "internal_error",
    sdk_errors.NotImplemented: "not_implemented",
    sdk_errors.TemporarilyUnavailable: "temporarily_unavailable",
    sdk_errors.DeadlineExceeded: "deadline_exceeded",
    DatabricksError: "api_error",
}

# The SDK's subclasses per error code, and the reason of the status class each belongs to.
ERROR_CODE_REASONS = {
    sdk_errors.RequestLimitExceeded: ("REQUEST_LIMIT_EXCEEDED", "too_many_requests"),
    sdk_errors.ResourceExhausted: ("RESOURCE_EXHAUSTED", "too_many_requests"),
    sdk_errors.ResourceDoesNotExist: ("RESOURCE_DOES_NOT_EXIST", "not_found"),
    sdk_errors.InvalidParameterValue: ("INVALID_PARAMETER_VALUE", "bad_request"),
    sdk_errors.InvalidState: ("INVALID_STATE", "bad_request"),
    sdk_errors.Aborted: ("ABORTED", "resource_conflict"),
    sdk_errors.AlreadyExists: ("ALREADY_EXISTS", "resource_conflict"),
    sdk_errors.ResourceAlreadyExists: ("RESOURCE_ALREADY_EXISTS", "resource_conflict"),
    sdk_errors.Unknown: ("UNKNOWN", "internal_error"),
    sdk_errors.DataLoss: ("DATA_LOSS", "internal_error"),
}

PATH = "/api/2.0/serving-endpoints/chat"


@pytest.mark.parametrize("cls, reason", STATUS_REASONS.items(), ids=lambda v: getattr(v, "__name__", v))
def test_status_class_reason(cls, reason):
    exc = cls(f"request rejected; Authorization: {BEARER}", error_code="SOME_CODE", retry_after_secs=3)
    error = fetch_error(exc, PATH)
    assert isinstance(error, FetchError)
    assert error.reason == reason
    assert str(error) == f"GET {PATH}: {cls.__name__} SOME_CODE"
    assert_no_secret(str(error))


def test_status_class_table_covers_the_installed_sdk():
    assert set(platform.STATUS_CODE_MAPPING.values()) | {DatabricksError} == set(STATUS_REASONS)


@pytest.mark.parametrize("cls, code_reason", ERROR_CODE_REASONS.items(), ids=lambda v: getattr(v, "__name__", v))
def test_error_code_subclass_reports_its_status_class(cls, code_reason):
    code, reason = code_reason
    error = fetch_error(cls(f"{BEARER} over the limit", error_code=code), PATH)
    assert error.reason == reason
    assert str(error) == f"GET {PATH}: {cls.__name__} {code}"  # the specific class and code stay in the message
    assert_no_secret(str(error))


def test_error_code_table_covers_the_installed_sdk():
    assert set(platform.ERROR_CODE_MAPPING.values()) == set(ERROR_CODE_REASONS)
    for code, cls in platform.ERROR_CODE_MAPPING.items():
        assert ERROR_CODE_REASONS[cls][0] == code


def test_private_link_error_is_permission_denied():
    error = fetch_error(sdk_errors.PrivateLinkValidationError("private link", error_code="PRIVATE_LINK_VALIDATION_ERROR"),
                        PATH)
    assert error.reason == "permission_denied"


def test_subclass_two_levels_below_a_status_class():
    class ServingQuotaExceeded(sdk_errors.RequestLimitExceeded):
        pass

    assert fetch_error(ServingQuotaExceeded("x"), PATH).reason == "too_many_requests"


def test_error_without_code_or_message():
    error = fetch_error(sdk_errors.NotFound(), PATH)
    assert (error.reason, str(error)) == ("not_found", f"GET {PATH}: NotFound")


@pytest.mark.parametrize("status, error_code, cls, reason", [
    (429, "REQUEST_LIMIT_EXCEEDED", sdk_errors.RequestLimitExceeded, "too_many_requests"),
    (429, None, sdk_errors.TooManyRequests, "too_many_requests"),
    (503, "TEMPORARILY_UNAVAILABLE", sdk_errors.TemporarilyUnavailable, "temporarily_unavailable"),
    (404, "RESOURCE_DOES_NOT_EXIST", sdk_errors.ResourceDoesNotExist, "not_found"),
    (403, "PERMISSION_DENIED", sdk_errors.PermissionDenied, "permission_denied"),
    (401, None, sdk_errors.Unauthenticated, "unauthenticated"),
    (400, "INVALID_PARAMETER_VALUE", sdk_errors.InvalidParameterValue, "bad_request"),
    (500, None, sdk_errors.InternalError, "internal_error"),
    (418, None, DatabricksError, "api_error"),
])
def test_errors_as_the_sdk_parses_them_from_http_answers(status, error_code, cls, reason):
    """The SDK's own parser builds the error from a canned answer (its body echoes the bearer token)."""
    from databricks.sdk.errors.parser import _Parser

    request = requests.Request("GET", f"{HOST}{PATH}", headers={"Authorization": BEARER}).prepare()
    answer = json_error(status, error_code, f"echo: Authorization: {BEARER}", **{"Retry-After": "2"})(request)
    exc = _Parser().get_api_error(answer)
    assert type(exc) is cls
    error = fetch_error(exc, PATH)
    assert error.reason == reason
    assert cls.__name__ in str(error)
    assert_no_secret(str(error))


# -- the SDK's retries-exhausted wrappers ------------------------------------


@pytest.mark.parametrize("cause, reason", [
    (sdk_errors.TooManyRequests(f"slow down {BEARER}", error_code="REQUEST_LIMIT_EXCEEDED", retry_after_secs=1),
     "too_many_requests"),
    (sdk_errors.RequestLimitExceeded(f"slow down {BEARER}", error_code="REQUEST_LIMIT_EXCEEDED", retry_after_secs=1),
     "too_many_requests"),
    (sdk_errors.TemporarilyUnavailable(f"busy {BEARER}", error_code="TEMPORARILY_UNAVAILABLE", retry_after_secs=1),
     "temporarily_unavailable"),
    (sdk_errors.InternalError("Unexpected error", error_code="INTERNAL_ERROR"), "internal_error"),  # retried by text
], ids=lambda v: type(v).__name__ if isinstance(v, Exception) else v)
@pytest.mark.parametrize("max_attempts", [None, 2], ids=["TimeoutError", "RuntimeError"])
def test_retries_exhausted_keeps_the_cause_reason(cause, reason, max_attempts):
    wrapper = sdk_retries_exhausted(cause, max_attempts)
    assert type(wrapper) is (TimeoutError if max_attempts is None else RuntimeError)
    error = fetch_error(wrapper, PATH)
    assert error.reason == reason
    assert str(error).endswith("(retries exhausted)")
    assert f"{type(cause).__name__} {cause.error_code}" in str(error)
    assert_no_secret(str(error))


def test_sdk_operation_timeout_with_a_databricks_cause():
    wrapper = sdk_errors.OperationTimeout("gave up")
    wrapper.__cause__ = sdk_errors.NotFound("gone", error_code="RESOURCE_DOES_NOT_EXIST")
    error = fetch_error(wrapper, PATH)
    assert error.reason == "not_found"
    assert "(retries exhausted)" in str(error)


@pytest.mark.parametrize("exc, reason", [
    (TimeoutError("Timed out after 0:00:05"), "timeout"),
    (RuntimeError("Exceeded max retry attempts (2)"), "bad_response"),
    (sdk_errors.OperationTimeout("timed out"), "timeout"),
])
def test_wrapper_without_a_databricks_cause_is_not_retries_exhausted(exc, reason):
    error = fetch_error(exc, PATH)
    assert error.reason == reason
    assert "retries exhausted" not in str(error)


def test_runtime_error_with_a_non_databricks_cause():
    wrapper = RuntimeError("Exceeded max retry attempts (2)")
    wrapper.__cause__ = ValueError(SECRET)
    error = fetch_error(wrapper, PATH)
    assert error.reason == "bad_response"
    assert "retries exhausted" not in str(error)
    assert_no_secret(str(error))


# -- transport and other errors ----------------------------------------------


@pytest.mark.parametrize("exc, reason", [
    (requests.Timeout(f"read timed out {BEARER}"), "timeout"),
    (requests.ReadTimeout(f"read timed out {BEARER}"), "timeout"),
    (requests.ConnectTimeout(f"connect timed out {BEARER}"), "timeout"),  # both a Timeout and a ConnectionError
    (TimeoutError(f"timed out {BEARER}"), "timeout"),
    (requests.ConnectionError(f"Max retries exceeded with url: {HOST}/?token={SECRET} {BEARER}"), "connection"),
    (requests.exceptions.SSLError(f"bad handshake {BEARER}"), "connection"),
    (ValueError(f"token={SECRET} {BEARER}"), "bad_response"),
    (requests.exceptions.JSONDecodeError(f"Expecting value {BEARER}", "<html>", 0), "bad_response"),
    (KeyError(SECRET), "bad_response"),
], ids=lambda v: type(v).__name__ if isinstance(v, Exception) else v)
def test_transport_and_other_errors(exc, reason):
    error = fetch_error(exc, PATH)
    assert error.reason == reason
    assert str(error).startswith(f"GET {PATH}: ")
    assert_no_secret(str(error))


def test_host_label():
    assert host_label("https://adb-1.azuredatabricks.net/") == "adb-1.azuredatabricks.net"
    assert host_label("http://localhost:8080") == "localhost:8080"
    assert host_label("dbc-1.cloud.databricks.com") == "dbc-1.cloud.databricks.com"
    assert host_label(None) is None and host_label("") is None


# ---------------------------------------------------------------------------
# DatabricksSource: the metrics request, the body cap and reading the body (a real HTTP server)


def test_metrics_request(server):
    client = server.client()
    source, _ = metrics_source(server, client)
    body, content_type = source.read_metrics("a/b c")
    assert (body, content_type) == (METRICS, TEXT_PLAIN)
    (seen,) = server.requests
    assert seen.path == f"{API}/a%2Fb%20c/metrics"
    assert seen.headers["Accept"] == "text/plain"
    assert seen.headers["Authorization"] == BEARER  # the SDK's current auth header
    assert seen.headers["User-Agent"].startswith("serving-exporter/")
    assert seen.headers["Accept-Encoding"] == "gzip"
    assert client.calls == []  # the metrics call does not go through the SDK
    assert client.config.authentications == 1


def test_a_host_with_a_trailing_slash(server):
    source, _ = metrics_source(server, FakeClient(host=f"{server.url}/"))
    source.read_metrics("x")
    assert [s.path for s in server.requests] == [f"{API}/x/metrics"]


@pytest.mark.parametrize("content_type", [TEXT_PLAIN, "application/openmetrics-text; version=1.0.0; charset=utf-8",
                                          "text/html"])
def test_content_type_is_passed_through(server, content_type):
    server.reply(Reply(headers={"Content-Type": content_type}))
    source, _ = metrics_source(server)
    assert source.read_metrics("x") == (METRICS, content_type)


def test_missing_content_type_is_empty(server):
    server.reply(Reply(headers={}))
    source, _ = metrics_source(server)
    assert source.read_metrics("x") == (METRICS, "")


def test_a_read_body_releases_the_connection_for_reuse(server):
    source, _ = metrics_source(server)
    source.read_metrics("x")
    source.read_metrics("y")
    first, second = server.requests
    assert first.port == second.port  # one pooled connection


@pytest.mark.parametrize("piece, repeat, ok", [
    (1024 * 1024, 16, True),  # 16 MiB
    (257 * 673, 97, False),  # 16 MiB + 1 byte (16777217 = 97 * 257 * 673)
], ids=["at", "over"])
def test_default_body_cap_is_16_mib(server, piece, repeat, ok):
    assert MAX_BODY_BYTES == 16 * 1024 * 1024
    assert piece * repeat == MAX_BODY_BYTES + (0 if ok else 1)
    server.reply(Reply(body=b"a" * piece, repeat=repeat))
    source, _ = metrics_source(server, timeout_s=10, retry_budget_s=10)
    if ok:
        body, _ = source.read_metrics("x")
        assert len(body) == MAX_BODY_BYTES
    else:
        with pytest.raises(FetchError) as info:
            source.read_metrics("x")
        assert info.value.reason == "too_large"
        assert str(info.value).endswith(f"body exceeds {MAX_BODY_BYTES} bytes")


def test_body_exactly_at_the_cap_passes(server):
    server.reply(Reply(body=b"a" * 100))
    source, _ = metrics_source(server, max_body_bytes=100)
    body, _ = source.read_metrics("x")
    assert body == b"a" * 100


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_body_one_byte_over_the_cap_is_too_large(server, chunked):
    server.reply(Reply(body=b"a" * 101, chunked=chunked))
    source, _ = metrics_source(server, max_body_bytes=100)
    with pytest.raises(FetchError) as info:
        source.read_metrics("chat")
    assert info.value.reason == "too_large"
    assert str(info.value) == f"GET {API}/chat/metrics: body exceeds 100 bytes"
    assert len(server.requests) == 1  # not retried


def test_huge_body_is_too_large_after_a_bounded_read(server):
    chunk, repeat = b"a" * 65536, 1024  # 64 MiB
    server.reply(Reply(body=chunk, repeat=repeat))
    source, _ = metrics_source(server, max_body_bytes=10)
    started = time.monotonic()
    with pytest.raises(FetchError, match="exceeds 10 bytes") as info:
        source.fetch("x")
    assert info.value.reason == "too_large"
    assert time.monotonic() - started < 1.0
    # The client closed the connection without reading on: the server could send no more than socket buffers hold.
    (sent,) = server.wait_done(1)
    assert sent < len(chunk) * repeat // 4


def test_a_gzip_body_is_decoded(server):
    server.reply(Reply(headers={"Content-Type": TEXT_PLAIN, "Content-Encoding": "gzip"}, body=gzip.compress(METRICS)))
    source, _ = metrics_source(server)
    obs = source.fetch("x")
    assert obs.endpoint.requests == 600
    assert obs.fingerprint == hashlib.blake2b(METRICS, digest_size=16).digest()  # of the decoded body


def test_a_gzip_bomb_is_too_large(server):
    bomb = gzip.compress(b"\0" * (16 * 1024 * 1024), 9)  # 16 KiB that inflate to 16 MiB
    server.reply(Reply(headers={"Content-Type": TEXT_PLAIN, "Content-Encoding": "gzip"}, body=bomb))
    source, _ = metrics_source(server, max_body_bytes=1000)
    with pytest.raises(FetchError) as info:
        source.read_metrics("x")
    assert info.value.reason == "too_large"


@pytest.mark.parametrize("encoding, body, message", [
    ("gzip", b"not gzip at all", "body is not valid gzip/deflate data"),
    ("br", METRICS, "unsupported Content-Encoding 'br'"),
])
def test_an_undecodable_body_is_bad_response(server, encoding, body, message):
    server.reply(Reply(headers={"Content-Type": TEXT_PLAIN, "Content-Encoding": encoding}, body=body))
    source, _ = metrics_source(server)
    with pytest.raises(FetchError) as info:
        source.fetch("chat")
    assert info.value.reason == "bad_response"
    assert str(info.value) == f"GET {API}/chat/metrics: {message}"
    assert len(server.requests) == 1


@pytest.mark.parametrize("reply", [
    Reply(length=len(METRICS) + 100, cut=True),  # a Content-Length larger than the body, then closed
    Reply(chunked=True, cut=True),  # a chunk shorter than announced, then closed
], ids=["content-length", "chunked"])
def test_a_connection_broken_mid_body_is_connection_after_one_retry(server, reply):
    server.reply(reply)
    source, _ = metrics_source(server)
    with pytest.raises(FetchError) as info:
        source.fetch("chat")
    assert info.value.reason == "connection"
    assert str(info.value).startswith(f"GET {API}/chat/metrics: body cut short")
    assert_no_secret(str(info.value))
    assert len(server.requests) == 2  # retried once, at once
    assert source.usage.totals() == ({("metrics", "connection"): 2}, {"metrics": 1})


def test_a_connection_closed_without_an_answer_is_connection(server):
    server.reply(Reply(drop=True))
    source, _ = metrics_source(server)
    with pytest.raises(FetchError) as info:
        source.fetch("chat")
    assert info.value.reason == "connection"
    assert str(info.value) == f"GET {API}/chat/metrics: server closed the connection"


def test_a_connection_closed_without_an_answer_is_retried_once(server):
    server.reply(Reply(drop=True))
    source, _ = metrics_source(server)
    with pytest.raises(FetchError):
        source.fetch("chat")
    assert (len(server.requests), source.usage.totals()) == (2, ({("metrics", "connection"): 2}, {"metrics": 1}))


def test_a_closed_connection_then_an_answer_succeeds(server):
    server.reply(Reply(drop=True), Reply())
    source, _ = metrics_source(server)
    assert source.fetch("x").endpoint.requests == 600
    assert len(server.requests) == 2


def test_a_refused_connection_is_connection(no_proxy):
    source, _ = source_with(FakeClient(host=f"http://127.0.0.1:{free_port()}"), timeout_s=2, retry_budget_s=2)
    with pytest.raises(FetchError) as info:
        source.fetch("chat")
    assert info.value.reason == "connection"
    assert_no_secret(str(info.value))


@pytest.mark.parametrize("reply", [
    Reply(stall="headers"),  # no answer at all
    Reply(length=len(METRICS) + 100, stall="body"),  # the headers and part of the body, then silence
    Reply(pace_s=0.01),  # the body a byte at a time: every read is quick, the whole is not
], ids=["before-the-headers", "mid-body", "trickle"])
def test_an_answer_not_complete_within_the_timeout_is_timeout(server, reply):
    server.reply(reply)
    source, _ = metrics_source(server, timeout_s=0.3)
    started = time.monotonic()
    with pytest.raises(FetchError) as info:
        source.fetch("chat")
    elapsed = time.monotonic() - started
    assert info.value.reason == "timeout"
    assert str(info.value).startswith(f"GET {API}/chat/metrics: ")
    assert_no_secret(str(info.value))
    assert 0.3 <= elapsed < 1.5  # one attempt, cut at the timeout
    assert len(server.requests) == 1


def test_a_deadline_already_past_makes_no_request(server):
    source, _ = metrics_source(server)
    with pytest.raises(FetchError) as info:
        source.fetch("chat", deadline=time.monotonic() - 1)
    assert info.value.reason == "deadline"
    assert server.requests == []


def test_the_deadline_bounds_the_call(server):
    server.reply(Reply(stall="headers"))
    source, _ = metrics_source(server, timeout_s=10)
    started = time.monotonic()
    with pytest.raises(FetchError) as info:
        source.fetch("chat", deadline=time.monotonic() + 0.3)
    assert info.value.reason == "deadline"
    assert time.monotonic() - started < 1.5


# -- status errors -------------------------------------------------------------


@pytest.mark.parametrize("status, error_code, headers, reason, message", [
    (429, "REQUEST_LIMIT_EXCEEDED", {"Retry-After": "30"}, "too_many_requests",
     "TooManyRequests REQUEST_LIMIT_EXCEEDED (retries exhausted)"),
    (503, "TEMPORARILY_UNAVAILABLE", {"Retry-After": "30"}, "temporarily_unavailable",
     "TemporarilyUnavailable TEMPORARILY_UNAVAILABLE (retries exhausted)"),
    (404, "RESOURCE_DOES_NOT_EXIST", {}, "not_found", "NotFound RESOURCE_DOES_NOT_EXIST"),
    (403, "PERMISSION_DENIED", {}, "permission_denied", "PermissionDenied PERMISSION_DENIED"),
    (403, None, {}, "permission_denied", "PermissionDenied"),
    (400, "INVALID_PARAMETER_VALUE", {}, "bad_request", "BadRequest INVALID_PARAMETER_VALUE"),
    (500, "INTERNAL_ERROR", {}, "internal_error", "InternalError INTERNAL_ERROR"),
    (418, None, {}, "api_error", "DatabricksError"),
], ids=lambda v: str(v) if isinstance(v, int) else None)
def test_status_errors(server, status, error_code, headers, reason, message):
    server.reply(error_reply(status, error_code, f"echo: Authorization: {BEARER}", **headers))
    source, factory = metrics_source(server)
    with pytest.raises(FetchError) as info:
        source.fetch("chat")
    assert info.value.reason == reason
    assert str(info.value) == f"GET {API}/chat/metrics: {message}"
    assert_no_secret(str(info.value))
    assert len(server.requests) == 1  # the deadline leaves no time for Retry-After: 30; the others are not retried
    assert info.value.__cause__ is None and (info.value.__suppress_context__ or info.value.__context__ is None)
    assert factory.calls == 1  # only a 401 rebuilds the client


def test_an_html_error_page_is_classified_by_its_status(server):
    server.reply(Reply(404, {"Content-Type": "text/html"}, b"<html><p>" + BEARER.encode() + b"</p></html>"))
    source, _ = metrics_source(server)
    with pytest.raises(FetchError) as info:
        source.fetch("chat")
    assert (info.value.reason, str(info.value)) == ("not_found", f"GET {API}/chat/metrics: NotFound")


def test_a_redirect_is_not_followed(server):
    elsewhere = MetricsServer()  # would receive the bearer token if the redirect were followed
    try:
        server.reply(Reply(302, {"Location": f"{elsewhere.url}/steal"}, b""))
        source, _ = metrics_source(server)
        with pytest.raises(FetchError) as info:
            source.fetch("chat")
        assert info.value.reason == "api_error"
        assert elsewhere.requests == []
    finally:
        _close_open_sources()
        elsewhere.close()


def test_a_rate_limit_with_retry_after_is_retried_then_succeeds(server):
    server.reply(error_reply(429, "REQUEST_LIMIT_EXCEEDED", "slow down", **{"Retry-After": "0"}), Reply())
    source, _ = metrics_source(server)
    assert source.fetch("x").endpoint.requests == 600
    assert len(server.requests) == 2
    assert server.requests[1].headers["Authorization"] == BEARER


def test_unavailable_without_retry_after_is_retried_with_backoff(server):
    server.reply(error_reply(503, "TEMPORARILY_UNAVAILABLE", "busy"), Reply())
    source, _ = metrics_source(server, retry_budget_s=2)  # a first backoff is at most 0.5 s
    assert source.fetch("x").endpoint.requests == 600
    assert len(server.requests) == 2


# ---------------------------------------------------------------------------
# fetch


def test_fetch_returns_an_observation_in_seconds_with_a_fingerprint(server):
    source, _ = metrics_source(server)
    obs = source.fetch("chat")
    assert isinstance(obs, Observation)
    f = obs.endpoint
    assert (f.requests, f.errors_5xx) == (600, 6)
    assert f.cpu_ratio == pytest.approx(0.25)
    assert f.latency.bounds == (0.01, 0.25, float("inf"))  # ms -> s
    assert f.latency.counts == (300, 590, 600)
    assert f.latency.sum == pytest.approx(30.0)
    assert obs.timestamp_ms == 1763820000000
    assert obs.fingerprint == hashlib.blake2b(METRICS, digest_size=16).digest()
    assert obs.histograms == "unknown"
    assert obs.entities == {}


def test_fingerprint_tells_bodies_apart(server):
    other = METRICS.replace(b"} 600 ", b"} 601 ", 1)
    server.reply(Reply(body=METRICS), Reply(body=other), Reply(body=METRICS))
    source, _ = metrics_source(server)
    a, b, c = (source.fetch("x").fingerprint for _ in range(3))
    assert a != b
    assert a == c


def test_fetch_honours_the_entity_cap(server):
    body = b"".join(b'request_count_total{served_entity="e%d"} %d\n' % (i, i + 1) for i in range(5))
    server.reply(Reply(body=body))
    source, _ = metrics_source(server, max_entities=2)
    obs = source.fetch("x")
    assert len(obs.entities) == 2
    assert obs.endpoint.requests == 15  # the rest still count towards the endpoint


def test_fetch_of_a_non_exposition_is_a_parse_error(server):
    server.reply(Reply(headers={"Content-Type": "text/html"},
                       body=b"<html><title>Sign in</title><p>" + BEARER.encode() + b"</p></html>"))
    source, _ = metrics_source(server)
    with pytest.raises(MetricsParseError) as info:
        source.fetch("x")
    assert info.value.reason == "parse_error"
    assert_no_secret(str(info.value))


# ---------------------------------------------------------------------------
# list_endpoints and describe


def test_list_endpoints():
    answer = {"endpoints": [
        {"name": "a", "state": {"ready": "READY"}, "config": {"served_entities": [{"name": "e"}]}},
        {"id": "no-name"}, {"name": ""}, {"name": None}, "b", 3, None, ["c"],
        {"name": "d", "route_optimized": True},
    ]}
    client = FakeClient(answering(answer))
    source, _ = source_with(client)
    infos = source.list_endpoints()
    assert [i.name for i in infos] == ["a", "d"]
    assert all(i.platform == "databricks" and not i.detailed and i.route_optimized is None for i in infos)
    assert infos[0].ready is True and [e.name for e in infos[0].served_entities] == ["e"]
    assert client.calls == [("GET", API, {})]


@pytest.mark.parametrize("answer", [{}, {"endpoints": []}], ids=repr)
def test_empty_workspace(answer):
    source, _ = source_with(FakeClient(answering(answer)))
    assert source.list_endpoints() == []


@pytest.mark.parametrize("answer", [
    {"endpoints": "temporarily unavailable"}, {"endpoints": {"name": "a"}}, {"endpoints": 7}, {"endpoints": True},
    [], [{"name": "a"}], "x", None, 5,
], ids=repr)
def test_malformed_list_answer_is_bad_response(answer):
    source, _ = source_with(FakeClient(answering(answer)))
    with pytest.raises(FetchError) as info:
        source.list_endpoints()
    assert info.value.reason == "bad_response"


@pytest.mark.parametrize("endpoints", ["", {}, 0, False], ids=repr)
def test_falsy_non_list_endpoints_is_bad_response(endpoints):
    source, _ = source_with(FakeClient(answering({"endpoints": endpoints})))
    with pytest.raises(FetchError) as info:
        source.list_endpoints()
    assert info.value.reason == "bad_response"


def test_describe():
    detail = {"name": "a/b c", "route_optimized": True, "state": {"ready": "READY"},
              "config": {"served_entities": [{"name": "e", "workload_type": "GPU_SMALL", "workload_size": "Small"}]}}
    client = FakeClient(answering(detail))
    source, _ = source_with(client)
    info = source.describe("a/b c")
    assert client.calls == [("GET", f"{API}/a%2Fb%20c", {})]
    assert info.detailed is True and info.route_optimized is True and info.name == "a/b c"
    assert info.served_entities[0].compute == "gpu" and info.capacity == 4.0


@pytest.mark.parametrize("name, quoted", [
    ("a/b c", "a%2Fb%20c"), ("plain-name_1", "plain-name_1"), ("x?y#z", "x%3Fy%23z"), ("../admin", "..%2Fadmin"),
    ("é", "%C3%A9"),
])
def test_request_paths_quote_the_name(server, name, quoted):
    client = server.client(do=answering({"name": name}))
    source, _ = metrics_source(server, client)
    source.describe(name)  # through the SDK
    source.fetch(name)  # through HttpClient: the path as the server received it
    assert [p for _, p, _ in client.calls] == [f"{API}/{quoted}"]
    assert [s.path for s in server.requests] == [f"{API}/{quoted}/metrics"]


@pytest.mark.parametrize("answer", [[], [{"name": "a"}], "x", None, 5, {}, {"name": ""}, {"id": "1"}], ids=repr)
def test_describe_of_a_non_endpoint_is_bad_response(answer):
    source, _ = source_with(FakeClient(answering(answer)))
    with pytest.raises(FetchError) as info:
        source.describe("a")
    assert info.value.reason == "bad_response"
    assert "'a'" in str(info.value)


@pytest.mark.parametrize("call", ["list_endpoints", "describe"])
@pytest.mark.parametrize("exc, reason", [
    (sdk_errors.TooManyRequests(BEARER, error_code="REQUEST_LIMIT_EXCEEDED"), "too_many_requests"),
    (sdk_errors.ResourceDoesNotExist(BEARER, error_code="RESOURCE_DOES_NOT_EXIST"), "not_found"),
    (sdk_errors.PermissionDenied(BEARER), "permission_denied"),
    (requests.Timeout(BEARER), "timeout"),
    (requests.ConnectionError(BEARER), "connection"),
    (ValueError(BEARER), "bad_response"),
    (TimeoutError(BEARER), "timeout"),
], ids=lambda v: type(v).__name__ if isinstance(v, Exception) else v)
def test_call_errors_become_fetch_errors(call, exc, reason):
    source, factory = source_with(FakeClient(raising(exc)))
    with pytest.raises(FetchError) as info:
        getattr(source, call)(*(() if call == "list_endpoints" else ("chat",)))
    assert info.value.reason == reason
    assert info.value.__cause__ is None and info.value.__suppress_context__  # raised `from None`
    assert_no_secret(str(info.value))
    assert factory.calls == 1  # only a 401 rebuilds the client


# -- through the SDK's own client ---------------------------------------------


def test_sdk_rate_limit_past_the_retry_budget():
    client = SdkClient(json_error(429, "REQUEST_LIMIT_EXCEEDED", f"echo {BEARER}", **{"Retry-After": "1"}),
                       retry_timeout_s=5)
    source, _ = source_with(client)
    with pytest.raises(FetchError) as info:
        source.list_endpoints()
    assert info.value.reason == "too_many_requests"
    assert str(info.value) == f"GET {API}: RequestLimitExceeded REQUEST_LIMIT_EXCEEDED (retries exhausted)"
    assert len(client.adapter.requests) >= 2  # the SDK did retry, honouring Retry-After
    assert all(s >= 1 for s in client.clock.slept)
    assert all(r.headers["Authorization"] == BEARER for r in client.adapter.requests)  # the secret was on the wire
    assert_no_secret(str(info.value))


def test_sdk_unavailable_past_the_retry_budget():
    client = SdkClient(json_error(503, "TEMPORARILY_UNAVAILABLE", "busy", **{"Retry-After": "2"}))
    source, _ = source_with(client)
    with pytest.raises(FetchError) as info:
        source.describe("chat")
    assert info.value.reason == "temporarily_unavailable"
    assert str(info.value).endswith("(retries exhausted)")


def test_sdk_not_found_is_not_retried():
    client = SdkClient(json_error(404, "RESOURCE_DOES_NOT_EXIST", f"Endpoint 'chat' does not exist {BEARER}"))
    source, _ = source_with(client)
    with pytest.raises(FetchError) as info:
        source.describe("chat")
    assert info.value.reason == "not_found"
    assert str(info.value) == f"GET {API}/chat: ResourceDoesNotExist RESOURCE_DOES_NOT_EXIST"
    assert len(client.adapter.requests) == 1


def test_sdk_rate_limit_then_success():
    answers = iter([json_error(429, "REQUEST_LIMIT_EXCEEDED", "slow", **{"Retry-After": "1"}),
                    lambda request: http_response(request, 200, {"endpoints": [{"name": "a"}]})])
    client = SdkClient(lambda request: next(answers)(request))
    source, _ = source_with(client)
    assert [i.name for i in source.list_endpoints()] == ["a"]
    assert len(client.adapter.requests) == 2


def test_sdk_html_answer_to_the_list_is_bad_response():
    client = SdkClient(lambda request: http_response(request, 200, b"<html><body>Sign in</body></html>",
                                                     {"Content-Type": "text/html"}))
    source, _ = source_with(client)
    with pytest.raises(FetchError) as info:
        source.list_endpoints()
    assert info.value.reason == "bad_response"


def test_sdk_empty_answer_to_the_list_is_an_empty_workspace():
    source, _ = source_with(SdkClient(lambda request: http_response(request, 200, b"")))
    assert source.list_endpoints() == []


def test_sdk_json_list_answer_is_bad_response():
    source, _ = source_with(SdkClient(lambda request: http_response(request, 200, [{"name": "a"}])))
    with pytest.raises(FetchError) as info:
        source.list_endpoints()
    assert info.value.reason == "bad_response"


@pytest.mark.parametrize("call", ["list_endpoints", "describe"])
@pytest.mark.parametrize("body", ["temporarily unavailable", 5, True], ids=repr)
def test_sdk_json_scalar_answer_is_bad_response(call, body):
    source, _ = source_with(SdkClient(lambda request: http_response(request, 200, body)))
    with pytest.raises(FetchError) as info:
        getattr(source, call)(*(() if call == "list_endpoints" else ("chat",)))
    assert info.value.reason == "bad_response"


def test_sdk_connection_refused_past_the_retry_budget_is_connection():
    client = SdkClient(lambda request: requests.ConnectionError(f"Connection refused {BEARER}"))
    source, _ = source_with(client)
    with pytest.raises(FetchError) as info:
        source.list_endpoints()
    assert len(client.adapter.requests) >= 2  # the SDK retried it
    assert info.value.reason == "connection"
    assert "retries exhausted" in str(info.value)


def test_sdk_401_rebuilds_the_client_once():
    unauthorized = SdkClient(json_error(401, None, f"Invalid access token {BEARER}"))
    authorized = SdkClient(lambda request: http_response(request, 200, {"endpoints": [{"name": "a"}]}))
    source, factory = source_with(unauthorized, authorized)
    assert [i.name for i in source.list_endpoints()] == ["a"]
    assert factory.calls == 2
    assert len(unauthorized.adapter.requests) == 1  # a 401 is not retried by the SDK
    assert len(authorized.adapter.requests) == 1


# ---------------------------------------------------------------------------
# Re-authentication and client construction


def test_a_401_rebuilds_the_client_and_the_call_succeeds():
    expired = FakeClient(raising(sdk_errors.Unauthenticated(f"token expired {BEARER}")))
    fresh = FakeClient(answering({"endpoints": [{"name": "a"}]}))
    source, factory = source_with(expired, fresh)
    assert [i.name for i in source.list_endpoints()] == ["a"]
    assert factory.calls == 2
    assert len(expired.calls) == 1 and len(fresh.calls) == 1
    # The new client is kept: the next call neither rebuilds nor goes to the old one.
    source.list_endpoints()
    assert factory.calls == 2 and len(expired.calls) == 1 and len(fresh.calls) == 2


def test_a_401_on_the_metrics_call_is_retried_with_the_rebuilt_clients_token(server):
    server.reply(error_reply(401, None, "Invalid access token"), Reply())
    expired = server.client(token="dapiEXPIRED0123456789abcdef")
    fresh = server.client()
    source, factory = metrics_source(server, expired, fresh)
    assert source.fetch("a/b").endpoint.requests == 600
    first, second = server.requests
    assert first.path == second.path == f"{API}/a%2Fb/metrics"
    assert first.headers["Authorization"] == "Bearer dapiEXPIRED0123456789abcdef"
    assert second.headers["Authorization"] == BEARER  # the rebuilt client's token
    assert first.headers["Accept"] == second.headers["Accept"] == "text/plain"
    assert factory.calls == 2
    # The new client is kept.
    source.fetch("a/b")
    assert factory.calls == 2 and server.requests[2].headers["Authorization"] == BEARER


def test_two_consecutive_401s_on_the_metrics_call_are_unauthenticated(server):
    server.reply(error_reply(401, "UNAUTHENTICATED", f"still rejected {BEARER}"))
    source, factory = metrics_source(server, server.client(token="dapiEXPIRED0123456789abcdef"), server.client())
    with pytest.raises(FetchError) as info:
        source.fetch("chat")
    assert info.value.reason == "unauthenticated"
    assert str(info.value) == f"GET {API}/chat/metrics: Unauthenticated UNAUTHENTICATED"
    assert factory.calls == 2  # re-authenticated once, not in a loop
    assert len(server.requests) == 2
    assert_no_secret(str(info.value))


def test_each_new_401_on_the_metrics_call_re_authenticates_again(server):
    unauthorized = error_reply(401, None, "expired")
    server.reply(unauthorized, Reply(), unauthorized, Reply())
    source, factory = metrics_source(server)
    source.fetch("x")
    assert factory.calls == 2
    source.fetch("x")  # the rotated token expires in its turn
    assert factory.calls == 3
    assert len(server.requests) == 4


def test_a_refreshed_token_is_sent_at_once(server):
    client = server.client(auth_type="oauth-m2m")
    source, factory = metrics_source(server, client)
    source.fetch("x")
    client.config.token = "eyJhbGciOi.refreshed.sig"  # the SDK refreshed its OAuth token
    source.fetch("x")
    assert [s.headers["Authorization"] for s in server.requests] == [BEARER, "Bearer eyJhbGciOi.refreshed.sig"]
    assert factory.calls == 1


def test_an_authenticate_failure_is_auth(server):
    client = server.client()

    def authenticate() -> dict[str, str]:
        raise ValueError(f"cannot refresh: token={SECRET} rejected")

    client.config.authenticate = authenticate
    source, _ = metrics_source(server, client)
    with pytest.raises(FetchError) as info:
        source.fetch("x")
    assert info.value.reason == "auth"
    assert SECRET not in str(info.value)
    assert server.requests == []


def test_two_consecutive_401s_are_unauthenticated():
    first = FakeClient(raising(sdk_errors.Unauthenticated(f"expired {BEARER}")))
    second = FakeClient(raising(sdk_errors.Unauthenticated(f"still rejected {BEARER}", error_code="UNAUTHENTICATED")))
    source, factory = source_with(first, second)
    with pytest.raises(FetchError) as info:
        source.describe("chat")
    assert info.value.reason == "unauthenticated"
    assert str(info.value) == f"GET {API}/chat: Unauthenticated UNAUTHENTICATED"
    assert factory.calls == 2  # re-authenticated once, not in a loop
    assert len(first.calls) == 1 and len(second.calls) == 1
    assert_no_secret(str(info.value))


def test_each_new_401_re_authenticates_again():
    state = {"fail_next": True}

    def do(method, path, **kwargs):
        if state["fail_next"]:
            state["fail_next"] = False
            raise sdk_errors.Unauthenticated("expired")
        return {"endpoints": []}

    source, factory = source_with(FakeClient(do))
    source.list_endpoints()
    assert factory.calls == 2
    state["fail_next"] = True  # the rotated token expires in its turn
    source.list_endpoints()
    assert factory.calls == 3


def test_a_401_inside_a_retries_exhausted_wrapper_is_reported_unauthenticated():
    wrapper = sdk_retries_exhausted(sdk_errors.Unauthenticated("x", retry_after_secs=1))
    source, _ = source_with(FakeClient(raising(wrapper)))
    with pytest.raises(FetchError) as info:
        source.list_endpoints()
    assert info.value.reason == "unauthenticated" and "(retries exhausted)" in str(info.value)


def test_factory_error_is_auth():
    sdk_message = ("default auth: cannot configure default credentials, please check "
                   "https://docs.databricks.com/en/dev-tools/auth.html to configure credentials. "
                   f"Config: host={HOST}, token=***, auth_type=pat")
    source, factory = source_with(ValueError(sdk_message))
    with pytest.raises(FetchError) as info:
        source.list_endpoints()
    assert info.value.reason == "auth"
    assert str(info.value) == f"cannot authenticate to Databricks: {sdk_message}"  # the SDK's masked explanation
    assert info.value.__cause__ is None
    assert source.workspace is None


def test_factory_error_message_does_not_leak_a_token():
    source, _ = source_with(ValueError(f"cannot refresh: token={SECRET} rejected"))
    with pytest.raises(FetchError) as info:
        source.list_endpoints()
    assert info.value.reason == "auth"
    assert SECRET not in str(info.value)


@pytest.mark.parametrize("exc", [RuntimeError("boom"), requests.ConnectionError("host metadata unreachable"),
                                 KeyError("profile")], ids=lambda e: type(e).__name__)
def test_any_factory_exception_is_auth(exc):
    source, _ = source_with(exc)
    with pytest.raises(FetchError) as info:
        source.describe("x")
    assert info.value.reason == "auth"


def test_a_failed_build_is_retried_on_the_next_call():
    source, factory = source_with(ValueError("workspace unreachable"), FakeClient(answering({"endpoints": []})))
    with pytest.raises(FetchError):
        source.list_endpoints()
    assert source.list_endpoints() == []
    assert factory.calls == 2


def test_a_failing_rebuild_after_a_401_is_auth():
    source, factory = source_with(FakeClient(raising(sdk_errors.Unauthenticated("expired"))),
                                  ValueError("client secret rejected"))
    with pytest.raises(FetchError) as info:
        source.list_endpoints()
    assert info.value.reason == "auth"
    assert factory.calls == 2


def test_client_is_built_lazily_and_once():
    source, factory = source_with(FakeClient(answering({"endpoints": []})))
    assert factory.calls == 0
    source.list_endpoints()
    source.list_endpoints()
    assert factory.calls == 1


def test_concurrent_401s_rebuild_the_client_once():
    barrier = threading.Barrier(2, timeout=5)

    def expired_do(method, path, **kwargs):
        barrier.wait()  # both threads are inside the call with the old client before either sees its 401
        raise sdk_errors.Unauthenticated("expired")

    expired = FakeClient(expired_do)
    fresh = FakeClient(answering({"endpoints": [{"name": "a"}]}))
    spare = FakeClient(answering({"endpoints": [{"name": "from-a-second-rebuild"}]}))
    source, factory = source_with(expired, fresh, spare)
    results: list[Any] = []

    def run() -> None:
        try:
            results.append([i.name for i in source.list_endpoints()])
        except BaseException as exc:  # reported below
            results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads)
    assert results == [["a"], ["a"]]
    assert len(expired.calls) == 2
    assert factory.calls == 2  # one initial build, one rebuild for both 401s
    assert len(fresh.calls) == 2 and spare.calls == []


# -- workspace -----------------------------------------------------------------


def test_workspace_is_the_host_without_scheme_after_the_first_call():
    source, _ = source_with(FakeClient(answering({"endpoints": []}), host=f"{HOST}/"))
    assert source.workspace is None
    source.list_endpoints()
    assert source.workspace == WORKSPACE


def test_workspace_is_known_even_when_the_first_call_fails():
    source, _ = source_with(FakeClient(raising(sdk_errors.PermissionDenied("no"))))
    with pytest.raises(FetchError):
        source.describe("x")
    assert source.workspace == WORKSPACE


def test_workspace_follows_a_rebuilt_client():
    old = FakeClient(raising(sdk_errors.Unauthenticated("expired")), host="http://localhost:8080")
    new = FakeClient(answering({"endpoints": []}), host="https://dbc-1.cloud.databricks.com")
    source, _ = source_with(old, new)
    source.list_endpoints()
    assert source.workspace == "dbc-1.cloud.databricks.com"


def test_workspace_without_a_host_is_unknown():
    source, _ = source_with(FakeClient(answering({"endpoints": []}), host=None))
    source.list_endpoints()
    assert source.workspace is None


def test_source_identity():
    source, _ = source_with(FakeClient(answering({})))
    assert source.platform == "databricks"
    assert source.refresh_seconds == 60.0


@pytest.mark.parametrize("text, secret", [
    ('b\'{"access_token":"eyJhbGciOi.payload.sig","token_type":"Bearer"}\'', "eyJhbGciOi.payload.sig"),
    ("invalid_client: client_secret=s3cr3t-value&grant_type=client_credentials", "s3cr3t-value"),
    ("401 from proxy; request had Authorization: Bearer dapi0123456789abcdef0123", "dapi0123456789abcdef0123"),
    ("cannot refresh: token=SECRET rejected", "SECRET"),
    ("PAT dapi00112233445566778899aabbccddeeff was revoked", "dapi00112233445566778899aabbccddeeff"),
    ("basic auth Basic dXNlcjpwYXNz failed", "dXNlcjpwYXNz"),
])
def test_redact_masks_what_looks_like_a_credential(text, secret):
    from exporter.sources.databricks.client import redact

    out = redact(text)
    assert secret not in out and "***" in out


def test_redact_keeps_an_ordinary_error_and_bounds_its_length():
    from exporter.sources.databricks.client import redact

    message = "default auth: cannot configure default credentials, please check https://docs.databricks.com/"
    assert redact(message) == message
    assert len(redact("x" * 1000)) == 300


# ---------------------------------------------------------------------------
# usage: the metrics call's answers and retries


def test_usage_counts_a_2xx(server):
    source, _ = metrics_source(server)
    source.fetch("x")
    assert source.usage.totals() == ({("metrics", "2xx"): 1}, {})


def test_usage_counts_a_4xx(server):
    server.reply(error_reply(404, "RESOURCE_DOES_NOT_EXIST", "gone"))
    source, _ = metrics_source(server)
    with pytest.raises(FetchError):
        source.fetch("x")
    assert source.usage.totals() == ({("metrics", "4xx"): 1}, {})


def test_usage_counts_a_429_its_retry_and_the_2xx(server):
    server.reply(error_reply(429, "REQUEST_LIMIT_EXCEEDED", "slow down", **{"Retry-After": "0"}), Reply())
    source, _ = metrics_source(server)
    source.fetch("x")
    assert source.usage.totals() == ({("metrics", "429"): 1, ("metrics", "2xx"): 1}, {"metrics": 1})


def test_usage_counts_a_closed_connection_and_its_retry(server):
    server.reply(Reply(drop=True), Reply())
    source, _ = metrics_source(server)
    source.fetch("x")
    assert source.usage.totals() == ({("metrics", "connection"): 1, ("metrics", "2xx"): 1}, {"metrics": 1})


def test_usage_counts_a_body_over_the_cap_by_its_status(server):
    server.reply(Reply(body=b"a" * 101))
    source, _ = metrics_source(server, max_body_bytes=100)
    with pytest.raises(FetchError):
        source.fetch("x")
    assert source.usage.totals() == ({("metrics", "2xx"): 1}, {})


def test_usage_counts_a_timeout(server):
    server.reply(Reply(stall="headers"))
    source, _ = metrics_source(server, timeout_s=0.2)
    with pytest.raises(FetchError):
        source.fetch("x")
    assert source.usage.totals() == ({("metrics", "timeout"): 1}, {})


# ---------------------------------------------------------------------------
# close


def http_loop_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "http-loop" and t.is_alive()}


def test_close_stops_the_event_loop_thread(server):
    before = http_loop_threads()
    source, _ = metrics_source(server)
    source.fetch("x")
    assert len(http_loop_threads() - before) == 1
    source.close()
    assert http_loop_threads() - before == set()
    source.close()  # a second close is harmless


def test_a_source_that_never_fetched_starts_no_thread():
    before = http_loop_threads()
    source, _ = source_with(FakeClient(answering({"endpoints": []})))
    source.list_endpoints()
    assert http_loop_threads() - before == set()
    source.close()


def test_the_daemon_imports_the_sdk_without_its_service_modules_and_the_sdk_still_works_whole():
    """sources/databricks/sdk.py: the SDK's core without the ~37 MiB of service modules its package
    __init__ imports; another user of the package in the same process still gets all of it."""
    code = (
        "import sys, exporter.daemon, exporter.commands\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('databricks.sdk.service.'))\n"
        "print('serving' in ' '.join(loaded), 'WorkspaceClient' in vars(sys.modules['databricks.sdk']))\n"
        "from databricks.sdk import WorkspaceClient\n"
        "import databricks.sdk\n"
        "print(WorkspaceClient.__module__, databricks.sdk.WorkspaceClient is WorkspaceClient,\n"
        "      'databricks.sdk.service.serving' in sys.modules)\n")
    run = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parent.parent, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split("\n")[:2] == ["False False", "databricks.sdk True True"]
