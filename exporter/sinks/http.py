"""HTTP: /metrics, /healthz, /readyz, /api/v1/endpoints and the status page (sinks/status_page.py).

A threaded WSGI server from the standard library. /metrics and the JSON API serve
bytes rendered once per snapshot (sinks/prometheus.py `Exposition`, `JsonDocument`
here), gzipped when the client accepts it. Content negotiation (OpenMetrics) and
`name[]` filtering are prometheus_client's, as in every other Python exporter.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import socket
import threading
import weakref
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client.exposition import gzip_accepted

from ..model import Snapshot
from .prometheus import GZIP_LEVEL, Exposition
from .status_page import ENDPOINT_PATH, HEADERS as PAGE_HEADERS, StatusPage

log = logging.getLogger(__name__)


def snapshot_json(snap: Snapshot) -> dict[str, Any]:
    """The snapshot as plain JSON: per endpoint its configuration, figures, checks and poll status."""
    endpoints = []
    for report in snap.endpoints:
        info = _plain(report.info)
        endpoints.append({
            "name": report.info.name,
            "workspace": report.info.workspace,
            "config": info,
            "status": _plain(report.status),
            **_series(report.endpoint),
            "hints": [{"id": h.id, "severity": h.severity, "summary": h.summary, "detail": h.detail, "since": h.since_s}
                      for h in report.hints],
            "recommendation": _plain(report.recommendation) if report.recommendation else None,
            "served_entities": [{"name": e.entity, **_series(e)} for e in report.entities],
        })
    return {
        "workspace": snap.workspace,
        "ready": snap.ready,
        "completed_at": snap.completed_at_s,
        "poll_duration_seconds": snap.poll_duration_s,
        "shard": {"index": snap.shard[0], "count": snap.shard[1]},
        "workspace_usage": _plain(snap.usage) if snap.usage else None,  # one workspace; several: by workspace
        "workspace_usages": {w: _plain(u) for w, u in snap.usages.items()},
        "endpoints": endpoints,
    }


def _series(series: Any) -> dict[str, Any]:
    return {
        "figures": _plain(series.figures),
        "checks": [{"check": c.name, "value": _num(c.value), "target": c.target, "breached": c.breached}
                   for c in series.checks],
        "breached": [c.name for c in series.checks if c.breached],
    }


def _plain(obj: Any) -> Any:
    data = asdict(obj) if is_dataclass(obj) else obj
    return {k: _num(v) if isinstance(v, float) else v for k, v in data.items()}


def _num(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) or math.isinf(value) else value


class JsonDocument:
    """The JSON API's body, serialised (and gzipped) once per snapshot.

    The body is rendered when asked for, so the snapshot it came from may be many polls old: the cache refers to
    it weakly. Held, it kept its endpoints' minutes alive after they left the windows, up to a whole window's worth
    of figures (in the bench, +5.9 % RSS over 1,000 polls at 1,000 endpoints after one request; docs/performance.md)."""

    def __init__(self, snapshot: Callable[[], Snapshot]):
        self._snapshot = snapshot
        self._lock = threading.Lock()
        self._cached: tuple[weakref.ref[Snapshot], bytes, bytes] | None = None

    def body(self, gzip_ok: bool = False) -> bytes:
        snap = self._snapshot()
        with self._lock:
            if self._cached is None or self._cached[0]() is not snap:
                plain = json.dumps(snapshot_json(snap), indent=1).encode()
                self._cached = (weakref.ref(snap), plain, gzip.compress(plain, GZIP_LEVEL))
            return self._cached[2] if gzip_ok else self._cached[1]


def make_app(exposition: Exposition, snapshot: Callable[[], Snapshot], refresh_seconds: float = 60) -> Callable:
    """`refresh_seconds`: how often the status page reloads itself (the poll interval)."""
    document = JsonDocument(snapshot)
    page = StatusPage(snapshot, refresh_seconds)

    def app(environ: dict, start_response: Callable) -> list[bytes]:
        path = environ.get("PATH_INFO", "/")
        gzip_ok = gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING", ""))
        if path == "/metrics":
            names = parse_qs(environ.get("QUERY_STRING", "")).get("name[]")
            if names:
                body, content_type = exposition.filtered(names, environ.get("HTTP_ACCEPT"), gzip_ok)
                return _reply(start_response, "200 OK", body, content_type, gzip_ok)
            chunks, content_type = exposition.chunks(environ.get("HTTP_ACCEPT"), gzip_ok)
            return _reply(start_response, "200 OK", chunks, content_type, gzip_ok)
        if path == "/healthz":
            return _reply(start_response, "200 OK", b"ok\n")
        if path == "/readyz":
            ready = snapshot().ready
            return _reply(start_response, "200 OK" if ready else "503 Service Unavailable",
                          b"ready\n" if ready else b"waiting for the first poll\n")
        if path == "/api/v1/endpoints":
            return _reply(start_response, "200 OK", document.body(gzip_ok), "application/json", gzip_ok)
        if path == "/":
            sort = parse_qs(environ.get("QUERY_STRING", "")).get("sort", [None])[0]
            return _reply(start_response, "200 OK", page.fleet(sort), HTML, headers=PAGE_HEADERS)
        if path.startswith(ENDPOINT_PATH):
            # wsgiref decodes the path as Latin-1; names are UTF-8.
            workspace = parse_qs(environ.get("QUERY_STRING", "")).get("workspace", [None])[0]
            body = page.endpoint(path[len(ENDPOINT_PATH):].encode("latin-1").decode("utf-8", "replace"), workspace)
            if body is None:
                return _reply(start_response, "404 Not Found", b"no such endpoint in the last poll (with several "
                              b"workspaces, name one: ?workspace=NAME)\n")
            return _reply(start_response, "200 OK", body, HTML, headers=PAGE_HEADERS)
        return _reply(start_response, "404 Not Found", b"not found\n")

    return app


HTML = "text/html; charset=utf-8"


def _reply(start_response: Callable, status: str, body: bytes | list[bytes],
           content_type: str = "text/plain; charset=utf-8", gzipped: bool = False,
           headers: list[tuple[str, str]] | None = None) -> list[bytes]:
    chunks = body if isinstance(body, list) else [body]
    headers = [("Content-Type", content_type), ("Content-Length", str(sum(len(c) for c in chunks))), *(headers or [])]
    if gzipped:
        headers += [("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding")]
    start_response(status, headers)
    return chunks


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True
    handshake: Callable[[socket.socket], socket.socket] | None = None  # TLS (sinks/webconfig.py)

    def process_request_thread(self, request: socket.socket, client_address: Any) -> None:
        if self.handshake is not None:  # on the connection's thread: a slow client holds no other
            try:
                request = self.handshake(request)
            except (OSError, ValueError) as exc:  # ssl.SSLError included
                log.debug("TLS handshake with %s failed: %s", client_address[0], exc)
                self.shutdown_request(request)
                return
        super().process_request_thread(request, client_address)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s - %s", self.address_string(), format % args)


class _ThreadingServer6(_ThreadingServer):
    address_family = socket.AF_INET6


class HttpServer:
    """Serves the app on a background thread; `port` is the bound port (useful with port 0). With
    `handshake`, each connection is first handed to it (TLS) on its own thread."""

    def __init__(self, app: Callable, host: str, port: int,
                 handshake: Callable[[socket.socket], socket.socket] | None = None):
        server_class = _ThreadingServer6 if ":" in host else _ThreadingServer
        self._server = make_server(host, port, app, server_class=server_class, handler_class=_QuietHandler)
        self._server.handshake = handshake
        self.host, self.port = host, self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)

    def start(self) -> HttpServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
