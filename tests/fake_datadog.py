"""A fake Datadog API on 127.0.0.1 for the tests: metric intake, events, monitors, dashboards.

* Every body is decoded (gzip or deflate per Content-Encoding) and checked against the API's schema
  with datadog-api-client's own models (exporter.sinks.datadog.schema); a body that does not match is answered
  400 and recorded in `invalid`. The v2 series intake also enforces the documented size limits
  (512,000 bytes as sent, 5,242,880 decompressed) with 413.
* The keys are checked: DD-API-KEY everywhere, DD-APPLICATION-KEY for monitors and dashboards.
* `fail(...)` makes the next requests (or all, until `heal()`) answer a status with headers;
  `hang(seconds)` delays answers. Monitors and dashboards are stored, with the defaults and ids
  Datadog adds, so syncs can be checked for idempotence.
* It stops by itself after `lifetime_s` (a forgotten server never outlives the test run).
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import threading
import time
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from datadog_api_client.v1.model.dashboard import Dashboard
from datadog_api_client.v1.model.event_create_request import EventCreateRequest
from datadog_api_client.v1.model.monitor import Monitor
from datadog_api_client.v1.model.monitor_update_request import MonitorUpdateRequest
from datadog_api_client.v2.model.metric_payload import MetricPayload

from exporter.sinks.datadog.schema import schema_errors

@pytest.fixture(autouse=True)
def no_datadog_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No developer DD_* variable reaches a Datadog test: with a real DD_API_KEY and DD_APP_KEY a sync test
    would otherwise talk to a real account. (Import this fixture into every Datadog test module.)"""
    for var in [v for v in os.environ if v.upper().startswith("DD_")]:
        monkeypatch.delenv(var)


MAX_SENT_BYTES = 512_000
MAX_DECOMPRESSED_BYTES = 5_242_880
FULL_CHECK_SERIES = 1000
SERIES_KEYS = {"metric", "type", "points", "tags", "unit", "interval", "resources", "source_type_name", "metadata"}


@dataclass
class Received:
    method: str
    path: str
    status: int
    encoding: str | None
    sent_bytes: int
    body: Any  # decoded JSON (None when absent or undecodable)
    at: float = field(default_factory=time.monotonic)


@dataclass
class _Fault:
    status: int
    headers: dict[str, str]
    remaining: int | None  # None: until healed
    path_prefix: str


