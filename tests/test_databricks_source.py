"""DatabricksSource and the SDK error classification, with no network.

Two kinds of fake behind the factory seam:
- a bare fake client (`.config.host`, `.api_client.do(method, path, **kwargs)`) whose `do` returns or raises
  what a test says;
- the SDK's own `_BaseClient` (retry loop, error parser, streaming response) over a canned requests adapter
  and a fake clock, so errors, retries and streams are exactly what the installed SDK produces.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterable
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
import requests
import urllib3
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


# ---------------------------------------------------------------------------
# Fakes


class FakeStream:
    """The `contents` of a raw response: honours read(n), records reads and close."""

    def __init__(self, data: bytes = b"", error: BaseException | None = None):
        self.data = data
        self.error = error
        self.reads: list[int] = []
        self.closed = False

    def read(self, n: int = -1) -> bytes:
        self.reads.append(n)
        if self.error is not None:
            raise self.error
        return self.data if n < 0 else self.data[:n]

    def close(self) -> None:
        self.closed = True


class FakeClient:
    def __init__(self, do: Callable[..., Any], host: str | None = HOST):
        self.config = SimpleNamespace(host=host)
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


def source_with(*clients: FakeClient | BaseException, **kwargs: Any) -> tuple[DatabricksSource, Factory]:
    factory = Factory(*clients)
    return DatabricksSource(factory, **kwargs), factory


def metrics_client(stream: FakeStream, content_type: str | None = TEXT_PLAIN) -> FakeClient:
    return FakeClient(answering({"contents": stream, "content-type": content_type}))


def assert_no_secret(text: str) -> None:
    assert SECRET not in text
    assert "Bearer" not in text


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


class FakeRaw:
    """A urllib3-like raw body: yields chunks, then optionally raises (mid-body failure)."""

    def __init__(self, chunks: Iterable[bytes], error: BaseException | None = None):
        self.chunks = list(chunks)
        self.error = error
        self.closed = False
        self.released = False

    def stream(self, amt: int | None = None, decode_content: bool | None = None):
        yield from self.chunks
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        self.closed = True

    def release_conn(self) -> None:
        self.released = True


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
                  headers: dict[str, str] | None = None, raw: FakeRaw | None = None) -> requests.Response:
    resp = requests.Response()
    resp.status_code = status
    resp.reason = {200: "OK", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests",
                   503: "Service Unavailable"}.get(status, "Error")
    resp.headers = CaseInsensitiveDict(headers or {})
    resp.request = request
    resp.url = request.url
    resp.encoding = "utf-8"
    if raw is not None:
        resp.raw = raw
    else:
        resp._content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return resp


class SdkClient:
    """What client_factory builds, minus authentication and the network: the SDK's _BaseClient (retries, error
    parsing, streaming) over a canned adapter. Every request carries a bearer token, as a real one would."""

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
# DatabricksSource: the body cap and reading the metrics body


def test_metrics_request():
    stream = FakeStream(METRICS)
    client = metrics_client(stream)
    source, _ = source_with(client)
    body, content_type = source.read_metrics("a/b c")
    assert (body, content_type) == (METRICS, TEXT_PLAIN)
    ((method, path, kwargs),) = client.calls
    assert (method, path) == ("GET", f"{API}/a%2Fb%20c/metrics")
    assert kwargs == {"raw": True, "headers": {"Accept": "text/plain"}, "response_headers": ["content-type"]}
    assert stream.closed


def test_missing_content_type_is_empty():
    source, _ = source_with(metrics_client(FakeStream(METRICS), content_type=None))
    assert source.read_metrics("x") == (METRICS, "")


def test_default_body_cap_is_16_mib():
    assert MAX_BODY_BYTES == 16 * 1024 * 1024
    stream = FakeStream(b"x")
    source, _ = source_with(metrics_client(stream))
    source.read_metrics("x")
    assert stream.reads == [MAX_BODY_BYTES + 1]  # a bounded read, never read()


def test_body_exactly_at_the_cap_passes():
    stream = FakeStream(b"a" * 100)
    source, _ = source_with(metrics_client(stream), max_body_bytes=100)
    body, _ = source.read_metrics("x")
    assert body == b"a" * 100
    assert stream.reads == [101]
    assert stream.closed


def test_body_one_byte_over_the_cap_is_too_large():
    stream = FakeStream(b"a" * 101)
    source, _ = source_with(metrics_client(stream), max_body_bytes=100)
    with pytest.raises(FetchError) as info:
        source.read_metrics("chat")
    assert info.value.reason == "too_large"
    assert "100 bytes" in str(info.value) and "'chat'" in str(info.value)
    assert stream.reads == [101]  # it never read the whole (possibly huge) body
    assert stream.closed


def test_huge_body_is_too_large_after_a_bounded_read():
    stream = FakeStream(b"a" * 10_000)
    source, _ = source_with(metrics_client(stream), max_body_bytes=10)
    with pytest.raises(FetchError, match="exceed 10 bytes") as info:
        source.fetch("x")
    assert info.value.reason == "too_large"
    assert stream.reads == [11] and stream.closed


@pytest.mark.parametrize("exc, reason", [
    (requests.Timeout(f"Read timed out {BEARER}"), "timeout"),
    (requests.ReadTimeout(f"Read timed out {BEARER}"), "timeout"),
    (requests.ConnectionError(f"Connection broken {BEARER}"), "connection"),
    (requests.exceptions.ChunkedEncodingError(f"Connection broken: IncompleteRead {BEARER}"), "connection"),
], ids=lambda v: type(v).__name__ if isinstance(v, Exception) else v)
def test_read_failing_mid_body(exc, reason):
    stream = FakeStream(error=exc)
    source, _ = source_with(metrics_client(stream))
    with pytest.raises(FetchError) as info:
        source.fetch("chat")
    assert info.value.reason == reason
    assert type(exc).__name__ in str(info.value)
    assert_no_secret(str(info.value))
    assert stream.closed


# -- the same through the SDK's own streaming response -----------------------


def metrics_sdk_client(raw: FakeRaw) -> SdkClient:
    return SdkClient(lambda request: http_response(request, 200, headers={"Content-Type": TEXT_PLAIN}, raw=raw))


def test_sdk_stream_at_and_over_the_cap():
    for size, ok in [(64, True), (65, False)]:
        raw = FakeRaw([b"a" * 20] * (size // 20) + [b"a" * (size % 20)])
        client = metrics_sdk_client(raw)
        source, _ = source_with(client, max_body_bytes=64)
        if ok:
            assert source.read_metrics("x") == (b"a" * 64, TEXT_PLAIN)
        else:
            with pytest.raises(FetchError) as info:
                source.read_metrics("x")
            assert info.value.reason == "too_large"
        assert raw.closed or raw.released  # the SDK stream closed the response (a drained one is released)
        (request,) = client.adapter.requests
        assert request.headers["Accept"] == "text/plain"
        assert request.url == f"{HOST}{API}/x/metrics"


def test_sdk_stream_broken_mid_body_is_connection():
    raw = FakeRaw([b"# TYPE request_count_total gauge\n"],
                  urllib3.exceptions.ProtocolError("Connection broken: IncompleteRead(10 bytes read)"))
    source, _ = source_with(metrics_sdk_client(raw))
    with pytest.raises(FetchError) as info:
        source.read_metrics("x")
    assert info.value.reason == "connection"
    assert raw.closed or raw.released


def test_sdk_stream_read_timeout_mid_body_is_timeout():
    raw = FakeRaw([b"# TYPE request_count_total gauge\n"],
                  urllib3.exceptions.ReadTimeoutError(None, f"{HOST}{API}/x/metrics", "Read timed out."))
    source, _ = source_with(metrics_sdk_client(raw))
    with pytest.raises(FetchError) as info:
        source.read_metrics("x")
    assert info.value.reason == "timeout"


# ---------------------------------------------------------------------------
# fetch


def test_fetch_returns_an_observation_in_seconds_with_a_fingerprint():
    source, _ = source_with(metrics_client(FakeStream(METRICS)))
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


def test_fingerprint_tells_bodies_apart():
    other = METRICS.replace(b"} 600 ", b"} 601 ", 1)
    a, _ = source_with(metrics_client(FakeStream(METRICS)))
    b, _ = source_with(metrics_client(FakeStream(other)))
    c, _ = source_with(metrics_client(FakeStream(METRICS)))
    assert a.fetch("x").fingerprint != b.fetch("x").fingerprint
    assert a.fetch("x").fingerprint == c.fetch("x").fingerprint


def test_fetch_honours_the_entity_cap():
    body = b"".join(b'request_count_total{served_entity="e%d"} %d\n' % (i, i + 1) for i in range(5))
    source, _ = source_with(metrics_client(FakeStream(body)), max_entities=2)
    obs = source.fetch("x")
    assert len(obs.entities) == 2
    assert obs.endpoint.requests == 15  # the rest still count towards the endpoint


def test_fetch_of_a_non_exposition_is_a_parse_error():
    body = b'<html><title>Sign in</title><p>' + BEARER.encode() + b'</p></html>'
    source, _ = source_with(metrics_client(FakeStream(body), content_type="text/html"))
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
def test_request_paths_quote_the_name(name, quoted):
    client = FakeClient(lambda m, p, **kw: {"contents": FakeStream(METRICS)} if p.endswith("/metrics") else {"name": name})
    source, _ = source_with(client)
    source.describe(name)
    source.fetch(name)
    assert [p for _, p, _ in client.calls] == [f"{API}/{quoted}", f"{API}/{quoted}/metrics"]


@pytest.mark.parametrize("answer", [[], [{"name": "a"}], "x", None, 5, {}, {"name": ""}, {"id": "1"}], ids=repr)
def test_describe_of_a_non_endpoint_is_bad_response(answer):
    source, _ = source_with(FakeClient(answering(answer)))
    with pytest.raises(FetchError) as info:
        source.describe("a")
    assert info.value.reason == "bad_response"
    assert "'a'" in str(info.value)


@pytest.mark.parametrize("call", ["list_endpoints", "describe", "fetch"])
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


def test_a_401_on_the_metrics_call_is_retried_with_the_same_request():
    expired = FakeClient(raising(sdk_errors.Unauthenticated("expired")))
    fresh = metrics_client(FakeStream(METRICS))
    source, factory = source_with(expired, fresh)
    assert source.fetch("a/b").endpoint.requests == 600
    assert expired.calls[0][:2] == fresh.calls[0][:2] == ("GET", f"{API}/a%2Fb/metrics")
    assert expired.calls[0][2] == fresh.calls[0][2]
    assert factory.calls == 2


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
