"""Real model servers (MLServer, BentoML, KServe's Python model server) installed from PyPI, serving a tiny iris
model trained in the test, driven with a known number of requests and a known share of malformed ones: their own
/metrics move by exactly what was sent, under the names docs/self-hosted.md maps. See docs/real-servers.md."""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from .real_servers import SERVERS, RealServer, server_python

pytestmark = pytest.mark.integration

TOTAL, BAD_EVERY, RATE = 40, 5, 20.0  # 40 requests at 20/s, every 5th malformed: 32 answered 200, 8 errors
GOOD, BAD = TOTAL - TOTAL // BAD_EVERY, TOTAL // BAD_EVERY


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, RealServer]]:
    """All three servers at once (installs in parallel on a fresh machine; cached after)."""
    with ThreadPoolExecutor(len(SERVERS)) as pool:
        for future in [pool.submit(server_python, kind) for kind in SERVERS]:
            try:
                future.result()
            except Exception as exc:  # noqa: BLE001 - a registry or build problem: name it, never skip under CI
                if os.environ.get("CI", "").lower() == "true":
                    raise
                pytest.skip(f"cannot install the model servers: {exc}")
    with ExitStack() as stack, ThreadPoolExecutor(len(SERVERS)) as pool:
        started = {kind: pool.submit(stack.enter_context, start(tmp_path_factory.mktemp(kind)))
                   for kind, start in SERVERS.items()}
        yield {kind: future.result() for kind, future in started.items()}


Samples = dict[tuple[str, frozenset], float]


def scrape(server: RealServer) -> Samples:
    text = requests.get(server.metrics_url, timeout=10).text
    return {(s.name, frozenset(s.labels.items())): s.value for f in text_string_to_metric_families(text)
            for s in f.samples}


def increase(before: Samples, after: Samples, name: str, **labels: str) -> float:
    def total(samples: Samples) -> float:
        return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= ls)

    return total(after) - total(before)


def drive(server: RealServer) -> tuple[Samples, Samples]:
    before = scrape(server)
    answered = server.drive(TOTAL, BAD_EVERY, RATE)
    assert answered.get(200) == GOOD, (answered, server.log_tail())
    return before, scrape(server)


def test_mlserver_metrics_count_what_was_sent(servers: dict[str, RealServer]):
    server = servers["mlserver"]
    before, after = drive(server)
    assert server.statuses.get(500) == BAD  # the model raises on 3 features: MLServer answers 500
    infer = {"path": "/v2/models/{model_name}/infer"}
    assert increase(before, after, "rest_server_requests_total", status_code="200", **infer) == GOOD
    assert increase(before, after, "rest_server_requests_total", status_code="500", **infer) == BAD
    assert increase(before, after, "model_infer_request_success_total", model="iris") == GOOD
    assert increase(before, after, "model_infer_request_failure_total", model="iris") == BAD
    assert increase(before, after, "rest_server_request_duration_seconds_count", **infer) == TOTAL
    assert increase(before, after, "rest_server_request_duration_seconds_sum", **infer) > 0
    assert ("rest_server_requests_in_progress", frozenset()) in after or any(
        n == "rest_server_requests_in_progress" for n, _ in after)


def test_bentoml_metrics_count_what_was_sent(servers: dict[str, RealServer]):
    server = servers["bentoml"]
    before, after = drive(server)
    assert server.statuses.get(500) == BAD
    api = {"endpoint": "/classify", "service_name": "Iris"}
    assert increase(before, after, "bentoml_service_request_total", http_response_code="200", **api) == GOOD
    assert increase(before, after, "bentoml_service_request_total", http_response_code="500", **api) == BAD
    assert increase(before, after, "bentoml_service_request_duration_seconds_count", **api) == TOTAL
    assert any(n == "bentoml_service_request_in_progress" for n, _ in after)
    # Probes are requests too, to BentoML: its readiness path has series of its own that are not traffic.
    assert any(n == "bentoml_service_request_total" and dict(ls)["endpoint"] == "/readyz" for n, ls in after)


def test_kserve_metrics_count_what_was_sent(servers: dict[str, RealServer]):
    server = servers["kserve"]
    before, after = drive(server)
    assert server.statuses.get(500) == BAD
    # KServe's own model server has latency histograms per step and no status codes: every request that reached
    # predict is counted there, and only the successful ones reach postprocess.
    assert increase(before, after, "request_predict_seconds_count", model_name="iris") == TOTAL
    assert increase(before, after, "request_postprocess_seconds_count", model_name="iris") == GOOD
    assert increase(before, after, "request_predict_seconds_sum", model_name="iris") > 0
    assert not any(n.startswith("revision_") for n, _ in after)  # the Knative queue-proxy's names are not here
