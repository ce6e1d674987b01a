"""The side-by-side benchmark (`make bench`): the exporter against a naive loop and a real Prometheus,
all in one run, against one simulated workspace.

A simulated workspace (`serving-exporter simulate --endpoints N`) runs in its own process, adding
`--rtt-ms` to every API call as a remote workspace would. Against it, in this order:

1. naive loop: one `requests.get` after another (a new connection each, no Session) over every
   endpoint's metrics, each body parsed with prometheus_client's text parser.
2. the exporter's poll: the real Poller and Databricks source, `--concurrency` requests at a time;
   one first poll (which also reads every endpoint's detail), then `--polls` later polls that find
   the minute they already have (polls within one platform minute: nothing to parse or analyse
   again), then `--polls` polls that each find a new minute (the simulator publishes one before
   each, unmeasured): median wall and process CPU per poll (the simulator's CPU is another
   process's and is not counted). The goals are judged on the new-minute polls, which parse every
   body as Prometheus parses every scrape. As the daemon, the bench freezes long-lived objects out
   of the garbage collector after the first poll and returns freed heap after each render.
3. the exporter's /metrics and /api/v1/endpoints, served from the poller's snapshot by the HTTP side
   wired as the daemon wires it (Exposition, make_app, HttpServer): the first request after a poll
   (cold) and the median of `--scrapes` more (cached), /metrics plain and gzipped; for /metrics also
   the daemon's Exposition.warm() after a poll and the first request after it.
4. a real Prometheus (the `prometheus` binary on PATH) scraping the same N payloads from the same
   simulator every `--prom-interval` seconds: after a warm-up of two intervals, its CPU over
   `--prom-seconds` (from /proc/<pid>/stat) divided by the scrapes it did then.
5. RSS over a long run: the same poller polls `--rss-polls` times more with no added delay; this
   process's current RSS (VmRSS) after poll `--rss-warm` and at the end.

The simulator's own CPU per API call is printed beside each phase; when it nears one core (it is one
Python process) the simulator, not the client, bounds the wall time.

Goals (PASS/FAIL per line; the exit status is 0 only when every goal passes, printed after all figures):
  poll wall (median new-minute poll)                  <= 1.0 s
  exporter CPU per endpoint / Prometheus CPU per scrape <= 1.0
  cached /metrics scrape (plain and gzip)              <= 20 ms
  RSS at the end of the long run                       <= 150 MiB
  RSS flat: end within +-5 % of the warm value

Flags (defaults; --quick changes those marked *):
  --endpoints N       * simulated endpoints (1000; quick 200)
  --concurrency N       the exporter's max_concurrent_requests (32)
  --rtt-ms MS           delay the simulator adds per API call in phases 1-4 (20)
  --polls N           * later polls measured after the first (5; quick 2)
  --scrapes N           cached GETs per exporter URL after the cold one (10)
  --prom-interval S     Prometheus scrape interval (5)
  --prom-seconds S    * Prometheus measured period after its warm-up (30; quick 15)
  --rss-polls N       * polls in the RSS phase, at 0 ms delay (1000; quick 150)
  --rss-warm N          RSS-phase poll after which the warm RSS is read (100, or half of --rss-polls)
  --quick               a fast smoke run with the smaller defaults above

    python bench/bench.py [--quick] [--endpoints 1000] [--concurrency 32] [--rtt-ms 20] [--polls 5] ...

Needs the `prometheus` binary (Debian: `apt-get install prometheus`).
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import requests
from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).parent))
from simulated import (
    AUTH,
    Simulator,
    clean_environment,
    cpu_seconds,
    free_port,
    memory_mib,
    running_process,
    start_simulator,
)

from exporter.config import load_settings
from exporter.memory import collect_less_often, freeze_long_lived, limit_malloc_arenas, release_free_memory
from exporter.model import Snapshot
from exporter.pipeline.poller import Poller
from exporter.simulator import DEMO_TOKEN
from exporter.sinks.http import HttpServer, make_app
from exporter.sinks.prometheus import Exposition
from exporter.commands import databricks_source

FULL = {"endpoints": 1000, "polls": 5, "rss_polls": 1000, "prom_seconds": 30.0}
QUICK = {"endpoints": 200, "polls": 2, "rss_polls": 150, "prom_seconds": 15.0}

GOAL_POLL_WALL_S = 1.0
GOAL_CPU_VS_PROMETHEUS = 1.0
GOAL_CACHED_SCRAPE_S = 0.020
GOAL_RSS_MIB = 150.0
GOAL_RSS_DRIFT = 0.05
SIM_SATURATED = 0.8  # the simulator's CPU share of one core above which it may bound the wall time


class BenchError(Exception):
    """A measurement could not be trusted (an endpoint down, Prometheus failing): stop and say why."""


# -- measuring ----------------------------------------------------------------------------------------

@dataclass
class Measure:
    """Wall and process CPU of one stretch of work, the simulator's CPU meanwhile, and its API calls."""
    calls: int
    wall: float = 0.0
    cpu: float = 0.0
    sim_cpu: float = 0.0

    @property
    def sim_share(self) -> float:  # of one core
        return self.sim_cpu / self.wall if self.wall else 0.0


