"""Soak benchmark (`make soak`): a real `serving-exporter run` process polls a simulated workspace
about 1,000 times while faults are injected at random; its resident memory, open file descriptors and
threads must stay flat, and its polls must publish on time.

A simulated workspace (`serving-exporter simulate --endpoints N`) runs in its own process. The exporter
runs as the user runs it (`python -m exporter run`, its own process), so the RSS, file descriptors and
threads read from /proc/<pid> are the daemon's alone. While it polls every `--poll-interval` seconds,
this script, through the simulator's control API (/simulator/v1/...), at every poll it sees and with
probability `--fault-rate` each:

  - gives a random endpoint a fault: HTTP 500, 403 or 429 (Retry-After 1-60 s), a slow answer
    (0.2-20 s, past the poll deadline), a garbage body or an empty one;
  - clears the fault of a random faulted endpoint (so about `--faulted` of them are faulted at once);
  - deletes a random endpoint, or creates a new one (the workspace stays near N endpoints);
  - switches a random endpoint to another traffic preset (error burst, queueing, scale to zero, ...);
  - slows every answer of the workspace (listing included) by 0-300 ms for a while.

The simulated minutes are real minutes, as the platform's: each body changes once a minute (and the polls
in between find the minute they already have), or at once when a fault garbles it. The simulator's clock is
not sped up: its bodies carry sample timestamps, which would then run ahead of the daemon's clock.
Every `--sample-every` seconds the script GETs /metrics (as Prometheus would) and /healthz, and records
each poll it sees (its `exporter_last_poll_timestamp_seconds` and `exporter_poll_duration_seconds`) and the
daemon's VmRSS, open fds (/proc/<pid>/fd) and threads (/proc/<pid>/status).

Printed: a row every `--report-every` polls (RSS, fds, threads, endpoints up, faults active), then the
drift of each resource between the first tenth after warm-up and the last tenth (medians), and the
share of polls that published on time: a poll is on time when it published its snapshot before the next
poll was due (within the interval of its start); a scheduled poll that did not run (the scheduler skips a
run while the previous one is still going) counts as late. Also printed: the share within the poll deadline
(0.8 x interval), at which fetches still running are cut; publishing takes a little after it. Also: the oldest snapshot a scrape was served, non-200
/healthz answers, and tracebacks in the daemon's log.

Goals (PASS/FAIL; exit status 0 only when every goal passes):
  RSS flat:      last-tenth median at most 5 % above the first-tenth median (after 5.5 minutes of polls,
                 when the 5-minute analysis windows are full)
  fds flat:      last-tenth median at most 5 fds above the first-tenth median (connections to the workspace
                 come and go with the faults: fewer is no leak)
  threads flat:  last-tenth median at most 2 threads above the first-tenth median
  on time:       >= 99 % of scheduled polls published before the next was due
  no traceback in the daemon's log, /healthz always 200

    python bench/soak.py [--quick] [--polls 1000] [--endpoints 200] [--poll-interval 1] [--seed 1] ...
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import astuple, dataclass, field
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from simulated import AUTH, clean_environment, free_port, memory_mib, running_process, start_simulator  # noqa: E402

from exporter.catalog import PREFIX  # noqa: E402
from exporter.simulator import DEMO_TOKEN  # noqa: E402

FULL = {"polls": 1000, "endpoints": 200}
QUICK = {"polls": 120, "endpoints": 50}
PRESETS = ("healthy", "healthy", "queueing", "error_burst", "cpu_saturated", "high_qps_no_route_opt", "gpu_idle",
           "scale_to_zero")
RSS_DRIFT_RATIO, FDS_DRIFT, THREADS_DRIFT, ON_TIME_SHARE = 0.05, 5, 2, 0.99
# Before the resource baseline: the first polls read every endpoint's detail, and the analysis windows (5 minutes
# by default) fill; the baseline starts after 5.5 minutes of polls, or half the run when it is shorter.
WARMUP_S = 330
STALL_S = 60  # no new poll for this long: the run stops (a hung daemon is a failure, not a long wait)


@dataclass
class Row:
    poll: int
    elapsed_s: float
    rss_mib: float
    fds: int
    threads: int
    up: int
    endpoints: int
    faulted: int


@dataclass
class Observed:
    polls: dict[float, float] = field(default_factory=dict)  # completed_at -> duration of each poll seen
    rows: list[Row] = field(default_factory=list)
    oldest_snapshot_s: float = 0.0
    health_failures: int = 0
    scrapes: int = 0
    actions: dict[str, int] = field(default_factory=dict)


def process_resources(pid: int) -> tuple[float, int, int]:
    """(VmRSS MiB, open file descriptors, threads) of a process, from /proc."""
    threads = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            threads = int(line.split()[1])
    return memory_mib(pid)["VmRSS"], len(os.listdir(f"/proc/{pid}/fd")), threads


def exporter_figures(text: str) -> dict[str, float]:
    """The exporter's own figures from an exposition (only the few lines this script reads)."""
    found: dict[str, float] = {"polls": 0.0, "up": 0.0, "endpoints": 0.0}
    for line in text.splitlines():
        if not line.startswith(PREFIX):
            continue
        line = line[len(PREFIX):]
        if line.startswith("exporter_polls_total{"):
            found["polls"] += float(line.rsplit(" ", 1)[1])
        elif line.startswith(("exporter_last_poll_timestamp_seconds ", "exporter_poll_duration_seconds ")):
            name, value = line.split(" ", 1)
            found[name] = float(value)
        elif line.startswith("exporter_up{"):
            found["endpoints"] += 1
            found["up"] += float(line.rsplit(" ", 1)[1]) == 1.0
    return found


