"""The seam between the pipeline and a serving platform.

A source speaks its platform's wire format and hands the pipeline platform-neutral
data: `EndpointInfo` for configuration, and per fetch an `Observation` of one source
interval's figures in base units (seconds, ratios 0-1, counts for the interval). Nothing
downstream of a source knows a platform's metric names, units or label names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from ..model import EndpointInfo, MinuteFigures


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


class FetchError(Exception):
    """A request failed. `reason` is a short, bounded label value; the message never holds a credential."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class MetricsParseError(FetchError):
    """The body is not a metrics exposition the source understands. The message never quotes the body."""

    def __init__(self, message: str):
        super().__init__("parse_error", message)


class Source(Protocol):
    platform: str  # the `platform` label of the endpoints it lists
    workspace: str | None  # where it reads from (a workspace host), once known
    refresh_seconds: float  # how often the platform publishes new figures

    def list_endpoints(self) -> list[EndpointInfo]: ...

    def describe(self, name: str) -> EndpointInfo: ...

    def fetch(self, name: str) -> Observation: ...
