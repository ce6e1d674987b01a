"""The Datadog sink: each snapshot's figures as metrics through the v2 series API, hint transitions as
events through the v1 events API, delivered by a background thread that survives intake outages.

* `offer(snapshot)` only appends to a short hand-off queue: polling and /metrics never wait for Datadog.
* The sender thread translates each snapshot (points.py), packs its points into request bodies at
  once (serialised and gzip-compressed within the documented payload limits, about 9 bytes a point),
  queues them in the backlog (backlog.py: bounded memory, then an optional spill directory; the
  oldest dropped when full), and delivers the backlog oldest first, one request at a time.
* A timeout, a connection error, 408, 429 or 5xx leaves the payload in the backlog and retries it after
  an exponential backoff with jitter, or after the time a rate-limit header asks for. A 413 splits it.
  Other answers (400, 403, ...) drop it: retrying cannot make it succeed. Points older than the
  intake accepts are dropped before sending, never sent.
* Every point is counted once as sent or dropped (and as retried for each failed attempt) in
  `model_serving_exporter_datadog_points_total{outcome}` on /metrics.

The API key is read from DD_API_KEY by `build` and lives only in the client's configuration: it is
never logged, never put in an error message, and never exposed on /metrics or /api/v1/endpoints.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import os
import random
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import urllib3
from datadog_api_client import ApiClient, Configuration
from datadog_api_client.exceptions import ApiException
from datadog_api_client.v1.api.events_api import EventsApi
from datadog_api_client.v1.model.event_alert_type import EventAlertType
from datadog_api_client.v1.model.event_create_request import EventCreateRequest
from datadog_api_client.v1.model.event_priority import EventPriority
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ...model import Snapshot
from ...strict import ConfigError
from ..budget import SeriesBudget
from .backlog import Backlog, Payload
from .delivery import Backoff, BoundedBuffer, exhausted, retry_after_seconds
from .points import COUNT, METRICS, PREFIX, SOURCE_MINUTE_S, HintEvent, Point, Translator
from .settings import DatadogSettings

if TYPE_CHECKING:
    from ...config import Settings

log = logging.getLogger(__name__)

DEFAULT_SITE = "datadoghq.com"
# POST /api/v2/series: "The maximum payload size is 500 kilobytes (512000 bytes). Compressed payloads must
# have a decompressed size of less than 5 megabytes (5242880 bytes)."
# (https://docs.datadoghq.com/api/latest/metrics/#submit-metrics; the same text is in the client's
# MetricsApi.submit_metrics docstring.) We stay a little below both.
MAX_COMPRESSED_BYTES = 500_000
MAX_UNCOMPRESSED_BYTES = 5_000_000
SERIES_PATH = "/api/v2/series"
EXPIRY_CHECK_S = 10.0  # how often the backlog is scanned for points too old for the intake
HANDOFF_SNAPSHOTS = 16  # snapshots waiting for the sender thread; more means the thread is stuck
EVENT_BUFFER = 10_000
RETRYABLE_STATUS = {408, 429}
DROP_REASONS = ("buffer_full", "expired", "rejected", "shutdown", "spill_unreadable")
_SITE = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+")


@dataclass(frozen=True)
class DatadogTarget:
    """Where the API is and the keys for it. The repr never shows a key."""

    api_key: str
    url: str
    app_key: str | None = None

    def __repr__(self) -> str:
        return f"DatadogTarget(url={self.url!r}, api_key=<redacted>, app_key={'<redacted>' if self.app_key else None})"

    __str__ = __repr__

    @classmethod
    def from_env(cls, settings: Settings, environ: Mapping[str, str] = os.environ) -> DatadogTarget | None:
        """DD_API_KEY (None when unset: the sink is off), DD_APP_KEY, and the API URL from
        SERVING_EXPORTER_DATADOG_URL (`settings.datadog_url`) or DD_SITE (default datadoghq.com)."""
        api_key = (environ.get("DD_API_KEY") or "").strip()
        if not api_key:
            return None
        return cls(api_key, api_url(settings, environ), (environ.get("DD_APP_KEY") or "").strip() or None)

    def configuration(self, timeout_s: float, app_key: bool = False, **options: Any) -> Configuration:
        """A client configuration for this target; `options` go to Configuration (e.g. retry settings)."""
        keys = {"apiKeyAuth": self.api_key}
        if app_key and self.app_key:
            keys["appKeyAuth"] = self.app_key
        config = Configuration(host=self.url, api_key=keys, request_timeout=timeout_s, **options)
        config.api_key = keys  # Configuration() also reads DD_* from the environment: only ours count
        return config


def api_url(settings: Settings, environ: Mapping[str, str] = os.environ) -> str:
    """The API base URL: the explicit override, else https://api.<DD_SITE>."""
    if settings.datadog_url:
        return settings.datadog_url
    site = (environ.get("DD_SITE") or DEFAULT_SITE).strip().lower()
    site = site.removeprefix("https://").removeprefix("app.").removeprefix("api.").rstrip("/")
    if not _SITE.fullmatch(site):
        raise ConfigError([f"environment variable DD_SITE: not a Datadog site name ({site!r}); e.g. datadoghq.com, "
                           "datadoghq.eu, us3.datadoghq.com"])
    return f"https://api.{site}"


