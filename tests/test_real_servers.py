"""Real model servers (MLServer, BentoML, KServe's Python model server) installed from PyPI, serving a tiny iris
model trained in the test, driven with a known number of requests and a known share of malformed ones: their own
/metrics move by exactly what was sent, under the names docs/self-hosted.md maps, and the exporter's self-hosted
source reads the same from them. See docs/real-servers.md."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from exporter.commands import selfhosted_source
from exporter.config import load_settings
from exporter.model import EndpointReport
from exporter.pipeline.poller import Poller

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


class FakeClock:
    """The source's clock: one simulated minute per poll, so each poll's figures are exactly what was sent since
    the previous one (the source scales an increase by 60 s over the clock time between the fetches it spans)."""

    def __init__(self) -> None:
        self.now = (time.time() // 60 + 1) * 60 + 5  # five seconds into a minute

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def polled(servers: dict[str, RealServer]) -> dict[str, EndpointReport]:
    """The self-hosted source and the poller, pointed at the three servers' metrics URLs, after a baseline poll and
    two minutes of 40 requests each (8 failing) to every server: each endpoint's report."""
    clock = FakeClock()
    settings = load_settings(overrides={"poll_interval_seconds": 5, "self_hosted": {"endpoints": [
        {"name": f"{kind}-iris", "kind": kind, "targets": [s.metrics_url]} for kind, s in servers.items()]}})
    poller = Poller(selfhosted_source(settings, clock=clock), settings, clock=clock)
    try:
        first = poller.poll()  # each replica's baseline
        assert {r.info.name for r in first.endpoints} == {f"{kind}-iris" for kind in servers}
        for _ in range(2):
            with ThreadPoolExecutor(len(servers)) as pool:
                for future in [pool.submit(s.drive, TOTAL, BAD_EVERY, RATE) for s in servers.values()]:
                    assert future.result().get(200) == GOOD
            clock.now += 60
            snap = poller.poll()
    finally:
        poller.close()
    return {r.info.name.removesuffix("-iris"): r for r in snap.endpoints}


SENT_QPS = 2 * TOTAL / 120  # 80 requests in two minutes


def test_the_exporter_reads_what_each_real_server_was_sent(servers: dict[str, RealServer],
                                                         polled: dict[str, EndpointReport]):
    """80 requests in 2 minutes (0.667 QPS) and a 20 % error ratio, all 5xx, where the server publishes status
    codes; latency from each server's own histogram; the one replica reported up."""
    for kind, server in servers.items():
        report = polled[kind]
        figures = report.endpoint.figures
        assert report.status.up and report.info.platform == "self-hosted" and report.info.server == kind
        assert [(r.target, r.up) for r in report.replicas] == [(server.metrics_url, True)]
        assert figures.qps == pytest.approx(SENT_QPS), kind
        assert figures.latency_p50 is not None and 0 < figures.latency_mean < 1, kind
    for kind in ("mlserver", "bentoml"):
        figures = polled[kind].endpoint.figures
        assert (figures.error_ratio, figures.error_ratio_5xx, figures.error_ratio_4xx) == pytest.approx(
            (0.2, 0.2, 0.0)), kind


def test_the_model_is_a_served_entity_where_the_server_labels_it(polled: dict[str, EndpointReport]):
    entities = {kind: {e.entity: e.figures for e in report.entities} for kind, report in polled.items()}
    # MLServer's per-model counters (`model`), with their failures.
    assert set(entities["mlserver"]) == {"iris"} and entities["mlserver"]["iris"].qps == pytest.approx(SENT_QPS)
    assert entities["mlserver"]["iris"].error_ratio_5xx == pytest.approx(0.2)
    # KServe's histograms (`model_name`).
    assert set(entities["kserve"]) == {"iris"} and entities["kserve"]["iris"].qps == pytest.approx(SENT_QPS)
    assert entities["bentoml"] == {}  # BentoML labels no model


def test_kserve_error_ratio_is_unavailable_not_zero(polled: dict[str, EndpointReport]):
    """KServe's own model server publishes no status codes or failure counter: the exporter cannot know its error
    ratio, and must say so (None) rather than report the 20 % failures it was sent as 0 %."""
    assert polled["kserve"].endpoint.figures.error_ratio is None
