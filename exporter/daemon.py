"""Wiring, in the direction data flows: a source, the Poller on an APScheduler interval, then the sinks
(the Prometheus collector in a registry, the HTTP server, push sinks); and the configuration reload
(SIGHUP, POST /-/reload) that swaps the settings between two polls."""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timezone

from apscheduler.schedulers.background import BackgroundScheduler
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from .config import ConfigError, Settings, parse_listen
from .logs import setup_logging
from .memory import collect_less_often, freeze_long_lived, limit_malloc_arenas, release_free_memory
from .model import ConfigReload, Snapshot
from .pipeline.poller import Poller
from .pipeline.workspace import WorkspaceAnalysis
from .sinks import SnapshotSink
from .sinks.http import HttpServer, make_app
from .sinks.lifecycle import with_lifecycle
from .sinks.prometheus import Exposition
from .sinks.webconfig import Guard, LiveWebConfig, WebConfig
from .sources import Source

log = logging.getLogger(__name__)

STOP_WAIT_S = 10  # well inside Kubernetes' default 30 s termination grace period
# Settings a reload cannot change: they are built into the HTTP server, the source's client and pools, the
# windows' length or the push sinks at start. A reload that changes one is refused.
RESTART_ONLY = ("listen", "max_concurrent_requests", "request_timeout_seconds", "retry_budget_seconds",
                "max_served_entities", "window_seconds", "shard_count", "shard_index", "series", "databricks",
                "self_hosted", "datadog", "datadog_url")


class Daemon:
    def __init__(self, settings: Settings, source: Source, clock: Callable[[], float] = time.time,
                 minute_clock: Callable[[], float] | None = None, sinks: Sequence[SnapshotSink] = (),
                 web: WebConfig | None = None, load: Callable[[], Settings] | None = None, lifecycle: bool = False):
        """`web`: the --web.config.file (TLS, basic auth, headers). `load` reads the configuration again, as at
        start, for a reload; without it a reload re-reads only the web configuration. `lifecycle`: serve
        POST /-/reload (--web.enable-lifecycle)."""
        self.settings = settings
        self.clock = clock
        self.poller = Poller(source, settings, clock=clock, minute_clock=minute_clock)
        self.workspace = WorkspaceAnalysis(settings)  # the endpoints together, after each endpoint's own analysis
        self._load = load or (lambda: self.settings)
        self._reloading = threading.Lock()  # one reload at a time
        self._pending: Settings | None = None  # validated, applied when the next poll starts
        self._publishing = threading.Lock()  # the snapshot is replaced by polls and by reloads
        self._reload_status = ConfigReload(successful=True, last_success_s=clock())
        self._snapshot = replace(self.poller.snapshot, config_reload=self._reload_status)
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
        app = with_lifecycle(make_app(self.exposition, self.snapshot, settings.poll_interval_seconds), self.reload, lifecycle)
        self.web = LiveWebConfig(web) if web else None
        handshake = self._handshake if web and web.context else None
        self.http = HttpServer(Guard(app, self.web.current) if self.web else app, host, port, handshake)
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
        return f"{'https' if self.web and self.web.current().context else 'http'}://{host}:{self.http.port}"

    def _handshake(self, sock: socket.socket) -> socket.socket:
        assert self.web is not None
        return self.web.current().handshake(sock)  # the certificates of the moment: they may have been renewed

    def reload(self) -> str | None:
        """Read the configuration (and the web configuration file) again and validate it completely. A valid
        one applies from the next poll (the web configuration at once); on any error the running one stays.
        Returns None, or the error, which is also logged."""
        with self._reloading:
            try:
                new = self._load()
                changed = [key for key in RESTART_ONLY if getattr(new, key) != getattr(self.settings, key)]
                if changed:
                    raise ConfigError([f"{key}: changed, which needs a restart (a reload cannot apply it)"
                                       for key in changed])
                web = self.web.reread() if self.web else None
            except Exception as exc:  # ConfigError, or a bug: either way the running configuration stays
                log.error("reloading the configuration failed; the previous one stays in force: %s", exc,
                          exc_info=not isinstance(exc, ConfigError))
                self._set_reload(ConfigReload(successful=False, last_success_s=self._reload_status.last_success_s))
                return str(exc)
            self._pending = new
            if self.web and web:
                self.web.use(web)
            if (new.log_level, new.log_format) != (self.settings.log_level, self.settings.log_format):
                setup_logging(new.log_level, new.log_format)  # at once: to debug what the next poll does
            self._set_reload(ConfigReload(successful=True, last_success_s=self.clock()))
            log.info("configuration reloaded; it applies from the next poll")
            return None

    def _set_reload(self, status: ConfigReload) -> None:
        with self._publishing:
            self._reload_status = status
            self._snapshot = replace(self._snapshot, config_reload=status)

    def _apply_pending(self) -> None:
        """Between two polls: the reloaded settings replace the running ones where they are read. Endpoint
        state (windows, hint hysteresis) stays in the Poller; an endpoint the new filter drops loses it."""
        with self._reloading:
            new, self._pending = self._pending, None
        if new is None:
            return
        if new.poll_interval_seconds != self.settings.poll_interval_seconds:
            self.scheduler.reschedule_job("poll", trigger="interval", seconds=new.poll_interval_seconds)
        self.settings = self.poller.settings = self.workspace.settings = new

    def _poll(self) -> None:
        with self._polling:
            if self._stopped.is_set():
                return
            self._apply_pending()
            try:
                snap = self.workspace.apply(self.poller.poll())
                with self._publishing:
                    snap = self._snapshot = replace(snap, config_reload=self._reload_status)
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


def run_until_signalled(stop: Callable[[], None], reload: Callable[[], object] | None = None) -> None:
    """Block until SIGTERM or SIGINT, then stop cleanly. SIGHUP reloads the configuration (`reload`, on a
    thread of its own); without `reload` it is logged and ignored, never the default action (exit)."""
    done = threading.Event()

    def handler(signum: int, _frame: object) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        done.set()

    def hangup(_signum: int, _frame: object) -> None:
        if reload is None:
            log.warning("received SIGHUP: this command has no configuration to reload")
            return
        log.info("received SIGHUP, reloading the configuration")
        threading.Thread(target=reload, name="reload", daemon=True).start()

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