def build(settings: Settings, environ: Mapping[str, str] = os.environ) -> DatadogSink | None:
    """The sink when DD_API_KEY is set, else None. Raises ConfigError for an unusable DD_SITE."""
    target = DatadogTarget.from_env(settings, environ)
    if target is None:
        log.debug("Datadog sink off: DD_API_KEY is not set")
        return None
    log.info("Datadog sink on: sending to %s", re.sub(r"//[^/@]*@", "//", target.url))  # no proxy credentials
    return DatadogSink(settings.datadog, target, budget=settings.series)


class DatadogSink:
    """See the module docstring. `clock` (wall time, for point ages), `monotonic` (retry schedule) and
    `random` (jitter) are injectable, and `step()` runs one round without the thread, so tests can drive
    the retry schedule without sleeping."""

    name = "datadog"

    def __init__(self, settings: DatadogSettings, target: DatadogTarget, *, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic, random: Callable[[], float] = random.random,
                 max_compressed_bytes: int = MAX_COMPRESSED_BYTES, max_uncompressed_bytes: int = MAX_UNCOMPRESSED_BYTES,
                 budget: SeriesBudget | None = None):
        self.settings = settings
        self.target = target
        self.clock, self.monotonic = clock, monotonic
        self.translator = Translator(tags=settings.tags, histogram_buckets=settings.histogram_buckets,
                                     events=settings.events, clock=clock, budget=budget or SeriesBudget())
        self.backlog = Backlog(settings.buffer_bytes, self._count_dropped, settings.spill_directory, settings.spill_max_bytes)
        self.events: BoundedBuffer[HintEvent] = BoundedBuffer(EVENT_BUFFER)
        # Each API has its own backoff: an events outage does not hold back the metrics, nor the reverse.
        self.backoff = {api: Backoff(settings.backoff_initial_seconds, settings.backoff_max_seconds, random)
                        for api in ("series", "events")}
        self.max_compressed_bytes, self.max_uncompressed_bytes = max_compressed_bytes, max_uncompressed_bytes
        # No hidden retries (this class retries, and counts), and (data, status, headers) back, so that
        # the rate-limit headers of a success are seen too.
        self._api = ApiClient(target.configuration(settings.request_timeout_seconds, retry_policy=False,
                                                   return_http_data_only=False, check_input_type=False))
        self._events_api = EventsApi(self._api)
        self._series_url = target.url.rstrip("/") + SERIES_PATH
        self._handoff: deque[Snapshot] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._next_attempt = {"series": 0.0, "events": 0.0}  # monotonic time before which an API is not called
        self._last_api = "series"  # events and metrics take turns, so a burst of events never starves the metrics
        self._next_expiry_check = 0.0
        # The backlog's head being sent: its id and what is left of it to send (trimmed of expired points,
        # split after a 413). Removed from the backlog only once every piece is delivered or given up.
        self._head: tuple[int, list[Payload]] | None = None
        # Self-metrics, read by the collector from other threads.
        self._lock = threading.Lock()
        self.points: Counter[str] = Counter()  # sent / retried / dropped
        self.dropped: Counter[str] = Counter()  # buffer_full / expired / rejected / shutdown / spill_unreadable
        self.skipped_snapshots = 0
        self.events_outcomes: Counter[str] = Counter()
        self.requests: Counter[tuple[str, str]] = Counter()  # (api, result)
        self.payload_bytes: Counter[str] = Counter()  # (api) gzip-compressed request bytes
        self.last_success_s: float | None = None

    # -- what the daemon calls ------------------------------------------------------------------

    def offer(self, snapshot: Snapshot) -> None:
        """Queue a snapshot for the sender thread; never blocks on the network."""
        with self._cond:
            if len(self._handoff) >= HANDOFF_SNAPSHOTS:  # the thread is stuck; keep the newest snapshots
                self._handoff.popleft()
                with self._lock:
                    self.skipped_snapshots += 1
                log.warning("Datadog sink is behind: skipped a snapshot (its counts go out with the next minute)")
            self._handoff.append(snapshot)
            self._cond.notify()

    def start(self) -> DatadogSink:
        self._thread = threading.Thread(target=self._run, name="datadog-sink", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Deliver what can be delivered within `shutdown_flush_seconds`, then stop the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(self.settings.shutdown_flush_seconds + self.settings.request_timeout_seconds + 1)
        self._api.close()
        self.backlog.close()

    def collector(self) -> Collector:
        return _SinkCollector(self)

    # -- the sender thread ----------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                wait = self.step()
            except Exception:  # a bug must neither kill the thread nor make it spin
                log.exception("Datadog sink: unexpected error; carrying on")
                wait = 1.0
            with self._cond:
                if self._stopping:
                    break
                if not self._handoff and (wait is None or wait > 0):
                    self._cond.wait(timeout=wait)
                if self._stopping:
                    break
        try:
            self._flush_before_exit()
        except Exception:
            log.exception("Datadog sink: unexpected error while stopping")

    def _flush_before_exit(self) -> None:
        deadline = self.monotonic() + self.settings.shutdown_flush_seconds
        self._translate_pending()
        while self.monotonic() < deadline:
            wait = self._due_in()
            if wait is None or self.monotonic() + wait >= deadline:
                break
            if wait > 0:
                time.sleep(wait)
            self._send_once()
        # What is left waits in the spill directory for the next start, if there is one; else it is lost.
        self._head = None  # its payload is still in the backlog (pieces already sent may be sent again)
        lost, events_left = self.backlog.spill_all(), self.events.clear()
        if lost or events_left:
            self._count_dropped("shutdown", lost)
            with self._lock:
                self.events_outcomes["dropped"] += events_left
            log.warning("Datadog sink stopped with %d points and %d events undelivered", lost, events_left)
        if len(self.backlog):
            log.info("Datadog sink stopped with %d points waiting in %s for the next start", self.backlog.points,
                     self.backlog.directory)

    def step(self) -> float | None:
        """One round: translate waiting snapshots, drop expired points, send at most one request when
        the backoff allows. Returns seconds until the next round is due (0: now; None: idle)."""
        self._translate_pending()
        self._expire()
        wait = self._due_in()
        if wait is None or wait > 0:
            return wait
        self._send_once()
        return self._due_in()

    def _due_in(self) -> float | None:
        """Seconds until an API with something to send may be called (0: now; None: nothing to send)."""
        now = self.monotonic()
        pending = [api for api, items in (("events", self.events), ("series", self.backlog)) if len(items)]
        return min((max(0.0, self._next_attempt[api] - now) for api in pending), default=None)

    def _translate_pending(self) -> None:
        while True:
            with self._cond:
                if not self._handoff:
                    return
                snapshot = self._handoff.popleft()
            try:
                points, events = self.translator.translate(snapshot)
            except Exception:  # a bug in translation must not stop delivery of what is buffered
                log.exception("cannot translate a snapshot for Datadog")
                continue
            dropped = self.dropped["buffer_full"]
            for payload in pack(points, self.max_uncompressed_bytes, self.max_compressed_bytes):
                self.backlog.append(payload)
            if self.dropped["buffer_full"] > dropped:
                log.warning("Datadog backlog full: dropped the %d oldest points", self.dropped["buffer_full"] - dropped)
            lost = self.events.extend(events)
            if lost:
                with self._lock:
                    self.events_outcomes["dropped"] += lost

    def _expire(self) -> None:
        max_age = self.settings.max_point_age_seconds
        if max_age is None or not len(self.backlog) or self.monotonic() < self._next_expiry_check:
            return
        self._next_expiry_check = self.monotonic() + EXPIRY_CHECK_S  # a scan of the whole backlog: not every round
        expired = self.backlog.expire(self._oldest_allowed(), keep=self._head[0] if self._head else None)
        if expired:
            self._count_dropped("expired", expired)
            log.warning("dropped %d Datadog points older than %gs (the intake would ignore them)", expired, max_age)

    def _send_once(self) -> None:
        """One request to an API that is due: an event or a batch of points, taking turns when both are."""
        now = self.monotonic()
        events_due = len(self.events) and now >= self._next_attempt["events"]
        series_due = len(self.backlog) and now >= self._next_attempt["series"]
        if events_due and (not series_due or self._last_api == "series"):
            self._last_api = "events"
            self._send_event(self.events.head(1)[0])
        elif series_due:
            self._last_api = "series"
            self._send_points()

    def _oldest_allowed(self) -> int:
        max_age = self.settings.max_point_age_seconds
        return -1 if max_age is None else math.ceil(self.clock() - max_age)

    def _send_points(self) -> None:
        """Send the first piece of the backlog's head, trimmed of points the intake would no longer accept."""
        head = self.backlog.head()
        if head is None:
            return
        seq, payload = head
        if self._head is None or self._head[0] != seq:  # a new head (or the one being sent was dropped)
            self._head = (seq, [payload])
        pieces = self._head[1]
        oldest_allowed = self._oldest_allowed()
        if pieces[0].oldest < oldest_allowed:
            trimmed, expired = trim(pieces[0], oldest_allowed, self.max_uncompressed_bytes, self.max_compressed_bytes)
            pieces[0:1] = trimmed
            self._count_dropped("expired", expired)
            log.warning("dropped %d Datadog points older than %ds (the intake would ignore them)", expired,
                        self.settings.max_point_age_seconds)
        if pieces:
            piece = pieces[0]
            result = self._call("series", piece.points, lambda: self._post_series(piece.body))
            if result == "sent":
                pieces.pop(0)
                with self._lock:
                    self.points["sent"] += piece.points
                    self.payload_bytes["series"] += len(piece.body)
            elif result == "too_large" and piece.points > 1 and len(halves := split(piece, self.max_uncompressed_bytes,
                                                                                      self.max_compressed_bytes)) > 1:
                pieces[0:1] = halves
                with self._lock:
                    self.points["retried"] += piece.points
            elif result == "retry":
                with self._lock:
                    self.points["retried"] += piece.points
            else:  # rejected (or a 413 that cannot be split): retrying cannot help
                pieces.pop(0)
                self._count_dropped("rejected", piece.points)
        if not pieces:
            self.backlog.remove(seq)
            self._head = None

    def _post_series(self, body: bytes) -> tuple[None, int, dict[str, str]]:
        """POST an already compressed body to the v2 series intake through the client's connection pool
        (its proxy, CA bundle and timeout). MetricsApi.submit_metrics would serialise and compress a dict
        again; the backlog keeps bodies compressed. Answers as the client does: an ApiException unless 2xx."""
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip", "Accept": "application/json",
                   "User-Agent": self._api.user_agent, "DD-API-KEY": self.target.api_key}
        r = self._api.rest_client.pool_manager.request("POST", self._series_url, body=body, headers=headers, retries=False,
                                                       timeout=urllib3.Timeout(total=self.settings.request_timeout_seconds))
        if not 200 <= r.status <= 299:
            raise ApiException(http_resp=r)
        return None, r.status, dict(r.headers)

    def _send_event(self, event: HintEvent) -> None:
        def request() -> Any:  # built inside _call, so that a body the model rejects is dropped, not retried forever
            body = EventCreateRequest(title=event.title, text=event.text, alert_type=EventAlertType(event.alert_type),
                                      aggregation_key=event.aggregation_key, tags=list(event.tags),
                                      date_happened=event.date_happened, priority=EventPriority(event.priority))
            return self._events_api.create_event(body=body)

        result = self._call("events", 1, request)
        if result == "sent":
            self.events.remove_head(1)
            with self._lock:
                self.events_outcomes["sent"] += 1
        elif result in ("retry", "too_large"):
            with self._lock:
                self.events_outcomes["retried"] += 1
        else:
            self.events.remove_head(1)
            with self._lock:
                self.events_outcomes["dropped"] += 1

    def _call(self, api: str, n: int, request: Callable[[], Any]) -> str:
        """Run one request; return sent, retry, too_large or rejected, and schedule the next attempt."""
        what = f"{n} points" if api == "series" else "an event"
        try:
            _, status, headers = request()
        except ApiException as exc:
            status = exc.status or 0
            headers = dict(exc.headers or {})
            self._count_request(api, str(status) if status else "error")
            if status == 413:
                log.warning("Datadog %s answered 413 (payload too large) for %s: splitting the batch", api, what)
                return "too_large"
            if status in RETRYABLE_STATUS or status >= 500 or status == 0:
                delay = self.backoff[api].failure(retry_after_seconds(headers, self.clock(), rate_limited=status == 429))
                self._next_attempt[api] = self.monotonic() + delay
                log.warning("Datadog %s answered %s%s for %s; retrying in %.1fs", api, status or "an error",
                            f" {exc.reason}" if exc.reason and status else "", what, delay)
                return "retry"
            log.error("Datadog %s rejected %s with %s %s%s", api, what, status, exc.reason or "",
                      " (check DD_API_KEY and DD_SITE)" if status in (401, 403) else "")
            return "rejected"
        except urllib3.exceptions.HTTPError as exc:  # timeouts, refused connections, broken responses
            self._count_request(api, _failure(exc))
            delay = self.backoff[api].failure()
            self._next_attempt[api] = self.monotonic() + delay
            log.warning("Datadog %s request failed (%s) for %s; retrying in %.1fs", api, type(exc).__name__, what, delay)
            return "retry"
        except Exception as exc:  # a bug or an invalid body: do not loop on it
            log.error("cannot send %s to Datadog %s: %s", what, api, type(exc).__name__, exc_info=True)
            self._count_request(api, "error")
            return "rejected"
        self._count_request(api, str(status))
        self.backoff[api].success()
        self.last_success_s = self.clock()
        # A success that used up the rate-limit period: wait for its reset before the next request.
        reset = retry_after_seconds(headers, self.clock(), rate_limited=True) if exhausted(headers) else None
        self._next_attempt[api] = self.monotonic() + reset if reset else 0.0
        return "sent"

    def _count_request(self, api: str, result: str) -> None:
        with self._lock:
            self.requests[(api, result)] += 1

    def _count_dropped(self, reason: str, n: int) -> None:
        with self._lock:
            self.points["dropped"] += n
            self.dropped[reason] += n


