"""Workspace: the simulated endpoints, their clock, faults and credentials."""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import secrets
import threading
import time
import zlib
from collections import Counter, OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from . import exposition, rest
from .invocations import LiveMinute, Servers, capacity, predictions_for
from .scenario import Scenario
from .traffic import EndpointMinute, EntityState, offered_qps, simulate_minute

DEMO_TOKEN = "dapi-demo-0000000000000000"
DEMO_CLIENT_ID = "demo-client"
DEMO_CLIENT_SECRET = "demo-secret"
WORKSPACE_ID = "1234567890123456"

HISTORY_MINUTES = 10  # completed minutes that exist at start, so metrics are never empty
CACHE_MINUTES = 120  # generated minutes kept per endpoint
# Minutes are generated in order so results do not depend on when they are asked for; past
# this gap (e.g. a huge advance()) the traffic state restarts instead of replaying every minute.
MAX_CATCH_UP = 1440
FAULT_KINDS = ("none", "http_500", "http_429", "http_403", "timeout", "garbage", "empty")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")


class EndpointNotFound(LookupError):
    """No endpoint of that name (the API answers 404 RESOURCE_DOES_NOT_EXIST)."""


@dataclass(frozen=True)
class Fault:
    """A failure injected into one endpoint's /metrics answers."""

    kind: str = "none"
    retry_after: int = 1  # seconds, for http_429
    delay_s: float = 30.0  # for timeout

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {FAULT_KINDS}")


@dataclass
class _Endpoint:
    record: rest.EndpointRecord
    first_minute: int
    phase: int  # offset of the traffic sine, so endpoints do not peak together
    # (effective-from minute, scenario), ascending: a minute is generated under the scenario
    # in force at that minute, however late it is generated.
    schedule: list[tuple[int, Scenario]]
    states: dict[str, EntityState] = field(default_factory=dict)
    last_minute: int | None = None
    cache: OrderedDict[int, EndpointMinute] = field(default_factory=OrderedDict)
    rendered: tuple[int, bytes, str] | None = None
    fault: Fault = Fault()
    # Invocations (invocations.py): each entity's servers, and what they served per minute not yet generated.
    servers: dict[str, Servers] = field(default_factory=dict)
    live: dict[int, dict[str, LiveMinute]] = field(default_factory=dict)
    live_rng: random.Random = field(default_factory=random.Random)

    @property
    def latest(self) -> Scenario:
        return self.schedule[-1][1]

    def scenario_at(self, minute: int) -> Scenario:
        for effective, sc in reversed(self.schedule):
            if effective <= minute:
                return sc
        return self.schedule[0][1]


