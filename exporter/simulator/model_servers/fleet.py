"""A simulated self-hosted endpoint: N replicas of one server shape on the simulator's clock.

Time: a simulated minute passes every `minute_seconds` of `clock`, as in the workspace simulator. Minute m is
generated whole when first needed (in order, seeded per replica and minute, so the figures do not depend on when
they are asked for); a scrape during minute m sees the totals through m-1 plus the elapsed share of minute m's
increase, so counters move smoothly and never go down. A replica that is down does not answer; when it comes
back it has restarted, and its counters start again from zero (as a real restarted process's do).
"""

from __future__ import annotations

import math
import random
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..traffic import offered_qps
from .series import Family, Key, ReplicaMinute, render

HISTORY_MINUTES = 10  # minutes the servers have run before the simulation starts, so counters are never empty
CACHE_MINUTES = 120


class ReplicaDown(Exception):
    """The replica is not running: its metrics port does not answer."""


class ServerShape(Protocol):
    """How one kind of model server behaves and writes its metrics (vllm.py, triton.py)."""

    kind: str  # the exporter's name for the server kind
    qps: float  # offered requests/s for the whole endpoint (a slow sine and noise on top)
    qps_variation: float
    families: Sequence[Family]

    @property
    def per_replica_concurrency(self) -> int:
        """Requests one replica serves at once."""
        ...

    def simulate(self, lam: float, queue: float, rng: random.Random) -> tuple[ReplicaMinute, float]:
        """One replica's minute under `lam` requests/s with `queue` waiting at its start: (minute, queue at end)."""
        ...


@dataclass(frozen=True)
class Outage:
    """Replica `replica` is down for `minutes` simulated minutes out of every `every`, starting at `offset`."""

    replica: int
    every: int
    minutes: int
    offset: int = 0

    def down(self, replica: int, minute: int) -> bool:
        return replica == self.replica and (minute - self.offset) % self.every < self.minutes


@dataclass
class _Replica:
    queue: float = 0.0
    totals: dict[Key, float] = field(default_factory=dict)  # cumulative through the last generated minute
    # minute -> (totals at its start, the minute) for generated minutes; None: down that minute
    minutes: OrderedDict[int, tuple[dict[Key, float], ReplicaMinute] | None] = field(default_factory=OrderedDict)


class ModelServer:
    """One self-hosted endpoint's replicas; every public method is thread-safe."""

    def __init__(self, name: str, shape: ServerShape, replicas: int = 1, outage: Outage | None = None,
                 minute_seconds: float = 60.0, clock: Callable[[], float] = time.time, start: float | None = None,
                 seed: int = 7, tags: Mapping[str, str] | None = None) -> None:
        if minute_seconds <= 0 or replicas < 1:
            raise ValueError("minute_seconds must be > 0 and replicas >= 1")
        self.name, self.shape, self.outage = name, shape, outage
        self.tags = dict(tags or {})
        self.minute_seconds, self.seed = minute_seconds, seed
        self._clock = clock
        self._start = clock() if start is None else start
        self._phase = zlib.crc32(name.encode()) % 30
        self._replicas = [_Replica() for _ in range(replicas)]
        self._next = -HISTORY_MINUTES  # next minute to generate
        self._lock = threading.Lock()

    @property
    def kind(self) -> str:
        return self.shape.kind

    @property
    def replicas(self) -> int:
        return len(self._replicas)

    # -- clock --------------------------------------------------------------------------------
    def _now(self) -> tuple[int, float]:
        """(minute in progress, share of it elapsed)."""
        elapsed = (self._clock() - self._start) / self.minute_seconds
        minute = math.floor(elapsed)
        return minute, elapsed - minute

    @property
    def current_minute(self) -> int:
        """The minute in progress."""
        with self._lock:
            return self._now()[0]

    def advance(self, minutes: float) -> None:
        """Move the simulated clock forward (tests)."""
        with self._lock:
            self._start -= minutes * self.minute_seconds

    # -- traffic ------------------------------------------------------------------------------
    def is_down(self, replica: int, minute: int) -> bool:
        return self.outage is not None and self.outage.down(replica, minute)

    def _generate_through(self, minute: int) -> None:
        while self._next <= minute:
            m = self._next
            up = [i for i in range(self.replicas) if not self.is_down(i, m)]
            lam = offered_qps(self.shape, m, self._phase, random.Random(f"{self.seed}/{self.name}/{m}"))
            for i, replica in enumerate(self._replicas):
                if i not in up:
                    replica.minutes[m], replica.queue, replica.totals = None, 0.0, {}  # restarts from zero
                    continue
                rng = random.Random(f"{self.seed}/{self.name}/{i}/{m}")
                result, replica.queue = self.shape.simulate(lam / len(up), replica.queue, rng)
                replica.minutes[m] = (dict(replica.totals), result)
                for key, value in result.counts.items():
                    replica.totals[key] = replica.totals.get(key, 0) + value
                while len(replica.minutes) > CACHE_MINUTES:
                    replica.minutes.popitem(last=False)
            self._next += 1

    def minute(self, replica: int, minute: int) -> ReplicaMinute | None:
        """A generated minute of one replica (None: down), generating up to it; for tests and ground truth."""
        with self._lock:
            self._generate_through(minute)
            entry = self._replicas[replica].minutes.get(minute)
            return entry[1] if entry else None

    def values(self, replica: int) -> dict[Key, float]:
        """Every series of the replica now; raises ReplicaDown if it is not running."""
        with self._lock:
            minute, share = self._now()
            self._generate_through(minute)
            entry = self._replicas[replica].minutes.get(minute)
            if entry is None:
                raise ReplicaDown(f"{self.name} replica {replica} is down")
            before, now = entry
            values: dict[Key, float] = {}
            for key in {**before, **now.counts}:
                value = before.get(key, 0) + share * now.counts.get(key, 0)
                # Counts are whole numbers: floor keeps every series monotonic and a histogram's buckets ordered.
                values[key] = value if key[0].endswith("_sum") else math.floor(value)
            values.update(now.gauges)
            return dict(sorted(values.items(), key=_order))

    def metrics(self, replica: int) -> bytes:
        """GET /metrics of one replica, in the server's own Prometheus text."""
        return render(self.shape.families, self.values(replica))


def _order(item: tuple[Key, float]) -> tuple:
    (sample, labels), _ = item
    le = dict(labels).get("le")
    return (sample, tuple((k, v) for k, v in labels if k != "le"), float(le) if le is not None else 0.0)