@contextmanager
def measure(sim: Simulator, calls: int) -> Iterator[Measure]:
    m = Measure(calls)
    wall, cpu, sim_cpu = time.perf_counter(), time.process_time(), sim.cpu_seconds()
    yield m
    m.wall = time.perf_counter() - wall
    m.cpu = time.process_time() - cpu
    m.sim_cpu = sim.cpu_seconds() - sim_cpu


def median_measure(runs: list[Measure]) -> Measure:
    return Measure(runs[0].calls, statistics.median(r.wall for r in runs), statistics.median(r.cpu for r in runs),
                   statistics.median(r.sim_cpu for r in runs))


def progress(text: str) -> None:
    print(f"  .. {text} [RSS {memory_mib()['VmRSS']:.0f} MiB]", flush=True)


# -- 1. naive baseline --------------------------------------------------------------------------------

def naive_loop(sim: Simulator, names: list[str]) -> Measure:
    """One GET after another, a new connection each, every body parsed."""
    with measure(sim, len(names)) as m:
        for name in names:
            resp = requests.get(sim.url + sim.metrics_path(name), headers=AUTH, timeout=30)
            resp.raise_for_status()
            families = list(text_string_to_metric_families(resp.text))
            if not families:
                raise BenchError(f"naive loop: no metric families in {name}'s body")
    return m


# -- 2. the exporter's poll ---------------------------------------------------------------------------

def make_poller(sim: Simulator, concurrency: int) -> Poller:
    settings = load_settings(overrides={"max_concurrent_requests": concurrency})
    return Poller(databricks_source(settings, host=sim.url, token=DEMO_TOKEN, auth_type="pat"), settings)


def checked_poll(poller: Poller, n: int, what: str) -> Snapshot:
    snap = poller.poll()
    down = [e for e in snap.endpoints if not e.status.up]
    if len(snap.endpoints) != n or down:
        example = f"; e.g. {down[0].info.name}: {down[0].status}" if down else ""
        raise BenchError(f"{what}: {len(snap.endpoints)} endpoints in the snapshot (expected {n}), "
                         f"{len(down)} down{example}")
    return snap


@dataclass
class PollResult:
    first: Measure
    later: list[Measure]  # each poll finds the minute it already has (polls within one platform minute)
    fresh: list[Measure]  # each poll finds a new minute (the platform's every-minute case): parse, store, analyse

    @property
    def median(self) -> Measure:
        return median_measure(self.later)

    @property
    def fresh_median(self) -> Measure:
        return median_measure(self.fresh)


def exporter_polls(sim: Simulator, poller: Poller, n: int, polls: int) -> PollResult:
    with measure(sim, 2 * n + 1) as first:  # the listing, every detail, every endpoint's metrics
        checked_poll(poller, n, "first poll")
    freeze_long_lived()  # as the daemon does after its first poll
    later, fresh = [], []
    for i in range(polls):
        with measure(sim, n + 1) as m:  # the listing and every endpoint's metrics
            checked_poll(poller, n, f"later poll {i + 1}")
        later.append(m)
    for i in range(polls):
        sim.advance_minute()  # outside the measurement: the simulator publishes the next minute
        with measure(sim, n + 1) as m:
            checked_poll(poller, n, f"new-minute poll {i + 1}")
        fresh.append(m)
    return PollResult(first, later, fresh)


