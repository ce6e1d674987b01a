"""Helpers shared by the benchmarks: a simulated workspace in its own process (so it does not share the
benchmark's GIL or CPU accounting), starting and stopping helper processes, and reading a process's CPU
time and memory from /proc."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import requests

from exporter.simulator import DEMO_TOKEN

AUTH = {"Authorization": f"Bearer {DEMO_TOKEN}"}
_TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_environment() -> None:
    """Drop DATABRICKS_* and SERVING_EXPORTER_* variables so the caller's own setup does not leak in."""
    for var in [v for v in os.environ if v.startswith(("DATABRICKS_", "SERVING_EXPORTER_"))]:
        del os.environ[var]


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU of a whole process (all its threads) so far, from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "; comm may hold spaces
    return (int(fields[11]) + int(fields[12])) * _TICK_S  # utime, stime: fields 14 and 15 of stat


def memory_mib(pid: int | str = "self") -> dict[str, float]:
    """VmRSS (current resident set) and VmHWM (its peak) in MiB, from /proc/<pid>/status."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0]) / 1024  # reported in kB
    return found


def stop_process(proc: subprocess.Popen, timeout_s: float = 10) -> None:
    """Terminate, wait, and kill when it does not stop in time."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout_s)


@contextmanager
def running_process(argv: Sequence[str], ready_url: str, what: str, output: IO | int = subprocess.DEVNULL,
                    timeout_s: float = 60) -> Iterator[subprocess.Popen]:
    """Start argv, wait until ready_url answers (any HTTP status), and stop the process on leaving."""
    proc = subprocess.Popen(list(argv), stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                requests.get(ready_url, timeout=1)
                break
            except requests.RequestException:
                if proc.poll() is not None:
                    raise SystemExit(f"{what} exited with status {proc.returncode} before it was ready") from None
                if time.monotonic() > deadline:
                    raise SystemExit(f"{what} did not answer {ready_url} within {timeout_s:g} s") from None
                time.sleep(0.2)
        yield proc
    finally:
        stop_process(proc)


@dataclass
class Simulator:
    url: str
    proc: subprocess.Popen

    @property
    def host_port(self) -> str:
        return self.url.removeprefix("http://")

    def names(self) -> list[str]:
        resp = requests.get(f"{self.url}/api/2.0/serving-endpoints", headers=AUTH, timeout=30)
        resp.raise_for_status()
        return [e["name"] for e in resp.json()["endpoints"]]

    def metrics_path(self, name: str) -> str:
        return f"/api/2.0/serving-endpoints/{name}/metrics"

    def set_delay(self, rtt_ms: float) -> None:
        requests.put(f"{self.url}/simulator/v1/settings", json={"response_delay_s": rtt_ms / 1000},
                     timeout=5).raise_for_status()

    def advance_minute(self) -> None:
        """Publish the next simulated minute now (its clock moves one minute ahead)."""
        requests.post(f"{self.url}/simulator/v1/advance", json={"minutes": 1}, timeout=30).raise_for_status()

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.proc.pid)


@contextmanager
def start_simulator(endpoints: int, rtt_ms: float = 0.0) -> Iterator[Simulator]:
    port = free_port()
    argv = [sys.executable, "-m", "exporter", "simulate", "--endpoints", str(endpoints),
            "--listen", f"127.0.0.1:{port}", "--log-level", "WARNING"]
    url = f"http://127.0.0.1:{port}"
    with running_process(argv, f"{url}/simulator/v1/endpoints", "the simulator") as proc:
        sim = Simulator(url, proc)
        sim.set_delay(rtt_ms)
        yield sim
