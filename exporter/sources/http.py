"""The per-endpoint hot path: GETs on one asyncio event loop with one pooled aiohttp session.

Measured against requests (the Databricks SDK's stack) and urllib3 on worker threads
(bench/http_candidates.py), aiohttp on one loop costs a half to a quarter of the CPU per call:
its HTTP parser is C, and there is no GIL contention on a shared connection-pool queue.
The poller runs its fetches as coroutines on the client's loop (`fetch`), so a poll has no thread
hand-off per call; `get` is the same for a caller on another thread, blocking that thread only.

Every call is bounded as a whole: one deadline covers connecting, the headers and the whole
body, so a server that trickles a byte at a time is cut at the request timeout, not at the
first silent read. The body is read in chunks up to a cap (also when it arrives compressed).
429 and 503 are retried, honouring Retry-After, else with exponential backoff and full jitter,
never past the caller's deadline; a connection the server closed is retried once at once.
"""

from __future__ import annotations

import asyncio
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
from urllib.parse import urlsplit
from dataclasses import dataclass

import aiohttp
import yarl

from .base import ApiUsage, FetchError

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 503})
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 10.0
CHUNK = 64 * 1024


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes


class HttpClient:
    """A pooled HTTP client on its own event-loop thread. `get` is thread-safe and blocking."""

    def __init__(self, usage: ApiUsage, pool_size: int, user_agent: str, rng: random.Random | None = None):
        self.usage = usage
        self._pool_size = pool_size
        self._user_agent = user_agent
        self._rng = rng or random.Random()
        self._proxies: dict[tuple[str, str], str | None] = {}
        self.loop = asyncio.new_event_loop()  # fetch() runs on it; the poller schedules its workers there
        self._thread = threading.Thread(target=self.loop.run_forever, name="http-loop", daemon=True)
        self._thread.start()
        self._session = self.run(self._open(), timeout=30)

    async def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self._pool_size, ssl=_ssl_context(), ttl_dns_cache=60,
                                         enable_cleanup_closed=True)
        # Decompression is ours (bounded), so a gzip bomb cannot inflate past the body cap. Proxies are ours too
        # (_proxy_for): aiohttp's trust_env re-reads the environment and ~/.netrc on a thread at every request.
        # Per request, aiohttp would also keep cookies and arm a timer of its own: neither is needed (no API
        # here sets cookies; asyncio.timeout bounds each attempt), and both cost CPU on the hot path.
        session = aiohttp.ClientSession(connector=connector, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar(),
                                        timeout=aiohttp.ClientTimeout(total=None, sock_connect=None, sock_read=None),
                                        headers={"User-Agent": self._user_agent, "Accept-Encoding": "gzip"})
        # aiohttp re-sends an idempotent request once, uncounted, when a pooled connection was closed. Ours
        # does the same, counted (no public switch for it; without the attribute, retries happen twice).
        if hasattr(session, "_retry_connection"):
            session._retry_connection = False
        return session

    def close(self) -> None:
        if self.loop.is_closed():
            return
        try:
            self.run(self._session.close(), timeout=5)
        except Exception:  # closing is best effort
            log.debug("closing the HTTP session failed", exc_info=True)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()

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
                    max_body: int) -> Response:
        """`get` as a coroutine, on this client's loop."""
        headers = dict(headers)
        retried_connection = False
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            budget = min(timeout_s, remaining)
            if budget <= 0:
                raise FetchError("deadline", f"{call}: no time left for the request")
            try:
                response = await self._attempt(url, headers, budget, max_body, cut_by_deadline=budget < timeout_s)
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

    async def _attempt(self, url: str, headers: dict[str, str], budget: float, max_body: int,
                       cut_by_deadline: bool) -> Response:
        try:
            async with asyncio.timeout(budget):
                async with self._session.get(yarl.URL(url, encoded=True), headers=headers, allow_redirects=False,
                                             proxy=self._proxy_for(url)) as resp:
                    try:
                        body = await _read(resp, max_body)
                    except FetchError as exc:
                        exc.status = resp.status  # type: ignore[attr-defined]
                        raise
                    return Response(resp.status, resp.headers, body)
        except TimeoutError:
            if cut_by_deadline:  # the caller's deadline (the poll's) came first
                raise FetchError("deadline", f"no complete answer before the deadline ({budget:.3g}s)") from None
            raise FetchError("timeout", f"no complete answer within {budget:.3g}s") from None
        except aiohttp.ClientPayloadError as exc:
            raise FetchError("connection", f"body cut short: {_cause(exc)}") from None
        except aiohttp.ServerDisconnectedError:
            raise FetchError("connection", "server closed the connection") from None
        except aiohttp.ClientConnectorError as exc:
            raise FetchError("connection", f"cannot connect: {_cause(exc)}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise FetchError("connection", f"{type(exc).__name__}: {_cause(exc)}") from None


    def _proxy_for(self, url: str) -> str | None:
        """HTTP(S)_PROXY unless NO_PROXY exempts the host, as requests (and so the SDK) decide; once per host."""
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc)
        if key not in self._proxies:
            bypass = urllib.request.proxy_bypass_environment(parts.hostname or "")
            self._proxies[key] = None if bypass else urllib.request.getproxies_environment().get(parts.scheme)
        return self._proxies[key]


async def _read(resp: aiohttp.ClientResponse, max_body: int) -> bytes:
    """The body, decompressed when gzip/deflate, at most `max_body` bytes (FetchError too_large past it)."""
    encoding = resp.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ("", "identity", "gzip", "x-gzip", "deflate"):
        raise FetchError("bad_response", f"unsupported Content-Encoding {encoding[:40]!r}")
    inflate = _Inflate() if encoding not in ("", "identity") else None
    chunks, size = [], 0
    async for chunk in resp.content.iter_chunked(CHUNK):
        if inflate is not None:
            chunk = inflate.feed(chunk, max_body + 1 - size)
        size += len(chunk)
        if size > max_body:
            raise FetchError("too_large", f"body exceeds {max_body} bytes")
        chunks.append(chunk)
    if inflate is not None:
        inflate.finish()
    return b"".join(chunks)


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
    value = headers.get("Retry-After")
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