class Workspace:
    """Simulated endpoints on a simulated clock; every public method is thread-safe.

    A simulated minute passes every `minute_seconds` real seconds of `clock`. The published
    minute is the last completed one; at start minutes -HISTORY_MINUTES..-1 are complete.
    """

    def __init__(self, minute_seconds: float = 60.0, clock: Callable[[], float] = time.time,
                 start: float | None = None, seed: int = 7, workspace_id: str = WORKSPACE_ID,
                 token_lifetime_s: float = 3600.0) -> None:
        if minute_seconds <= 0:
            raise ValueError("minute_seconds must be > 0")
        self.minute_seconds = minute_seconds
        self.seed = seed
        self.workspace_id = workspace_id
        self.token_lifetime_s = token_lifetime_s
        self.response_delay_s = 0.0  # added to every API answer, to emulate a remote workspace
        self.request_counts: Counter[tuple[str, str | None]] = Counter()
        self._clock = clock
        self._start = clock() if start is None else start
        self._epoch_ms = int(self._start // 60) * 60_000
        self._endpoints: dict[str, _Endpoint] = {}
        self._tokens: dict[str, float] = {}  # OAuth access token -> expiry (clock time)
        self._lock = threading.RLock()

    # -- clock --------------------------------------------------------------------------------
    @property
    def current_minute(self) -> int:
        """Index of the last completed (published) simulated minute."""
        with self._lock:
            return math.floor((self._clock() - self._start) / self.minute_seconds) - 1

    @property
    def start(self) -> float:
        """The `clock` time at which minute 0 began (servers sharing the workspace's minutes start from it)."""
        with self._lock:
            return self._start

    def simulated_time(self) -> float:
        """The simulated wall clock in seconds: minute m runs from timestamp_ms(m) to timestamp_ms(m + 1)."""
        with self._lock:
            return self._epoch_ms / 1000 + (self._clock() - self._start) / self.minute_seconds * 60

    def timestamp_ms(self, minute: int) -> int:
        """Simulated wall-clock time (ms) at which `minute` starts."""
        return self._epoch_ms + minute * 60_000

    def advance(self, minutes: int) -> None:
        """Move the simulated clock forward (tests, or the control API)."""
        if minutes < 0:
            raise ValueError("minutes must be >= 0")
        with self._lock:
            self._start -= minutes * self.minute_seconds

    # -- endpoints and scenarios -------------------------------------------------------------
    def names(self) -> list[str]:
        with self._lock:
            return list(self._endpoints)

    def __contains__(self, name: object) -> bool:
        with self._lock:
            return name in self._endpoints

    def _get(self, name: str) -> _Endpoint:
        try:
            return self._endpoints[name]
        except KeyError:
            raise EndpointNotFound(f"Endpoint with name '{name}' does not exist.") from None

    def add_endpoint(self, name: str, scenario: Scenario | str = "healthy", **fields: Any
                     ) -> Scenario:
        """Create an endpoint from a Scenario or preset name, with `fields` patched on top."""
        if not _NAME.match(name):
            raise ValueError(f"invalid endpoint name {name!r}")
        if isinstance(scenario, str):
            sc = Scenario().with_preset(scenario, **fields)
        else:
            sc = scenario.patched(**fields)
        with self._lock:
            if name in self._endpoints:
                raise ValueError(f"endpoint {name!r} already exists")
            first = self.current_minute + 1 - HISTORY_MINUTES
            created = self.timestamp_ms(first)
            record = rest.EndpointRecord(
                name=name, id=hashlib.md5(f"{self.seed}/{name}".encode()).hexdigest(),
                creation_timestamp=created, last_updated_timestamp=created)
            phase = zlib.crc32(name.encode()) % 30
            self._endpoints[name] = _Endpoint(record, first, phase, [(first, sc)],
                                              live_rng=random.Random(f"{self.seed}/{name}/invocations"))
        return sc

    def remove_endpoint(self, name: str) -> None:
        with self._lock:
            self._get(name)
            del self._endpoints[name]

    def scenario(self, name: str) -> Scenario:
        """The latest scenario set for the endpoint (in force from the next minute on)."""
        with self._lock:
            return self._get(name).latest

    def set_scenario(self, name: str, scenario: Scenario | str, **fields: Any) -> Scenario:
        """Replace the scenario from the next simulated minute on.

        A preset name keeps the endpoint's served entities, tags and format (see
        Scenario.with_preset); a Scenario replaces everything. `fields` patch on top.
        """
        with self._lock:
            ep = self._get(name)
            if isinstance(scenario, str):
                sc = ep.latest.with_preset(scenario, **fields)
            else:
                sc = scenario.patched(**fields)
            self._schedule(ep, sc)
            return sc

    def patch_scenario(self, name: str, **fields: Any) -> Scenario:
        """Change some scenario fields from the next simulated minute on."""
        with self._lock:
            ep = self._get(name)
            sc = ep.latest.patched(**fields)
            self._schedule(ep, sc)
            return sc

    def _schedule(self, ep: _Endpoint, sc: Scenario) -> None:
        effective = self.current_minute + 1
        old = ep.latest
        ep.schedule = [(m, s) for m, s in ep.schedule if m < effective] + [(effective, sc)]
        # Entries before the one in force at the next minute to generate are dead.
        upcoming = ep.first_minute if ep.last_minute is None else ep.last_minute + 1
        while len(ep.schedule) > 1 and ep.schedule[1][0] <= upcoming:
            ep.schedule.pop(0)
        name, record = ep.record.name, ep.record
        if rest.config_signature(old, name) != rest.config_signature(sc, name):
            record.config_version += 1
        if rest.visible_signature(old, name) != rest.visible_signature(sc, name):
            record.last_updated_timestamp = self.timestamp_ms(effective)

    def set_fault(self, name: str, kind: str = "none", retry_after: int = 1,
                  delay_s: float = 30.0) -> Fault:
        fault = Fault(kind, int(retry_after), float(delay_s))
        with self._lock:
            self._get(name).fault = fault
        return fault

    def fault(self, name: str) -> Fault:
        with self._lock:
            return self._get(name).fault

    # -- traffic ------------------------------------------------------------------------------
    def minute(self, name: str, minute: int | None = None) -> EndpointMinute:
        """The endpoint's figures for a completed minute (default: the published one)."""
        with self._lock:
            ep = self._get(name)
            current = self.current_minute
            k = current if minute is None else minute
            if k > current:
                raise ValueError(f"minute {k} has not completed yet (current {current})")
            self._generate_through(ep, k)
            if k not in ep.cache:
                raise ValueError(f"minute {k} is no longer kept")
            return ep.cache[k]

    def _generate_through(self, ep: _Endpoint, k: int) -> None:
        start = ep.first_minute if ep.last_minute is None else ep.last_minute + 1
        if k - start > MAX_CATCH_UP:
            start, ep.states = k + 1 - HISTORY_MINUTES, {}
        for m in range(start, k + 1):
            self._simulate(ep, m)

    def _simulate(self, ep: _Endpoint, m: int) -> None:
        name = ep.record.name
        sc = ep.scenario_at(m)
        # One generator per endpoint and minute: the same seed gives the same numbers whatever
        # else was generated in between.
        rng = random.Random(f"{self.seed}/{name}/{m}")
        lam = offered_qps(sc, m, ep.phase, rng)
        live = ep.live.pop(m, {})
        for old in [k for k in ep.live if k < m]:  # served in minutes skipped by a restart: never shown
            del ep.live[old]
        entities, states = [], {}
        for entity, percentage in sc.entities(name):
            result, states[entity] = simulate_minute(
                sc.for_entity(entity), entity, lam * percentage / 100, ep.states.get(entity), rng,
                live.get(entity))
            entities.append(result)
        ep.states, ep.last_minute = states, m
        ep.cache[m] = EndpointMinute(m, self.timestamp_ms(m), sc, tuple(entities))
        while len(ep.cache) > CACHE_MINUTES:
            ep.cache.popitem(last=False)

    def metrics(self, name: str) -> tuple[bytes, str]:
        """(body, content type) of the published minute, as GET .../metrics returns it."""
        with self._lock:
            ep = self._get(name)
            k = self.current_minute
            if ep.rendered is None or ep.rendered[0] != k:
                body, content_type = exposition.render(self.minute(name, k), self.workspace_id)
                ep.rendered = (k, body, content_type)
            return ep.rendered[1], ep.rendered[2]

    # -- invocations --------------------------------------------------------------------------
    def invoke(self, name: str, body: bytes, stopping: threading.Event, oauth: bool = True
               ) -> tuple[int, dict[str, Any]]:
        """Serve one POST .../invocations (invocations.py): (status, JSON body). Blocks for the queue
        wait and the service time; `stopping` cuts both short (answered 503). `oauth`: whether the
        caller authenticated with an OAuth token (route-optimized endpoints take nothing else)."""
        with self._lock:
            ep = self._get(name)
            sc = ep.latest
            if sc.route_optimized and not oauth:
                return 401, {"error_code": "UNAUTHENTICATED",
                             "message": "Route-optimized endpoints accept OAuth tokens only."}
            entity = ep.live_rng.choices([e for e, _ in sc.entities(name)],
                                         [p for _, p in sc.entities(name)])[0]
            esc = sc.for_entity(entity)
            try:
                predictions = predictions_for(json.loads(body or b"null"))
            except ValueError:
                self._live(ep, entity).rejected(400)
                return 400, {"error_code": "BAD_REQUEST", "message": "The request body is not valid JSON."}
            background = next(e for e in self.minute(name).entities if e.name == entity)
            servers = ep.servers.setdefault(entity, Servers())
            ticket = servers.admit(*capacity(background, esc.max_queue_per_concurrency))
            if ticket is None:
                self._live(ep, entity).rejected(429)
                return 429, {"error_code": "REQUEST_LIMIT_EXCEEDED",
                             "message": "The endpoint's queue is full. Please retry later."}
            rng = ep.live_rng
            service_s = rng.lognormvariate(math.log(esc.service_time_median_s), esc.service_time_sigma)
            draw = rng.random()
            status = 500 if draw < esc.error_5xx_ratio else (
                400 if draw < esc.error_5xx_ratio + esc.error_4xx_ratio else 200)
        queued_at = time.monotonic()
        while not ticket.wait(0.05):
            if stopping.is_set():
                with self._lock:
                    servers.abandon(ticket)
                return 503, {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "The server is stopping."}
        wait_s = time.monotonic() - queued_at
        stopping.wait(service_s)
        with self._lock:
            servers.release()
            self._live(ep, entity).served(wait_s, service_s, status)
        if status == 500:
            return 500, {"error_code": "INTERNAL_ERROR", "message": "Model raised an exception."}
        if status == 400:
            return 400, {"error_code": "BAD_REQUEST", "message": "Model rejected the input."}
        return 200, {"predictions": predictions}

    def _live(self, ep: _Endpoint, entity: str) -> LiveMinute:
        """The record of what `entity` serves in the minute in progress (shown once it is published)."""
        return ep.live.setdefault(self.current_minute + 1, {}).setdefault(entity, LiveMinute())

    # -- REST shapes --------------------------------------------------------------------------
    def list_endpoints(self) -> dict[str, Any]:
        with self._lock:
            return {"endpoints": [rest.list_item(ep.record, ep.latest)
                                  for ep in self._endpoints.values()]}

    def get_endpoint(self, name: str) -> dict[str, Any]:
        with self._lock:
            ep = self._get(name)
            return rest.detail(ep.record, ep.latest, self.workspace_id)

    # -- credentials --------------------------------------------------------------------------
    def issue_token(self, client_id: str, client_secret: str, scope: str | None = None
                    ) -> dict[str, Any] | None:
        """OAuth client-credentials grant; None when the client is unknown."""
        if (client_id, client_secret) != (DEMO_CLIENT_ID, DEMO_CLIENT_SECRET):
            return None
        token = secrets.token_urlsafe(32)
        with self._lock:
            now = self._clock()
            self._tokens = {t: exp for t, exp in self._tokens.items() if exp > now}
            self._tokens[token] = now + self.token_lifetime_s
        return {"access_token": token, "token_type": "Bearer",
                "expires_in": int(self.token_lifetime_s), "scope": scope or "all-apis"}

    def token_valid(self, token: str) -> bool:
        if token == DEMO_TOKEN:
            return True
        with self._lock:
            expiry = self._tokens.get(token)
            return expiry is not None and expiry > self._clock()

    def revoke_tokens(self) -> None:
        """Invalidate every issued OAuth token (the PAT stays valid)."""
        with self._lock:
            self._tokens.clear()

    # -- bookkeeping --------------------------------------------------------------------------
    def count(self, kind: str, endpoint: str | None = None) -> None:
        with self._lock:
            self.request_counts[(kind, endpoint)] += 1

    def requests_of(self, kind: str) -> int:
        """Requests seen of one kind ("list", "detail", "metrics", "token", ...), all endpoints."""
        with self._lock:
            return sum(n for (k, _), n in self.request_counts.items() if k == kind)

    def control_state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "current_minute": self.current_minute,
                "minute_seconds": self.minute_seconds,
                "settings": {"token_lifetime_s": self.token_lifetime_s, "response_delay_s": self.response_delay_s},
                "endpoints": [{"name": name, "scenario": ep.latest.to_dict(),
                               "fault": asdict(ep.fault)}
                              for name, ep in self._endpoints.items()],
            }

