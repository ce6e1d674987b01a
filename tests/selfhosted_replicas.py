"""Model-server replicas for the self-hosted tests: one local HTTP server answering each path with the body
(and status) the test sets, recording the requests' headers. Binds 127.0.0.1 on a free port; stops with the
`with` block."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Replicas:
    def __init__(self) -> None:
        self.bodies: dict[str, tuple[int, bytes]] = {}
        self.headers: list[dict[str, str]] = []
        self.required_authorization: str | None = None
        replicas = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                replicas.headers.append(dict(self.headers))
                if replicas.required_authorization and self.headers.get("Authorization") != replicas.required_authorization:
                    status, body = 401, b"unauthorized\n"
                else:
                    status, body = replicas.bodies.get(self.path, (404, b"no such path\n"))
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Replicas:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def serve(self, path: str, body: str | bytes, status: int = 200) -> str:
        self.bodies[path] = (status, body.encode() if isinstance(body, str) else body)
        return self.url(path)
