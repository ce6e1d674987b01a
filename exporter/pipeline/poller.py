"""One poll: discover endpoints, refresh their configuration when due, fetch their figures
concurrently, key them by minute into the windows, analyse, and publish a new immutable Snapshot.

Failures are isolated per endpoint and per call: a timeout, an HTTP error or a
garbage body marks that endpoint down and is counted, while its stored minutes,
its last good configuration and every other endpoint are untouched. Every selected
endpoint is in every snapshot, also before its first fetch has answered (down, with
the reason), so its success series is never missing.

Threads. The scheduler thread runs `poll`: it lists, reconciles and publishes. Each
endpoint's fetch and analysis run on a worker that owns the endpoint's state while
`busy` is set — and a hung fetch can keep it past the poll that started it. A worker is
a coroutine on the source's event loop when the source has one (`fetch_async`: no
thread hand-off per call, about half the CPU of a fetch), else a pool thread; the
configuration detail, read through a blocking SDK, always goes to a pool thread. On the
loop, a worker gives its fetch slot back once fetched and its analysis waits to run in a
batch with others (`_analyse_fetched`).
The two meet only under `EndpointState.lock`: the scheduler hands a fresh listing
over (`offer_listing`) and the worker adopts it when it starts (`take_listing`); the
worker publishes an immutable report, status and error counts that the scheduler
copies (`published`). Nothing else is shared.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, wait
from dataclasses import replace
from typing import TYPE_CHECKING

from ..model import Counters, EndpointInfo, EndpointReport, Figures, PollStatus, Replica, SeriesReport, Snapshot
from ..sources import FetchError, Observation, Source
from ..threads import started_pool
from .analysis import checks
from .rules import HintMemory, advise
from .selection import shard_of
from .window import SeriesWindow, minute_key_of

if TYPE_CHECKING:
    from ..config import Settings

log = logging.getLogger(__name__)

ANALYSIS_BATCH = 32  # endpoints fetched, on a loop, before their analysis runs (see _analyse_fetched)
ANALYSIS_WAIT_S = 0.005  # ... or this long after the first of them was fetched, when fewer come
DETAIL_THREADS = 4  # concurrent detail calls of a source with a loop (each in a thread: the SDK blocks)
MAX_CLOCK_SKEW_S = 600  # sample timestamps further ahead of the clock than this are not trusted


def named(info: EndpointInfo) -> str:
    """An endpoint as logs name it: with its workspace where it has one."""
    return f"{info.name} (workspace {info.workspace})" if info.workspace else info.name


class EndpointState:
    """Everything remembered about one endpoint between polls (see the module docstring for who owns what)."""

    def __init__(self, info: EndpointInfo, window_minutes: int):
        # Owned by the worker while busy (and by nobody else: the scheduler starts a worker only when not busy).
        self.info = info
        self.detail_at: float | None = None
        self.window_minutes = window_minutes
        self.windows: dict[str | None, SeriesWindow] = {}
        self.hints = HintMemory()
        self.config_fresh = False  # whether this poll adopted a fresh listing
        self.last_fingerprint: bytes | None = None  # to spot data served again when the source sends no timestamp
        self.last_fingerprint_at = 0.0
        self.clock_skewed = False  # its timestamps are far ahead of the clock (logged once, when it starts)
        self.replicas: tuple[Replica, ...] = ()  # self-hosted: each scrape target at the last fetch
        # Shared with the scheduler thread, under `lock`.
        self.lock = threading.Lock()
        self.busy = False
        self.status = PollStatus(up=False, last_success_s=None)
        self.errors: Counter[tuple[str, str]] = Counter()  # (call, reason) -> count
        self.report: EndpointReport | None = None
        self._listing: EndpointInfo | None = None  # a listing not yet adopted by the worker

    def offer_listing(self, info: EndpointInfo) -> None:
        """Scheduler thread: this poll's listing of the endpoint, for the worker to adopt when it starts."""
        with self.lock:
            self._listing = info

    def begin(self) -> bool:
        """Claim the endpoint for one poll; False while an earlier poll of it still runs."""
        with self.lock:
            if self.busy:
                return False
            self.busy = True
            return True

    def take_listing(self) -> None:
        """Worker: adopt the newest listing. The list is fresher for state and tags; the detail holds what
        the list lacks, and is re-read at once when the configuration changed."""
        with self.lock:
            listing, self._listing = self._listing, None
        self.config_fresh = listing is not None
        if listing is None:
            return
        info = self.info
        if not info.detailed:
            self.info = listing
            return
        if listing.last_updated_ms != info.last_updated_ms:
            self.detail_at = None
        # Most polls list the endpoint as it was: keep the object (replace() costs more than comparing).
        if (listing.ready, listing.state, listing.config_update, listing.update_failed, listing.tags,
                listing.last_updated_ms) != (info.ready, info.state, info.config_update, info.update_failed, info.tags,
                                             info.last_updated_ms):
            self.info = replace(info, ready=listing.ready, state=listing.state, config_update=listing.config_update,
                                update_failed=listing.update_failed, tags=listing.tags,
                                last_updated_ms=listing.last_updated_ms)

    def published(self, deadline_s: float, blank: Callable[[EndpointInfo, PollStatus], EndpointReport]
                  ) -> tuple[EndpointReport, dict[tuple[str, str], float]]:
        """The report and error counts to publish. An endpoint still busy past the deadline shows as down;
        one that never answered yet gets a `blank` report, so it is never left out."""
        with self.lock:
            if self.busy:
                self.errors[("metrics", "deadline")] += 1
            report, status, busy, errors = self.report, self.status, self.busy, dict(self.errors)
        # `info` is read without the lock: an immutable object the worker may replace, never change.
        if busy:
            down = replace(report.status if report else status, up=False,
                           last_error=f"deadline: still fetching after {deadline_s:g}s")
            return (replace(report, status=down) if report else blank(self.info, down)), errors
        if report is None:  # analysis failed on every poll so far (a bug, logged): never claim it is up
            return blank(self.info, replace(status, up=False)), errors
        return report, errors

    def window(self, entity: str | None) -> SeriesWindow:
        if entity not in self.windows:
            self.windows[entity] = SeriesWindow(self.window_minutes)
        return self.windows[entity]


