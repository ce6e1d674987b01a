"""One golden per model server: two polls of an exposition written from the project's own metric names (the
source file is cited per case; fixtures in tests/fixtures/selfhosted/), scraped over HTTP by the self-hosted
source with `kind: auto`, and the minute's figures worked out by hand here (not by the code under test).

The polls are 60 s apart on the source's clock, so each increase is the minute's count as it stands."""

from __future__ import annotations

import math
from dataclasses import fields
from pathlib import Path

import pytest

from exporter.model import Histogram, MinuteFigures
from exporter.sources.selfhosted import SelfHostedSource
from exporter.sources.selfhosted.settings import SelfHostedSettings

from .selfhosted_replicas import Replicas

FIXTURES = Path(__file__).parent / "fixtures" / "selfhosted"
INF = math.inf
T0 = 1_000 * 60 + 5.0  # a few seconds into a minute


def H(bounds, counts, total, count=None) -> Histogram:  # noqa: N802
    return Histogram(tuple(bounds), tuple(float(c) for c in counts), total, counts[-1] if count is None else count)


# Each case: (fixture, server kind detected, model label values as served entities, first poll's gauges,
#             the minute's endpoint figures, {entity: figures}).
CASES = {
    # vllm/v1/metrics/loggers.py (engine metrics, label model_name) and prometheus-fastapi-instrumentator's
    # http_requests_total{handler,method,status} (vllm/entrypoints/openai/api_server.py). /health and /metrics
    # are probes, not traffic.
    "vllm": ("vllm", MinuteFigures(queue_depth=1.0, requests_running=3.0, kv_cache_ratio=0.25), MinuteFigures(
        requests=60.0,  # (150 + 30) - (100 + 20)
        errors_4xx=2.0,  # 5 - 3
        errors_5xx=1.0,  # a new series: all of its 1
        latency=H((0.3, 0.5, 1.0, 2.5, INF), (5, 30, 50, 59, 60), 45.0),
        queue_time=H((0.01, 0.1, INF), (50, 59, 60), 1.5),
        ttft=H((0.02, 0.1, 0.5, INF), (15, 50, 59, 60), 5.0),
        tpot=H((0.01, 0.025, 0.05, INF), (500, 4500, 5900, 6000), 120.0),
        prompt_tokens=3000.0, generation_tokens=6000.0, preemptions=3.0,
        queue_depth=4.0, requests_running=5.0, kv_cache_ratio=0.5,
    ), {"llama": MinuteFigures(
        requests=60.0,  # the HTTP status counts carry no model_name: no errors per model
        latency=H((0.3, 0.5, 1.0, 2.5, INF), (5, 30, 50, 59, 60), 45.0),
        queue_time=H((0.01, 0.1, INF), (50, 59, 60), 1.5),
        ttft=H((0.02, 0.1, 0.5, INF), (15, 50, 59, 60), 5.0),
        tpot=H((0.01, 0.025, 0.05, INF), (500, 4500, 5900, 6000), 120.0),
        prompt_tokens=3000.0, generation_tokens=6000.0, preemptions=3.0,
        queue_depth=4.0, requests_running=5.0, kv_cache_ratio=0.5)}),
    # TGI router/src/server.rs and router/src/infer/mod.rs: no model label, no TTFT metric.
    "tgi": ("tgi", MinuteFigures(queue_depth=2.0, requests_running=8.0), MinuteFigures(
        requests=35.0,  # successes 130-100 = 30, failures: validation 2, generation 0, overloaded (new) 3
        errors_4xx=5.0,  # validation 2 + overloaded 3
        errors_5xx=0.0,  # generation 1 - 1
        latency=H((0.5, 1.0, 5.0, INF), (6, 18, 30, 30), 45.0),
        queue_time=H((0.01, 0.1, INF), (27, 30, 30), 0.3),
        tpot=H((0.01, 0.05, INF), (3, 29, 30), 0.9),
        prompt_tokens=6000.0, generation_tokens=9000.0,
        queue_depth=5.0, requests_running=10.0,
    ), {}),
    # Triton core src/metrics.cc: counters without histograms; mean = Δduration_us / Δsuccess.
    "triton": ("triton", MinuteFigures(queue_depth=3.0, gpu_ratio=0.7, gpu_memory_ratio=10 / 32, cpu_ratio=0.3,
                                        memory_ratio=0.25), MinuteFigures(
        requests=664.0,  # successes 600 + 60, failures 4
        errors_5xx=4.0,
        latency=H((INF,), (660,), 4.2),  # (3 000 000 + 1 200 000) µs
        queue_time=H((INF,), (660,), 0.066),  # (60 000 + 6 000) µs
        queue_depth=4.0, gpu_ratio=0.9, gpu_memory_ratio=14 / 32, cpu_ratio=0.25, memory_ratio=0.5,
    ), {"resnet": MinuteFigures(requests=604.0, errors_5xx=4.0, latency=H((INF,), (600,), 3.0),
                                queue_time=H((INF,), (600,), 0.06), queue_depth=4.0),
        "bert": MinuteFigures(requests=60.0, latency=H((INF,), (60,), 1.2), queue_time=H((INF,), (60,), 0.006),
                              queue_depth=0.0)}),
    # MLServer: REST metrics of starlette_exporter (mlserver/rest/app.py, prefix rest_server) and per-model
    # counters (mlserver/handlers/dataplane.py). /v2/health/ready and /v2/models/iris/ready are probes.
    "mlserver": ("mlserver", MinuteFigures(requests_running=1.0), MinuteFigures(
        requests=34.0,  # 200: 30, 422: 3, 500 (new): 1
        errors_4xx=3.0, errors_5xx=1.0,
        latency=H((0.005, 0.01, 0.025, 0.05, 10.0, INF), (4, 15, 29, 32, 34, 34), 0.4),
        requests_running=2.0,
    ), {"iris": MinuteFigures(requests=34.0, errors_5xx=4.0)}),  # successes 30 + failures 4
    # KServe behind Knative: the queue-proxy's revision_* metrics (knative.dev/serving pkg/queue, latencies in ms).
    "kserve-queue-proxy": ("kserve", MinuteFigures(queue_depth=2.0), MinuteFigures(
        requests=62.0, errors_4xx=2.0, errors_5xx=0.0,
        latency=H((0.005, 0.01, 0.05, 0.1, INF), (26, 50, 61, 62, 62), 0.904),  # 2xx Δ + 4xx Δ, 904 ms
        queue_depth=3.0,
    ), {}),
    # KServe's own model server: python/kserve/kserve/metrics.py (request_{pre,post}process/predict/explain
    # _seconds, label model_name, prometheus_client's default buckets). Predict and explain are the calls.
    "kserve-model-server": ("kserve", MinuteFigures(), MinuteFigures(
        requests=32.0,  # predict 30 + explain 2
        latency=H((0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, INF),
                  (5, 15, 25, 28, 30, 30, 32, 32, 32, 32, 32, 32, 32, 32, 32), 1.0),
    ), {"iris": MinuteFigures(
        requests=32.0,
        latency=H((0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, INF),
                  (5, 15, 25, 28, 30, 30, 32, 32, 32, 32, 32, 32, 32, 32, 32), 1.0))}),
    # TorchServe, metrics_mode=prometheus (ts/metrics, frontend metrics_default.yaml): means in µs, percent.
    "torchserve": ("torchserve", MinuteFigures(cpu_ratio=0.4, memory_ratio=0.55, gpu_ratio=0.7, gpu_memory_ratio=0.3),
                   MinuteFigures(
        requests=50.0, errors_4xx=1.0, errors_5xx=2.0,
        latency=H((INF,), (50,), 1.5), queue_time=H((INF,), (50,), 0.01),
        cpu_ratio=0.5, memory_ratio=0.6, gpu_ratio=0.8, gpu_memory_ratio=0.35,
    ), {"resnet-18": MinuteFigures(requests=50.0, latency=H((INF,), (50,), 1.5), queue_time=H((INF,), (50,), 0.01))}),
    # Ray Serve (python/ray/serve/_private/proxy.py: ray_serve_num_http_requests, ray_serve_http_request_latency_ms;
    # router: ray_serve_deployment_queued_queries) and Ray Serve LLM's ray_vllm:* engine metrics. /-/healthz is a probe.
    "ray-serve": ("ray-serve", MinuteFigures(queue_depth=3.0, requests_running=5.0, cpu_ratio=0.35, gpu_ratio=0.6,
                                              kv_cache_ratio=0.2), MinuteFigures(
        requests=53.0, errors_4xx=1.0, errors_5xx=2.0,
        latency=H((0.1, 0.5, 1.0, INF), (10, 40, 51, 53), 20.0),
        ttft=H((0.1, 1.0, INF), (30, 50, 50), 6.0),
        prompt_tokens=600.0, generation_tokens=2500.0, preemptions=1.0,
        queue_depth=1.0, requests_running=7.0, cpu_ratio=0.45, gpu_ratio=0.9, kv_cache_ratio=0.6,
    ), {"qwen": MinuteFigures(ttft=H((0.1, 1.0, INF), (30, 50, 50), 6.0), prompt_tokens=600.0,
                              generation_tokens=2500.0, preemptions=1.0, kv_cache_ratio=0.6)}),
    # BentoML src/bentoml/_internal/server/http/instruments.py (endpoint, http_response_code). /healthz,
    # /readyz are probes.
    "bentoml": ("bentoml", MinuteFigures(requests_running=2.0), MinuteFigures(
        requests=33.0, errors_4xx=2.0, errors_5xx=1.0,
        latency=H((0.005, 0.01, 0.025, 0.05, 180.0, INF), (3, 15, 27, 30, 30, 30), 0.4),
        requests_running=3.0,
    ), {}),
}


