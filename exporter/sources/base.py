"""The seam between the poller and a serving platform."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..model import EndpointInfo


@dataclass(frozen=True)
class MetricsBody:
    text: bytes
    content_type: str


class FetchError(Exception):
    """A request failed. `reason` is a short, bounded label value; the message never holds a credential."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class Source(Protocol):
    workspace: str | None

    def list_endpoints(self) -> list[EndpointInfo]: ...

    def describe(self, name: str) -> EndpointInfo: ...

    def fetch_metrics(self, name: str) -> MetricsBody: ...
