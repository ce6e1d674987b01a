"""The per-endpoint hot path: GETs on one asyncio event loop over pooled keep-alive connections.

Measured side by side (bench/http_candidates.py), CPU per call: requests (the Databricks SDK's
stack) about 1 ms, urllib3 on worker threads about 0.57 ms, aiohttp on one loop about 0.3 ms, and
an asyncio protocol with httptools' parser (llhttp, Node's C parser, as uvicorn uses it) about
0.1 ms: aiohttp's per-request machinery (request and response objects, tracing hooks, cookie and
header handling, its connector's bookkeeping) was half of a poll's CPU. So each call here is one
prebuilt request written to a pooled connection and one answer parsed in C; TLS is asyncio's, with
the CA bundle requests would use; HTTP(S)_PROXY/NO_PROXY are honoured as requests honours them
(absolute-form requests through an http proxy, a CONNECT tunnel for https).

The loop is uvloop's (libuv, as uvicorn uses it) where it is installed, asyncio's own otherwise: a
poll on uvloop's costs about 3 % fewer instructions per endpoint (docs/performance.md). The poller
runs its fetches as coroutines on the client's loop (`fetch`), so a poll has no thread hand-off per
call; `get` is the same for a caller on another thread, blocking that thread only.

Every call is bounded as a whole: one deadline covers connecting, the headers and the whole
body, so a server that trickles a byte at a time is cut at the request timeout, not at the
first silent read. The body is read up to a cap as it arrives (also when it arrives compressed).
429 and 503 are retried, honouring Retry-After, else with exponential backoff and full jitter,
never past the caller's deadline; a connection the server closed is retried once at once.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import logging
import os
import random
import ssl
import threading
import time
import urllib.request
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import httptools

from ..threads import started_pool
from .base import ApiUsage, FetchError

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 503})
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 10.0
RESOLVER_THREADS = 4  # the loop's executor: name resolution (one per new connection) and SDK auth calls
KEEPALIVE_S = 15.0  # an idle connection older than this is closed rather than reused (aiohttp's default too)
MAX_HEADER_BYTES = 64 * 1024  # the status line and headers of one answer


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]  # names in lower case
    body: bytes


@dataclass(frozen=True)
class _Target:
    """Where a URL's requests go: the connection's key in the pool, and the request's first lines."""

    scheme: str
    host: str
    port: int
    proxy: tuple[str, str, int, str | None] | None  # (scheme, host, port, Proxy-Authorization)
    head: bytes  # "GET <target> HTTP/1.1\r\nHost: ...\r\n"; the caller's headers follow


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop where it is installed (not on Windows), else asyncio's: the same API either way."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class HttpClient:
    """A pooled HTTP/1.1 client on its own event-loop thread. `get` is thread-safe and blocking."""

    def __init__(self, usage: ApiUsage, pool_size: int, user_agent: str, rng: random.Random | None = None):
        self.usage = usage
        self._pool_size = pool_size
        self._rng = rng or random.Random()
        self._common = f"User-Agent: {user_agent}\r\nAccept-Encoding: gzip\r\n"
        self._targets: dict[str, _Target] = {}
        # url -> (its headers, its request's bytes): each endpoint's request is the same poll after poll until
        # a header (the token) changes, so it is built once per change. One per URL, bounded as _targets is.
        self._requests: dict[str, tuple[tuple[tuple[str, str], ...], bytes]] = {}
        self._proxies: dict[tuple[str, str], str | None] = {}
        self._idle: dict[tuple, list[tuple[float, _Connection]]] = {}
        self._ssl = _ssl_context()
        self.loop = new_event_loop()  # fetch() runs on it; the poller schedules its workers there
        # Its executor resolves host names and runs the SDK's blocking auth calls: a fixed few threads.
        self.loop.set_default_executor(started_pool(RESOLVER_THREADS, "http-executor"))
        self._slots = asyncio.Semaphore(pool_size)  # bound to self.loop at first use
        self._thread = threading.Thread(target=self.loop.run_forever, name="http-loop", daemon=True)
        self._thread.start()

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self._close_idle)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()

    def _close_idle(self) -> None:
        for idle in self._idle.values():
            for _, conn in idle:
                conn.close()
        self._idle.clear()

    def get(self, url: str, headers: Mapping[str, str], *, call: str, timeout_s: float, deadline: float,
            max_body: int) -> Response:
        """GET `url`: a Response for any status once retries are done, or FetchError (timeout, connection,
        too_large). `timeout_s` bounds each attempt end to end; `deadline` (time.monotonic()) bounds the
        whole call with its retries."""
        coro = self.fetch(url, headers, call=call, timeout_s=timeout_s, deadline=deadline, max_body=max_body)
        return self.run(coro, timeout=max(0.0, deadline - time.monotonic()) + timeout_s + 5)

    def run(self, coro, timeout: float):  # type: ignore[no-untyped-def]
        """Run a coroutine on the client's loop from another thread and wait for its result."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:  # the coroutine bounds itself; this is a last resort against a stuck loop
            future.cancel()
            raise FetchError("timeout", "request did not finish") from None

    async def fetch(self, url: str, headers: Mapping[str, str], *, call: str, timeout_s: float, deadline: float,
                    max_body: int, tls: ssl.SSLContext | None = None) -> Response:
        """`get` as a coroutine, on this client's loop. `tls`: a TLS context other than the client's (a
        self-hosted endpoint's own CA); its connections are pooled apart."""
        target = self._targets.get(url) or self._target(url)
        request = self._request(url, target, headers)
        retried_connection = False
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            budget = min(timeout_s, remaining)
            if budget <= 0:
                raise FetchError("deadline", f"{call}: no time left for the request")
            try:
                response = await self._attempt(target, request, budget, max_body, cut_by_deadline=budget < timeout_s,
                                               tls=tls)
            except FetchError as exc:
                status = getattr(exc, "status", None)  # set when an answer came and its body was refused
                if status is not None:
                    self.usage.count(call, ApiUsage.outcome(status))
                else:  # no answer: cut by the request timeout or the caller's deadline, or the connection failed
                    self.usage.count(call, "connection" if exc.reason == "connection" else "timeout")
                if exc.reason == "connection" and not retried_connection and deadline - time.monotonic() > 0:
                    retried_connection = True  # a pooled connection the server had closed: once, at once
                    self.usage.retry(call)
                    continue
                raise
            self.usage.count(call, ApiUsage.outcome(response.status))
            if response.status not in RETRY_STATUSES:
                return response
            wait = _retry_after(response.headers)
            if wait is None:
                wait = self._rng.uniform(0, min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** attempt))
            if time.monotonic() + wait >= deadline:
                return response  # no time to wait for: the caller reports the status
            self.usage.retry(call)
            attempt += 1
            await asyncio.sleep(wait)

    async def _attempt(self, target: _Target, request: bytes, budget: float, max_body: int,
                       cut_by_deadline: bool, tls: ssl.SSLContext | None = None) -> Response:
        conn = None
        key = _key(target, tls)
        try:
            async with asyncio.timeout(budget):
                async with self._slots:
                    conn = self._reuse(key) or await self._connect(target, tls or self._ssl)
                    response = await conn.exchange(request, max_body)
            if conn.reusable:
                idle = self._idle.setdefault(key, [])
                idle.append((time.monotonic(), conn))
                if len(idle) > self._pool_size:
                    idle.pop(0)[1].close()
            else:
                conn.close()
            return response
        except TimeoutError:
            if conn is not None:
                conn.close()  # an answer may be half read: never reuse the connection
            if cut_by_deadline:  # the caller's deadline (the poll's) came first
                raise FetchError("deadline", f"no complete answer before the deadline ({budget:.3g}s)") from None
            raise FetchError("timeout", f"no complete answer within {budget:.3g}s") from None
        except BaseException:
            if conn is not None:
                conn.close()
            raise

    def _reuse(self, key: tuple) -> _Connection | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            since, conn = idle.pop()
            if conn.open and now - since < KEEPALIVE_S:
                return conn
            conn.close()
        return None

    async def _connect(self, target: _Target, context: ssl.SSLContext) -> _Connection:
        loop = asyncio.get_running_loop()
        proxy = target.proxy
        try:
            if proxy is None:
                _, conn = await loop.create_connection(
                    _Connection, target.host, target.port,
                    ssl=context if target.scheme == "https" else None,
                    server_hostname=target.host if target.scheme == "https" else None)
                return conn
            scheme, host, port, authorization = proxy
            transport, conn = await loop.create_connection(
                _Connection, host, port, ssl=self._ssl if scheme == "https" else None,
                server_hostname=host if scheme == "https" else None)
            if target.scheme == "http":
                return conn  # absolute-form requests through the proxy
            await conn.tunnel(f"{target.host}:{target.port}", authorization)
            tls = await loop.start_tls(transport, conn, context, server_hostname=target.host)
            if tls is None:
                raise ConnectionError("TLS through the proxy failed")
            conn.transport = tls
            return conn
        except ssl.SSLError as exc:
            raise FetchError("connection", f"TLS: {_cause(exc)}") from None
        except (OSError, ConnectionError) as exc:
            raise FetchError("connection", f"cannot connect: {_cause(exc)}") from None

    def _target(self, url: str) -> _Target:
        """The request line and Host of a URL, and its proxy, worked out once per URL (a poll repeats them)."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {scheme}://...")
        port = parts.port or (443 if scheme == "https" else 80)
        host = parts.hostname
        host_header = parts.netloc.rpartition("@")[2]
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        _no_line_breaks(host_header, path)
        proxy_url = self._proxy_for(scheme, parts.netloc, host)
        proxy = None
        if proxy_url:
            p = urlsplit(proxy_url if "://" in proxy_url else "http://" + proxy_url)
            authorization = None
            if p.username is not None:
                credentials = f"{unquote(p.username)}:{unquote(p.password or '')}".encode()
                authorization = "Basic " + base64.b64encode(credentials).decode()
            proxy = (p.scheme.lower() or "http", p.hostname or "", p.port or (443 if p.scheme == "https" else 80),
                     authorization)
            if scheme == "http":
                path = f"{scheme}://{host_header}{path}"  # absolute form: the proxy forwards it
                if authorization:
                    host_header += f"\r\nProxy-Authorization: {authorization}"
        head = f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\n"
        target = _Target(scheme, host, port, proxy, head.encode())
        if len(self._targets) >= 16384:
            self._targets.clear()
        self._targets[url] = target
        return target

    def _request(self, url: str, target: _Target, headers: Mapping[str, str]) -> bytes:
        items = tuple(headers.items())
        known = self._requests.get(url)
        if known is not None and known[0] == items:
            return known[1]
        request = b"".join((target.head, _header_lines(headers), self._common.encode(), b"\r\n"))
        if len(self._requests) >= 16384:
            self._requests.clear()
        self._requests[url] = (items, request)
        return request

    def _proxy_for(self, scheme: str, netloc: str, host: str) -> str | None:
        """HTTP(S)_PROXY unless NO_PROXY exempts the host, as requests (and so the SDK) decide; once per host."""
        key = (scheme, netloc)
        if key not in self._proxies:
            bypass = urllib.request.proxy_bypass_environment(host)
            self._proxies[key] = None if bypass else urllib.request.getproxies_environment().get(scheme)
        return self._proxies[key]


def _key(target: _Target, tls: ssl.SSLContext | None = None) -> tuple:
    return (target.scheme, target.host, target.port, target.proxy, id(tls) if tls is not None else None)


def _header_lines(headers: Mapping[str, str]) -> bytes:
    _no_line_breaks(*headers.keys(), *headers.values())
    return "".join(f"{name}: {value}\r\n" for name, value in headers.items()).encode("latin-1")


def _no_line_breaks(*texts: str) -> None:
    """A line break inside a header or the URL would inject headers or a second request: refused."""
    if any("\r" in text or "\n" in text for text in texts):
        raise ValueError("a request header or URL contains a line break")


class _Connection(asyncio.Protocol):
    """One keep-alive connection: writes a request, parses the answer as it arrives (httptools), and
    keeps at most `max_body` bytes of its body, decompressed."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.open = False
        self.reusable = False
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future | None = None
        self._tunnel_reply: bytes | None = None  # a CONNECT answer being read; None once tunnelled
        self._reset(0)

    def _reset(self, max_body: int) -> None:
        self._max_body = max_body
        self._headers: dict[str, str] = {}
        self._header_bytes = 0
        self._chunks: list[bytes] = []
        self._size = 0
        self._inflate: _Inflate | None = None
        self._status = 0
        self._started = False
        self._error: FetchError | None = None

    # -- asyncio.Protocol
    def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
        self.transport = transport
        self.open = True

    def data_received(self, data: bytes) -> None:
        if self._tunnel_reply is not None:  # uvloop binds this method once: no swapping it for the tunnel
            self._tunnel_data(data)
            return
        if self._waiter is None or self._waiter.done():
            self.close()  # nothing asked for: a server talking out of turn
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(FetchError("bad_response", "unexpected protocol upgrade"))
        except httptools.HttpParserError as exc:
            if self._error is None:
                self._fail(FetchError("connection", f"malformed HTTP answer: {_cause(exc)}"))
            else:  # ours, from a callback: an answer came, and its status is counted
                self._error.status = self._status  # type: ignore[attr-defined]
                self._fail(self._error)

    def eof_received(self) -> bool:
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        self.reusable = False
        if self._waiter is None or self._waiter.done():
            return
        if self._status and exc is None and self._delimited_by_close():
            try:  # the body ends with the connection (no length, not chunked): complete now
                self.on_message_complete()
            except httptools.HttpParserError:
                self._fail(self._error or FetchError("connection", "body cut short"))
        elif self._started:
            self._fail(FetchError("connection", "body cut short" + (f": {_cause(exc)}" if exc else "")))
        else:
            self._fail(FetchError("connection", "server closed the connection"))

    def _delimited_by_close(self) -> bool:
        return "content-length" not in self._headers and "chunked" not in self._headers.get("transfer-encoding", "")

    # -- httptools callbacks
    def on_message_begin(self) -> None:
        self._started = True

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value)
        if self._header_bytes > MAX_HEADER_BYTES:
            self._error = FetchError("bad_response", f"headers exceed {MAX_HEADER_BYTES} bytes")
            raise httptools.HttpParserError("headers too large")
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        self._headers[key] = f"{self._headers[key]}, {text}" if key in self._headers else text

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()
        encoding = self._headers.get("content-encoding", "").strip().lower()
        if encoding in ("gzip", "x-gzip", "deflate"):
            self._inflate = _Inflate()
        elif encoding not in ("", "identity"):
            self._error = FetchError("bad_response", f"unsupported Content-Encoding {encoding[:40]!r}")
            raise httptools.HttpParserError("unsupported encoding")

    def on_body(self, chunk: bytes) -> None:
        if self._inflate is not None:
            try:
                chunk = self._inflate.feed(chunk, self._max_body + 1 - self._size)
            except FetchError as exc:
                self._error = exc
                raise httptools.HttpParserError("bad body") from None
        self._size += len(chunk)
        if self._size > self._max_body:
            self._error = FetchError("too_large", f"body exceeds {self._max_body} bytes")
            raise httptools.HttpParserError("body too large")
        self._chunks.append(chunk)

    def on_message_complete(self) -> None:
        if self._inflate is not None:
            try:
                self._inflate.finish()
            except FetchError as exc:
                self._error = exc
                raise httptools.HttpParserError("cut body") from None
        self.reusable = self.open and self._parser.should_keep_alive()
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(Response(self._status, self._headers, b"".join(self._chunks)))

    # -- ours
    async def exchange(self, request: bytes, max_body: int) -> Response:
        """Write one request and wait for its whole answer."""
        self._reset(max_body)
        self.reusable = False
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)  # type: ignore[union-attr]
        return await self._waiter

    async def tunnel(self, authority: str, authorization: str | None) -> None:
        """CONNECT through an http proxy; raises ConnectionError unless it answers 2xx."""
        extra = f"Proxy-Authorization: {authorization}\r\n" if authorization else ""
        self._waiter = asyncio.get_running_loop().create_future()
        self._tunnel_reply = b""
        self.transport.write(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n{extra}\r\n".encode())  # type: ignore[union-attr]
        try:
            status = await self._waiter
        finally:
            self._tunnel_reply = None
        if not 200 <= status < 300:
            raise ConnectionError(f"proxy answered CONNECT with {status}")

    def _tunnel_data(self, data: bytes) -> None:
        reply = self._tunnel_reply = (self._tunnel_reply or b"") + data
        if b"\r\n\r\n" in reply:
            line = reply.split(b"\r\n", 1)[0].split()
            status = int(line[1]) if len(line) > 1 and line[1].isdigit() else 0
            if not self._waiter.done():  # type: ignore[union-attr]
                self._waiter.set_result(status)  # type: ignore[union-attr]
        elif len(reply) > MAX_HEADER_BYTES:
            self._fail(FetchError("connection", "proxy answer too large"))

    def _fail(self, error: FetchError) -> None:
        self.reusable = False
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        self.close()

    def close(self) -> None:
        self.open = False
        self.reusable = False
        if self.transport is not None:
            self.transport.abort()


class _Inflate:
    """gzip or zlib data, member after member (gzip members may be concatenated), never inflating more
    than asked per call, so a bomb stops at the cap."""

    def __init__(self) -> None:
        self._z = zlib.decompressobj(wbits=zlib.MAX_WBITS | 32)  # gzip or zlib header, detected

    def feed(self, data: bytes, limit: int) -> bytes:
        out = []
        try:
            while data and limit > 0:
                piece = self._z.decompress(data, limit)
                out.append(piece)
                limit -= len(piece)
                data = self._z.unconsumed_tail
                if self._z.eof:  # the next member, if any, starts in unused_data
                    data = self._z.unused_data + data
                    if data:
                        self._z = zlib.decompressobj(wbits=zlib.MAX_WBITS | 32)
        except zlib.error:
            raise FetchError("bad_response", "body is not valid gzip/deflate data") from None
        return b"".join(out)  # input left over only when the limit was reached: the caller sees it past the cap

    def finish(self) -> None:
        if not self._z.eof:
            raise FetchError("connection", "compressed body cut short")


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Retry-After in seconds: a number of seconds or an HTTP date (RFC 9110)."""
    value = headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _cause(exc: BaseException) -> str:
    """An error's own words, without URLs (which could carry a query) and bounded."""
    text = str(getattr(exc, "os_error", None) or exc.__cause__ or exc) or type(exc).__name__
    return text[:200]


def _ssl_context() -> ssl.SSLContext:
    """The CA bundle requests (and so the SDK) would use: REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE, else certifi's."""
    import certifi

    return ssl.create_default_context(cafile=os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
                                      or certifi.where())
