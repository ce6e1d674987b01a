"""Poll duration for a large simulated workspace, against a sequential baseline in the same run.

Starts `serving-exporter simulate --endpoints N` in its own process (so the simulator does
not share our GIL), then polls it with the real Databricks source at several concurrency
levels. Concurrency 1 is the baseline: one request after another, as one scrape job per
endpoint would do. The first poll also reads every endpoint's detail; later polls read
only metrics (details are refreshed every `detail_refresh_seconds`).

    python bench/poll_bench.py [--endpoints 1000] [--concurrency 1,16,32] [--polls 3] [--rtt-ms 50]
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import subprocess
import sys
import time

import requests
from prometheus_client import CollectorRegistry, generate_latest

from exporter.sinks.prometheus import ServingCollector
from exporter.config import load_settings
from exporter.pipeline.poller import Poller
from exporter.simulator import DEMO_TOKEN
from exporter.sources.databricks import DatabricksSource, client_factory


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_simulator(n: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "exporter", "simulate", "--endpoints", str(n),
                             "--listen", f"127.0.0.1:{port}", "--log-level", "WARNING"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            requests.get(f"{url}/simulator/v1/endpoints", timeout=1)
            return proc, url
        except requests.RequestException:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("simulator did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoints", type=int, default=1000, help="simulated endpoints (default 1000, the workspace maximum)")
    parser.add_argument("--concurrency", default="1,16,32", help="comma-separated max_concurrent_requests values")
    parser.add_argument("--polls", type=int, default=3, help="polls per concurrency level (default 3, at least 2)")
    parser.add_argument("--rtt-ms", type=float, default=50.0,
                        help="round trip the simulator adds to every API call, as to a remote workspace (default 50)")
    args = parser.parse_args()
    for var in [v for v in os.environ if v.startswith(("DATABRICKS_", "SERVING_EXPORTER_"))]:
        del os.environ[var]

    proc, url = start_simulator(args.endpoints)
    try:
        requests.put(f"{url}/simulator/v1/settings", json={"response_delay_s": args.rtt_ms / 1000}, timeout=5).raise_for_status()
        print(f"{args.endpoints} endpoints, simulator at {url} adding {args.rtt_ms:g} ms per call, {os.cpu_count()} CPUs")
        print(f"{'concurrency':>11} {'poll 1 (detail+metrics)':>24} {'later polls (metrics)':>22} {'render /metrics':>16} {'exposition':>11}")
        for concurrency in [int(c) for c in args.concurrency.split(",")]:
            # No poll deadline: the sequential baseline must finish its poll to be measured.
            settings = load_settings(overrides={"max_concurrent_requests": concurrency, "request_timeout_seconds": 30,
                                                "poll_deadline_seconds": 3600})
            factory = client_factory(30, 30, concurrency, host=url, token=DEMO_TOKEN, auth_type="pat")
            poller = Poller(DatabricksSource(factory), settings)
            durations = []
            try:
                for _ in range(args.polls):
                    snap = poller.poll()
                    assert len(snap.endpoints) == args.endpoints and all(e.status.up for e in snap.endpoints)
                    durations.append(snap.poll_duration_s)
            finally:
                poller.close()
            registry = CollectorRegistry()
            registry.register(ServingCollector(lambda: poller.snapshot))
            started = time.perf_counter()
            text = generate_latest(registry)
            render_s = time.perf_counter() - started
            later = sorted(durations[1:]) or [float("nan")]
            print(f"{concurrency:>11} {durations[0]:>23.2f}s {later[len(later) // 2]:>21.2f}s {render_s:>15.3f}s "
                  f"{len(text) / 1e6:>9.2f}MB")
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"exporter process peak RSS: {rss:.0f} MiB (includes every poller above)")
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
