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
from dataclasses import dataclass

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
        families = {f.name: _family(f) for f in FAMILIES if self._budget.keeps(f)}
        for family, labels, value in snapshot_rows(self._snapshot(), self._budget):
            _add(families[family.name], family, labels, value)
        yield from families.values()


def snapshot_rows(snap: Snapshot, budget: SeriesBudget) -> Iterator[Row]:
    """Every sample of a snapshot within the budget: each endpoint's (an endpoint failing to render is
    left out whole, logged and counted), the exporter's, then the count of render failures."""
    errors = 0
    for report in snap.endpoints:
        try:  # rendered apart first, so a failure leaves none of the endpoint's series behind
            rows = list(endpoint_rows(report, budget))
        except Exception:  # render the others; the failure shows in the log and the gauge
            log.exception("cannot render endpoint %s", report.info.name)
            errors += 1
            continue
        yield from rows
    for family in EXPORTER:
        for labels, value in samples(family, snap):
            yield family, labels, value
    yield RENDER_ERRORS, (), float(errors)


def endpoint_rows(report: EndpointReport, budget: SeriesBudget | None = None) -> Iterator[Row]:
    """Every sample of one endpoint within the budget: its series rows (the endpoint, then each served
    entity), then the endpoint-wide families."""
    budget = budget or SeriesBudget()
    key = report.info.key  # (workspace, name): the scope labels
    for family in SERIES:
        if budget.keeps(family):
            for series in budget.rows(report):
                for labels, value in samples(family, series):
                    yield family, (*key, series.entity or "", *labels), value
    for family in ENDPOINT:
        if budget.keeps(family):
            for labels, value in samples(family, report):
                yield family, (*key, *labels), value


def _family(f: Family) -> Metric:
    return _CLASSES[f.type](f.prometheus_name, f.help, labels=list(f.label_names))


def _add(metric: Metric, f: Family, labels: tuple[str, ...], value: object) -> None:
    if f.type == "histogram":
        buckets = [(floatToGoString(b), n) for b, n in zip(value.bounds, value.counts)]  # type: ignore[attr-defined]
        metric.add_metric(list(labels), buckets, value.sum)  # type: ignore[attr-defined]
    else:
        metric.add_metric(list(labels), value)  # type: ignore[attr-defined]


def render(snap: Snapshot, budget: SeriesBudget, openmetrics: bool) -> bytes:
    """The snapshot's exposition, text 0.0.4 or OpenMetrics 1.0, byte for byte what prometheus_client makes
    of ServingCollector (tests/test_render.py checks it), written directly: about a quarter of the CPU,
    and no Metric and Sample object per sample held at once (they set the exporter's peak memory)."""
    kept = [f for f in FAMILIES if budget.keeps(f)]
    lines: dict[str, list[str]] = {f.name: [] for f in kept}
    for family, labels, value in snapshot_rows(snap, budget):
        _lines(lines[family.name], _SHAPES[family.name], labels, value)
    out = []
    for f in kept:
        shape = _SHAPES[f.name]
        header = shape.om_header if openmetrics else shape.text_header
        out.append(header)
        out.extend(lines[f.name])
    if openmetrics:
        out.append("# EOF\n")
    return "".join(out).encode()


@dataclass(frozen=True)
class _Shape:
    """How one family's samples are written: its sample names, header lines and sorted label order."""

    family: Family
    sample: str  # the sample name (histograms: the base of _bucket/_count/_sum)
    text_header: str
    om_header: str
    order: tuple[int, ...]  # label positions sorted by label name (with `le` last-but-sorted for buckets)
    bucket_order: tuple[int, ...]


def _shape(f: Family) -> _Shape:
    name = f.prometheus_name
    text_name, text_type, sample = {"counter": (name + "_total", "counter", name + "_total"),
                                    "info": (name + "_info", "gauge", name + "_info")}.get(f.type, (name, f.type, name))
    text_help = f.help.replace("\\", r"\\").replace("\n", r"\n")
    om_help = _escape(f.help)
    names = f.label_names + f.info_labels
    return _Shape(f, sample, f"# HELP {text_name} {text_help}\n# TYPE {text_name} {text_type}\n",
                  f"# HELP {name} {om_help}\n# TYPE {name} {f.type}\n",
                  tuple(sorted(range(len(names)), key=lambda i: names[i])),
                  tuple(sorted(range(len(names) + 1), key=lambda i: (names + ("le",))[i])))