# -- 3. the exporter's HTTP side ----------------------------------------------------------------------

@dataclass
class ExporterHttp:
    port: int
    exposition: Exposition


@contextmanager
def exporter_http(poller: Poller) -> Iterator[ExporterHttp]:
    """The HTTP side wired as exporter/daemon.py wires it (the live collectors, the Exposition of the
    poller's snapshot, make_app, HttpServer), on 127.0.0.1:<free port>."""
    def snapshot() -> Snapshot:
        return poller.snapshot

    live = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=live)
    PlatformCollector(registry=live)
    GCCollector(registry=live)
    exposition = Exposition(snapshot, live, poller.settings.series)
    server = HttpServer(make_app(exposition, snapshot), "127.0.0.1", 0).start()
    try:
        yield ExporterHttp(server.port, exposition)
    finally:
        server.stop()


def http_get(port: int, path: str, gzipped: bool = False) -> tuple[float, bytes]:
    """(wall seconds from sending the request to the last body byte, body as sent)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        started = time.perf_counter()
        conn.request("GET", path, headers={"Accept-Encoding": "gzip" if gzipped else "identity"})
        resp = conn.getresponse()
        body = resp.read()
        wall = time.perf_counter() - started
    finally:
        conn.close()
    if resp.status != 200 or not body:
        raise BenchError(f"GET {path}: HTTP {resp.status}, {len(body)} bytes")
    if gzipped and (resp.getheader("Content-Encoding") != "gzip" or not gzip.decompress(body)):
        raise BenchError(f"GET {path} with Accept-Encoding: gzip did not come back gzipped")
    return wall, body


@dataclass
class UrlTiming:
    cold: float                  # the first GET after a poll, nothing rendered yet
    cached: float                # median of the GETs after it
    size: int                    # body as sent
    warm_s: float | None = None  # Exposition.warm() after a poll, as the daemon calls it (/metrics only)
    warmed: float | None = None  # the first GET after a poll and warm()


def time_url(poller: Poller, n: int, web: ExporterHttp, path: str, scrapes: int, gzipped: bool = False) -> UrlTiming:
    """A fresh poll, then the first GET after it (cold) and `scrapes` more (cached); for /metrics also
    another poll followed by the daemon's warm() and the first GET after that."""
    checked_poll(poller, n, f"poll before GET {path}")
    cold, body = http_get(web.port, path, gzipped)
    cached = [http_get(web.port, path, gzipped)[0] for _ in range(scrapes)]
    timing = UrlTiming(cold, statistics.median(cached), len(body))
    if path == "/metrics":
        checked_poll(poller, n, f"poll before warm() and GET {path}")
        started = time.perf_counter()
        web.exposition.warm()
        timing.warm_s = time.perf_counter() - started
        timing.warmed = http_get(web.port, path, gzipped)[0]
    return timing


@dataclass
class HttpResult:
    metrics: UrlTiming
    metrics_gzip: UrlTiming
    api: UrlTiming


def exporter_scrapes(poller: Poller, n: int, web: ExporterHttp, scrapes: int) -> HttpResult:
    return HttpResult(time_url(poller, n, web, "/metrics", scrapes),
                      time_url(poller, n, web, "/metrics", scrapes, gzipped=True),
                      time_url(poller, n, web, "/api/v1/endpoints", scrapes))


# -- 4. a real Prometheus -----------------------------------------------------------------------------

@dataclass
class PromResult:
    version: str
    cpu: float
    period: float
    scrapes: int
    expected: int
    scrape_duration: float  # mean over targets, seconds
    sim: Measure = field(default_factory=lambda: Measure(0))

    @property
    def cpu_per_scrape(self) -> float:
        return self.cpu / self.scrapes


