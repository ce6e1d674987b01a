"""Push sinks: receivers of every new Snapshot besides the pull-based /metrics and JSON API.

The daemon hands each published snapshot to every sink with `offer`, which must return at once
(a slow destination never delays polling or /metrics), registers each sink's `collector()` (its
self-metrics) in its registry, and calls `stop` on shutdown. Today there is one: Datadog
(exporter/sinks/datadog.py), on when DD_API_KEY is set.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Protocol

from prometheus_client.registry import Collector

from ..config import Settings
from ..model import Snapshot


class SnapshotSink(Protocol):
    name: str

    def offer(self, snapshot: Snapshot) -> None: ...

    def start(self) -> SnapshotSink: ...

    def stop(self) -> None: ...

    def collector(self) -> Collector: ...


def build_sinks(settings: Settings, environ: Mapping[str, str] = os.environ) -> list[SnapshotSink]:
    """The sinks the environment turns on (Datadog: DD_API_KEY). Raises ConfigError for unusable settings."""
    from .datadog import build  # imports datadog-api-client only when asked for

    sink = build(settings, environ)
    return [sink] if sink is not None else []