class Poller:
    def __init__(self, source: Source, settings: Settings, clock: Callable[[], float] = time.time,
                 minute_clock: Callable[[], float] | None = None):
        self.source = source
        self.settings = settings
        self.clock = clock
        # Minute keys for observations without timestamps; the demo injects its simulated clock.
        self.minute_clock = minute_clock or clock
        self.window_minutes = max(1, math.ceil(settings.window_seconds / 60))
        self.states: dict[tuple[str, str], EndpointState] = {}  # by EndpointInfo.key: (workspace, name)
        self.poll_outcomes: Counter[str] = Counter()
        self.list_errors: Counter[tuple[str, str]] = Counter()  # (workspace, reason) -> failed listings
        self.discovered = 0
        self.last_list_error: str | None = None
        self.snapshot = Snapshot(workspace=source.workspace)
        # Blocking calls: every fetch of a source without a loop; else only the rare detail calls, which need a
        # few threads. Started at once, so that the thread count is flat (exporter/threads.py).
        workers = settings.max_concurrent_requests
        self._pool = started_pool(min(workers, DETAIL_THREADS) if hasattr(source, "fetch_async") else workers, "poll")
        # On the source's loop, at most max_concurrent_requests endpoints at once, across polls (a hung one keeps its slot).
        self._slots = asyncio.Semaphore(settings.max_concurrent_requests)
        self._in_flight: Future | None = None  # the fetches of the poll in progress, on the source's loop
        # On the source's loop: endpoints fetched (or failed: None), awaiting their analysis (_analyse_fetched).
        self._fetched: list[tuple[EndpointState, Observation | None, float]] = []

    def abort(self) -> None:
        """On shutdown: the fetches of a poll in progress are cancelled, so that it publishes what it has at
        once instead of waiting for hung requests until its deadline."""
        in_flight = self._in_flight
        if in_flight is not None:
            in_flight.cancel()

    def close(self) -> None:
        self.abort()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.source.close()

    @property
    def deadline_s(self) -> float:
        return self.settings.poll_deadline_seconds or 0.8 * self.settings.poll_interval_seconds

    def poll(self) -> Snapshot:
        started = self.clock()
        deadline = time.monotonic() + self.deadline_s
        # Fetches stop a little earlier, so that one cut at the deadline is recorded (with its reason) before publishing.
        fetch_deadline = deadline - min(0.25, 0.1 * self.deadline_s)
        try:
            listing = self.source.list_endpoints(deadline=fetch_deadline)
        except Exception as exc:  # FetchError, or anything unexpected: the endpoints we know stay polled
            reason = exc.reason if isinstance(exc, FetchError) else "internal_error"
            log.warning("listing endpoints failed (%s): %s", reason, exc, exc_info=not isinstance(exc, FetchError))
            self.poll_outcomes["list_failed"] += 1
            if not hasattr(self.source, "list_errors"):  # a composite counts each of its sources' own
                self.list_errors[(self.source.workspace or "", reason)] += 1
            self.last_list_error = f"{reason}: {exc}"
            listing = None
        if listing is not None:
            self.discovered = len(listing)
            index, count = self.settings.shard()
            by_key = bool(self.settings.workspaces)  # several workspaces: namesakes may go to different replicas
            self._reconcile([info for info in listing if self.settings.endpoints.selects(info)
                             and shard_of(info.name, count, info.workspace if by_key else None) == index])

        states = list(self.states.values())
        # Endpoints that answered last time go first, fastest first: slow or failing ones cannot hold every
        # worker while the healthy ones wait. One still busy from an earlier poll (hanging) is not polled twice.
        order = [s for s in sorted(states, key=lambda s: (s.status.last_error is not None, s.status.duration_s or 0.0))
                 if s.begin()]
        if hasattr(self.source, "fetch_async"):
            polled = asyncio.run_coroutine_threadsafe(self._poll_on_loop(order, fetch_deadline), self.source.loop)
            self._in_flight = polled
            wait([polled], timeout=max(0.0, deadline - time.monotonic()))  # stragglers go on, as threads would
            self._in_flight = None
        else:
            running = [self._pool.submit(self._poll_endpoint, s, fetch_deadline) for s in order]
            wait(running, timeout=max(0.0, deadline - time.monotonic()))

        finished = self.clock()
        if listing is not None:
            self.poll_outcomes["success"] += 1
        reports, errors = [], {}
        for state in sorted(states, key=lambda s: s.info.key):
            report, state_errors = state.published(self.deadline_s, self._blank_report)
            reports.append(report)
            errors.update({(*state.info.key, call, reason): n for (call, reason), n in state_errors.items()})
        api_requests, api_retries = self._api_usage()
        self.snapshot = Snapshot(
            endpoints=tuple(reports),
            api_requests=api_requests,
            api_retries=api_retries,
            completed_at_s=finished,
            poll_duration_s=finished - started,
            polls=dict(self.poll_outcomes),
            fetch_errors=errors,
            list_errors=dict(getattr(self.source, "list_errors", self.list_errors)),
            discovery_errors=dict(getattr(self.source, "discovery_errors", {})),
            discovered=self.discovered,
            workspace=self.source.workspace,
            shard=self.settings.shard(),
        )
        log.debug("poll finished in %.3fs for %d endpoints", finished - started, len(states))
        return self.snapshot

    def _reconcile(self, selected: list[EndpointInfo]) -> None:
        """Adopt the listing: new endpoints get state, vanished ones lose theirs (and so their series)."""
        keys = {info.key for info in selected}
        for key in [k for k in self.states if k not in keys]:
            log.info("endpoint %s is gone; dropping its series", named(self.states[key].info))
            del self.states[key]
        for info in selected:
            state = self.states.get(info.key)
            if state is None:
                state = self.states[info.key] = EndpointState(info, self.window_minutes)
            state.offer_listing(info)

    def _poll_endpoint(self, state: EndpointState, deadline: float) -> None:
        """A pool thread's worker."""
        try:
            state.take_listing()
            self._refresh_detail(state, deadline)
            started = self.clock()
            try:
                observed = self.source.fetch(state.info.name, deadline, **self._where(state.info))
            except FetchError as exc:  # parse errors included (MetricsParseError)
                state.replicas = getattr(exc, "replicas", state.replicas)
                self._failed(state, exc.reason, str(exc), started)
            else:
                self._ingest(state, observed, started)
        except Exception as exc:  # a bug must not take the other endpoints down with it
            log.exception("unexpected error polling endpoint %s", named(state.info))
            self._failed(state, "internal_error", f"{type(exc).__name__}", self.clock())
        self._finish(state)

    async def _poll_on_loop(self, order: list[EndpointState], deadline: float) -> None:
        await asyncio.gather(*(self._poll_endpoint_async(state, deadline) for state in order))
        self._analyse_fetched()  # what the last fetches left

    async def _poll_endpoint_async(self, state: EndpointState, deadline: float) -> None:
        """A coroutine worker on the source's loop: the same steps as `_poll_endpoint`, but the analysis is
        queued (`_fetched`) and runs after the slot is given back to the next fetch."""
        async with self._slots:
            observed: Observation | None = None
            started = self.clock()
            try:
                state.take_listing()
                if self._detail_due(state):
                    await asyncio.get_running_loop().run_in_executor(self._pool, self._refresh_detail, state, deadline)
                started = self.clock()
                try:
                    observed = await self.source.fetch_async(state.info.name, deadline,  # type: ignore[attr-defined]
                                                             **self._where(state.info))
                except FetchError as exc:
                    state.replicas = getattr(exc, "replicas", state.replicas)  # self-hosted: all replicas down
                    self._failed(state, exc.reason, str(exc), started)
            except asyncio.CancelledError:  # abort(): the poll publishes without this fetch
                with state.lock:
                    state.busy = False
                raise
            except Exception as exc:
                log.exception("unexpected error polling endpoint %s", named(state.info))
                self._failed(state, "internal_error", f"{type(exc).__name__}", self.clock())
        self._fetched.append((state, observed, started))
        if len(self._fetched) >= ANALYSIS_BATCH:
            self._analyse_fetched()
        elif len(self._fetched) == 1:
            asyncio.get_running_loop().call_later(ANALYSIS_WAIT_S, self._analyse_fetched)

    def _analyse_fetched(self) -> None:
        """Ingest, analyse and publish the endpoints fetched since the last call, one after the other.
        In batches, the analysis code stays hot in the CPU's caches, instead of taking turns with the event
        loop and the sockets after every fetch (docs/performance.md: a few percent less CPU per poll, within the
        noise of the machine it was measured on)."""
        fetched, self._fetched = self._fetched, []
        for state, observed, started in fetched:
            if observed is not None:
                try:
                    self._ingest(state, observed, started)
                except Exception as exc:
                    log.exception("unexpected error polling endpoint %s", named(state.info))
                    self._failed(state, "internal_error", f"{type(exc).__name__}", self.clock())
            self._finish(state)

    def _api_usage(self) -> tuple[dict[tuple[str, str, str], float], dict[tuple[str, str], float]]:
        """The API calls and retries so far, by workspace: each workspace has its own rate limits."""
        usages = getattr(self.source, "usages", None)
        calls: Counter[tuple[str, str, str]] = Counter()
        retries: Counter[tuple[str, str]] = Counter()
        for workspace, usage in usages() if usages else [(self.source.workspace, self.source.usage)]:
            c, r = usage.totals()
            calls.update({(workspace or "", call, outcome): n for (call, outcome), n in c.items()})
            retries.update({(workspace or "", call): n for call, n in r.items()})
        return dict(calls), dict(retries)

    def _where(self, info: EndpointInfo) -> dict[str, str | None]:
        """The workspace argument for a source that serves several (CompositeSource); others take the name alone."""
        return {"workspace": info.workspace} if getattr(self.source, "keyed_by_workspace", False) else {}

    def _finish(self, state: EndpointState) -> None:
        """Analyse and publish the endpoint's report, and hand the endpoint back."""
        try:
            report = self._report(state)
        except Exception:
            log.exception("unexpected error analysing endpoint %s", named(state.info))
            report = None
        with state.lock:
            if report is not None:
                state.report = report
            elif state.report is not None:  # keep the last figures, but never claim the endpoint is up
                state.report = replace(state.report, status=replace(state.status, up=False))
            state.busy = False

    def _detail_due(self, state: EndpointState) -> bool:
        return state.detail_at is None or self.clock() - state.detail_at >= self.settings.detail_refresh_seconds

    def _refresh_detail(self, state: EndpointState, deadline: float | None = None) -> None:
        now = self.clock()
        if not self._detail_due(state):
            return
        try:
            state.info = self.source.describe(state.info.name, deadline=deadline, **self._where(state.info))
            state.detail_at = now
        except FetchError as exc:
            with state.lock:
                state.errors[("detail", exc.reason)] += 1
            log.debug("detail of %s failed: %s", named(state.info), exc)

    def _ingest(self, state: EndpointState, observed: Observation, started: float) -> None:
        state.replicas = observed.replicas
        key = self._minute_key(state, observed)
        if key is not None:
            state.window(None).ingest(key, observed.endpoint, observed.histograms)
            for entity, figures in observed.entities.items():
                state.window(entity).ingest(key, figures, observed.histograms)
        # Entities that stopped reporting leave once their minutes age out of the window.
        newest = state.window(None).newest_key
        if newest is not None:
            for entity in [e for e, w in state.windows.items()
                           if e is not None and (w.newest_key or 0) <= newest - self.window_minutes]:
                del state.windows[entity]
        self._succeeded(state, started)

    def _minute_key(self, state: EndpointState, observed: Observation) -> int | None:
        """The source minute the observation belongs to, or None when it is the last one served again."""
        now_minute_s = self.minute_clock()
        timestamp_ms = observed.timestamp_ms
        skewed = timestamp_ms is not None and timestamp_ms > (now_minute_s + MAX_CLOCK_SKEW_S) * 1000
        if skewed != state.clock_skewed:  # logged when it starts and ends, not at every poll of every endpoint
            state.clock_skewed = skewed
            if skewed:
                log.warning("metrics of %s carry a timestamp %.0fs ahead of the clock; using the clock until they "
                            "are within %ds", named(state.info), timestamp_ms / 1000 - now_minute_s, MAX_CLOCK_SKEW_S)
            else:
                log.info("metrics of %s carry timestamps within %ds of the clock again", named(state.info),
                         MAX_CLOCK_SKEW_S)
        if skewed:
            # A timestamp far in the future would make every later minute look old: distrust it.
            timestamp_ms = None
        if timestamp_ms is None and observed.fingerprint is not None:
            # Without timestamps the clock keys the minute. Data identical to the one stored less than a refresh
            # period ago is the same source minute seen across a clock-minute boundary; identical data after that
            # is a genuinely repeated minute (an idle endpoint's zeros).
            if (observed.fingerprint == state.last_fingerprint
                    and now_minute_s - state.last_fingerprint_at < self.source.refresh_seconds * 1.5):
                return None
            state.last_fingerprint, state.last_fingerprint_at = observed.fingerprint, now_minute_s
        return minute_key_of(timestamp_ms, now_minute_s)

    def _succeeded(self, state: EndpointState, started: float) -> None:
        now = self.clock()
        if not state.status.up and state.status.last_success_s is not None:
            log.info("metrics of %s recovered", named(state.info))
        with state.lock:
            state.status = PollStatus(up=True, last_success_s=now, last_error=None, duration_s=now - started)

    def _failed(self, state: EndpointState, reason: str, message: str, started: float) -> None:
        if state.status.up or state.status.last_success_s is None:
            log.warning("metrics of %s failed (%s): %s", named(state.info), reason, message)
        with state.lock:
            state.errors[("metrics", reason)] += 1
            state.status = replace(state.status, up=False, last_error=f"{reason}: {message}"[:300],
                                   duration_s=self.clock() - started)

    def _report(self, state: EndpointState) -> EndpointReport:
        info = state.info
        targets = self.settings.targets_for(info)
        served = {e.name: e for e in info.served_entities}

        def series(entity: str | None, window: SeriesWindow) -> SeriesReport:
            if entity is None:
                capacity = info.capacity
            else:
                capacity = served[entity].capacity if entity in served else None
            figures = window.figures(capacity)
            minutes = window.per_minute(capacity) if entity is None else ()  # charted for the endpoint only
            return SeriesReport(entity, figures, checks(figures, targets), window.counters, minutes)

        endpoint = series(None, state.window(None))
        entities = tuple(series(e, w) for e, w in sorted(state.windows.items(), key=lambda kv: kv[0] or "") if e is not None)
        hints, advice = advise(self.settings.remediation, info, endpoint.figures, endpoint.checks, targets, state.hints,
                               metrics_fresh=state.status.up, config_fresh=state.config_fresh and info.detailed,
                               now_s=self.clock(), replicas=state.replicas)
        return EndpointReport(self._capped(info), endpoint, entities, state.status, hints, advice, state.replicas)

    def _capped(self, info: EndpointInfo) -> EndpointInfo:
        """The configuration as published: at most max_served_entities served entities, as for their figures
        (each one is several series; the analysis above saw them all)."""
        cap = self.settings.max_served_entities
        return info if len(info.served_entities) <= cap else replace(info, served_entities=info.served_entities[:cap])

    def _blank_report(self, info: EndpointInfo, status: PollStatus) -> EndpointReport:
        """An endpoint with no answer yet: its configuration, its targets, no figures, and why it is down."""
        figures = Figures()
        endpoint = SeriesReport(None, figures, checks(figures, self.settings.targets_for(info)), Counters())
        return EndpointReport(self._capped(info), endpoint, (), status)