def _escape(value: str) -> str:
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')
    return value


def _labelset(names: tuple[str, ...], values: tuple[str, ...], order: tuple[int, ...]) -> str:
    if not names:
        return ""
    return "{" + ",".join(f'{names[i]}="{_escape(values[i])}"' for i in order) + "}"


def _lines(out: list[str], shape: _Shape, labels: tuple[str, ...], value: object) -> None:
    f = shape.family
    if f.type == "histogram":
        names = f.label_names + ("le",)
        for bound, count in zip(value.bounds, value.counts):  # type: ignore[attr-defined]
            out.append(f"{shape.sample}_bucket{_labelset(names, (*labels, floatToGoString(bound)), shape.bucket_order)}"
                       f" {floatToGoString(count)}\n")
        if value.bounds and value.bounds[0] >= 0 and value.sum is not None:  # type: ignore[attr-defined]
            plain = _labelset(f.label_names, labels, shape.order)
            out.append(f"{shape.sample}_count{plain} {floatToGoString(value.counts[-1])}\n")  # type: ignore[attr-defined]
            out.append(f"{shape.sample}_sum{plain} {floatToGoString(value.sum)}\n")  # type: ignore[attr-defined]
    elif f.type == "info":
        values = (*labels, *(value[k] for k in f.info_labels))  # type: ignore[index]
        out.append(f"{shape.sample}{_labelset(f.label_names + f.info_labels, values, shape.order)} 1.0\n")
    else:
        out.append(f"{shape.sample}{_labelset(f.label_names, labels, shape.order)} {floatToGoString(value)}\n")


_SHAPES = {f.name: _shape(f) for f in FAMILIES}
_EOF = b"# EOF\n"
Encoder = Callable[[CollectorRegistry], bytes]
GZIP_LEVEL = 6  # zlib's default: most of level 9's ratio at a third of its CPU


class Exposition:
    """/metrics bodies. The snapshot's families are rendered once per snapshot and content type; `live`
    (collectors whose values change between polls) is rendered at each scrape and appended."""

    def __init__(self, snapshot: Callable[[], Snapshot], live: CollectorRegistry, budget: SeriesBudget | None = None):
        self._snapshot = snapshot
        self._live = live
        self._budget = budget or SeriesBudget()
        self._lock = threading.Lock()
        # content type -> (its encoder, the snapshot rendered, its body without the final "# EOF", gzipped)
        self._cache: dict[str, tuple[Encoder, Snapshot, bytes, bytes]] = {}

    def body(self, accept: str | None = None, gzip_ok: bool = False) -> tuple[bytes, str]:
        """The /metrics body for an Accept header (content negotiation as prometheus_client's), gzipped
        when `gzip_ok`, and its content type."""
        chunks, content_type = self.chunks(accept, gzip_ok)
        return b"".join(chunks), content_type

    def chunks(self, accept: str | None = None, gzip_ok: bool = False) -> tuple[list[bytes], str]:
        """`body` as the cached snapshot part and the live part, to be sent one after the other: joining
        them would copy megabytes per scrape (and glibc keeps such copies per HTTP thread's arena)."""
        encoder, content_type = choose_encoder(accept or "")
        _, _, head, head_gz = self._rendered(self._snapshot(), encoder, content_type)
        tail = encoder(self._live)  # ends with "# EOF" in OpenMetrics
        return ([head_gz, gzip.compress(tail, GZIP_LEVEL)] if gzip_ok else [head, tail]), content_type

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
            if content_type.startswith(("text/plain", "application/openmetrics-text; version=1.")):
                head = render(snap, self._budget, openmetrics=content_type.startswith("application/openmetrics"))
            else:  # another format prometheus_client negotiates (OpenMetrics 2): its own encoder
                registry = CollectorRegistry(auto_describe=False)
                registry.register(ServingCollector(lambda: snap, self._budget))
                head = encoder(registry)
            if head.endswith(_EOF):
                head = head[: -len(_EOF)]
            cached = self._cache[content_type] = (encoder, snap, head, gzip.compress(head, GZIP_LEVEL))
            return cached
