"""One poll: discover endpoints, refresh their configuration when due, fetch and
parse their metrics concurrently, and publish a new immutable Snapshot.

Failures are isolated per endpoint and per call: a timeout, an HTTP error or a
garbage body marks that endpoint down and is counted, while its stored minutes,
its last good configuration and every other endpoint are untouched.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections import Counter
from collections.abc import Callable
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import replace

from .analysis import analyze, checks
from .config import Settings
from .model import EndpointInfo, EndpointReport, PollStatus, SeriesReport, Snapshot, entity_capacity
from .rules import HintMemory, evaluate, recommend
from .parsing import MetricsParseError, parse_metrics
from .sources import FetchError, Source
from .window import SeriesWindow, minute_key_of

log = logging.getLogger(__name__)

MAX_CLOCK_SKEW_S = 600  # sample timestamps further ahead of the clock than this are not trusted
SOURCE_REFRESH_S = 60  # the platform publishes a new minute about once a minute


def shard_of(name: str, count: int) -> int:
    """The replica that polls an endpoint: a stable hash of its name alone, so every replica agrees
    without talking to the others and an endpoint never moves when others come and go."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") % count


class EndpointState:
    """Everything remembered about one endpoint between polls; touched by one worker at a time."""

    def __init__(self, info: EndpointInfo, window_minutes: int):
        self.info = info
        self.detail_at: float | None = None
        self.window_minutes = window_minutes
        self.windows: dict[str | None, SeriesWindow] = {}
        self.status = PollStatus(up=False, last_success_s=None)
        self.errors: Counter[tuple[str, str]] = Counter()  # (call, reason) -> count
        self.report: EndpointReport | None = None
        self.hints = HintMemory()
        self.listed = False  # whether this poll's listing refreshed the configuration
        self.last_body: bytes | None = None  # to spot a re-served body when the source sends no timestamps
        self.last_body_at = 0.0
        self.busy = False
        self.lock = threading.Lock()  # guards busy, report, status and errors against the publishing thread

    def begin(self) -> bool:
        """Claim the endpoint for one poll; False while an earlier poll of it still runs."""
        with self.lock:
            if self.busy:
                return False
            self.busy = True
            return True

    def published(self, deadline_s: float) -> tuple[EndpointReport | None, dict[tuple[str, str], float]]:
        """The report and error counts to publish; an endpoint still busy past the deadline shows as down."""
        with self.lock:
            if self.busy:
                self.errors[("metrics", "deadline")] += 1
            report, errors = self.report, dict(self.errors)
            if self.busy and report is not None:
                status = replace(report.status, up=False, last_error=f"deadline: still fetching after {deadline_s:g}s")
                report = replace(report, status=status)
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
        # Minute keys for bodies without sample timestamps; the demo injects its simulated clock.
        self.minute_clock = minute_clock or clock
        self.window_minutes = max(1, math.ceil(settings.window_seconds / 60))
        self.states: dict[str, EndpointState] = {}
        self.poll_outcomes: Counter[str] = Counter()
        self.discovered = 0
        self.last_list_error: str | None = None
        self.snapshot = Snapshot(workspace=source.workspace)
        self._pool = ThreadPoolExecutor(max_workers=settings.max_concurrent_requests, thread_name_prefix="poll")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def poll(self) -> Snapshot:
        started = self.clock()
        try:
            listing = self.source.list_endpoints()
        except Exception as exc:  # FetchError, or anything unexpected: the endpoints we know stay polled
            reason = exc.reason if isinstance(exc, FetchError) else "internal_error"
            log.warning("listing endpoints failed (%s): %s", reason, exc, exc_info=not isinstance(exc, FetchError))
            self.poll_outcomes["list_failed"] += 1
            self.last_list_error = f"{reason}: {exc}"
            listing = None
        if listing is not None:
            self.discovered = len(listing)
            index, count = self.settings.shard()
            self._reconcile([info for info in listing if self.settings.endpoints.selects(info)
                             and shard_of(info.name, count) == index])

        states = list(self.states.values())
        # An endpoint still busy from an earlier poll (a hanging request) is not polled twice.
        running = {s.info.name: self._pool.submit(self._poll_endpoint, s) for s in states if s.begin()}
        deadline = self.settings.poll_deadline_seconds or 0.8 * self.settings.poll_interval_seconds
        wait(running.values(), timeout=deadline)

        finished = self.clock()
        if listing is not None:
            self.poll_outcomes["success"] += 1
        reports, errors = [], {}
        for state in sorted(states, key=lambda s: s.info.name):
            report, state_errors = state.published(deadline)
            if report is not None:
                reports.append(report)
            errors.update({(state.info.name, call, reason): n for (call, reason), n in state_errors.items()})
        self.snapshot = Snapshot(
            endpoints=tuple(reports),
            completed_at_s=finished,
            poll_duration_s=finished - started,
            polls=dict(self.poll_outcomes),
            fetch_errors=errors,
            discovered=self.discovered,
            workspace=self.source.workspace,
            shard=self.settings.shard(),
        )
        log.debug("poll finished in %.3fs for %d endpoints", finished - started, len(states))
        return self.snapshot

    def _reconcile(self, selected: list[EndpointInfo]) -> None:
        """Adopt the listing: new endpoints get state, vanished ones lose theirs (and so their series)."""
        names = {info.name for info in selected}
        for name in [n for n in self.states if n not in names]:
            log.info("endpoint %s is gone; dropping its series", name)
            del self.states[name]
        for info in selected:
            state = self.states.get(info.name)
            if state is None:
                state = self.states[info.name] = EndpointState(info, self.window_minutes)
            elif state.info.detailed:
                # The list is fresher for state and tags; the detail holds what the list lacks.
                changed = info.last_updated_ms != state.info.last_updated_ms
                state.info = replace(state.info, ready=info.ready, config_update=info.config_update,
                                     tags=info.tags, last_updated_ms=info.last_updated_ms)
                if changed:
                    state.detail_at = None  # configuration changed: re-read it now
            else:
                state.info = info
            state.listed = True

    def _poll_endpoint(self, state: EndpointState) -> None:
        try:
            self._refresh_detail(state)
            self._fetch_metrics(state)
        except Exception as exc:  # a bug must not take the other endpoints down with it
            log.exception("unexpected error polling endpoint %s", state.info.name)
            self._failed(state, "internal_error", f"{type(exc).__name__}", self.clock())
        try:
            report = self._report(state)
        except Exception:
            log.exception("unexpected error analysing endpoint %s", state.info.name)
            report = None
        with state.lock:
            if report is not None:
                state.report = report
            elif state.report is not None:  # keep the last figures, but never claim the endpoint is up
                state.report = replace(state.report, status=replace(state.status, up=False))
            state.busy = False

    def _refresh_detail(self, state: EndpointState) -> None:
        now = self.clock()
        if state.detail_at is not None and now - state.detail_at < self.settings.detail_refresh_seconds:
            return
        try:
            state.info = self.source.describe(state.info.name)
            state.detail_at = now
        except FetchError as exc:
            with state.lock:
                state.errors[("detail", exc.reason)] += 1
            log.debug("detail of %s failed: %s", state.info.name, exc)

    def _fetch_metrics(self, state: EndpointState) -> None:
        name = state.info.name
        started = self.clock()
        try:
            body = self.source.fetch_metrics(name)
            parsed = parse_metrics(body.text, body.content_type, self.settings.max_served_entities)
        except (FetchError, MetricsParseError) as exc:
            reason = exc.reason if isinstance(exc, FetchError) else "parse_error"
            self._failed(state, reason, str(exc), started)
            return
        now_minute_s = self.minute_clock()
        timestamp_ms = parsed.timestamp_ms
        if timestamp_ms is not None and timestamp_ms > (now_minute_s + MAX_CLOCK_SKEW_S) * 1000:
            # A timestamp far in the future would make every later minute look old: distrust it.
            log.warning("metrics of %s carry a timestamp %.0fs ahead of the clock; using the clock", name,
                        timestamp_ms / 1000 - now_minute_s)
            timestamp_ms = None
        if timestamp_ms is None:
            # Without timestamps the clock keys the minute. A body identical to the one stored less than
            # a refresh period ago is the same source minute seen across a clock-minute boundary; an
            # identical body after that is a genuinely repeated minute (an idle endpoint's zeros).
            if body.text == state.last_body and now_minute_s - state.last_body_at < SOURCE_REFRESH_S * 1.5:
                self._succeeded(state, started)
                return
            state.last_body, state.last_body_at = body.text, now_minute_s
        key = minute_key_of(timestamp_ms, now_minute_s)
        state.window(None).ingest(key, parsed.endpoint)
        for entity, figures in parsed.entities.items():
            state.window(entity).ingest(key, figures)
        # Entities that stopped reporting leave once their minutes age out of the window.
        newest = state.window(None).newest_key or key
        for entity in [e for e, w in state.windows.items() if e is not None and (w.newest_key or 0) <= newest - self.window_minutes]:
            del state.windows[entity]
        self._succeeded(state, started)

    def _succeeded(self, state: EndpointState, started: float) -> None:
        now = self.clock()
        if not state.status.up and state.status.last_success_s is not None:
            log.info("metrics of %s recovered", state.info.name)
        with state.lock:
            state.status = PollStatus(up=True, last_success_s=now, last_error=None, duration_s=now - started)

    def _failed(self, state: EndpointState, reason: str, message: str, started: float) -> None:
        if state.status.up or state.status.last_success_s is None:
            log.warning("metrics of %s failed (%s): %s", state.info.name, reason, message)
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
                capacity = info.max_provisioned_concurrency
            else:
                capacity = entity_capacity(served[entity]) if entity in served else None
            figures = analyze(window.in_window(), capacity)
            return SeriesReport(entity, figures, checks(figures, targets), window.counters)

        endpoint = series(None, state.window(None))
        entities = tuple(series(e, w) for e, w in sorted(state.windows.items(), key=lambda kv: kv[0] or "") if e is not None)
        hints = evaluate(self.settings.remediation, info, endpoint.figures, endpoint.checks, targets, state.hints,
                         metrics_fresh=state.status.up, config_fresh=state.listed and info.detailed, now_s=self.clock())
        state.listed = False
        advice = recommend(self.settings.remediation, info, endpoint.figures, endpoint.checks, targets)
        return EndpointReport(info, endpoint, entities, state.status, hints, advice)