def prometheus_config(sim: Simulator, names: list[str], interval: float) -> dict:
    targets = [{"targets": [sim.host_port], "labels": {"__metrics_path__": sim.metrics_path(name), "instance": name}}
               for name in names]
    return {"global": {"scrape_interval": f"{interval:g}s", "scrape_timeout": f"{interval:g}s"},
            "scrape_configs": [{"job_name": "serving", "authorization": {"credentials": DEMO_TOKEN},
                                "static_configs": targets}]}


def prom_query(base: str, expr: str, at: float) -> float:
    resp = requests.get(f"{base}/api/v1/query", params={"query": expr, "time": f"{at:.3f}"}, timeout=30)
    if resp.status_code != 200:
        raise BenchError(f"Prometheus query {expr}: HTTP {resp.status_code}: {resp.text[:300]}")
    result = resp.json()["data"]["result"]
    if not result:
        raise BenchError(f"Prometheus returned nothing for {expr}")
    return float(result[0]["value"][1])


def prometheus_failure(base: str, log_path: Path) -> str:
    try:
        targets = requests.get(f"{base}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
        bad = [t for t in targets if t["health"] != "up"]
        detail = f"{len(bad)} of {len(targets)} targets not up" + (
            f"; e.g. {bad[0]['labels'].get('instance')}: {bad[0]['lastError'] or bad[0]['health']}" if bad else "")
    except (requests.RequestException, KeyError, ValueError) as exc:
        detail = f"targets not readable: {exc}"
    tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-5:])
    return f"{detail}\nlast lines of {log_path.name}:\n{tail}"


@contextmanager
def prometheus_running(argv: list[str], base: str, log: IO, log_path: Path) -> Iterator[subprocess.Popen]:
    try:
        with running_process(argv, f"{base}/-/ready", "prometheus", output=log) as proc:
            yield proc
    except SystemExit as exc:  # it did not start: say why
        raise BenchError(f"{exc}\n{log_path.read_text(errors='replace')[-2000:]}") from None


def prometheus_scrapes(binary: str, sim: Simulator, names: list[str], interval: float, seconds: float) -> PromResult:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False).stdout
    version = "Prometheus " + (out.split(" version ")[1].split()[0] if " version " in out else "(version unknown)")
    with tempfile.TemporaryDirectory(prefix="serving-bench-prometheus-") as tmp:
        config, log_path = Path(tmp, "prometheus.yml"), Path(tmp, "prometheus.log")
        config.write_text(json.dumps(prometheus_config(sim, names, interval), indent=1))  # JSON is YAML
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        argv = [binary, f"--config.file={config}", f"--storage.tsdb.path={Path(tmp, 'data')}",
                f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]
        with open(log_path, "w") as log, prometheus_running(argv, base, log, log_path) as proc:
            progress(f"{version} up at {base}; warming up for {2 * interval:g} s")
            time.sleep(2 * interval)
            progress(f"measuring Prometheus for {seconds:g} s ({len(names)} targets every {interval:g} s)")
            with measure(sim, 0) as sim_m:
                cpu0, t0 = cpu_seconds(proc.pid), time.time()
                time.sleep(seconds)
                cpu1, t1 = cpu_seconds(proc.pid), time.time()
            period = t1 - t0
            up = prom_query(base, "sum(up)", t1)
            count = prom_query(base, "count(up)", t1)
            if up != len(names) or count != len(names):
                raise BenchError(f"Prometheus: sum(up) = {up:g}, count(up) = {count:g}, expected {len(names)}\n"
                                 + prometheus_failure(base, log_path))
            scrapes = int(prom_query(base, f"sum(count_over_time(up[{round(period * 1000)}ms]))", t1))
            duration = prom_query(base, "avg(scrape_duration_seconds)", t1)
        sim_m.calls = scrapes
        return PromResult(version, cpu1 - cpu0, period, scrapes, round(len(names) * period / interval),
                          duration, sim_m)


# -- 5. RSS over a long run ---------------------------------------------------------------------------

@dataclass
class RssResult:
    warm_at: int
    polls: int
    warm: float
    end: float
    peak: float      # highest VmRSS read after any poll of this phase
    hwm: float       # VmHWM: the process's peak over its whole life
    poll: Measure    # median poll of this phase, at 0 ms delay

    @property
    def drift(self) -> float:
        return self.end / self.warm - 1