def _failure(exc: urllib3.exceptions.HTTPError) -> str:
    """connection (refused, reset, DNS), timeout or error. urllib3's NewConnectionError subclasses its
    ConnectTimeoutError, so a refused connection is told apart before a timeout is."""
    reason = exc.reason if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason else exc
    if isinstance(reason, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ProtocolError)):
        return "connection"
    if isinstance(reason, urllib3.exceptions.TimeoutError) or "timed out" in str(reason):
        return "timeout"
    return "error"


def pack(points: Iterable[Point], max_uncompressed: int = MAX_UNCOMPRESSED_BYTES,
         max_compressed: int = MAX_COMPRESSED_BYTES) -> list[Payload]:
    """Points as v2 series request bodies, in order: the points of one series share one series entry."""
    series: dict[tuple, dict] = {}
    for point in points:
        value = {"timestamp": point.timestamp, "value": point.value}
        existing = series.get(point.series_key)
        if existing is None:
            series[point.series_key] = _series_dict(point, value)
        else:
            existing["points"].append(value)
    return pack_series(list(series.values()), max_uncompressed, max_compressed)


def pack_series(series: list[dict], max_uncompressed: int = MAX_UNCOMPRESSED_BYTES,
                max_compressed: int = MAX_COMPRESSED_BYTES) -> list[Payload]:
    """v2 series dicts as gzip-compressed bodies `{"series": [...]}`, in order, each at most
    `max_uncompressed` bytes of JSON (exactly as json.dumps writes the body, as the client would) and
    `max_compressed` bytes compressed. One json.dumps of everything, then of each part when it is too
    big: one call per series would cost twice the CPU."""
    if not series:
        return []
    text = json.dumps({"series": series})
    if len(text) > max_uncompressed and len(series) > 1:
        parts = math.ceil(len(text) / max_uncompressed)  # a part still too big is cut again
        step = math.ceil(len(series) / parts)
        return [p for i in range(0, len(series), step) for p in pack_series(series[i:i + step], max_uncompressed, max_compressed)]
    body = gzip.compress(text.encode(), compresslevel=6, mtime=0)
    if len(body) > max_compressed and len(series) > 1:  # rare: it compresses worse than usual
        half = len(series) // 2
        return pack_series(series[:half], max_uncompressed, max_compressed) + pack_series(series[half:], max_uncompressed, max_compressed)
    stamps = [p["timestamp"] for s in series for p in s["points"]]
    return [Payload(body, len(stamps), min(stamps), max(stamps))]