class Chaos:
    """Random faults through the simulator's control API."""

    def __init__(self, url: str, rng: random.Random, target_endpoints: int, faulted_share: float):
        self.url, self.rng = url, rng
        self.http = requests.Session()
        self.names = self._names()
        self.target = target_endpoints
        self.max_faulted = max(1, int(target_endpoints * faulted_share))
        self.faulted: set[str] = set()
        self.created = 0
        self.delay_until = 0.0
        self.counts: dict[str, int] = {}

    def _names(self) -> list[str]:
        resp = self.http.get(f"{self.url}/api/2.0/serving-endpoints", headers=AUTH, timeout=30)
        resp.raise_for_status()
        return sorted(e["name"] for e in resp.json()["endpoints"])

    def _post(self, path: str, body: dict | None = None, method: str = "POST") -> None:
        self.http.request(method, f"{self.url}/simulator/v1{path}", json=body or {}, timeout=10).raise_for_status()

    def step(self) -> None:
        """One random action; called once per poll seen, with probability fault_rate."""
        rng = self.rng
        if self.delay_until and time.monotonic() > self.delay_until:
            self._post("/settings", {"response_delay_s": 0.0}, "PUT")
            self.delay_until = 0.0
        r = rng.random()
        if r < 0.4 and len(self.faulted) < self.max_faulted:
            name = rng.choice(self.names)
            kind = rng.choice(("http_500", "http_403", "http_429", "timeout", "timeout", "garbage", "empty"))
            self._post(f"/endpoints/{name}/fault", {"kind": kind, "retry_after": rng.randint(1, 60),
                                                     "delay_s": round(rng.uniform(0.2, 20.0), 2)})
            self.faulted.add(name)
            action = f"fault {kind}"
        elif r < 0.7 and self.faulted:
            name = rng.choice(sorted(self.faulted))
            self._post(f"/endpoints/{name}/fault", {"kind": "none"})
            self.faulted.discard(name)
            action = "fault cleared"
        elif r < 0.8:
            if len(self.names) > self.target * 0.95 or rng.random() < 0.5:
                name = rng.choice(self.names)
                self._post(f"/endpoints/{name}", method="DELETE")
                self.names.remove(name)
                self.faulted.discard(name)
                action = "endpoint deleted"
            else:
                self.created += 1
                name = f"soak-new-{self.created}"
                self._post("/endpoints", {"name": name, "preset": rng.choice(PRESETS)})
                self.names.append(name)
                action = "endpoint created"
            if len(self.names) < self.target * 0.95:  # keep the workspace near its size
                self.created += 1
                name = f"soak-new-{self.created}"
                self._post("/endpoints", {"name": name, "preset": rng.choice(PRESETS)})
                self.names.append(name)
        elif r < 0.95:
            name = rng.choice(self.names)
            self._post(f"/endpoints/{name}/scenario", {"preset": rng.choice(PRESETS)}, "PUT")
            action = "preset changed"
        else:
            self._post("/settings", {"response_delay_s": round(rng.uniform(0.0, 0.3), 3)}, "PUT")
            self.delay_until = time.monotonic() + rng.uniform(2, 20)
            action = "workspace slowed"
        self.counts[action] = self.counts.get(action, 0) + 1


