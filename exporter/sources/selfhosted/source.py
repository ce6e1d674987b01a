"""Self-hosted endpoints as a Source: each fetch scrapes every replica of the endpoint concurrently on the
HTTP client's loop (../http.py: total deadline, body cap), reads each body by its server's table, and emits
one minute's figures summed over the replicas that answered (aggregate.py).

A replica that fails (refused, timed out, a bad body) is left out of that fetch and reported in
`Observation.replicas`, logged when it goes down and counted in `replica_errors`; the endpoint is down only
when no replica answers. The configuration is fixed at start: the endpoints are the configured ones."""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace

from ... import __version__
from ...model import EndpointInfo, Replica, ServedEntity
from ..base import ApiUsage, FetchError, Observation
from ..http import HttpClient
from . import auth
from .aggregate import EndpointAggregate
from .discovery import Discovery, Resolver, dns_resolver
from .readings import ReplicaReading, read
from .settings import SelfHostedEndpoint, SelfHostedSettings

log = logging.getLogger(__name__)

PLATFORM = "self-hosted"
MAX_BODY_BYTES = 16 * 1024 * 1024


class ReplicasDown(FetchError):
    """No replica answered: the endpoint is down. `replicas` says which failed and why."""

    def __init__(self, replicas: tuple[Replica, ...]):
        reasons = {(r.error or "").split(":", 1)[0] for r in replicas}
        reason = reasons.pop() if len(reasons) == 1 and replicas else "no_replica"
        if not replicas:
            message = "no replica discovered"
        else:
            message = f"none of {len(replicas)} replicas answered; first: {replicas[0].target}: {replicas[0].error}"
        super().__init__(reason or "no_replica", message)
        self.replicas = replicas


@dataclass
class _Endpoint:
    settings: SelfHostedEndpoint
    aggregate: EndpointAggregate
    tls: ssl.SSLContext | FetchError | None
    replicas: tuple[Replica, ...] | None = None  # at the last fetch; None before the first
    server: str | None = None  # the kind configured, or the one detected in its bodies
    models: tuple[str, ...] = ()
    last: Observation | None = None  # the last emitted minute
    updated_ms: int = 0  # when what list_endpoints says last changed (the poller re-reads the detail then)