def unpack(payload: Payload) -> list[dict]:
    """The series dicts of a payload."""
    return json.loads(gzip.decompress(payload.body))["series"]


def trim(payload: Payload, oldest_allowed: int, max_uncompressed: int = MAX_UNCOMPRESSED_BYTES,
         max_compressed: int = MAX_COMPRESSED_BYTES) -> tuple[list[Payload], int]:
    """The payload without its points older than `oldest_allowed`, and how many were removed."""
    kept = []
    for s in unpack(payload):
        s["points"] = [p for p in s["points"] if p["timestamp"] >= oldest_allowed]
        if s["points"]:
            kept.append(s)
    pieces = pack_series(kept, max_uncompressed, max_compressed)
    return pieces, payload.points - sum(p.points for p in pieces)


def split(payload: Payload, max_uncompressed: int = MAX_UNCOMPRESSED_BYTES,
          max_compressed: int = MAX_COMPRESSED_BYTES) -> list[Payload]:
    """The payload as two (after a 413), or as itself if it holds one series only."""
    series = unpack(payload)
    if len(series) < 2:
        return [payload]
    half = len(series) // 2
    return pack_series(series[:half], max_uncompressed, max_compressed) + pack_series(series[half:], max_uncompressed, max_compressed)


_UNITS = {PREFIX + name: d.unit for name, d in METRICS.items() if d.unit}


