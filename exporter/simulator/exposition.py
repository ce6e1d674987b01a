"""Render one endpoint-minute as the metrics text the real API returns."""

from __future__ import annotations

from typing import Callable, Iterator

from .traffic import BUCKETS_MS, EndpointMinute, EntityMinute, Histogram

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
_LE = tuple(repr(float(b)) for b in BUCKETS_MS) + ("+Inf",)

# (name, help, value) for the gauges, in the order the real API writes them. A value of None
# means the series is absent for this endpoint (no GPU); the GPU memory name varies (below).
_Gauge = tuple[str, str, Callable[[EntityMinute, bool], float | int | None]]
_COUNTS: tuple[_Gauge, ...] = (
    ("request_count_total", "Number of requests in the last minute",
     lambda e, _: e.requests),
    ("request_4xx_count_total", "Number of 4xx responses in the last minute",
     lambda e, _: e.count_4xx),
    ("request_5xx_count_total", "Number of 5xx responses in the last minute",
     lambda e, _: e.count_5xx),
)
_RESOURCES: tuple[_Gauge, ...] = (
    ("cpu_usage_percentage", "Average CPU utilization across all replicas",
     lambda e, _: e.cpu_percent),
    # One integration reports memory as a 0-1 fraction; `as_fraction` reproduces that quirk.
    ("mem_usage_percentage", "Average memory utilization across all replicas",
     lambda e, as_fraction: round(e.memory_percent / 100, 4) if as_fraction else e.memory_percent),
    ("provisioned_concurrent_requests_total", "Number of provisioned concurrent requests",
     lambda e, _: e.provisioned),
    ("gpu_usage_percentage", "Average GPU utilization across all replicas",
     lambda e, _: e.gpu_percent),
)
_GPU_MEMORY_HELP = "Average GPU memory utilization across all replicas"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float | int) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))


def render(minute: EndpointMinute, workspace_id: str) -> tuple[bytes, str]:
    """(body, content type) for GET /api/2.0/serving-endpoints/{name}/metrics."""
    sc = minute.scenario
    if sc.timestamps:
        # Prometheus text carries milliseconds, OpenMetrics seconds: the same instant either way.
        ts = f" {minute.timestamp_ms / 1000:.3f}" if sc.openmetrics else f" {minute.timestamp_ms}"
    else:
        ts = ""

    # Per-entity series when the endpoint names its entities, else one endpoint-level series.
    base = f'workspaceId="{_escape(workspace_id)}"'
    if sc.entity_label:
        series = [(f'{base},{sc.entity_label}="{_escape(e.name)}"', e) for e in minute.entities]
    else:
        series = [(base, minute.total())]

    def header(name: str, help_text: str, kind: str) -> Iterator[str]:
        yield f"# HELP {name} {help_text}"
        yield f"# TYPE {name} {kind}"

    def gauge(name: str, help_text: str, value: Callable[[EntityMinute], float | int | None]
              ) -> Iterator[str]:
        values = [(labels, value(e)) for labels, e in series]
        if any(v is None for _, v in values):
            return
        yield from header(name, help_text, "gauge")
        for labels, v in values:
            yield f"{name}{{{labels}}} {_number(v)}{ts}"

    def histogram(name: str, help_text: str, pick: Callable[[EntityMinute], Histogram]
                  ) -> Iterator[str]:
        yield from header(name, help_text, "histogram")
        for labels, e in series:
            h = pick(e)
            for le, n in zip(_LE, h.buckets):
                yield f'{name}_bucket{{{labels},le="{le}"}} {n}{ts}'
            yield f"{name}_sum{{{labels}}} {_number(h.sum_ms)}{ts}"
            yield f"{name}_count{{{labels}}} {h.count}{ts}"

    cumulative = sc.cumulative_histogram
    lines: list[str] = []
    for name, help_text, value in _COUNTS:
        lines += gauge(name, help_text, lambda e: value(e, False))
    lines += histogram(
        "request_latency_ms", "Request latency in milliseconds",
        lambda e: e.latency_total if cumulative else e.latency)
    if sc.emit_queue_time:
        lines += histogram(
            "model_queue_time_ms", "Time requests spent waiting in the queue in milliseconds",
            lambda e: e.queue_time_total if cumulative else e.queue_time)
    for name, help_text, value in _RESOURCES:
        lines += gauge(name, help_text, lambda e: value(e, sc.memory_as_fraction))
    lines += gauge(sc.gpu_memory_metric_name, _GPU_MEMORY_HELP, lambda e: e.gpu_memory_percent)
    if sc.openmetrics:
        lines.append("# EOF")
    body = "\n".join(lines) + "\n"
    return body.encode(), OPENMETRICS_CONTENT_TYPE if sc.openmetrics else TEXT_CONTENT_TYPE
