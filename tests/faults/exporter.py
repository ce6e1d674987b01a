"""A real `serving-exporter run` process for the fault tests, against the fake workspace (platform.py):
start it, read its /metrics and JSON API, wait for polls, stop it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import requests
from prometheus_client.parser import text_string_to_metric_families

from . import platform as p

ROOT = Path(__file__).resolve().parents[2]
POLL_S = 3.0
TIMEOUT_S = 2.0  # each request; a 1 s one was too tight for a busy 2-core CI machine



@dataclass
class Stack:
    platform: p.Platform
    proc: subprocess.Popen
    url: str
    log_path: Path

    def get(self, path: str) -> requests.Response:
        return requests.get(self.url + path, timeout=10)

    def snapshot(self) -> dict:
        return self.get("/api/v1/endpoints").json()

    def endpoints(self) -> dict[str, dict]:
        return {e["name"]: e for e in self.snapshot()["endpoints"]}

    def samples(self) -> dict[tuple[str, frozenset], float]:
        text = self.get("/metrics").text
        return {(s.name, frozenset(s.labels.items())): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    def wait_polls(self, n: int, timeout_s: float = 60) -> dict:
        """Wait until `n` more polls have completed; the last snapshot."""
        start = self.snapshot()["completed_at"] or 0
        deadline = time.monotonic() + timeout_s
        seen = 0
        last = start
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"the exporter exited with {self.proc.returncode}:\n{self.log()}"
            snap = self.snapshot()
            if snap["completed_at"] and snap["completed_at"] > last:
                last, seen = snap["completed_at"], seen + 1
                if seen >= n:
                    return snap
            time.sleep(0.2)
        raise AssertionError(f"{n} polls did not complete within {timeout_s}s")

    def wait_until(self, condition: Callable[[dict[str, dict]], bool], what: str, timeout_s: float = 60) -> dict[str, dict]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"the exporter exited with {self.proc.returncode}:\n{self.log()}"
            endpoints = self.endpoints()
            if condition(endpoints):
                return endpoints
            time.sleep(0.2)
        raise AssertionError(f"not reached within {timeout_s}s: {what}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_exporter(platform: p.Platform, log_path: Path, poll_s: float = POLL_S, env: dict[str, str] | None = None,
                   wait_for: str = "/readyz", preexec_fn: Callable[[], None] | None = None) -> Stack:
    """`preexec_fn` runs in the child before the exporter (e.g. a resource limit); the log then goes through a
    pipe copied by this process, so that a limit on the child's file writes does not cut its log."""
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "SERVING_EXPORTER_", "DD_"))}
    environ.update({"DATABRICKS_HOST": platform.url, "DATABRICKS_TOKEN": p.TOKEN, "PYTHONUNBUFFERED": "1",
                    "SERVING_EXPORTER_REQUEST_TIMEOUT_SECONDS": str(TIMEOUT_S),
                    "SERVING_EXPORTER_RETRY_BUDGET_SECONDS": "1", **(env or {})})
    log = log_path.open("w")
    proc = subprocess.Popen([sys.executable, "-m", "exporter", "run", "--listen", f"127.0.0.1:{port}",
                             "--poll-interval", str(poll_s)], cwd=ROOT, env=environ,
                            stdout=subprocess.PIPE if preexec_fn else log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, preexec_fn=preexec_fn)
    if preexec_fn:
        threading.Thread(target=_copy, args=(proc.stdout, log), daemon=True).start()
    stack = Stack(platform, proc, f"http://127.0.0.1:{port}", log_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the exporter exited with {proc.returncode}:\n{stack.log()}"
        try:
            if stack.get(wait_for).status_code == 200:
                return stack
        except requests.RequestException:
            pass
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"the exporter was not ready within 60 s:\n{stack.log()}")


def _copy(source: IO[bytes], sink: IO[str]) -> None:
    for line in source:
        sink.write(line.decode(errors="replace"))
        sink.flush()


def stop(stack: Stack) -> None:
    if stack.proc.poll() is None:
        stack.proc.terminate()
        try:
            stack.proc.wait(30)
        except subprocess.TimeoutExpired:
            stack.proc.kill()
            stack.proc.wait(10)


def assert_no_token(*texts: str) -> None:
    for text in texts:
        assert p.TOKEN not in text and p.TOKEN[4:20] not in text


