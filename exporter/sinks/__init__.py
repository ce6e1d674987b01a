"""Where snapshots go: the Prometheus collector (prometheus.py, rendered at scrape time), the HTTP
server with the JSON API (http.py), and push sinks, which receive every new Snapshot (today one:
Datadog, in datadog/, on when DD_API_KEY is set).

The daemon hands each published snapshot to every push sink with `offer`, which must return at once
(a slow destination never delays polling or /metrics), registers each sink's `collector()` (its
self-metrics) in its registry, and calls `stop` on shutdown.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from prometheus_client.registry import Collector

    from ..model import Snapshot


class SnapshotSink(Protocol):
    name: str

    def offer(self, snapshot: Snapshot) -> None: ...

    def start(self) -> SnapshotSink: ...

    def stop(self) -> None: ...

    def collector(self) -> Collector: ...
