"""Helpers for tests/test_alerts.py: the rule generator, and real Prometheus/Alertmanager processes.

Every process is started on a free loopback port chosen at run time and is stopped by the
context manager that started it (terminate, wait, kill as a last resort).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

import requests
import yaml

ROOT = Path(__file__).resolve().parents[1]
ALERTS = ROOT / "alerts"
RULES_DIR = ALERTS / "prometheus"
RULE_TESTS_DIR = RULES_DIR / "tests"
ALERTMANAGER_EXAMPLE = ALERTS / "alertmanager.example.yml"
RUNBOOKS = ROOT / "docs" / "runbooks.md"


def load_generator() -> ModuleType:
    """alerts/generate.py as a module (alerts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("serving_exporter_alerts_generate", ALERTS / "generate.py")
    assert spec and spec.loader
    module = sys.modules.get(spec.name)
    if module is None:
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    return module


def rule_files() -> list[Path]:
    return sorted(RULES_DIR.glob("*.yml"))


def rule_test_files() -> list[Path]:
    return sorted(RULE_TESTS_DIR.glob("*.yml"))


def alerting_rules(path: Path | None = None) -> list[dict]:
    docs = [yaml.safe_load(p.read_text()) for p in ([path] if path else rule_files())]
    return [r for d in docs for g in d["groups"] for r in g["rules"] if "alert" in r]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.2) -> object:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def _ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


@contextlib.contextmanager
def process(args: list[str], log: Path, ready_url: str, timeout: float = 30.0) -> Iterator[subprocess.Popen]:
    """Run `args` until the block ends; wait until `ready_url` answers 200 first."""
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            while not _ok(ready_url):
                if proc.poll() is not None:
                    raise AssertionError(f"{args[0]} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
                if time.monotonic() > deadline:
                    raise AssertionError(f"{args[0]} not ready after {timeout}s:\n{log.read_text()[-3000:]}")
                time.sleep(0.1)
            yield proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)


@dataclass
class Notification:
    at: float  # time.monotonic() when received
    receiver: str  # the path the receiver was configured with: pager or ticket
    payload: dict

    def alerts(self) -> list[dict]:
        return self.payload.get("alerts", [])


@dataclass
class WebhookReceiver:
    """Alertmanager webhook receiver on a free loopback port; receiver name = URL path."""

    notifications: list[Notification] = field(default_factory=list)

    def __post_init__(self) -> None:
        lock = threading.Lock()
        received = self.notifications

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with lock:
                    received.append(Notification(time.monotonic(), self.path.strip("/"), json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._lock = lock
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def snapshot(self) -> list[Notification]:
        with self._lock:
            return list(self.notifications)

    def first(self, receiver: str, alertname: str, endpoint: str, status: str = "firing") -> Notification | None:
        """The first notification to `receiver` that carries that alert in that status."""
        for n in self.snapshot():
            if n.receiver == receiver and any(
                    a["labels"].get("alertname") == alertname and a["labels"].get("serving_endpoint") == endpoint
                    and a["status"] == status for a in n.alerts()):
                return n
        return None

    def alerts(self, receiver: str | None = None) -> list[dict]:
        return [a for n in self.snapshot() if receiver is None or n.receiver == receiver for a in n.alerts()]


def alertmanager_config(example: Path, webhook: str) -> dict:
    """The example routing with every receiver replaced by a webhook to `webhook`/<receiver name>,
    and 1-second grouping so the test sees notifications promptly."""
    config = yaml.safe_load(example.read_text())
    config["receivers"] = [{"name": r["name"], "webhook_configs": [{"url": f"{webhook}/{r['name']}", "send_resolved": True}]}
                           for r in config["receivers"]]

    def fast(route: dict) -> None:
        route.update(group_wait="1s", group_interval="1s")
        for child in route.get("routes", []):
            fast(child)

    fast(config["route"])
    return config


@contextlib.contextmanager
def alertmanager(binary: str, config: dict, tmp: Path) -> Iterator[str]:
    (tmp / "alertmanager.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [binary, f"--config.file={tmp / 'alertmanager.yml'}", f"--storage.path={tmp / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="]
    with process(args, tmp / "alertmanager.log", f"{url}/-/ready"):
        yield url


@contextlib.contextmanager
def prometheus(binary: str, rules: list[Path], target: str, alertmanager_url: str, tmp: Path,
               interval: str = "1s") -> Iterator[str]:
    config = {
        "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
        "rule_files": [str(p) for p in rules],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager_url.removeprefix("http://")]}]}]},
        "scrape_configs": [{"job_name": "serving-exporter-e2e", "static_configs": [{"targets": [target]}]}],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [binary, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'prom-data'}",
            f"--web.listen-address=127.0.0.1:{port}"]
    with process(args, tmp / "prometheus.log", f"{url}/-/ready"):
        yield url


def query(prometheus_url: str, expr: str) -> list[dict]:
    answer = requests.get(f"{prometheus_url}/api/v1/query", params={"query": expr}, timeout=5).json()
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


@contextlib.contextmanager
def exporter_daemon(workspace) -> Iterator[tuple[str, object]]:
    """The simulator serving `workspace` and the exporter daemon polling it every second.

    Yields (simulator URL, daemon). Copies the pattern of tests/test_integration.py's Stack.
    """
    from exporter.config import load_settings
    from exporter.daemon import Daemon
    from exporter.simulator import DEMO_TOKEN, SimulatorServer
    from exporter.sources.databricks import DatabricksSource, client_factory

    simulator = SimulatorServer(workspace).start()
    daemon = None
    try:
        settings = load_settings(overrides=dict(listen="127.0.0.1:0", poll_interval_seconds=1, request_timeout_seconds=2,
                                                retry_budget_seconds=1, max_concurrent_requests=8))
        factory = client_factory(settings.request_timeout_seconds, settings.retry_budget_seconds,
                                 settings.max_concurrent_requests, host=simulator.url, token=DEMO_TOKEN, auth_type="pat")
        daemon = Daemon(settings, DatabricksSource(factory),
                        minute_clock=lambda: workspace.timestamp_ms(workspace.current_minute) / 1000).start()
        assert daemon.wait_ready(15), "no poll completed"
        yield simulator.url, daemon
    finally:
        if daemon is not None:
            daemon.stop()
        simulator.stop()


SELECTOR = re.compile(r"\b(model_serving_[a-z0-9_]+)\{([^}]*)\}")
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')


def selectors(text: str) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """(metric, [(label, op, value)]) for every `metric{...}` selector in PromQL `text`."""
    return [(name, MATCHER.findall(body)) for name, body in SELECTOR.findall(text)]