def rss_run(sim: Simulator, poller: Poller, exposition: Exposition, n: int, polls: int, warm_at: int) -> RssResult:
    """Poll after poll as the daemon does (each followed by Exposition.warm(), outside the measured poll)."""
    sim.set_delay(0)
    runs, peak, warm = [], 0.0, float("nan")
    started = time.monotonic()
    for i in range(1, polls + 1):
        with measure(sim, n + 1) as m:
            checked_poll(poller, n, f"RSS-phase poll {i}")
        runs.append(m)
        exposition.warm()
        release_free_memory()  # as the daemon does after each poll
        rss = memory_mib()["VmRSS"]
        peak = max(peak, rss)
        if i == warm_at:
            warm = rss
        if i % 100 == 0 or i == polls:
            progress(f"RSS phase: poll {i}/{polls}, RSS {rss:.1f} MiB, {time.monotonic() - started:.0f} s")
    mem = memory_mib()
    return RssResult(warm_at, polls, warm, mem["VmRSS"], peak, mem["VmHWM"], median_measure(runs))


# -- report -------------------------------------------------------------------------------------------

def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.0f} µs"


def size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def sim_cell(m: Measure) -> str:
    if not m.calls:
        return "-"
    flag = "  SATURATED" if m.sim_share >= SIM_SATURATED else ""
    return f"{us(m.sim_cpu / m.calls):>7} {m.sim_share:4.0%}{flag}"


@dataclass
class Goal:
    label: str
    measured: str
    target: str
    passed: bool


