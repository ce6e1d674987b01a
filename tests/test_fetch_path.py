"""The fetch path bounded in time and size, against a real HTTP server on 127.0.0.1.

A server that trickles, hangs, resets or floods is cut with a clear reason; 429/503 are
retried within the deadline and never past it; as many stuck endpoints as there are
workers do not starve the healthy ones; and every call is counted.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import random
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
import uvloop

from exporter.config import load_settings
from exporter.pipeline.poller import Poller
from exporter.sources.base import ApiUsage, FetchError
from exporter.sources.databricks import DatabricksSource
from exporter.sources import http as http_module
from exporter.sources.http import HttpClient

BODY = (b"# TYPE request_count_total gauge\nrequest_count_total 60\n"
        b"# TYPE request_latency_ms histogram\nrequest_latency_ms_bucket{le=\"100.0\"} 60\n"
        b"request_latency_ms_bucket{le=\"+Inf\"} 60\nrequest_latency_ms_sum 1200\nrequest_latency_ms_count 60\n")
Behaviour = Callable[[BaseHTTPRequestHandler], None]


class Server:
    """Answers each path with the behaviour a test sets (default: BODY); records requests. Bound to a free port."""

    def __init__(self) -> None:
        self.behaviours: dict[str, Behaviour] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.stopping = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                server.requests.append((self.path, dict(self.headers)))
                behaviour = server.behaviours.get(self.path.rsplit("/", 2)[-2] if "/metrics" in self.path else self.path)
                (behaviour or ok())(self)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def stop(self) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def ok(body: bytes = BODY, headers: dict[str, str] | None = None, status: int = 200) -> Behaviour:
    def run(h: BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        for k, v in {"Content-Type": "text/plain; version=0.0.4", **(headers or {})}.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)
    return run


def sequence(*behaviours: Behaviour) -> Behaviour:
    """Each request gets the next behaviour; the last one repeats."""
    queue = list(behaviours)

    def run(h: BaseHTTPRequestHandler) -> None:
        (queue.pop(0) if len(queue) > 1 else queue[0])(h)
    return run


def trickle(server: Server, every_s: float = 0.2, during_headers: bool = False) -> Behaviour:
    """One byte every `every_s`, for far longer than any timeout in these tests."""
    def run(h: BaseHTTPRequestHandler) -> None:
        payload = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" if during_headers else b"x" * 100000
        if not during_headers:
            h.send_response(200)
            h.send_header("Content-Length", "100000")
            h.end_headers()
            h.wfile.flush()
        for byte in payload:
            if server.stopping.wait(every_s):
                return
            try:
                h.wfile.write(bytes([byte]))
                h.wfile.flush()
            except OSError:
                return
    return run


def reset_mid_body(h: BaseHTTPRequestHandler) -> None:
    h.send_response(200)
    h.send_header("Content-Length", str(len(BODY) * 10))
    h.end_headers()
    h.wfile.write(BODY[:40])
    h.wfile.flush()
    h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST on close
    h.connection.close()
    h.close_connection = True


def endless_chunked(server: Server, sent: list[int]) -> Behaviour:
    def run(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        chunk = b"# filler line of an endless body\n" * 1000
        try:
            while not server.stopping.is_set() and sent[0] < 200 * 1024 * 1024:
                h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent[0] += len(chunk)
        except OSError:
            return
    return run


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    srv.thread.start()
    yield srv
    srv.stop()


@pytest.fixture(autouse=True, params=["uvloop", "asyncio"])
def event_loop_kind(request, monkeypatch) -> str:
    """Every test here on both loops the client can run on: uvloop's, and asyncio's own where uvloop is not
    installed (Windows). Their protocol callbacks differ in detail (uvloop binds data_received once)."""
    if request.param == "asyncio":
        monkeypatch.setattr(http_module, "new_event_loop", asyncio.new_event_loop)
    return request.param


def test_the_client_runs_on_the_loop_it_was_given(event_loop_kind):
    http = HttpClient(ApiUsage(), pool_size=1, user_agent="test")
    try:
        expected = uvloop.Loop if event_loop_kind == "uvloop" else asyncio.BaseEventLoop
        assert isinstance(http.loop, expected)
        assert isinstance(http.loop, uvloop.Loop) == (event_loop_kind == "uvloop")
    finally:
        http.close()


@pytest.fixture
def client() -> Iterator[HttpClient]:
    http = HttpClient(ApiUsage(), pool_size=4, user_agent="test", rng=random.Random(1))
    yield http
    http.close()


def get(client: HttpClient, url: str, timeout_s: float = 1.0, budget_s: float = 5.0, max_body: int = 1 << 20):
    return client.get(url, {}, call="metrics", timeout_s=timeout_s, deadline=time.monotonic() + budget_s,
                      max_body=max_body)


# -- bounded in time ------------------------------------------------------------------------------


def test_a_body_trickled_a_byte_at_a_time_is_cut_at_the_request_timeout(server, client):
    server.behaviours["/slow"] = trickle(server)
    started = time.monotonic()
    with pytest.raises(FetchError) as err:
        get(client, server.url + "/slow", timeout_s=1.0)
    assert err.value.reason == "timeout"
    assert time.monotonic() - started < 10  # the server would trickle for 5.5 hours; per-read timeouts never fire
    assert client.usage.totals()[0] == {("metrics", "timeout"): 1}


def test_headers_trickled_a_byte_at_a_time_are_cut_at_the_request_timeout(server, client):
    server.behaviours["/slow"] = trickle(server, during_headers=True)
    with pytest.raises(FetchError) as err:
        get(client, server.url + "/slow", timeout_s=1.0)
    assert err.value.reason == "timeout"


def test_a_server_that_never_accepts_times_out():
    with socket.socket() as listener:  # listening, never accepting: connect may succeed into the backlog
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        http = HttpClient(ApiUsage(), pool_size=2, user_agent="test")
        try:
            with pytest.raises(FetchError) as err:
                get(http, f"http://127.0.0.1:{listener.getsockname()[1]}/metrics", timeout_s=0.5)
        finally:
            http.close()
    assert err.value.reason == "timeout"


def test_a_connection_reset_mid_body_is_connection_with_a_clear_reason(server, client):
    server.behaviours["/reset"] = reset_mid_body
    with pytest.raises(FetchError) as err:
        get(client, server.url + "/reset")
    assert err.value.reason == "connection"
    assert "body cut short" in str(err.value) or "closed" in str(err.value)
    assert client.usage.totals()[1] == {"metrics": 1}  # retried once, at once, then given up


def test_a_refused_connection_is_connection():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    http = HttpClient(ApiUsage(), pool_size=2, user_agent="test")
    try:
        with pytest.raises(FetchError) as err:
            get(http, f"http://127.0.0.1:{port}/metrics")
    finally:
        http.close()
    assert err.value.reason == "connection" and "cannot connect" in str(err.value)


def test_no_time_left_is_a_deadline_error_without_a_request(server, client):
    with pytest.raises(FetchError) as err:
        get(client, server.url + "/x", budget_s=-1)
    assert err.value.reason == "deadline"
    assert server.requests == []


# -- bounded in size --------------------------------------------------------------------------------


def test_the_body_cap_holds_while_streaming(server, client):
    sent = [0]
    server.behaviours["/huge"] = endless_chunked(server, sent)
    with pytest.raises(FetchError) as err:
        get(client, server.url + "/huge", timeout_s=5, max_body=1 << 20)
    assert err.value.reason == "too_large"
    assert sent[0] < 50 * 1024 * 1024  # refused long before the server got far


def test_a_gzip_body_is_decoded_and_counts_against_the_cap_decompressed(server, client):
    server.behaviours["/gz"] = ok(gzip.compress(BODY), {"Content-Encoding": "gzip"})
    assert get(client, server.url + "/gz").body == BODY
    assert "gzip" in server.requests[0][1].get("Accept-Encoding", "")
    with pytest.raises(FetchError) as err:
        get(client, server.url + "/gz", max_body=len(BODY) - 1)
    assert err.value.reason == "too_large"


def test_concatenated_gzip_members_are_one_body_and_a_cut_one_is_an_error(server, client):
    half = len(BODY) // 2
    server.behaviours["/two"] = ok(gzip.compress(BODY[:half]) + gzip.compress(BODY[half:]), {"Content-Encoding": "gzip"})
    assert get(client, server.url + "/two").body == BODY
    whole = gzip.compress(BODY)
    server.behaviours["/cut"] = ok(whole[: len(whole) // 2], {"Content-Encoding": "gzip"})
    with pytest.raises(FetchError) as err:
        get(client, server.url + "/cut")
    assert err.value.reason == "connection" and "cut short" in str(err.value)


def test_a_gzip_bomb_stops_at_the_cap(server, client):
    bomb = zlib.compress(b"\0" * (256 * 1024 * 1024), 9)  # 256 MiB of zeros in about 250 KB
    server.behaviours["/bomb"] = ok(bomb, {"Content-Encoding": "deflate"})
    with pytest.raises(FetchError) as err:
        get(client, server.url + "/bomb", timeout_s=10, max_body=1 << 20)
    assert err.value.reason == "too_large"


@pytest.mark.parametrize("encoding, body, reason", [("gzip", b"not gzip at all", "bad_response"),
                                                    ("br", b"whatever", "bad_response")])
def test_bad_or_unknown_encodings_are_bad_responses(server, client, encoding, body, reason):
    server.behaviours["/enc"] = ok(body, {"Content-Encoding": encoding})
    with pytest.raises(FetchError) as err:
        get(client, server.url + "/enc")
    assert err.value.reason == reason


# -- retries ---------------------------------------------------------------------------------------


def test_429_with_retry_after_is_retried_and_counted(server, client):
    server.behaviours["/rl"] = sequence(ok(b"{}", {"Retry-After": "1"}, status=429), ok())
    assert get(client, server.url + "/rl", budget_s=10).status == 200
    calls, retries = client.usage.totals()
    assert calls == {("metrics", "429"): 1, ("metrics", "2xx"): 1} and retries == {"metrics": 1}


def test_retry_after_as_an_http_date(server, client):
    server.behaviours["/rl"] = sequence(ok(b"{}", {"Retry-After": formatdate(time.time() + 1, usegmt=True)}, status=503),
                                        ok())
    assert get(client, server.url + "/rl", budget_s=10).status == 200
    assert client.usage.totals()[1] == {"metrics": 1}


def test_503_without_retry_after_backs_off_and_retries(server, client):
    server.behaviours["/busy"] = sequence(ok(b"", status=503), ok(b"", status=503), ok())
    assert get(client, server.url + "/busy", budget_s=10).status == 200
    assert client.usage.totals()[1] == {"metrics": 2}


def test_a_retry_after_past_the_deadline_is_not_waited_for(server, client):
    server.behaviours["/rl"] = ok(b'{"error_code": "REQUEST_LIMIT_EXCEEDED"}', {"Retry-After": "60"}, status=429)
    started = time.monotonic()
    assert get(client, server.url + "/rl", budget_s=2).status == 429  # the caller reports the 429
    assert time.monotonic() - started < 30  # not the 60 s the server asked for
    assert len(server.requests) == 1 and client.usage.totals()[1] == {}


def test_other_statuses_are_not_retried(server, client):
    server.behaviours["/nf"] = ok(b"{}", status=404)
    assert get(client, server.url + "/nf").status == 404
    assert len(server.requests) == 1


# -- the Databricks source over it ------------------------------------------------------------------


def fake_sdk(url: str, names: list[str]):
    """Only what DatabricksSource reads from an SDK client; list/detail answer from memory."""
    def do(method, path, **kwargs):
        if path.endswith("/serving-endpoints"):
            return {"endpoints": [{"name": n, "state": {"ready": "READY"}} for n in names]}
        name = path.rsplit("/", 1)[-1]
        return {"name": name, "state": {"ready": "READY"}}
    config = SimpleNamespace(host=url, auth_type="pat", authenticate=lambda: {"Authorization": "Bearer dapi0123456789abcdef0"})
    return SimpleNamespace(config=config, api_client=SimpleNamespace(do=do))


def test_the_source_reports_a_throttled_metrics_call_as_retries_exhausted(server):
    server.behaviours["x"] = ok(b'{"error_code": "REQUEST_LIMIT_EXCEEDED"}', {"Retry-After": "60"}, status=429)
    source = DatabricksSource(lambda: fake_sdk(server.url, ["x"]), timeout_s=1)
    try:
        with pytest.raises(FetchError) as err:
            source.fetch("x", deadline=time.monotonic() + 2)
    finally:
        source.close()
    assert err.value.reason == "too_many_requests"
    assert "REQUEST_LIMIT_EXCEEDED" in str(err.value) and "retries exhausted" in str(err.value)
    assert "dapi" not in str(err.value)


def test_as_many_stuck_endpoints_as_workers_do_not_starve_the_healthy_ones(server):
    workers = 4
    stuck = [f"stuck-{i}" for i in range(workers)]
    healthy = [f"ok-{i}" for i in range(12)]
    for name in stuck[:2]:
        server.behaviours[name] = trickle(server, 0.2)
    for name in stuck[2:]:
        server.behaviours[name] = trickle(server, 0.2, during_headers=True)
    settings = load_settings(overrides={"max_concurrent_requests": workers, "request_timeout_seconds": 1,
                                        "poll_deadline_seconds": 8})
    source = DatabricksSource(lambda: fake_sdk(server.url, stuck + healthy), timeout_s=1, pool_size=workers)
    poller = Poller(source, settings)
    try:
        for _ in range(2):  # the first poll meets them in name order; the second knows which were stuck
            snap = poller.poll()
            by_name = {r.info.name: r.status for r in snap.endpoints}
            assert all(by_name[n].up for n in healthy), {n: by_name[n].last_error for n in healthy}
            assert all(not by_name[n].up and by_name[n].last_error.startswith("timeout") for n in stuck)
        calls = {(call, outcome): n for (_, call, outcome), n in snap.api_requests.items()}
        assert calls[("metrics", "timeout")] == 2 * workers and calls[("metrics", "2xx")] == 2 * len(healthy)
    finally:
        poller.close()
    # The second poll asked for the healthy endpoints before the stuck ones.
    second = [path.rsplit("/", 2)[-2] for path, _ in server.requests[len(stuck) + len(healthy):]]
    assert set(second[:len(healthy)]) == set(healthy)


def test_endpoints_fetched_while_another_hangs_are_analysed_before_the_deadline(server):
    """The analysis runs in batches after the fetches (Poller._analyse_fetched). A batch that does not fill,
    because another endpoint's worker hangs past the poll deadline (here in its blocking detail call), is
    analysed anyway, so the endpoints that answered are up at the deadline."""
    healthy = ["ok-0", "ok-1", "ok-2"]
    sdk = fake_sdk(server.url, ["stuck", *healthy])
    release = threading.Event()
    answer = sdk.api_client.do

    def do(method, path, **kwargs):
        if path.endswith("/stuck"):
            release.wait(10)
        return answer(method, path, **kwargs)

    sdk.api_client.do = do
    source = DatabricksSource(lambda: sdk, timeout_s=5)
    poller = Poller(source, load_settings(overrides={"poll_deadline_seconds": 1}))
    try:
        snap = poller.poll()
        by_name = {r.info.name: r for r in snap.endpoints}
        assert all(by_name[n].status.up and by_name[n].endpoint.figures.qps == 1.0 for n in healthy)
        assert by_name["stuck"].status.last_error.startswith("deadline")
    finally:
        release.set()
        poller.close()


def test_the_metrics_call_sends_the_sdk_auth_and_our_user_agent(server):
    source = DatabricksSource(lambda: fake_sdk(server.url, ["x"]))
    try:
        observed = source.fetch("x")
    finally:
        source.close()
    assert observed.endpoint.requests == 60
    path, headers = server.requests[0]
    assert path == "/api/2.0/serving-endpoints/x/metrics"
    assert headers["Authorization"] == "Bearer dapi0123456789abcdef0" and headers["Accept"] == "text/plain"
    assert headers["User-Agent"].startswith("serving-exporter/")


def test_token_refreshes_are_counted_from_the_auth_header(server):
    tokens = iter(["Bearer t1", "Bearer t1", "Bearer t2"])
    sdk = fake_sdk(server.url, ["x"])
    sdk.config.auth_type = "oauth-m2m"
    sdk.config.authenticate = lambda: {"Authorization": next(tokens)}
    source = DatabricksSource(lambda: sdk)
    try:
        for _ in range(3):
            source.fetch("x")
    finally:
        source.close()
    calls, _ = source.usage.totals()
    assert calls[("token", "2xx")] == 2  # the first token and one refresh
    assert calls[("metrics", "2xx")] == 3
    assert json.dumps({str(k): v for k, v in calls.items()})  # plain data, fit for the snapshot


def test_a_fetch_is_cut_at_the_poll_deadline_and_tried_again_at_the_next_poll(server):
    release = threading.Event()

    def hang(h: BaseHTTPRequestHandler) -> None:
        if not release.wait(20):
            return
        ok()(h)

    server.behaviours["slow"] = hang
    settings = load_settings(overrides={"max_concurrent_requests": 2, "request_timeout_seconds": 30,
                                        "poll_deadline_seconds": 1})
    source = DatabricksSource(lambda: fake_sdk(server.url, ["fast", "slow"]), timeout_s=30, pool_size=2)
    poller = Poller(source, settings)
    try:
        for _ in range(2):
            snap = poller.poll()
            status = {r.info.name: r.status for r in snap.endpoints}
            assert status["fast"].up and not status["slow"].up
            assert status["slow"].last_error.startswith("deadline: ") and "before the deadline" in status["slow"].last_error
        assert sum(1 for path, _ in server.requests if "/slow/" in path) == 2  # one request per poll, none left over
        assert snap.fetch_errors[(snap.workspace, "slow", "metrics", "deadline")] == 2
        assert snap.api_requests[(snap.workspace, "metrics", "timeout")] == 2  # an API outcome: no answer in time
        release.set()
        assert {r.info.name: r.status.up for r in poller.poll().endpoints} == {"fast": True, "slow": True}
    finally:
        release.set()
        poller.close()


# -- connections: reuse, TLS, proxies ---------------------------------------------------------------


def test_a_connection_is_kept_alive_and_reused_across_calls(server, client):
    ports = []
    server.behaviours["/who"] = lambda h: (ports.append(h.client_address[1]), ok()(h))
    for _ in range(5):
        assert get(client, server.url + "/who").body == BODY
    assert len(ports) == 5 and len(set(ports)) == 1  # one connection, five requests


def test_a_connection_the_server_closes_after_its_answer_is_not_reused(server, client):
    ports = []

    def close_after(h: BaseHTTPRequestHandler) -> None:
        ports.append(h.client_address[1])
        ok(headers={"Connection": "close"})(h)
        h.close_connection = True

    server.behaviours["/close"] = close_after
    for _ in range(3):
        assert get(client, server.url + "/close").body == BODY
    assert len(set(ports)) == 3
    assert client.usage.totals()[1] == {}  # no retry was needed: the closed connection was never written to


def test_a_body_delimited_by_the_connection_closing_is_read_whole(server, client):
    def no_length(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Connection", "close")
        h.end_headers()
        h.wfile.write(BODY)
        h.close_connection = True

    server.behaviours["/eof"] = no_length
    assert get(client, server.url + "/eof").body == BODY


def test_headers_are_read_case_insensitively_as_lower_case_names(server, client):
    server.behaviours["/h"] = ok(headers={"X-Thing": "a", "Content-Type": "text/plain; version=0.0.4"})
    response = get(client, server.url + "/h")
    assert response.headers["x-thing"] == "a" and response.headers["content-type"].startswith("text/plain")


def test_a_header_value_with_a_line_break_is_refused_before_sending(server, client):
    with pytest.raises(ValueError):
        client.get(server.url + "/x", {"Authorization": "Bearer a\r\nX-Injected: 1"}, call="metrics", timeout_s=1,
                   deadline=time.monotonic() + 5, max_body=1 << 20)
    assert server.requests == []


@pytest.fixture
def tls_server(tmp_path, monkeypatch) -> Iterator[tuple[Server, str]]:
    """The test server behind TLS with a certificate for 127.0.0.1 from a CA made for the test; the CA's
    bundle file path is returned for REQUESTS_CA_BUNDLE (the variable requests and so the SDK read)."""
    import ssl

    import trustme

    ca = trustme.CA()
    srv = Server()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    srv.httpd.socket = context.wrap_socket(srv.httpd.socket, server_side=True)
    srv.url = srv.url.replace("http://", "https://")
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    srv.thread.start()
    yield srv, str(bundle)
    srv.stop()


def test_https_against_a_ca_bundle_from_requests_ca_bundle(tls_server, monkeypatch):
    srv, bundle = tls_server
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", bundle)
    http = HttpClient(ApiUsage(), pool_size=2, user_agent="test")
    try:
        ports = []
        srv.behaviours["/tls"] = lambda h: (ports.append(h.client_address[1]), ok()(h))
        assert get(http, srv.url + "/tls").body == BODY
        assert get(http, srv.url + "/tls").body == BODY
    finally:
        http.close()
    assert len(ports) == 2 and len(set(ports)) == 1  # the TLS connection was reused


def test_https_with_an_untrusted_certificate_is_a_connection_error_that_says_tls(tls_server, monkeypatch):
    srv, _ = tls_server
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    http = HttpClient(ApiUsage(), pool_size=2, user_agent="test")
    try:
        with pytest.raises(FetchError) as err:
            get(http, srv.url + "/tls")
    finally:
        http.close()
    assert err.value.reason == "connection" and "TLS" in str(err.value) and "CERTIFICATE" in str(err.value).upper()
    assert srv.requests == []


class ConnectProxy:
    """A forward proxy on 127.0.0.1: GET in absolute form is answered itself (recorded), CONNECT is tunnelled."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str | None]] = []  # (method, target, Proxy-Authorization)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                proxy.seen.append(("GET", self.path, self.headers.get("Proxy-Authorization")))
                ok(b"proxied")(self)

            def do_CONNECT(self) -> None:  # noqa: N802
                proxy.seen.append(("CONNECT", self.path, self.headers.get("Proxy-Authorization")))
                host, port = self.path.rsplit(":", 1)
                upstream = socket.create_connection((host, int(port)), timeout=5)
                self.send_response(200, "Connection established")
                self.end_headers()
                self.wfile.flush()
                relay(self.connection, upstream)
                self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def relay(a: socket.socket, b: socket.socket) -> None:
    import selectors

    with selectors.DefaultSelector() as sel, b:
        sel.register(a, selectors.EVENT_READ, b)
        sel.register(b, selectors.EVENT_READ, a)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for key, _ in sel.select(0.5):
                data = key.fileobj.recv(65536)
                if not data:
                    return
                key.data.sendall(data)


