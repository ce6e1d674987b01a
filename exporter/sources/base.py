"""The seam between the pipeline and a serving platform.

A source speaks its platform's wire format and hands the pipeline platform-neutral
data: `EndpointInfo` for configuration, and per fetch an `Observation` of one source
interval's figures in base units (seconds, ratios 0-1, counts for the interval). Nothing
downstream of a source knows a platform's metric names, units or label names.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from ..model import EndpointInfo, MinuteFigures, Replica


@dataclass(frozen=True)
class Observation:
    """One fetch of an endpoint's figures: the endpoint as a whole and, where the platform labels them,
    each served entity (at most the source's entity cap; the rest count towards the endpoint only)."""

    endpoint: MinuteFigures
    entities: Mapping[str, MinuteFigures] = field(default_factory=dict)
    # The platform's own time for this data (milliseconds); None: the pipeline keys it by its clock.
    timestamp_ms: int | None = None
    # Identifies the data served: an equal fingerprint within the source's refresh period is the same data
    # served again (only consulted when there is no timestamp). None: no such identity.
    fingerprint: bytes | None = None
    # "per_minute": histograms hold the minute's observations. "unknown": the platform does not say whether
    # they are per minute or cumulative, and the window tells them apart (pipeline/window.py).
    histograms: Literal["per_minute", "unknown"] = "per_minute"
    # Self-hosted: each replica scraped for this observation and whether it answered.
    replicas: tuple[Replica, ...] = ()


class FetchError(Exception):
    """A request failed. `reason` is a short, bounded label value; the message never holds a credential."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class MetricsParseError(FetchError):
    """The body is not a metrics exposition the source understands. The message never quotes the body."""

    def __init__(self, message: str):
        super().__init__("parse_error", message)


class InvalidDataError(FetchError):
    """The body parses, but holds what cannot be: the same series twice, a negative or infinite count.
    Refused whole (never summed, clipped or half taken): the endpoint's window keeps the minutes it had."""

    def __init__(self, message: str):
        super().__init__("invalid_data", message)


class ApiUsage:
    """The calls a source makes to its platform, by call (list, detail, metrics, token) and outcome, and
    its retries: what the exporter costs the platform's API rate limits. Thread-safe; counts only grow."""

    OUTCOMES = ("2xx", "3xx", "429", "4xx", "5xx", "timeout", "connection")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: Counter[tuple[str, str]] = Counter()
        self._retries: Counter[str] = Counter()

    @staticmethod
    def outcome(status: int) -> str:
        return "429" if status == 429 else f"{status // 100}xx" if 200 <= status < 600 else "connection"

    def count(self, call: str, outcome: str) -> None:
        with self._lock:
            self._calls[(call, outcome)] += 1

    def retry(self, call: str) -> None:
        with self._lock:
            self._retries[call] += 1

    def totals(self) -> tuple[dict[tuple[str, str], int], dict[str, int]]:
        """(calls by (call, outcome), retries by call), copied."""
        with self._lock:
            return dict(self._calls), dict(self._retries)


class Source(Protocol):
    platform: str  # the `platform` label of the endpoints it lists
    workspace: str | None  # where it reads from (a workspace host), once known
    refresh_seconds: float  # how often the platform publishes new figures
    usage: ApiUsage  # its calls to the platform

    def list_endpoints(self, deadline: float | None = None) -> list[EndpointInfo]:
        """`deadline` (time.monotonic()), as for `fetch`: retries never pass it."""
        ...

    def describe(self, name: str, deadline: float | None = None) -> EndpointInfo: ...

    def fetch(self, name: str, deadline: float | None = None) -> Observation:
        """`deadline`: time.monotonic() past which the fetch must not go on (retries included)."""
        ...

    def close(self) -> None:
        """Release connections and threads; the source is not used after."""
        ...