def print_tables(args: argparse.Namespace, naive: Measure, polls: PollResult, web: HttpResult, prom: PromResult,
                 rss: RssResult) -> list[Goal]:
    n = args.endpoints
    later, fresh = polls.median, polls.fresh_median
    print(f"\n== {n} endpoints; {args.rtt_ms:g} ms added per API call (phases 1-4); {os.cpu_count()} CPUs ==")
    print("simulator CPU: per API call, and its share of one core meanwhile (one Python process: ~100% is its limit)")
    head = f"{'':<44} {'wall':>9} {'CPU':>9} {'CPU/endpoint':>13}   {'simulator CPU/call, share'}"
    print(head)
    print("-" * len(head))

    def row(label: str, m: Measure, per: int) -> None:
        print(f"{label:<44} {ms(m.wall):>9} {ms(m.cpu):>9} {us(m.cpu / per):>13}   {sim_cell(m)}")

    row("1. naive loop (requests.get + parse)", naive, n)
    row("2. exporter first poll (+ details)", polls.first, n)
    row(f"2. exporter later poll, same minute ({len(polls.later)})", later, n)
    row(f"2. exporter later poll, new minute ({len(polls.fresh)})", fresh, n)
    print(f"{'4. ' + prom.version + ', per scrape':<44} {ms(prom.scrape_duration):>9} {ms(prom.cpu_per_scrape):>9} "
          f"{us(prom.cpu_per_scrape):>13}   {sim_cell(prom.sim)}")
    row(f"5. exporter poll at 0 ms (median of {rss.polls})", rss.poll, n)
    print(f"   Prometheus: {prom.scrapes} scrapes in {prom.period:.1f} s (expected ~{prom.expected}), "
          f"CPU {prom.cpu:.2f} s; its wall = mean scrape_duration_seconds (includes the {args.rtt_ms:g} ms delay)")

    print(f"\n{'exporter HTTP (after a fresh poll)':<44} {'cold':>9} {'cached':>9} {'body':>10} "
          f"{'warm()':>9} {'1st after warm()':>17}")
    for label, t in [("GET /metrics", web.metrics), ("GET /metrics, Accept-Encoding: gzip", web.metrics_gzip),
                     ("GET /api/v1/endpoints", web.api)]:
        warm = f"{ms(t.warm_s):>9} {ms(t.warmed):>17}" if t.warm_s is not None else f"{'-':>9} {'-':>17}"
        print(f"{label:<44} {ms(t.cold):>9} {ms(t.cached):>9} {size(t.size):>10} {warm}")
    print(f"   cold = the first GET after a poll, which renders; cached = median of the {args.scrapes} GETs after it;\n"
          f"   warm() = the daemon's render after a poll (in its poll thread), then the first GET after it; "
          f"gzip body = {web.metrics_gzip.size / web.metrics.size:.1%} of plain")

    print(f"\nRSS (VmRSS of this process): {rss.warm:.1f} MiB after RSS-phase poll {rss.warm_at}, "
          f"{rss.end:.1f} MiB after poll {rss.polls} ({rss.drift:+.1%}); peak read {rss.peak:.1f} MiB, "
          f"VmHWM {rss.hwm:.1f} MiB")

    # Judged on the new-minute polls: every one parses, stores and analyses, as Prometheus parses every scrape.
    cpu_per_endpoint = fresh.cpu / n
    ratio_prom = cpu_per_endpoint / prom.cpu_per_scrape
    goals = [
        Goal("poll wall (median new-minute poll)", ms(fresh.wall), f"<= {ms(GOAL_POLL_WALL_S)}",
             fresh.wall <= GOAL_POLL_WALL_S),
        Goal("exporter CPU/endpoint / Prometheus CPU/scrape", f"{ratio_prom:.2f}x", f"<= {GOAL_CPU_VS_PROMETHEUS:g}x",
             ratio_prom <= GOAL_CPU_VS_PROMETHEUS),
        Goal("cached GET /metrics", ms(web.metrics.cached), f"<= {ms(GOAL_CACHED_SCRAPE_S)}",
             web.metrics.cached <= GOAL_CACHED_SCRAPE_S),
        Goal("cached GET /metrics, gzip", ms(web.metrics_gzip.cached), f"<= {ms(GOAL_CACHED_SCRAPE_S)}",
             web.metrics_gzip.cached <= GOAL_CACHED_SCRAPE_S),
        Goal(f"RSS at the end ({n} endpoints)", f"{rss.end:.1f} MiB", f"<= {GOAL_RSS_MIB:g} MiB",
             rss.end <= GOAL_RSS_MIB),
        Goal(f"RSS flat: poll {rss.polls} vs poll {rss.warm_at}", f"{rss.drift:+.1%}", f"within ±{GOAL_RSS_DRIFT:.0%}",
             abs(rss.drift) <= GOAL_RSS_DRIFT),
    ]
    print(f"\n{'goal':<48} {'measured':>10} {'target':>12}  result")
    for g in goals:
        print(f"{g.label:<48} {g.measured:>10} {g.target:>12}  {'PASS' if g.passed else 'FAIL'}")

    print("\nsummary (ratios)")
    ratios = [("exporter CPU/endpoint / Prometheus CPU/scrape", ratio_prom),
              ("exporter CPU/endpoint / naive CPU/endpoint", fresh.cpu / naive.cpu),
              ("exporter poll wall / naive loop wall", fresh.wall / naive.wall),
              ("same-minute poll CPU / new-minute poll CPU", later.cpu / fresh.cpu),
              ("cached / cold GET /metrics", web.metrics.cached / web.metrics.cold),
              ("cached / cold GET /metrics, gzip", web.metrics_gzip.cached / web.metrics_gzip.cold)]
    for label, value in ratios:
        print(f"  {label:<48} {value:8.3f}")
    saturated = [label for label, m in [("naive loop", naive), ("first poll", polls.first), ("later polls", later),
                                        ("new-minute polls", fresh),
                                        ("poll at 0 ms", rss.poll), ("Prometheus", prom.sim)]
                 if m.calls and m.sim_share >= SIM_SATURATED]
    if saturated:
        print(f"  note: the simulator used >= {SIM_SATURATED:.0%} of a core during: {', '.join(saturated)}; "
              "there it may bound the wall time")
    return goals


