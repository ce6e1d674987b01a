"""Prometheus exposition, built at scrape time from the latest Snapshot and the catalog.

Nothing here is a global gauge: every scrape renders the snapshot the last poll
published, so an endpoint that disappears takes its series with it. The figures
are a cache of the last poll (the source is per-minute and slow to query), which
`model_serving_exporter_last_success_timestamp_seconds` makes alertable. Which
families exist, their help, labels and values all come from exporter/catalog.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from ..catalog import BY_NAME, FAMILIES, Family, of_scope, samples
from ..model import EndpointReport, Snapshot

log = logging.getLogger(__name__)

_CLASSES = {"gauge": GaugeMetricFamily, "counter": CounterMetricFamily, "histogram": HistogramMetricFamily,
            "info": InfoMetricFamily}
SERIES, ENDPOINT, EXPORTER = of_scope("series"), of_scope("endpoint"), of_scope("exporter")
RENDER_ERRORS = BY_NAME["exporter_render_errors"]

Row = tuple[Family, tuple[str, ...], object]  # a family, its full label values, its value


class ServingCollector(Collector):
    """Renders whatever `snapshot()` returns; one endpoint failing to render never blanks the scrape."""

    def __init__(self, snapshot: Callable[[], Snapshot]):
        self._snapshot = snapshot

    def describe(self) -> list[Metric]:
        return []  # families depend on the data; registering must not trigger a poll

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        families = {f.name: _family(f) for f in FAMILIES}
        errors = 0
        for report in snap.endpoints:
            try:  # rendered apart first, so a failure leaves none of the endpoint's series behind
                rows = list(endpoint_rows(report))
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


def endpoint_rows(report: EndpointReport) -> Iterator[Row]:
    """Every sample of one endpoint: its series rows (the endpoint, then each served entity), then the
    endpoint-wide families."""
    name = report.info.name
    for family in SERIES:
        for series in (report.endpoint, *report.entities):
            for labels, value in samples(family, series):
                yield family, (name, series.entity or "", *labels), value
    for family in ENDPOINT:
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