def median_of(rows: list[Row], attr: str) -> float:
    return statistics.median(getattr(r, attr) for r in rows)


def soak(args: argparse.Namespace, log_path: Path) -> tuple[Observed, float, int]:
    rng = random.Random(args.seed)
    observed = Observed()
    with start_simulator(args.endpoints) as sim:
        chaos = Chaos(sim.url, rng, args.endpoints, args.faulted)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        os.environ.update(DATABRICKS_HOST=sim.url, DATABRICKS_TOKEN=DEMO_TOKEN)  # the child inherits them
        argv = [sys.executable, "-m", "exporter", "run", "--log-level", "WARNING", "--listen", f"127.0.0.1:{port}",
                "--poll-interval", str(args.poll_interval)]
        with open(log_path, "wb") as log, running_process(argv, f"{url}/healthz", "the exporter", output=log) as proc:
            http = requests.Session()
            started = time.monotonic()
            first_polls = None
            last_completed, last_seen = None, started
            next_row = next_print = 0
            polls = 0.0
            while True:
                time.sleep(args.sample_every)
                now = time.monotonic()
                if proc.poll() is not None:
                    raise SystemExit(f"soak: the exporter exited with status {proc.returncode}; see {log_path}")
                health = http.get(f"{url}/healthz", timeout=10)
                observed.health_failures += health.status_code != 200
                figures = exporter_figures(http.get(f"{url}/metrics", timeout=30).text)
                observed.scrapes += 1
                completed = figures.get("exporter_last_poll_timestamp_seconds")
                if completed is None or completed == last_completed:
                    if now - last_seen > STALL_S:
                        raise SystemExit(f"soak: no new poll published for {STALL_S} s; see {log_path}")
                    if completed is None:
                        continue  # no poll published yet
                observed.oldest_snapshot_s = max(observed.oldest_snapshot_s, time.time() - completed)
                polls = figures["polls"]
                if first_polls is None:
                    first_polls = polls
                if completed != last_completed:
                    last_completed, last_seen = completed, now
                    observed.polls[completed] = figures["exporter_poll_duration_seconds"]
                    if rng.random() < args.fault_rate:
                        chaos.step()
                done = int(polls - first_polls)
                if done >= next_row:
                    rss, fds, threads = process_resources(proc.pid)
                    row = Row(done, now - started, rss, fds, threads, int(figures["up"]), int(figures["endpoints"]),
                              len(chaos.faulted))
                    observed.rows.append(row)
                    if done >= next_print or done >= args.polls:
                        next_print = done + args.report_every
                        print(f"{row.poll:6d} {row.elapsed_s:8.0f} {row.rss_mib:8.1f} {row.fds:5d} {row.threads:7d} "
                              f"{row.up:5d}/{row.endpoints:<5d} {row.faulted:7d}", flush=True)
                    next_row = done + max(1, args.polls // 200)  # about 200 resource samples a run
                if done >= args.polls:
                    break
            observed.actions = chaos.counts
            return observed, args.poll_interval * 0.8, int(polls - first_polls)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help=f"a short run: {QUICK['polls']} polls of {QUICK['endpoints']} endpoints")
    parser.add_argument("--polls", type=int, help=f"polls to run (default {FULL['polls']})")
    parser.add_argument("--endpoints", type=int, help=f"simulated endpoints (default {FULL['endpoints']})")
    parser.add_argument("--poll-interval", type=float, default=1.0,
                        help="the exporter's poll interval in seconds (default 1, the smallest it accepts)")
    parser.add_argument("--fault-rate", type=float, default=0.5,
                        help="probability of one random action at each poll seen (default 0.5)")
    parser.add_argument("--faulted", type=float, default=0.1,
                        help="most endpoints faulted at once, as a share of --endpoints (default 0.1)")
    parser.add_argument("--sample-every", type=float, default=0.25,
                        help="seconds between two scrapes of /metrics and /healthz (default 0.25)")
    parser.add_argument("--report-every", type=int, default=50, help="print a row every this many polls (default 50)")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the faults (default 1)")
    parser.add_argument("--log", metavar="FILE", help="the daemon's log (default: a temporary file, kept on failure)")
    parser.add_argument("--csv", metavar="FILE", help="write every resource sample (about 200 a run) to this CSV file")
    args = parser.parse_args(argv)
    preset = QUICK if args.quick else FULL
    args.polls = args.polls or preset["polls"]
    args.endpoints = args.endpoints or preset["endpoints"]
    clean_environment()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the simulator and the daemon on the way out

    log_path = Path(args.log or tempfile.mkstemp(prefix="soak-exporter-", suffix=".log")[1])
    print(f"soak: {args.polls} polls of {args.endpoints} simulated endpoints every {args.poll_interval:g} s, "
          f"fault rate {args.fault_rate:g} per poll (seed {args.seed})")
    print(f"{'poll':>6} {'elapsed':>8} {'RSS MiB':>8} {'fds':>5} {'threads':>7} {'up/endpoints':>11} {'faulted':>7}")
    observed, deadline_s, polls = soak(args, log_path)
    return report(args, observed, deadline_s, polls, log_path)


