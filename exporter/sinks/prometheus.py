"""Prometheus exposition of the latest Snapshot, from the catalog, rendered once per snapshot.

Nothing here is a global gauge: each snapshot the poll publishes is rendered whole,
so an endpoint that disappears takes its series with it. The figures are a cache of
the last poll (the source is per-minute and slow to query), which
`model_serving_exporter_last_success_timestamp_seconds` makes alertable. Which
families exist, their help, labels and values all come from exporter/catalog.py.

Rendering 1,000 endpoints takes about half a second of CPU, so `Exposition` renders a
snapshot once per format (and gzips it once) and serves those bytes to every scrape,
appending the few live families (process, GC, push sinks) rendered per scrape. Gzip
members concatenate into one valid stream (RFC 1952), which Prometheus's reader takes.
"""

from __future__ import annotations

import gzip
import logging
import threading
from collections.abc import Callable, Iterator

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

from ..catalog import BY_NAME, FAMILIES, Family, of_scope, samples
from ..model import EndpointReport, Snapshot
from .budget import SeriesBudget

log = logging.getLogger(__name__)

_CLASSES = {"gauge": GaugeMetricFamily, "counter": CounterMetricFamily, "histogram": HistogramMetricFamily,
            "info": InfoMetricFamily}
SERIES, ENDPOINT, EXPORTER = of_scope("series"), of_scope("endpoint"), of_scope("exporter")
RENDER_ERRORS = BY_NAME["exporter_render_errors"]

Row = tuple[Family, tuple[str, ...], object]  # a family, its full label values, its value


class ServingCollector(Collector):
    """Renders whatever `snapshot()` returns; one endpoint failing to render never blanks the scrape."""

    def __init__(self, snapshot: Callable[[], Snapshot], budget: SeriesBudget | None = None):
        self._snapshot = snapshot
        self._budget = budget or SeriesBudget()

    def describe(self) -> list[Metric]:
        return []  # families depend on the data; registering must not trigger a poll

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        families = {f.name: _family(f) for f in FAMILIES if self._budget.keeps(f)}
        errors = 0
        for report in snap.endpoints:
            try:  # rendered apart first, so a failure leaves none of the endpoint's series behind
                rows = list(endpoint_rows(report, self._budget))
            except Exception:  # render the others; the failure shows in the log and the gauge
                log.exception("cannot render endpoint %s", report.info.name)
                errors += 1
                continue
            for family, labels, value in rows:
                _add(families[family.name], family, labels, value)
        for family in EXPORTER:
            for labels, value in samples(family, snap):
                _add(families[family.name], family, labels, value)
        _add(families[RENDER_ERRORS.name], RENDER_ERRORS, (), float(errors))
        yield from families.values()


def endpoint_rows(report: EndpointReport, budget: SeriesBudget | None = None) -> Iterator[Row]:
    """Every sample of one endpoint within the budget: its series rows (the endpoint, then each served
    entity), then the endpoint-wide families."""
    budget = budget or SeriesBudget()
    name = report.info.name
    for family in SERIES:
        if budget.keeps(family):
            for series in budget.rows(report):
                for labels, value in samples(family, series):
                    yield family, (name, series.entity or "", *labels), value
    for family in ENDPOINT:
        if budget.keeps(family):
            for labels, value in samples(family, report):
                yield family, (name, *labels), value


def _family(f: Family) -> Metric:
    return _CLASSES[f.type](f.prometheus_name, f.help, labels=list(f.label_names))


def _add(metric: Metric, f: Family, labels: tuple[str, ...], value: object) -> None:
    if f.type == "histogram":
        buckets = [(floatToGoString(b), n) for b, n in zip(value.bounds, value.counts)]  # type: ignore[attr-defined]
        metric.add_metric(list(labels), buckets, value.sum)  # type: ignore[attr-defined]
    else:
        metric.add_metric(list(labels), value)  # type: ignore[attr-defined]


_EOF = b"# EOF\n"
Encoder = Callable[[CollectorRegistry], bytes]
GZIP_LEVEL = 6  # zlib's default: most of level 9's ratio at a third of its CPU


class Exposition:
    """/metrics bodies. The snapshot's families are rendered once per snapshot and content type; `live`
    (collectors whose values change between polls) is rendered at each scrape and appended."""

    def __init__(self, snapshot: Callable[[], Snapshot], live: CollectorRegistry, budget: SeriesBudget | None = None):
        self._snapshot = snapshot
        self._live = live
        self._budget = budget
        self._lock = threading.Lock()
        # content type -> (its encoder, the snapshot rendered, its body without the final "# EOF", gzipped)
        self._cache: dict[str, tuple[Encoder, Snapshot, bytes, bytes]] = {}

    def body(self, accept: str | None = None, gzip_ok: bool = False) -> tuple[bytes, str]:
        """The /metrics body for an Accept header (content negotiation as prometheus_client's), gzipped
        when `gzip_ok`, and its content type."""
        encoder, content_type = choose_encoder(accept or "")
        _, _, head, head_gz = self._rendered(self._snapshot(), encoder, content_type)
        tail = encoder(self._live)  # ends with "# EOF" in OpenMetrics
        return (head_gz + gzip.compress(tail, GZIP_LEVEL) if gzip_ok else head + tail), content_type

    def filtered(self, names: list[str], accept: str | None = None, gzip_ok: bool = False) -> tuple[bytes, str]:
        """Only the samples with the given names (`name[]`), rendered afresh: a rare debugging query."""
        snap, live, wanted, budget = self._snapshot(), self._live, set(names), self._budget

        class _Only(Collector):
            def collect(self) -> Iterator[Metric]:
                for metric in (*ServingCollector(lambda: snap, budget).collect(), *live.collect()):
                    kept = [s for s in metric.samples if s.name in wanted]
                    if kept:
                        copy = Metric(metric.name, metric.documentation, metric.type, metric.unit)
                        copy.samples = kept
                        yield copy

        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Only())
        encoder, content_type = choose_encoder(accept or "")
        body = encoder(registry)
        return (gzip.compress(body, GZIP_LEVEL) if gzip_ok else body), content_type

    def warm(self) -> None:
        """Render the current snapshot in every format scraped so far. Called after each poll, so that
        scrapes never wait for a render."""
        with self._lock:
            wanted = [(content_type, cached[0]) for content_type, cached in self._cache.items()]
        for content_type, encoder in wanted:
            self._rendered(self._snapshot(), encoder, content_type)

    def _rendered(self, snap: Snapshot, encoder: Encoder, content_type: str) -> tuple[Encoder, Snapshot, bytes, bytes]:
        with self._lock:  # one render per snapshot and type, however many scrapes arrive meanwhile
            cached = self._cache.get(content_type)
            if cached is not None and cached[1] is snap:
                return cached
            registry = CollectorRegistry(auto_describe=False)
            registry.register(ServingCollector(lambda: snap, self._budget))
            head = encoder(registry)
            if head.endswith(_EOF):
                head = head[: -len(_EOF)]
            cached = self._cache[content_type] = (encoder, snap, head, gzip.compress(head, GZIP_LEVEL))
            return cached