class FakeDatadog:
    def __init__(self, api_key: str = "fake-api-key-0123456789", app_key: str = "fake-app-key-9876543210",
                 lifetime_s: float = 120.0, full_check_series: int = FULL_CHECK_SERIES, port: int = 0):
        self.api_key, self.app_key = api_key, app_key
        self.full_check_series = full_check_series
        self.lock = threading.Lock()
        self.received: list[Received] = []
        self.invalid: list[tuple[str, list[str]]] = []
        self.monitors: dict[int, dict] = {}
        self.dashboards: dict[str, dict] = {}
        self.metadata: dict[str, dict] = {}
        self._faults: list[_Fault] = []
        self._hang_s = 0.0
        self._released = threading.Event()
        self._next_id = 1000
        self._connections: set[socket.socket] = set()  # open keep-alive connections, closed by stop()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()  # answers are written in two parts: without this, delayed ACKs add 40 ms each
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with fake.lock:
                    fake._connections.add(self.request)

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake._handle(self, "GET")

            def do_POST(self) -> None:
                fake._handle(self, "POST")

            def do_PUT(self) -> None:
                fake._handle(self, "PUT")

            def do_DELETE(self) -> None:
                fake._handle(self, "DELETE")

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)  # a given port: a second fake after an outage
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-datadog", daemon=True)
        self._timer = threading.Timer(lifetime_s, self.stop)
        self._timer.daemon = True
        self._stopped = False

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> FakeDatadog:
        self._thread.start()
        self._timer.start()
        return self

    def stop(self) -> None:
        with self.lock:
            if self._stopped:
                return
            self._stopped = True
        self._released.set()
        self._timer.cancel()
        self._server.shutdown()
        self._server.server_close()
        with self.lock:  # a stopped intake is gone: its kept-alive connections too, not only the listener
            for conn in self._connections:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def __enter__(self) -> FakeDatadog:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- behaviour ----------------------------------------------------------------------------

    def fail(self, status: int, times: int | None = None, headers: dict[str, str] | None = None,
             path_prefix: str = "/api/v2/series") -> None:
        """Answer `status` (with `headers`) to the next `times` requests under `path_prefix` (None: until heal())."""
        with self.lock:
            self._faults.append(_Fault(status, dict(headers or {}), times, path_prefix))

    def hang(self, seconds: float) -> None:
        """Hold every answer for `seconds` (0 ends it; heal() releases those waiting)."""
        with self.lock:
            self._hang_s = seconds
            self._released.clear()

    def heal(self) -> None:
        with self.lock:
            self._faults.clear()
            self._hang_s = 0.0
        self._released.set()

    # -- what was received --------------------------------------------------------------------

    def requests_to(self, path: str, status: int | None = None) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path and (status is None or r.status == status)]

    def series(self) -> list[dict]:
        """Every series the intake accepted (202), in arrival order."""
        return [s for r in self.requests_to("/api/v2/series", 202) for s in r.body["series"]]

    def points(self) -> list[tuple[str, int, float, int, tuple[str, ...]]]:
        """(metric, timestamp, value, type, tags) of every accepted point, in arrival order."""
        return [(s["metric"], p["timestamp"], p["value"], s.get("type", 0), tuple(s.get("tags", [])))
                for s in self.series() for p in s["points"]]

    def events(self) -> list[dict]:
        return [r.body for r in self.requests_to("/api/v1/events", 202)]

    def writes(self, prefix: str) -> list[Received]:
        """POST/PUT/DELETE requests under `prefix` that succeeded."""
        with self.lock:
            return [r for r in self.received if r.path.startswith(prefix) and r.method != "GET" and r.status < 300]

    # -- the server ---------------------------------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(h.path)
        path = url.path
        raw = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        encoding = h.headers.get("Content-Encoding")
        with self.lock:
            hang = self._hang_s
            fault = next((f for f in self._faults if path.startswith(f.path_prefix)), None)
            if fault is not None and fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
        if hang:
            self._released.wait(hang)
        body, status, headers, answer = None, 200, {}, {}
        try:
            decoded = _decode(raw, encoding)
            body = json.loads(decoded) if decoded else None
        except (OSError, ValueError, zlib.error):
            decoded, status, answer = b"", 400, {"errors": ["Malformed body"]}
        if status == 400:
            pass
        elif h.headers.get("DD-API-KEY") != self.api_key:
            status, answer = 403, {"errors": ["Forbidden"]}
        elif fault is not None:
            status, headers, answer = fault.status, fault.headers, {"errors": [f"fake fault {fault.status}"]}
        else:
            status, answer = self._route(h, method, path, parse_qs(url.query), body, raw, decoded)
        with self.lock:
            self.received.append(Received(method, path, status, encoding, len(raw), body))
        data = json.dumps(answer).encode()
        try:
            h.send_response(status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(data)))
            for k, v in headers.items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
            pass

    def _check_series(self, path: str, body: Any) -> list[str]:
        """MetricPayload through the client's models; beyond `full_check_series` series (the models take about
        0.2 ms a series) the rest get a plain structural check of the same schema, to keep big tests fast."""
        if not isinstance(body, dict) or not isinstance(body.get("series"), list):
            return self._check(path, body, MetricPayload)
        head, rest = body["series"][:self.full_check_series], body["series"][self.full_check_series:]
        problems = schema_errors({**body, "series": head}, MetricPayload)
        for i, s in enumerate(rest, self.full_check_series):
            ok = (isinstance(s, dict) and set(s) <= SERIES_KEYS and isinstance(s.get("metric"), str)
                  and s.get("type", 0) in (0, 1, 2, 3) and all(isinstance(t, str) for t in s.get("tags", []))
                  and isinstance(s.get("points"), list)
                  and all(set(p) == {"timestamp", "value"} and isinstance(p["timestamp"], int)
                          and isinstance(p["value"], (int, float)) for p in s["points"]))
            if not ok:
                problems.append(f"$.series[{i}]: does not match the schema")
        if problems:
            with self.lock:
                self.invalid.append((path, problems))
        return problems

    def _check(self, path: str, body: Any, model: type) -> list[str]:
        problems = schema_errors(body, model) if isinstance(body, dict) else ["$: expected a JSON object"]
        if problems:
            with self.lock:
                self.invalid.append((path, problems))
        return problems

    def _route(self, h: BaseHTTPRequestHandler, method: str, path: str, query: dict, body: Any, raw: bytes,
               decoded: bytes) -> tuple[int, Any]:
        if path == "/api/v2/series" and method == "POST":
            if len(raw) > MAX_SENT_BYTES or len(decoded) > MAX_DECOMPRESSED_BYTES:
                return 413, {"errors": ["Payload too large"]}
            problems = self._check_series(path, body)
            return (400, {"errors": problems}) if problems else (202, {"errors": []})
        if path == "/api/v1/events" and method == "POST":
            problems = self._check(path, body, EventCreateRequest)
            if problems:
                return 400, {"errors": problems}
            return 202, {"status": "ok", "event": {**body, "id": self._new_id()}}
        if h.headers.get("DD-APPLICATION-KEY") != self.app_key:
            return 403, {"errors": ["Forbidden (application key)"]}
        parts = path.strip("/").split("/")
        if path == "/api/v1/monitor":
            if method == "GET":
                wanted = [t for q in query.get("monitor_tags", []) for t in q.split(",") if t]
                with self.lock:
                    found = [m for m in self.monitors.values() if all(t in m.get("tags", []) for t in wanted)]
                return 200, found
            if method == "POST":
                problems = self._check(path, body, Monitor)
                if problems:
                    return 400, {"errors": problems}
                return 200, self._store_monitor(self._new_id(), body)
        if parts[:3] == ["api", "v1", "monitor"] and len(parts) == 4 and parts[3].isdigit():
            ident = int(parts[3])
            with self.lock:
                current = self.monitors.get(ident)
            if current is None:
                return 404, {"errors": ["Monitor not found"]}
            if method == "GET":
                return 200, current
            if method == "PUT":
                problems = self._check(path, body, MonitorUpdateRequest)
                if problems:
                    return 400, {"errors": problems}
                merged = {**current, **body, "options": {**current.get("options", {}), **body.get("options", {})}}
                return 200, self._store_monitor(ident, merged)
            if method == "DELETE":
                with self.lock:
                    del self.monitors[ident]
                return 200, {"deleted_monitor_id": ident}
        if path == "/api/v1/dashboard":
            if method == "GET":
                with self.lock:
                    summaries = [{k: d[k] for k in ("id", "title", "description", "layout_type", "url")}
                                 for d in self.dashboards.values()]
                return 200, {"dashboards": summaries}
            if method == "POST":
                problems = self._check(path, body, Dashboard)
                if problems:
                    return 400, {"errors": problems}
                return 200, self._store_dashboard(f"abc-{self._new_id()}", body)
        if parts[:3] == ["api", "v1", "dashboard"] and len(parts) == 4:
            with self.lock:
                current = self.dashboards.get(parts[3])
            if current is None:
                return 404, {"errors": ["Dashboard not found"]}
            if method == "GET":
                return 200, current
            if method == "PUT":
                problems = self._check(path, body, Dashboard)
                if problems:
                    return 400, {"errors": problems}
                return 200, self._store_dashboard(parts[3], body)
        return 404, {"errors": [f"no such fake route {method} {path}"]}

    def _new_id(self) -> int:
        with self.lock:
            self._next_id += 1
            return self._next_id

    def _store_monitor(self, ident: int, body: dict) -> dict:
        """What Datadog keeps: the body plus its defaults, ids and state (so syncs must compare subsets)."""
        options = {"notify_audit": False, "silenced": {}, "new_host_delay": 300, "include_tags": True,
                   **body.get("options", {})}
        if "thresholds" in options:
            options["thresholds"] = {k: float(v) for k, v in options["thresholds"].items()}
        stored = {**body, "id": ident, "options": options, "overall_state": "No Data", "multi": " by " in body.get("query", ""),
                  "created": "2024-01-01T00:00:00+00:00", "modified": "2024-01-01T00:00:00+00:00", "restricted_roles": None}
        with self.lock:
            self.monitors[ident] = stored
        return stored

    def _store_dashboard(self, ident: str, body: dict) -> dict:
        widgets = [{**w, "id": 7000 + i} for i, w in enumerate(body.get("widgets", []))]
        stored = {**body, "id": ident, "widgets": widgets, "url": f"/dashboard/{ident}/x", "is_read_only": False,
                  "author_handle": "fake@example.com", "created_at": "2024-01-01T00:00:00+00:00",
                  "modified_at": "2024-01-01T00:00:00+00:00"}
        with self.lock:
            self.dashboards[ident] = stored
        return stored