# -- main ---------------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=__doc__[__doc__.index("Goals"):],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="fast smoke run: " + ", ".join(f"--{k.replace('_', '-')} {v:g}" for k, v in QUICK.items())
                        + " (flags given explicitly still win)")
    parser.add_argument("--endpoints", type=int, help=f"simulated endpoints (default {FULL['endpoints']})")
    parser.add_argument("--concurrency", type=int, default=32,
                        help="the exporter's max_concurrent_requests (default 32)")
    parser.add_argument("--rtt-ms", type=float, default=20.0,
                        help="delay the simulator adds to every API call in phases 1-4, as a remote workspace's "
                             "round trip (default 20); the RSS phase uses 0")
    parser.add_argument("--polls", type=int, help=f"later polls measured after the first (default {FULL['polls']})")
    parser.add_argument("--scrapes", type=int, default=10,
                        help="cached GETs per exporter URL after the cold one (default 10)")
    parser.add_argument("--prom-interval", type=float, default=5.0, help="Prometheus scrape interval, s (default 5)")
    parser.add_argument("--prom-seconds", type=float,
                        help=f"Prometheus measured period after a warm-up of two intervals, s "
                             f"(default {FULL['prom_seconds']:g})")
    parser.add_argument("--rss-polls", type=int,
                        help=f"polls in the RSS phase, at 0 ms delay (default {FULL['rss_polls']})")
    parser.add_argument("--rss-warm", type=int,
                        help="RSS-phase poll after which the warm RSS is read (default 100, or half of --rss-polls "
                             "when that is smaller)")
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.rss_warm is None:
        args.rss_warm = 100 if args.rss_polls > 100 else max(1, args.rss_polls // 2)
    if args.endpoints < 1 or args.polls < 1 or args.scrapes < 1 or args.rss_polls < 1:
        parser.error("--endpoints, --polls, --scrapes and --rss-polls must be at least 1")
    if not 1 <= args.rss_warm <= args.rss_polls:
        parser.error("--rss-warm must be between 1 and --rss-polls")
    if args.prom_seconds < args.prom_interval:
        parser.error("--prom-seconds must be at least --prom-interval")
    return args


def run(args: argparse.Namespace, prometheus: str) -> list[Goal]:
    n = args.endpoints
    print(f"serving-exporter bench: {n} endpoints, concurrency {args.concurrency}, {args.rtt_ms:g} ms per call, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}", flush=True)
    with start_simulator(n, args.rtt_ms) as sim:
        names = sim.names()
        if len(names) != n:
            raise BenchError(f"the simulator lists {len(names)} endpoints, expected {n}")
        progress(f"simulator at {sim.url} (pid {sim.proc.pid}); 1. naive loop over {n} endpoints")
        naive = naive_loop(sim, names)
        progress(f"naive loop: {ms(naive.wall)} wall; 2. exporter polls")
        poller = make_poller(sim, args.concurrency)
        try:
            polls = exporter_polls(sim, poller, n, args.polls)
            progress(f"polls: first {ms(polls.first.wall)}, later median {ms(polls.median.wall)}; "
                     "3. exporter HTTP")
            with exporter_http(poller) as server:
                web = exporter_scrapes(poller, n, server, args.scrapes)
                progress(f"cached GET /metrics {ms(web.metrics.cached)}; 4. Prometheus")
                prom = prometheus_scrapes(prometheus, sim, names, args.prom_interval, args.prom_seconds)
                progress(f"Prometheus: {ms(prom.cpu_per_scrape)} CPU per scrape; 5. RSS over {args.rss_polls} polls")
                rss = rss_run(sim, poller, server.exposition, n, args.rss_polls, args.rss_warm)
        finally:
            poller.close()
    return print_tables(args, naive, polls, web, prom, rss)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        print("bench: the `prometheus` binary is not on PATH; it is needed to compare against a real Prometheus.\n"
              "Install it (Debian/Ubuntu, as root): apt-get update && apt-get install prometheus", file=sys.stderr)
        return 2
    clean_environment()
    limit_malloc_arenas()  # as the daemon does at start
    collect_less_often()
    try:
        goals = run(args, prometheus)
    except BenchError as exc:
        print(f"\nbench: FAILED: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nbench: interrupted", file=sys.stderr)
        return 130
    failed = [g.label for g in goals if not g.passed]
    print(f"\n{len(goals) - len(failed)} of {len(goals)} goals pass" + (f"; FAIL: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
