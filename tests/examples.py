"""Window figures shared by the rule and check tests."""

from __future__ import annotations

from dataclasses import replace

from exporter.model import Figures


def healthy_figures(**changes) -> Figures:
    """A healthy endpoint: 50 QPS (45-55), 35 ms mean, no queue, 40% CPU, 4 provisioned."""
    base = Figures(minutes=5, latest_minute_ms=60_000, qps=50.0, qps_min=45.0, qps_max=55.0, latency_p50=0.03,
                   latency_p90=0.05, latency_p99=0.08, latency_mean=0.035, error_ratio=0.001, error_ratio_4xx=0.001,
                   error_ratio_5xx=0.0, queue_depth=0.0, queue_depth_method="estimated", cpu_ratio=0.4,
                   memory_ratio=0.4, provisioned_concurrency=4.0, required_concurrency=1.75)
    return replace(base, **changes)