def _decode(raw: bytes, encoding: str | None) -> bytes:
    if encoding == "gzip":
        return gzip.decompress(raw)
    if encoding == "deflate":
        return zlib.decompress(raw)
    return raw


class DemoPolls:
    """Successive snapshots of the demo workspace, one simulated minute apart, without waiting: a real
    simulator over HTTP and a real Poller, with the simulated clock advanced between polls."""

    def __init__(self, **settings: Any):
        from exporter.config import load_settings
        from exporter.pipeline.poller import Poller
        from exporter.pipeline.workspace import WorkspaceAnalysis
        from exporter.simulator import DEMO_TOKEN, SimulatorServer, build_demo_workspace
        from exporter.sources.databricks import DatabricksSource, client_factory

        self.workspace = build_demo_workspace(minute_seconds=60.0)
        self.simulator = SimulatorServer(self.workspace).start()
        self.settings = load_settings(overrides={"request_timeout_seconds": 2, "retry_budget_seconds": 1, **settings})
        source = DatabricksSource(client_factory(2, 1, 8, host=self.simulator.url, token=DEMO_TOKEN, auth_type="pat"))
        self.poller = Poller(source, self.settings,
                             minute_clock=lambda: self.workspace.timestamp_ms(self.workspace.current_minute) / 1000)
        self.workspace_step = WorkspaceAnalysis(self.settings)

    def poll(self, advance: bool = True):
        """Poll once (after moving the simulated clock one minute on, unless `advance` is false)."""
        if advance and self.poller.snapshot.completed_at_s is not None:
            self.workspace.advance(1)
        return self.workspace_step.apply(self.poller.poll())  # as the daemon publishes it

    def close(self) -> None:
        self.poller.close()
        self.simulator.stop()

    def __enter__(self) -> DemoPolls:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
