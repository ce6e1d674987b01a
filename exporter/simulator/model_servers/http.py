"""HTTP fronts of a ModelServer: one listener per replica (its own port, as separate pods have), serving
GET /metrics and the server's health path. A replica that is down closes the connection without answering."""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from ..exposition import TEXT_CONTENT_TYPE
from .fleet import ModelServer, ReplicaDown

log = logging.getLogger(__name__)

HEALTH_PATHS = {"vllm": "/health", "triton": "/v2/health/ready"}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    model_server: ModelServer
    replica: int


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        try:
            body = self.server.model_server.metrics(self.server.replica)
        except ReplicaDown:
            self.close_connection = True  # nothing listens behind a crashed process: no answer at all
            return
        except Exception:  # a simulator bug: answer like a failing server, keep serving
            log.exception("model server simulator failed on %s", path)
            self._send(500, b"internal error\n", "text/plain")
            return
        if path == "/metrics":
            self._send(200, body, TEXT_CONTENT_TYPE)
        elif path == HEALTH_PATHS.get(self.server.model_server.kind):
            self._send(200, b"", "text/plain")
        else:
            self._send(404, b"not found\n", "text/plain")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class ModelServerHTTP:
    """Serves every replica of a ModelServer on 127.0.0.1 (free ports, known from `.targets` before start())."""

    def __init__(self, model_server: ModelServer, host: str = "127.0.0.1") -> None:
        self.model_server = model_server
        self._servers: list[_Server] = []
        for replica in range(model_server.replicas):
            httpd = _Server((host, 0), _Handler)
            httpd.model_server, httpd.replica = model_server, replica
            self._servers.append(httpd)
        self._threads: list[threading.Thread] = []

    @property
    def targets(self) -> list[str]:
        """Each replica's metrics URL, as a self-hosted endpoint's `targets` lists them."""
        return ["http://{}:{}/metrics".format(*s.server_address[:2]) for s in self._servers]

    def self_hosted_endpoint(self) -> dict:
        """This server as an entry of the exporter's `self_hosted.endpoints`."""
        server = self.model_server
        return {"name": server.name, "kind": server.kind, "targets": self.targets,
                "per_replica_concurrency": server.shape.per_replica_concurrency, "tags": dict(server.tags)}

    def start(self) -> ModelServerHTTP:
        if not self._threads:
            for s in self._servers:
                thread = threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.1},
                                          name=f"model-server-{s.server_address[1]}", daemon=True)
                thread.start()
                self._threads.append(thread)
        return self

    def stop(self) -> None:
        for s in self._servers:
            if self._threads:
                s.shutdown()
            s.server_close()
        for thread in self._threads:
            thread.join()
        self._threads = []

    def __enter__(self) -> ModelServerHTTP:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