class SelfHostedSource:
    platform = PLATFORM
    refresh_seconds = 60.0  # a minute's figures are emitted once per clock minute
    workspace: str | None = None

    def __init__(self, settings: SelfHostedSettings, *, timeout_s: float = 10.0, pool_size: int = 16,
                 max_body_bytes: int = MAX_BODY_BYTES, max_entities: int = 50, resolver: Resolver = dns_resolver,
                 clock: Callable[[], float] = time.time):
        self.usage = ApiUsage()
        self._timeout_s = timeout_s
        self._pool_size = pool_size
        self._max_body = max_body_bytes
        self._clock = clock
        self._discovery = Discovery(resolver, dns_timeout_s=timeout_s)
        self._endpoints = {e.name: _Endpoint(e, EndpointAggregate(max_entities), _tls(e),
                                             server=None if e.kind == "auto" else e.kind)
                           for e in settings.endpoints}
        self.replica_errors: Counter[tuple[str, str]] = Counter()  # (endpoint, reason) -> count
        self._lock = threading.Lock()
        self._http_client: HttpClient | None = None

    @property
    def discovery_errors(self) -> Counter[tuple[str, str]]:
        return self._discovery.errors

    @property
    def dropped_entities(self) -> dict[str, int]:
        """Per endpoint, models past the served-entity cap (counted towards the endpoint only)."""
        return {name: len(e.aggregate.dropped) for name, e in self._endpoints.items() if e.aggregate.dropped}

    def close(self) -> None:
        with self._lock:
            http, self._http_client = self._http_client, None
        if http is not None:
            http.close()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._http().loop

    # -- the Source calls -------------------------------------------------

    def list_endpoints(self, deadline: float | None = None) -> list[EndpointInfo]:
        return [self._info(e) for e in self._endpoints.values()]

    def describe(self, name: str, deadline: float | None = None) -> EndpointInfo:
        return self._info(self._endpoint(name))

    def fetch(self, name: str, deadline: float | None = None) -> Observation:
        deadline = time.monotonic() + self._timeout_s if deadline is None else deadline
        return self._http().run(self.fetch_async(name, deadline),
                                timeout=max(0.0, deadline - time.monotonic()) + self._timeout_s + 5)

    async def fetch_async(self, name: str, deadline: float | None = None) -> Observation:
        endpoint = self._endpoint(name)
        deadline = time.monotonic() + self._timeout_s if deadline is None else deadline
        if endpoint.settings.targets is not None:
            targets = list(endpoint.settings.targets)
        else:  # DNS lookups and file reads block: on the loop's executor
            targets = await asyncio.get_running_loop().run_in_executor(None, self._discovery.targets, endpoint.settings)
        endpoint.aggregate.forget(targets)
        results = await asyncio.gather(*(self._scrape(endpoint, t, deadline) for t in targets))
        now = self._clock()
        readings: dict[str, ReplicaReading] = {}
        replicas = []
        for target, result in zip(targets, results):
            if isinstance(result, FetchError):
                replicas.append(Replica(target, False, f"{result.reason}: {result}"[:300]))
            else:
                readings[target] = result
                replicas.append(Replica(target, True))
        self._note(endpoint, tuple(replicas), readings)
        if not readings:
            raise ReplicasDown(endpoint.replicas or ())
        aggregate = endpoint.aggregate
        if aggregate.due(now) or endpoint.last is None:
            emitted = aggregate.emit(readings, now)
            endpoint.last = Observation(emitted.endpoint, emitted.entities, timestamp_ms=int(now * 1000),
                                        histograms="per_minute", replicas=endpoint.replicas or ())
            return endpoint.last
        # The same clock minute as the last emission: its minute is stored already (the window keeps the first).
        return replace(endpoint.last, replicas=endpoint.replicas or ())

    # -- plumbing --------------------------------------------------------

    async def _scrape(self, endpoint: _Endpoint, target: str, deadline: float) -> ReplicaReading | FetchError:
        try:
            if isinstance(endpoint.tls, FetchError):
                raise endpoint.tls
            headers = {"Accept": "text/plain;version=0.0.4;q=1,application/openmetrics-text;q=0.5",
                       **auth.headers(endpoint.settings.auth)}
            response = await self._http().fetch(target, headers, call="metrics", timeout_s=self._timeout_s,
                                                deadline=deadline, max_body=self._max_body, tls=endpoint.tls)
            if not 200 <= response.status < 300:
                reason = "unauthorized" if response.status in (401, 403) else f"http_{response.status // 100}xx"
                raise FetchError(reason, f"answered {response.status}")
            return read(response.body, response.headers.get("content-type", ""), endpoint.settings.kind)
        except FetchError as exc:
            return exc
        except ValueError as exc:  # the HTTP client refuses a URL or header it cannot send safely
            return FetchError("bad_request", str(exc)[:200])

    def _note(self, endpoint: _Endpoint, replicas: tuple[Replica, ...], readings: dict[str, ReplicaReading]) -> None:
        """Remember the replicas' states (logging the ones that went down or came back) and what the
        endpoint's listing says; a change of it is dated, so that the poller takes the new listing."""
        before = {r.target: r.up for r in endpoint.replicas or ()}
        name = endpoint.settings.name
        for replica in replicas:
            if not replica.up:
                self.replica_errors[(name, (replica.error or "").split(":", 1)[0])] += 1
                if before.get(replica.target, True):
                    log.warning("endpoint %s: replica %s down: %s", name, replica.target, replica.error)
            elif before.get(replica.target) is False:
                log.info("endpoint %s: replica %s answers again", name, replica.target)
        listing = self._listing(endpoint)
        endpoint.replicas = replicas
        if readings and endpoint.settings.kind == "auto":
            endpoint.server = next(iter(readings.values())).kind
        models = sorted({m for r in readings.values() for m in r.entities})
        endpoint.models = tuple(m for m in models if m in endpoint.aggregate.admitted or len(models) == 1)
        if self._listing(endpoint) != listing:
            endpoint.updated_ms = int(self._clock() * 1000)

    @staticmethod
    def _listing(endpoint: _Endpoint) -> tuple:
        answering = sum(r.up for r in endpoint.replicas) if endpoint.replicas is not None else None
        return endpoint.server, answering, len(endpoint.replicas or ()), endpoint.models

    def _info(self, endpoint: _Endpoint) -> EndpointInfo:
        settings = endpoint.settings
        replicas = endpoint.replicas
        answering = sum(r.up for r in replicas) if replicas is not None else None
        capacity = (answering * settings.per_replica_concurrency
                    if answering is not None and settings.per_replica_concurrency else None)
        # One served entity: named after the model when the server serves exactly one. Several models share
        # the replicas, so their capacity is the endpoint's, not each model's.
        model = endpoint.models[0] if len(endpoint.models) == 1 else None
        entity = ServedEntity(name=model or settings.name, entity_name=model, sized_capacity=capacity,
                              deployed=answering > 0 if answering is not None else None)
        return EndpointInfo(
            name=settings.name, platform=PLATFORM, server=endpoint.server,
            ready=answering > 0 if answering is not None else None,
            state=f"{answering}/{len(replicas)} replicas answering" if replicas is not None else None,
            tags=dict(settings.tags), last_updated_ms=endpoint.updated_ms, served_entities=(entity,),
            route_optimized=None, detailed=True)

    def _endpoint(self, name: str) -> _Endpoint:
        endpoint = self._endpoints.get(name)
        if endpoint is None:
            raise FetchError("not_found", f"no self-hosted endpoint {name!r} is configured")
        return endpoint

    def _http(self) -> HttpClient:
        with self._lock:
            if self._http_client is None:
                self._http_client = HttpClient(self.usage, self._pool_size, f"serving-exporter/{__version__}")
            return self._http_client


def _tls(endpoint: SelfHostedEndpoint) -> ssl.SSLContext | FetchError | None:
    """The endpoint's TLS context; an unreadable CA file fails its fetches (not the start)."""
    try:
        return auth.tls_context(endpoint.auth)
    except (OSError, ssl.SSLError) as exc:
        log.error("endpoint %s: cannot use the CA file %s: %s", endpoint.name, endpoint.auth.ca_file, type(exc).__name__)
        return FetchError("tls", f"cannot use the CA file {endpoint.auth.ca_file}: {type(exc).__name__}")
