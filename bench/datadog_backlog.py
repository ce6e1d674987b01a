"""What a Datadog intake outage costs the exporter: the figures of docs/datadog.md, "Outage figures".

    .venv/bin/python bench/datadog_backlog.py [--endpoints 1000] [--minutes 30]

1. Polls a simulated workspace of N endpoints (the real simulator, Poller and Translator) for three
   minutes, and takes the points of the last (a steady-state minute: per-minute counts, not totals).
2. Packs them as the sink does (gzip-compressed v2 bodies within the intake's limits): bodies, bytes,
   bytes a point and an endpoint-minute, and the CPU to pack a minute. Beside it, the memory the same
   minute took as Point objects (the representation before the backlog).
3. Holds `--minutes` minutes of them in a backlog (the minute's points, restamped one minute apart):
   its memory (tracemalloc: bodies and bookkeeping), then the same backlog spilled to a directory
   (the disk blocks used).
4. Drains that backlog into a local intake that accepts every body (no decoding, so only the
   exporter's own cost is measured): requests and wall time. The real intake adds the network: the
   bytes at the uplink's speed plus one round trip per request (the sink sends one at a time).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import socket
import sys
import tempfile
import threading
import time
import tracemalloc
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from exporter.config import load_settings  # noqa: E402
from exporter.pipeline.poller import Poller  # noqa: E402
from exporter.pipeline.workspace import WorkspaceAnalysis  # noqa: E402
from exporter.simulator import DEMO_TOKEN, SimulatorServer  # noqa: E402
from exporter.simulator.demo import build_synthetic_workspace  # noqa: E402
from exporter.sinks.datadog.backlog import Backlog  # noqa: E402
from exporter.sinks.datadog.points import Point, Translator  # noqa: E402
from exporter.sinks.datadog.settings import DatadogSettings  # noqa: E402
from exporter.sinks.datadog.sink import DatadogSink, DatadogTarget, pack  # noqa: E402
from exporter.sources.databricks import DatabricksSource, client_factory  # noqa: E402


def minute_of_points(endpoints: int) -> tuple[list[Point], int]:
    """The points of a steady-state minute, and the memory they take as the Translator makes them."""
    workspace = build_synthetic_workspace(endpoints, minute_seconds=60.0)
    simulator = SimulatorServer(workspace).start()
    settings = load_settings(overrides={"request_timeout_seconds": 30, "retry_budget_seconds": 5})
    source = DatabricksSource(client_factory(16, 1, 32, host=simulator.url, token=DEMO_TOKEN, auth_type="pat"))
    poller = Poller(source, settings, minute_clock=lambda: workspace.timestamp_ms(workspace.current_minute) / 1000)
    step, translator = WorkspaceAnalysis(settings), Translator()
    try:
        for i in range(3):
            if i:
                workspace.advance(1)
            snapshot = step.apply(poller.poll())
            gc.collect()
            tracemalloc.start()
            points, _ = translator.translate(snapshot)
            gc.collect()
            as_objects = tracemalloc.get_traced_memory()[0]  # what outlives the call: the points
            tracemalloc.stop()
    finally:
        poller.close()
        simulator.stop()
    return points, as_objects


def restamped(points: list[Point], minutes: int) -> list[Point]:
    return [dataclasses.replace(p, timestamp=p.timestamp + 60 * minutes) for p in points]


class _Accept(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()  # without it, delayed ACKs add 40 ms to each answer
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(202)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoints", type=int, default=1000, help="simulated endpoints (1000)")
    parser.add_argument("--minutes", type=int, default=30, help="minutes of outage to hold and drain (30)")
    args = parser.parse_args()
    n, minutes = args.endpoints, args.minutes

    points, as_objects = minute_of_points(n)
    per_em = 1 / n  # per endpoint-minute
    print(f"{n} endpoints: {len(points)} points a minute ({len(points) * per_em:.0f} per endpoint-minute)")
    print(f"as Point objects:   {as_objects / len(points):.0f} B a point, {as_objects * per_em / 1024:.1f} KiB an endpoint-minute")

    started = time.process_time()
    payloads = pack(points)
    pack_cpu = time.process_time() - started
    body = sum(len(p.body) for p in payloads)
    print(f"packed:             {len(payloads)} bodies a minute, {body / 1e3:.0f} kB, {body / len(points):.1f} B a point, "
          f"{body * per_em:.0f} B an endpoint-minute; packing took {pack_cpu:.2f} s CPU")

    payloads = [payload for m in range(minutes) for payload in pack(restamped(points, m))]
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    backlog = Backlog(10**12, lambda reason, k: None)
    for p in payloads:  # copies of the bodies, so that the memory they take is traced
        backlog.append(dataclasses.replace(p, body=bytes(memoryview(p.body))))
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    print(f"{minutes} minutes in memory: {held / 2**20:.1f} MiB ({held / (minutes * n):.0f} B an endpoint-minute, "
          f"{held / backlog.points:.1f} B a point); {len(backlog)} bodies")

    with tempfile.TemporaryDirectory() as tmp:
        spill = Backlog(1, lambda reason, k: None, Path(tmp), 10**12)
        for payload in payloads:
            spill.append(payload)
        blocks = sum(os.stat(e.path).st_blocks * 512 for e in os.scandir(tmp) if e.name.endswith(".json.gz"))
        print(f"{minutes} minutes spilled:   {blocks / 2**20:.1f} MiB on disk ({blocks / (minutes * n):.0f} B an endpoint-minute), "
              f"{sum(1 for e in os.scandir(tmp) if e.name.endswith('.json.gz'))} files")
        spill.close()

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Accept)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sink = DatadogSink(DatadogSettings(events=False), DatadogTarget("bench-key", f"http://127.0.0.1:{server.server_address[1]}"),
                       clock=lambda: points[0].timestamp + 60 * minutes)
    for payload in payloads:
        sink.backlog.append(payload)
    sent = sink.backlog.points
    started, cpu = time.monotonic(), time.process_time()
    while sink.step() is not None:
        pass
    wall, cpu = time.monotonic() - started, time.process_time() - cpu
    requests = sum(sink.requests.values())
    print(f"drain of {minutes} minutes: {requests} requests, {sink.payload_bytes['series'] / 1e6:.1f} MB, {sent} points "
          f"in {wall:.1f} s ({cpu:.1f} s CPU) to a local intake; dropped {sink.points['dropped']}")
    server.shutdown()


if __name__ == "__main__":
    main()
