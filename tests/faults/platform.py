"""A fake Databricks workspace for the fault matrix: the real REST paths and wire formats (endpoint list
and detail JSON, Prometheus text metrics), with a behaviour per endpoint and for the listing that a test
switches at run time. Bound to 127.0.0.1 on a free port; stops with `close()`.

A healthy endpoint serves one minute of 600 requests (10 QPS), 6 of them 5xx, 40 % CPU and a latency
histogram, stamped with the current wall-clock minute, as the platform does.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import threading
import time
import zlib
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

API = "/api/2.0/serving-endpoints"
TOKEN = "dapi" + "0123456789abcdef" * 2  # the workspace's PAT: must never show anywhere
Behaviour = Callable[[BaseHTTPRequestHandler, "Platform", str], None]


def minute_ms(offset_minutes: int = 0) -> int:
    return (int(time.time() // 60) + offset_minutes) * 60_000


def body(requests: int = 600, errors_5xx: int = 6, cpu: float | str = 40, ts_ms: int | None = None,
         entity: str | None = None, extra: str = "") -> str:
    """One endpoint-minute, Databricks-shaped (gauges holding the minute's counts, a histogram in ms)."""
    ts = f" {minute_ms() if ts_ms is None else ts_ms}"
    labels = 'workspaceId="1234567890123456"' + (f',served_entity="{entity}"' if entity is not None else "")
    return (f"# HELP request_count_total Number of requests in the last minute\n# TYPE request_count_total gauge\n"
            f"request_count_total{{{labels}}} {requests}{ts}\n"
            f"# TYPE request_4xx_count_total gauge\nrequest_4xx_count_total{{{labels}}} 0{ts}\n"
            f"# TYPE request_5xx_count_total gauge\nrequest_5xx_count_total{{{labels}}} {errors_5xx}{ts}\n"
            f"# TYPE cpu_usage_percentage gauge\ncpu_usage_percentage{{{labels}}} {cpu}{ts}\n"
            f"# TYPE request_latency_ms histogram\n"
            f'request_latency_ms_bucket{{{labels},le="50.0"}} {requests - 10}{ts}\n'
            f'request_latency_ms_bucket{{{labels},le="+Inf"}} {requests}{ts}\n'
            f"request_latency_ms_sum{{{labels}}} {requests * 20}{ts}\n"
            f"request_latency_ms_count{{{labels}}} {requests}{ts}\n{extra}")


def send(h: BaseHTTPRequestHandler, status: int, payload: bytes, content_type: str = "text/plain; version=0.0.4",
         headers: dict[str, str] | None = None) -> None:
    h.send_response(status)
    h.send_header("Content-Type", content_type)
    for key, value in (headers or {}).items():
        h.send_header(key, value)
    h.send_header("Content-Length", str(len(payload)))
    h.end_headers()
    h.wfile.write(payload)


def healthy(h: BaseHTTPRequestHandler, platform: Platform, name: str) -> None:
    send(h, 200, body().encode())


def serving(text_of: Callable[[], str], content_type: str = "text/plain; version=0.0.4") -> Behaviour:
    return lambda h, platform, name: send(h, 200, text_of().encode(), content_type)


def status(code: int, headers: dict[str, str] | None = None) -> Behaviour:
    payload = json.dumps({"error_code": "SOME_ERROR", "message": f"echo Authorization: Bearer {TOKEN}"}).encode()
    return lambda h, platform, name: send(h, code, payload, "application/json", headers)


def raw(payload: bytes, headers: dict[str, str] | None = None, content_type: str = "text/plain") -> Behaviour:
    return lambda h, platform, name: send(h, 200, payload, content_type, headers)


def hang(h: BaseHTTPRequestHandler, platform: Platform, name: str) -> None:
    platform.stopping.wait(120)


def trickle(h: BaseHTTPRequestHandler, platform: Platform, name: str) -> None:
    h.send_response(200)
    h.send_header("Content-Length", "100000")
    h.end_headers()
    h.wfile.flush()
    for _ in range(100000):
        if platform.stopping.wait(0.5):
            return
        try:
            h.wfile.write(b"#")
            h.wfile.flush()
        except OSError:
            return


def reset(h: BaseHTTPRequestHandler, platform: Platform, name: str) -> None:
    h.send_response(200)
    h.send_header("Content-Length", "5000")
    h.end_headers()
    h.wfile.write(body().encode()[:100])
    h.wfile.flush()
    h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
    h.connection.close()
    h.close_connection = True


def truncated(h: BaseHTTPRequestHandler, platform: Platform, name: str) -> None:
    payload = body().encode()
    h.send_response(200)
    h.send_header("Content-Length", str(len(payload)))
    h.end_headers()
    h.wfile.write(payload[: len(payload) // 2])
    h.wfile.flush()
    h.close_connection = True


def huge(h: BaseHTTPRequestHandler, platform: Platform, name: str) -> None:
    """50 MB of comment lines, chunked: the exporter must stop reading at its cap (16 MiB)."""
    h.send_response(200)
    h.send_header("Transfer-Encoding", "chunked")
    h.end_headers()
    chunk = b"# filler\n" * 10000
    try:
        for _ in range(50 * 1024 * 1024 // len(chunk)):
            h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        h.wfile.write(b"0\r\n\r\n")
    except OSError:
        pass
    h.close_connection = True


def redirect(h: BaseHTTPRequestHandler, platform: Platform, name: str) -> None:
    h.send_response(302)
    h.send_header("Location", f"http://127.0.0.1:{platform.port}/steal")
    h.send_header("Content-Length", "0")
    h.end_headers()


def entities(count: int, label_of: Callable[[int], str] = lambda i: f"entity-{i}") -> Callable[[], str]:
    return lambda: "".join(body(entity=label_of(i)) for i in range(count))


class Platform:
    def __init__(self) -> None:
        self.metrics: dict[str, Behaviour] = {}  # endpoint name -> its /metrics behaviour
        self.detail: dict[str, Behaviour | None] = {}  # None: the normal detail JSON
        self.extra_detail: dict[str, dict] = {}  # fields merged into an endpoint's JSON
        self.listing: Behaviour | None = None  # None: the normal list of self.metrics' names
        self.accepted_token = TOKEN
        self.requests: list[str] = []
        self.stopping = threading.Event()
        platform = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                platform.requests.append(self.path)
                if self.path.startswith("/.well-known/") or self.path == "/steal":
                    send(self, 404, b"{}", "application/json")
                elif self.headers.get("Authorization") != f"Bearer {platform.accepted_token}":
                    status(401)(self, platform, "")
                elif self.path == API:
                    (platform.listing or Platform.list_all)(self, platform, "")
                elif self.path.startswith(API + "/") and self.path.endswith("/metrics"):
                    name = self.path[len(API) + 1: -len("/metrics")]
                    behaviour = platform.metrics.get(name)
                    (behaviour or status(404))(self, platform, name)
                elif self.path.startswith(API + "/"):
                    name = self.path[len(API) + 1:]
                    if name not in platform.metrics:
                        status(404)(self, platform, name)
                    else:
                        (platform.detail.get(name) or Platform.detail_of)(self, platform, name)
                else:
                    status(404)(self, platform, "")

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def endpoint_json(self, name: str) -> dict:
        entity = {"name": f"{name}-v1", "entity_name": "model", "entity_version": "1", "workload_type": "CPU",
                  "workload_size": "Small", "scale_to_zero_enabled": False, "min_provisioned_concurrency": 4,
                  "max_provisioned_concurrency": 8}
        return {"name": name, "creator": "someone@example.com", "creation_timestamp": 1700000000000,
                "last_updated_timestamp": 1700000000000, "state": {"ready": "READY", "config_update": "NOT_UPDATING"},
                "config": {"served_entities": [entity],
                           "traffic_config": {"routes": [{"served_entity_name": f"{name}-v1", "traffic_percentage": 100}]}},
                "tags": [{"key": "team", "value": "ml"}], "route_optimized": False, **self.extra_detail.get(name, {})}

    @staticmethod
    def list_all(h: BaseHTTPRequestHandler, platform: Platform, _: str) -> None:
        items = [platform.endpoint_json(n) for n in list(platform.metrics)]
        send(h, 200, json.dumps({"endpoints": items}).encode(), "application/json")

    @staticmethod
    def detail_of(h: BaseHTTPRequestHandler, platform: Platform, name: str) -> None:
        send(h, 200, json.dumps(platform.endpoint_json(name)).encode(), "application/json")

    def close(self) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def gzip_bomb() -> Behaviour:
    bomb = zlib.compress(b"\0" * (64 * 1024 * 1024), 9)  # inflates to 4 x the 16 MiB cap
    return raw(bomb, {"Content-Encoding": "deflate"})


def gzipped(text: str) -> Behaviour:
    return raw(gzip.compress(text.encode()), {"Content-Encoding": "gzip"}, "text/plain; version=0.0.4")


def garbage_bytes() -> bytes:
    return os.urandom(4096)
