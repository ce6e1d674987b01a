"""The invocations API of a simulated endpoint: real requests served by the capacity its metrics report.

Each served entity is `provisioned concurrency` parallel servers with a FIFO queue of at most
`max_queue_per_concurrency x provisioned` waiting requests; a request that finds the queue full is
answered 429 at once. A request holds a server for a service time drawn from the scenario's
lognormal, then answers 200, or 5xx / 4xx at the scenario's error ratios. The simulated (fluid)
traffic of the last published minute keeps its share of the servers and of the queue, so an endpoint
whose metrics show a full queue answers 429 here too.

What is served is recorded per entity and simulated minute and added to that minute's figures
(traffic.simulate_minute), so the `/metrics` of an endpoint show the load-test traffic as the
platform's would.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass, field

from .traffic import EntityMinute


@dataclass
class LiveMinute:
    """Invocations of one served entity during one simulated minute."""

    requests: int = 0  # every answer, 429s included
    count_4xx: int = 0  # 4xx answers other than 429 (those are in rejected_429)
    count_5xx: int = 0
    rejected_429: int = 0
    latencies_ms: list[float] = field(default_factory=list)  # served requests: queue wait + service
    waits_ms: list[float] = field(default_factory=list)
    busy_s: float = 0.0  # server-seconds spent serving

    def served(self, wait_s: float, service_s: float, status: int) -> None:
        self.requests += 1
        self.count_5xx += status >= 500
        self.count_4xx += 400 <= status < 500
        self.latencies_ms.append((wait_s + service_s) * 1000.0)
        self.waits_ms.append(wait_s * 1000.0)
        self.busy_s += service_s

    def rejected(self, status: int = 429) -> None:
        """An answer without service: 429 from a full queue, or 400 for a malformed request."""
        self.requests += 1
        if status == 429:
            self.rejected_429 += 1
        else:
            self.count_4xx += 1


def capacity(background: EntityMinute, queue_per_concurrency: float) -> tuple[int, int]:
    """(servers, queue places) left for invocations beside the simulated traffic of `background`.

    At least one server (scale-to-zero cold starts are not modelled) unless the simulated queue is
    full, in which case there is nothing: every invocation is answered 429, as the metrics suggest.
    """
    c = background.provisioned
    queue_cap = queue_per_concurrency * c
    if background.queue_end >= queue_cap - 0.5 and background.queue_end > 0:
        return 0, 0
    servers = max(1, round(c - background.busy_slots))
    return servers, max(0, math.floor(queue_cap - background.queue_end))


class Servers:
    """Parallel servers and a FIFO queue; callers hold the workspace lock around admit/release."""

    def __init__(self) -> None:
        self.busy = 0
        self.waiting: deque[threading.Event] = deque()

    def admit(self, servers: int, queue_places: int) -> threading.Event | None:
        """An event set once a server is this request's, or None when the queue is full."""
        ticket = threading.Event()
        if self.busy < servers:
            self.busy += 1
            ticket.set()
        elif len(self.waiting) < queue_places:
            self.waiting.append(ticket)
        else:
            return None
        return ticket

    def release(self) -> None:
        """Hand the server to the longest-waiting request, or free it."""
        if self.waiting:
            self.waiting.popleft().set()
        else:
            self.busy -= 1

    def abandon(self, ticket: threading.Event) -> None:
        """A queued request gives up (server stopping): leave the queue, or free the server it just got."""
        try:
            self.waiting.remove(ticket)
        except ValueError:
            self.release()


def predictions_for(body: object) -> list[float]:
    """One prediction per input row of the request formats custom models accept, else one."""
    rows: object = None
    if isinstance(body, dict):
        split = body.get("dataframe_split")
        rows = (body.get("dataframe_records") or body.get("instances") or body.get("inputs")
                or (split.get("data") if isinstance(split, dict) else None))
    return [0.0] * (len(rows) if isinstance(rows, list) and rows else 1)