def report(args: argparse.Namespace, observed: Observed, deadline_s: float, polls: int, log_path: Path) -> int:
    if args.csv:
        with open(args.csv, "w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(Row.__dataclass_fields__)
            writer.writerows(astuple(r) for r in observed.rows)
    warmup = min(args.polls // 2, int(WARMUP_S / args.poll_interval))
    rows = [r for r in observed.rows if r.poll >= warmup]
    tenth = max(1, len(rows) // 10)
    first, last = rows[:tenth], rows[-tenth:]
    goals: list[tuple[str, bool]] = []
    print("\nresource      first tenth   last tenth    drift   (medians after the first "
          f"{warmup} polls, when the windows are full; min-max over the run)")
    for attr, unit, limit, relative in (("rss_mib", "MiB", RSS_DRIFT_RATIO, True), ("fds", "", FDS_DRIFT, False),
                                        ("threads", "", THREADS_DRIFT, False)):
        a, b = median_of(first, attr), median_of(last, attr)
        drift = b - a
        passed = drift <= (limit * a if relative else limit)  # growth is a leak; fewer pooled connections is not
        values = [getattr(r, attr) for r in observed.rows]
        print(f"{attr:<12} {a:10.1f} {unit:3} {b:9.1f} {unit:3} {drift:+8.1f} ({drift / a:+.1%})   "
              f"min {min(values):g} max {max(values):g}   {'PASS' if passed else 'FAIL'}")
        goals.append((f"{attr} flat", passed))

    # Polls seen one by one: a scheduled poll that did not run counts as late.
    completed = sorted(observed.polls)
    first_start = completed[0] - observed.polls[completed[0]]
    slots = max(len(completed), int((completed[-1] - first_start) / args.poll_interval) + 1)
    on_time = sum(1 for c in completed if observed.polls[c] <= args.poll_interval)
    within_deadline = sum(1 for c in completed if observed.polls[c] <= deadline_s)
    durations = sorted(observed.polls.values())
    share = on_time / slots
    print(f"\npolls: {polls} completed, {len(completed)} seen by the scrapes, {slots} scheduled in that time; "
          f"published before the next was due: {on_time} ({share:.1%} of the scheduled polls); "
          f"within the {deadline_s:g} s fetch deadline: {within_deadline} ({within_deadline / slots:.1%})")
    print(f"poll duration: median {statistics.median(durations):.3f} s, p99 {durations[int(0.99 * (len(durations) - 1))]:.3f} s, "
          f"max {durations[-1]:.3f} s; oldest snapshot served to a scrape: {observed.oldest_snapshot_s:.2f} s")
    goals.append(("polls on time", share >= ON_TIME_SHARE))
    tracebacks = log_path.read_text(errors="replace").count("Traceback")
    print(f"scrapes: {observed.scrapes}, /healthz not 200: {observed.health_failures}; "
          f"tracebacks in the daemon's log: {tracebacks} ({log_path})")
    goals.append(("healthz always 200", observed.health_failures == 0))
    goals.append(("no traceback", tracebacks == 0))
    print("faults injected: " + ", ".join(f"{k} {v}" for k, v in sorted(observed.actions.items())))
    failed = [label for label, passed in goals if not passed]
    print(f"\n{len(goals) - len(failed)} of {len(goals)} goals pass" + (f"; FAIL: {', '.join(failed)}" if failed else ""))
    if not failed and not args.log:
        log_path.unlink()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