@pytest.fixture
def proxy() -> Iterator[ConnectProxy]:
    p = ConnectProxy()
    yield p
    p.stop()


def test_http_goes_through_http_proxy_in_absolute_form_with_its_credentials(server, proxy, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", proxy.url.replace("http://", "http://user:p%40ss@"))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    http = HttpClient(ApiUsage(), pool_size=2, user_agent="test")
    try:
        assert get(http, server.url + "/api/x?y=1").body == b"proxied"
    finally:
        http.close()
    assert proxy.seen == [("GET", server.url + "/api/x?y=1", "Basic dXNlcjpwQHNz")]  # user:p@ss
    assert server.requests == []


def test_https_is_tunnelled_through_the_proxy_with_connect(tls_server, proxy, monkeypatch):
    srv, bundle = tls_server
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", bundle)
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    http = HttpClient(ApiUsage(), pool_size=2, user_agent="test")
    try:
        assert get(http, srv.url + "/through").body == BODY
    finally:
        http.close()
    assert proxy.seen == [("CONNECT", srv.url.removeprefix("https://"), None)]
    assert [path for path, _ in srv.requests] == ["/through"]


def test_no_proxy_exempts_a_host(server, proxy, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    http = HttpClient(ApiUsage(), pool_size=2, user_agent="test")
    try:
        assert get(http, server.url + "/direct").body == BODY
    finally:
        http.close()
    assert proxy.seen == []


def test_a_throttled_listing_never_waits_past_the_deadline(server):
    """The SDK's retry loop sleeps whatever Retry-After says; through the source, no wait passes the deadline."""
    from exporter.sources.databricks import client_factory

    server.behaviours["/api/2.0/serving-endpoints"] = ok(b'{"error_code": "REQUEST_LIMIT_EXCEEDED"}',
                                                         {"Retry-After": "60", "Content-Type": "application/json"},
                                                         status=429)
    source = DatabricksSource(client_factory(2.0, 30.0, 4, host=server.url, token="dapi-test", auth_type="pat"),
                              timeout_s=2.0, retry_budget_s=30.0, pool_size=4)
    try:
        started = time.monotonic()
        with pytest.raises(FetchError) as err:
            source.list_endpoints(deadline=time.monotonic() + 3)
        took = time.monotonic() - started
    finally:
        source.close()
    assert err.value.reason == "too_many_requests"
    assert "retries exhausted" in str(err.value) and "would pass the deadline" in str(err.value)
    assert took < 10  # not the 60 s Retry-After asks for
    assert [path for path, _ in server.requests if path.startswith("/api/")] == ["/api/2.0/serving-endpoints"]
    assert source.usage.totals()[0] == {("list", "429"): 1}