def assert_figures(actual: MinuteFigures, expected: MinuteFigures, where: str) -> None:
    for f in fields(MinuteFigures):
        a, e = getattr(actual, f.name), getattr(expected, f.name)
        if isinstance(e, Histogram):
            assert isinstance(a, Histogram), f"{where}.{f.name}: {a!r}"
            assert a.bounds == pytest.approx(e.bounds), f"{where}.{f.name} bounds"
            assert a.counts == pytest.approx(e.counts), f"{where}.{f.name} counts"
            assert (a.sum, a.count) == pytest.approx((e.sum, e.count)), f"{where}.{f.name} sum/count"
        else:
            assert a == (pytest.approx(e) if e is not None else None), f"{where}.{f.name}: {a!r} != {e!r}"


@pytest.mark.parametrize("fixture", sorted(CASES))
def test_each_server_kind_gives_the_minute_worked_out_by_hand(fixture: str) -> None:
    kind, first, minute, entities = CASES[fixture]
    now = [T0]
    with Replicas() as replicas:
        url = replicas.serve("/metrics", (FIXTURES / f"{fixture}_1.prom").read_bytes())
        settings = SelfHostedSettings.model_validate({"endpoints": [{"name": "ep", "kind": "auto", "targets": [url]}]})
        source = SelfHostedSource(settings, clock=lambda: now[0])
        try:
            assert source.list_endpoints()[0].server is None  # not known before a body was read
            baseline = source.fetch("ep")
            # The first fetch is a baseline: the gauges of the moment, no counts (they are not this minute's).
            assert_figures(baseline.endpoint, first, f"{fixture} first")
            replicas.serve("/metrics", (FIXTURES / f"{fixture}_2.prom").read_bytes())
            now[0] += 60
            observed = source.fetch("ep")
            info = source.list_endpoints()[0]
        finally:
            source.close()
    assert info.server == kind and info.platform == "self-hosted" and info.ready is True
    assert_figures(observed.endpoint, minute, fixture)
    assert sorted(observed.entities) == sorted(entities)
    for name, expected in entities.items():
        assert_figures(observed.entities[name], expected, f"{fixture}[{name}]")
    assert observed.timestamp_ms == int(now[0] * 1000) and observed.histograms == "per_minute"
    assert [(r.target, r.up) for r in observed.replicas] == [(url, True)]