def _series_dict(point: Point, value: dict) -> dict:
    out: dict[str, Any] = {"metric": point.metric, "type": point.type, "points": [value]}
    if point.tags:
        out["tags"] = list(point.tags)
    unit = _UNITS.get(point.metric)
    if unit:
        out["unit"] = unit
    if point.type == COUNT:
        out["interval"] = SOURCE_MINUTE_S
    return out


class _SinkCollector(Collector):
    """The sink's self-metrics on /metrics."""

    def __init__(self, sink: DatadogSink):
        self._sink = sink

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        s = self._sink
        with s._lock:
            points, dropped, events = dict(s.points), dict(s.dropped), dict(s.events_outcomes)
            requests, payload, skipped = dict(s.requests), dict(s.payload_bytes), s.skipped_snapshots
        fam = CounterMetricFamily("model_serving_exporter_datadog_points", "Points for Datadog by outcome: sent (accepted by the intake), retried (once per failed attempt), dropped (never delivered).", labels=["outcome"])
        for outcome in ("sent", "retried", "dropped"):
            fam.add_metric([outcome], points.get(outcome, 0))
        yield fam
        fam = CounterMetricFamily("model_serving_exporter_datadog_points_dropped", "Points dropped by reason: buffer_full (the oldest, memory and spill directory full), expired (older than max_point_age_seconds, never sent), rejected (a 4xx answer), shutdown (not delivered nor spilled at exit), spill_unreadable (a spilled file that could not be read).", labels=["reason"])
        for reason in DROP_REASONS:
            fam.add_metric([reason], dropped.get(reason, 0))
        yield fam
        fam = CounterMetricFamily("model_serving_exporter_datadog_events", "Hint events for Datadog by outcome.", labels=["outcome"])
        for outcome in ("sent", "retried", "dropped"):
            fam.add_metric([outcome], events.get(outcome, 0))
        yield fam
        fam = CounterMetricFamily("model_serving_exporter_datadog_requests", "Requests to the Datadog API by API (series, events) and result (HTTP status, timeout, connection: refused or reset, error).", labels=["api", "result"])
        for (api, result), n in sorted(requests.items()):
            fam.add_metric([api, result], n)
        yield fam
        fam = CounterMetricFamily("model_serving_exporter_datadog_payload_bytes", "Gzip-compressed bytes of the metric payloads the intake accepted.", labels=["api"])
        fam.add_metric(["series"], payload.get("series", 0))
        yield fam
        fam = CounterMetricFamily("model_serving_exporter_datadog_skipped_snapshots", "Snapshots skipped because the sender thread was behind (their counts go out with the next minute).")
        fam.add_metric([], skipped)
        yield fam
        backlog = s.backlog
        g = GaugeMetricFamily("model_serving_exporter_datadog_buffer_points", "Points waiting for delivery to Datadog, in memory and spilled.")
        g.add_metric([], backlog.points)
        yield g
        g = GaugeMetricFamily("model_serving_exporter_datadog_buffer_bytes", "Compressed payload bytes waiting for delivery to Datadog, by location (memory, disk).", labels=["location"])
        g.add_metric(["memory"], backlog.memory_used)
        g.add_metric(["disk"], backlog.disk_used)
        yield g
        g = GaugeMetricFamily("model_serving_exporter_datadog_buffer_capacity_bytes", "Most bytes the Datadog backlog keeps, by location (datadog.buffer_bytes; datadog.spill_max_bytes, 0 without a usable spill directory).", labels=["location"])
        g.add_metric(["memory"], backlog.memory_bytes)
        g.add_metric(["disk"], backlog.disk_bytes if backlog.directory is not None else 0)
        yield g
        fam = CounterMetricFamily("model_serving_exporter_datadog_spilled_points", "Points written to the spill directory (datadog.spill_directory).")
        fam.add_metric([], backlog.spilled_points)
        yield fam
        fam = CounterMetricFamily("model_serving_exporter_datadog_spill_errors", "Failed operations on the spill directory (disk full, read-only, missing), by operation (open, write, read, delete).", labels=["operation"])
        for operation in ("open", "write", "read", "delete"):
            fam.add_metric([operation], backlog.errors.get(operation, 0))
        yield fam
        g = GaugeMetricFamily("model_serving_exporter_datadog_last_success_timestamp_seconds", "Time the Datadog API last accepted a request.")
        if s.last_success_s is not None:
            g.add_metric([], s.last_success_s)
        yield g
