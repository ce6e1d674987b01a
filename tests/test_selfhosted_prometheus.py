"""The latency histogram merged over replicas gives the percentiles a real Prometheus gives for
`histogram_quantile(q, sum by (le)(increase(..._bucket[..])))` over the same replicas' expositions.

Three replicas with very different latency distributions are served from local HTTP servers; a real
`prometheus` scrapes them every 100 ms while the exporter's source fetches them at two moments, before and
after their counters move. Prometheus extrapolates each replica's increase to the range's edges a little
differently (scrape offsets differ), so the figures agree within 1 % (measured: 0.2 %); averaging the replicas' own percentiles
instead of merging their buckets would be off by far more (asserted too)."""

from __future__ import annotations

import time

import pytest
import yaml

from exporter.pipeline.analysis import analyze
from exporter.pipeline.quantile import histogram_quantile
from exporter.sources.selfhosted import SelfHostedSource
from exporter.sources.selfhosted.settings import SelfHostedSettings

from .alerting import free_port, process, query, wait_for
from .conftest import require_binary
from .selfhosted_replicas import Replicas

BOUNDS = ("0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "+Inf")
# Cumulative bucket counts: a baseline far from zero (so Prometheus never clips its extrapolation at zero), then
# each replica's minute: a fast one, a middling one, a slow one with a tail past the last finite bound.
BASE = (10_000, 20_000, 30_000, 40_000, 50_000, 60_000, 60_000)
MINUTES = ((300, 560, 590, 600, 600, 600, 600),
           (10, 40, 150, 250, 290, 300, 300),
           (0, 0, 5, 20, 60, 90, 100))


def body(counts: tuple[float, ...], total: float) -> str:
    lines = ["# TYPE vllm:e2e_request_latency_seconds histogram"]
    lines += [f'vllm:e2e_request_latency_seconds_bucket{{le="{b}",model_name="m"}} {c}' for b, c in zip(BOUNDS, counts)]
    lines += [f'vllm:e2e_request_latency_seconds_sum{{model_name="m"}} {total}',
              f'vllm:e2e_request_latency_seconds_count{{model_name="m"}} {counts[-1]}']
    return "\n".join(lines) + "\n"


def test_merged_percentiles_match_prometheus_histogram_quantile(tmp_path) -> None:  # type: ignore[no-untyped-def]
    binary = require_binary("prometheus")
    with Replicas() as r1, Replicas() as r2, Replicas() as r3:
        servers = (r1, r2, r3)
        urls = [r.serve("/metrics", body(BASE, 1000.0)) for r in servers]
        port = free_port()
        config = {"global": {"scrape_interval": "100ms", "scrape_timeout": "100ms"},
                  "scrape_configs": [{"job_name": "replicas", "static_configs": [
                      {"targets": [u.removeprefix("http://").removesuffix("/metrics") for u in urls]}]}]}
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        url = f"http://127.0.0.1:{port}"
        args = [binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}"]
        now = [6_000.0]
        source = SelfHostedSource(SelfHostedSettings.model_validate(
            {"endpoints": [{"name": "ep", "kind": "vllm", "targets": urls}]}), clock=lambda: now[0])
        try:
            with process(args, tmp_path / "prometheus.log", f"{url}/-/ready"):
                source.fetch("ep")
                # Many scrapes of every replica before the change (so that the 100 ms scrape offsets, which set
                # how far Prometheus extrapolates each replica, weigh little against the samples' span)...
                wait_for(lambda: len(query(url, "count_over_time(up[1m]) >= 40")) == 3, 30, "baseline scrapes")
                for server, minute in zip(servers, MINUTES):
                    server.serve("/metrics", body(tuple(b + m for b, m in zip(BASE, minute)), 1000.0 + minute[-1]))
                now[0] += 60
                figures = analyze([(101, source.fetch("ep").endpoint)])
                # ... and after it.
                changed = f"vllm:e2e_request_latency_seconds_count > {BASE[-1]}"
                wait_for(lambda: len(query(url, f"count_over_time(({changed})[1m:100ms]) >= 40")) == 3, 30,
                         "new scrapes")
                at = time.time()
                promql = {q: query(url, f"histogram_quantile({q}, sum by (le) "
                                        f"(increase(vllm:e2e_request_latency_seconds_bucket[1m])))") for q in (0.5, 0.9, 0.99)}
        finally:
            source.close()
    prometheus = {q: float(result[0]["value"][1]) for q, result in promql.items()}
    exporter = {0.5: figures.latency_p50, 0.9: figures.latency_p90, 0.99: figures.latency_p99}
    assert exporter == pytest.approx(prometheus, rel=0.01), f"at {at}"
    # The test has the power to tell: each replica's own percentile, averaged, is far off.
    bounds = [float(b) for b in BOUNDS]
    averaged = {q: sum(histogram_quantile(q, list(zip(bounds, m))) for m in MINUTES) / 3 for q in (0.5, 0.9)}
    assert all(abs(averaged[q] - prometheus[q]) > 0.1 * prometheus[q] for q in averaged)
