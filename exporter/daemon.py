"""Wiring, in the direction data flows: a source, the Poller on an APScheduler interval, then the sinks
(the Prometheus collector in a registry, the HTTP server, push sinks)."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone

from apscheduler.schedulers.background import BackgroundScheduler
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from .config import Settings, parse_listen
from .memory import collect_less_often, freeze_long_lived, limit_malloc_arenas, release_free_memory
from .model import Snapshot
from .pipeline.poller import Poller
from .pipeline.workspace import WorkspaceAnalysis
from .sinks import SnapshotSink
from .sinks.http import HttpServer, make_app
from .sinks.prometheus import Exposition
from .sources import Source

log = logging.getLogger(__name__)

STOP_WAIT_S = 10  # well inside Kubernetes' default 30 s termination grace period


class Daemon:
    def __init__(self, settings: Settings, source: Source, clock: Callable[[], float] = time.time,
                 minute_clock: Callable[[], float] | None = None, sinks: Sequence[SnapshotSink] = ()):
        self.settings = settings
        self.poller = Poller(source, settings, clock=clock, minute_clock=minute_clock)
        self.workspace = WorkspaceAnalysis(settings)  # the endpoints together, after each endpoint's own analysis
        self._snapshot = self.poller.snapshot
        # What changes between polls is rendered at each scrape; the snapshot once per poll (Exposition).
        self.live = CollectorRegistry(auto_describe=False)
        # Push sinks (Datadog) get every new snapshot; their self-metrics are on /metrics.
        self.sinks = tuple(sinks)
        for sink in self.sinks:
            self.live.register(sink.collector())
        ProcessCollector(registry=self.live)
        PlatformCollector(registry=self.live)
        GCCollector(registry=self.live)
        self.exposition = Exposition(self.snapshot, self.live, settings.series)
        host, port = parse_listen(settings.listen)
        self.http = HttpServer(make_app(self.exposition, self.snapshot, settings.poll_interval_seconds), host, port)
        # One poll at a time; a poll that overruns makes the next one start late, never twice.
        self.scheduler = BackgroundScheduler(timezone=timezone.utc)
        self.scheduler.add_job(self._poll, "interval", seconds=settings.poll_interval_seconds, id="poll",
                               next_run_time=datetime.now(timezone.utc), max_instances=1, coalesce=True,
                               misfire_grace_time=None)
        self._stopped = threading.Event()
        self._polling = threading.Lock()
        self._frozen_after_first_poll = False

    def snapshot(self) -> Snapshot:
        return self._snapshot

    @property
    def url(self) -> str:
        host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "[::1]"}.get(self.http.host, self.http.host)
        host = f"[{host}]" if ":" in host and not host.startswith("[") else host
        return f"http://{host}:{self.http.port}"

    def _poll(self) -> None:
        with self._polling:
            if self._stopped.is_set():
                return
            try:
                snap = self._snapshot = self.workspace.apply(self.poller.poll())
            except Exception:  # keep the schedule alive whatever happens; the last snapshot stays served
                log.exception("poll failed")
                return
            for sink in self.sinks:  # offer() only queues: a slow sink never delays the next poll
                try:
                    sink.offer(snap)
                except Exception:
                    log.exception("sink %s did not take the snapshot", sink.name)
            try:  # render now, in the poll thread, so that no scrape waits for it
                self.exposition.warm()
            except Exception:
                log.exception("rendering the exposition failed")
            if not self._frozen_after_first_poll:  # the SDK client and the endpoints' state now exist
                freeze_long_lived()
                self._frozen_after_first_poll = True
            release_free_memory()

    def start(self) -> Daemon:
        limit_malloc_arenas()  # before the HTTP and poll threads start
        freeze_long_lived()  # the imports' objects
        collect_less_often()
        for sink in self.sinks:
            sink.start()
        self.http.start()
        self.scheduler.start()
        log.info("serving-exporter listening on %s (poll every %ss)", self.url, self.settings.poll_interval_seconds)
        return self

    def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        # Let a poll in progress publish what it has (its hung fetches cancelled) before tearing down.
        self.poller.abort()
        if self._polling.acquire(timeout=min(STOP_WAIT_S, self.settings.poll_interval_seconds)):
            self._polling.release()
        self.http.stop()
        self.poller.close()
        for sink in self.sinks:  # each delivers what it can within its own shutdown budget
            sink.stop()
        log.info("stopped")

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.snapshot().ready:
                return True
            time.sleep(0.05)
        return False


def run_until_signalled(stop: Callable[[], None]) -> None:
    """Block until SIGTERM or SIGINT, then stop cleanly. SIGHUP, which daemons take as "reload the
    configuration", must not kill the process (its default action): it is logged and ignored until
    reloading exists; a restart applies a new configuration."""
    done = threading.Event()

    def handler(signum: int, _frame: object) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        done.set()

    def hangup(_signum: int, _frame: object) -> None:
        log.warning("received SIGHUP: reloading the configuration is not supported yet; restart to apply a new one")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    if hasattr(signal, "SIGHUP"):
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, hangup)
    try:
        while not done.wait(1.0):
            pass
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        stop()
