"""CPU per metrics call for the HTTP clients the fetch path could use, side by side in one run.

Each candidate fetches every simulated endpoint's /metrics once per round, `--concurrency` at a time,
from the same simulator (its own process, adding `--rtt-ms` per call). Printed: process CPU and wall per
round and per call. Candidates whose package is not installed are skipped (aiohttp, httpx are not
dependencies of the exporter; install them to compare). Then the exporter's own client
(exporter/sources/http.py: pooled keep-alive asyncio connections, httptools' C parser), which runs on
its own loop thread: its CPU is the whole process's, as for the others. Last, the floor: a bare
protocol on the same loop that only writes prebuilt requests and parses the answers, so the client's
own per-call cost (deadline, pool, caps, retries, counting) shows as the difference.

    python bench/http_candidates.py [--endpoints 1000] [--concurrency 16] [--rounds 3] [--rtt-ms 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
import urllib3

sys.path.insert(0, str(Path(__file__).parent))
from simulated import start_simulator  # noqa: E402

from exporter.simulator import DEMO_TOKEN  # noqa: E402

HEADERS = {"Authorization": f"Bearer {DEMO_TOKEN}", "Accept": "text/plain"}


def threads(fetch_one, urls: list[str], concurrency: int) -> None:
    with ThreadPoolExecutor(concurrency) as pool:
        for body in pool.map(fetch_one, urls):
            assert body.startswith(b"# HELP"), body[:80]


def requests_session(urls: list[str], concurrency: int) -> None:
    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=concurrency))
    threads(lambda u: session.get(u, headers=HEADERS, timeout=10).content, urls, concurrency)


_pool: urllib3.PoolManager | None = None


def urllib3_pool(urls: list[str], concurrency: int) -> None:
    global _pool
    _pool = _pool or urllib3.PoolManager(maxsize=concurrency, block=True)
    threads(lambda u: _pool.request("GET", u, headers=HEADERS, timeout=10, retries=False).data, urls, concurrency)


def aiohttp_loop(urls: list[str], concurrency: int) -> None:
    import aiohttp

    async def main() -> None:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
            async def one(u: str) -> None:
                async with session.get(u, headers=HEADERS) as resp:
                    assert (await resp.read()).startswith(b"# HELP")
            await asyncio.gather(*(one(u) for u in urls))
    asyncio.run(main())


def exporter_client(urls: list[str], concurrency: int) -> None:
    from exporter.sources.base import ApiUsage
    from exporter.sources.http import HttpClient

    global _exporter
    _exporter = _exporter or HttpClient(ApiUsage(), pool_size=concurrency, user_agent="bench")

    async def main() -> None:
        deadline = time.monotonic() + 60
        bodies = await asyncio.gather(*(_exporter.fetch(u, HEADERS, call="metrics", timeout_s=10, deadline=deadline,
                                                        max_body=1 << 24) for u in urls))
        assert all(r.body.startswith(b"# HELP") for r in bodies)
    _exporter.run(main(), timeout=120)


_exporter = None


def bare_protocol(urls: list[str], concurrency: int) -> None:
    """The floor for one loop: `concurrency` keep-alive connections, each writing a prebuilt request and parsing
    the answer with httptools; no deadline, retries, pool bookkeeping, decompression, caps or counting. What
    the exporter's client costs above this is its own per-call work. On the exporter's loop (uvloop's)."""
    import httptools

    from exporter.sources.http import new_event_loop

    class Conn(asyncio.Protocol):
        def __init__(self) -> None:
            self.parser = httptools.HttpResponseParser(self)
            self.chunks: list[bytes] = []
            self.done: asyncio.Future | None = None

        def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.parser.feed_data(data)

        def on_body(self, body: bytes) -> None:
            self.chunks.append(body)

        def on_message_complete(self) -> None:
            self.done.set_result(b"".join(self.chunks))  # type: ignore[union-attr]

        def connection_lost(self, exc: Exception | None) -> None:
            if self.done is not None and not self.done.done():
                self.done.set_exception(ConnectionError("closed"))

    host, port = urls[0].split("//")[1].split("/")[0].split(":")
    head = "".join(f"{k}: {v}\r\n" for k, v in HEADERS.items())
    requests_ = [f"GET /{u.split('/', 3)[3]} HTTP/1.1\r\nHost: {host}:{port}\r\n{head}\r\n".encode() for u in urls]

    async def main() -> None:
        loop = asyncio.get_running_loop()
        pending = iter(requests_)

        async def worker() -> None:
            conn = None
            for request in pending:
                for _ in range(3):  # a connection the server closed: once more on a new one
                    if conn is None or conn.transport.is_closing():
                        _, conn = await loop.create_connection(Conn, host, int(port))
                    conn.chunks, conn.done = [], loop.create_future()
                    conn.transport.write(request)
                    try:
                        body = await conn.done
                        break
                    except ConnectionError:
                        conn = None
                assert body.startswith(b"# HELP"), body[:80]
            if conn is not None:
                conn.transport.close()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    loop = new_event_loop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


def httpx_loop(urls: list[str], concurrency: int) -> None:
    import httpx

    async def main() -> None:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(limits=limits) as client:
            async def one(u: str) -> None:
                assert (await client.get(u, headers=HEADERS)).content.startswith(b"# HELP")
            await asyncio.gather(*(one(u) for u in urls))
    asyncio.run(main())


CANDIDATES = {"requests (the SDK's stack)": requests_session, "urllib3 PoolManager, threads": urllib3_pool,
              "aiohttp, one event loop": aiohttp_loop, "httpx async, one event loop": httpx_loop,
              "exporter: asyncio + httptools": exporter_client, "bare protocol (the floor)": bare_protocol}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoints", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rtt-ms", type=float, default=20.0)
    args = parser.parse_args()
    with start_simulator(args.endpoints, args.rtt_ms) as sim:
        urls = [f"{sim.url}/api/2.0/serving-endpoints/{name}/metrics" for name in sim.names()]
        print(f"{len(urls)} calls per round, concurrency {args.concurrency}, {args.rtt_ms:g} ms added per call, "
              f"{os.cpu_count()} CPUs")
        print(f"{'candidate':<32} {'CPU/round':>10} {'wall/round':>11} {'CPU/call':>10}")
        for label, run in CANDIDATES.items():
            try:
                run(urls[:10], args.concurrency)  # warm up: connections, imports
            except ImportError:
                print(f"{label:<32} (not installed)")
                continue
            cpu, wall = [], []
            for _ in range(args.rounds):
                c, w = time.process_time(), time.perf_counter()
                run(urls, args.concurrency)
                cpu.append(time.process_time() - c)
                wall.append(time.perf_counter() - w)
            c, w = sorted(cpu)[len(cpu) // 2], sorted(wall)[len(wall) // 2]
            print(f"{label:<32} {c:>9.3f}s {w:>10.3f}s {c / len(urls) * 1e6:>8.0f}µs")


if __name__ == "__main__":
    main()
