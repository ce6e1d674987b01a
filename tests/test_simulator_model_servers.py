"""The demo's simulated self-hosted model servers: each project's metric names and labels, valid Prometheus text,
cumulative counters that only go up (except across a replica's restart), the states the demo is built to show,
and determinism by seed."""

from __future__ import annotations

import math

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from exporter.simulator import ModelServer, ModelServerHTTP, build_demo_model_servers
from exporter.simulator.model_servers import Outage, TritonShape, VllmShape

from .conftest import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


VLLM_MODEL = "meta-llama/Llama-3.1-8B-Instruct"
# Sample names as vLLM (vllm/v1/metrics/loggers.py, the OpenAI server's instrumentator) and Triton
# (core src/metrics.cc) write them.
VLLM_SAMPLES = {
    "vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
    "vllm:num_preemptions_total", "vllm:prompt_tokens_total", "vllm:generation_tokens_total",
    "vllm:request_success_total", "http_requests_total",
    *(f"vllm:{h}_{part}" for h in ("time_to_first_token_seconds", "inter_token_latency_seconds",
                                   "e2e_request_latency_seconds", "request_queue_time_seconds")
      for part in ("bucket", "sum", "count")),
}
TRITON_SAMPLES = {
    "nv_inference_request_success", "nv_inference_request_failure", "nv_inference_count", "nv_inference_exec_count",
    "nv_inference_request_duration_us", "nv_inference_queue_duration_us", "nv_inference_compute_input_duration_us",
    "nv_inference_compute_infer_duration_us", "nv_inference_compute_output_duration_us",
    "nv_inference_pending_request_count", "nv_gpu_utilization", "nv_gpu_memory_total_bytes",
    "nv_gpu_memory_used_bytes", "nv_cpu_utilization", "nv_cpu_memory_total_bytes", "nv_cpu_memory_used_bytes",
}


@pytest.fixture
def servers(clock: FakeClock) -> dict[str, ModelServer]:
    return {s.name: s for s in build_demo_model_servers(minute_seconds=60.0, clock=clock)}


Samples = dict[tuple[str, frozenset], float]


def parse(body: bytes) -> tuple[dict[str, str], Samples]:
    """(family name -> type, samples) of a Prometheus text body; fails on anything prometheus_client rejects."""
    families = list(text_string_to_metric_families(body.decode()))
    return ({f.name: f.type for f in families},
            {(s.name, frozenset(s.labels.items())): s.value for f in families for s in f.samples})


def raw_names(body: bytes) -> set[str]:
    """Sample names exactly as written (prometheus_client's parser adds `_total` to a counter that lacks it)."""
    return {line.split("{")[0].split(" ")[0] for line in body.decode().splitlines() if not line.startswith("#")}


def only(samples: Samples, name: str, **labels: str) -> float:
    found = [v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= ls]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def assert_histograms_consistent(samples: Samples) -> None:
    """Buckets never decrease with `le`, and the +Inf bucket equals `_count`."""
    series: dict[tuple[str, frozenset], list[tuple[float, float]]] = {}
    for (name, labels), value in samples.items():
        if name.endswith("_bucket"):
            rest = frozenset((k, v) for k, v in labels if k != "le")
            series.setdefault((name[:-len("_bucket")], rest), []).append((float(dict(labels)["le"]), value))
    assert series
    for (base, labels), buckets in series.items():
        counts = [n for _, n in sorted(buckets)]
        assert counts == sorted(counts), base
        assert sorted(buckets)[-1][0] == math.inf
        assert counts[-1] == samples[(f"{base}_count", labels)], base


def test_vllm_replica_speaks_vllm(servers: dict[str, ModelServer]):
    body = servers["chat-assistant"].metrics(0)
    types, samples = parse(body)
    assert raw_names(body) == {name for name, _ in samples} == VLLM_SAMPLES
    assert types["vllm:time_to_first_token_seconds"] == "histogram"
    assert types["vllm:num_requests_waiting"] == "gauge"
    assert types["vllm:prompt_tokens"] == "counter"  # prometheus_client names a counter family without _total
    for name, labels in samples:
        if name.startswith("vllm:"):
            assert dict(labels)["model_name"] == VLLM_MODEL and dict(labels)["engine"] == "0", name
    assert {dict(ls)["status"] for n, ls in samples if n == "http_requests_total"} == {"2xx", "4xx"}
    assert {dict(ls)["finished_reason"] for n, ls in samples if n == "vllm:request_success_total"} == {
        "stop", "length", "abort"}
    assert_histograms_consistent(samples)
    assert 0 <= only(samples, "vllm:kv_cache_usage_perc") <= 1


def test_triton_replica_speaks_triton(servers: dict[str, ModelServer]):
    body = servers["image-tagger"].metrics(0)
    types, samples = parse(body)
    assert raw_names(body) == TRITON_SAMPLES
    assert "histogram" not in types.values()  # Triton's latencies are cumulative microsecond counters: a mean only
    assert types["nv_inference_request_duration_us"] == "counter"
    for name, labels in samples:
        if name.startswith("nv_inference_"):
            assert dict(labels)["model"] == "tagger_resnet50" and dict(labels)["version"] == "1", name
        if name.startswith("nv_gpu_"):
            assert dict(labels)["gpu_uuid"].startswith("GPU-")
    assert {dict(ls)["reason"] for n, ls in samples if n == "nv_inference_request_failure_total"} == {
        "REJECTED", "CANCELED", "BACKEND", "OTHER"}
    assert all(v == int(v) for (n, _), v in samples.items() if n.endswith("_us_total"))  # whole microseconds
    assert 0 <= only(samples, "nv_gpu_utilization") <= 1


def test_demo_states_show_in_the_expositions(servers: dict[str, ModelServer], clock: FakeClock):
    """What the demo is built to show, read off two scrapes a minute apart (numbers from the shapes' settings)."""
    chat, tagger = servers["chat-assistant"], servers["image-tagger"]
    chat.advance(30)  # away from replica 1's outage, into steady overload
    tagger.advance(30)
    before = {name: parse(s.metrics(0))[1] for name, s in servers.items()}
    clock.now += 60
    after = {name: parse(s.metrics(0))[1] for name, s in servers.items()}

    def increase(server: str, name: str, **labels: str) -> float:
        return only(after[server], name, **labels) - only(before[server], name, **labels)

    vllm = after["chat-assistant"]
    # Running pinned at max_num_seqs with requests waiting; the KV cache nearly full; preemptions happening.
    assert only(vllm, "vllm:num_requests_running") == VllmShape().max_num_seqs == 64
    assert only(vllm, "vllm:num_requests_waiting") > 0
    assert only(vllm, "vllm:kv_cache_usage_perc") > 0.9
    assert increase("chat-assistant", "vllm:num_preemptions_total") > 0
    # TTFT is led by queueing: the mean queue time is most of the mean time to first token, far above prefill.
    ttft = increase("chat-assistant", "vllm:time_to_first_token_seconds_sum") / increase(
        "chat-assistant", "vllm:time_to_first_token_seconds_count")
    queue = increase("chat-assistant", "vllm:request_queue_time_seconds_sum") / increase(
        "chat-assistant", "vllm:request_queue_time_seconds_count")
    assert queue > 0.8 * ttft and ttft > 10 * VllmShape().prefill_median_s
    # Triton: the queue full at max_queue_size and the overflow rejected.
    assert only(after["image-tagger"], "nv_inference_pending_request_count") == TritonShape().max_queue_size
    rejected = increase("image-tagger", "nv_inference_request_failure_total", reason="REJECTED")
    success = increase("image-tagger", "nv_inference_request_success_total")
    assert 0.01 < rejected / (rejected + success) < 0.2
    mean_s = increase("image-tagger", "nv_inference_request_duration_us_total") / success / 1e6
    queue_s = increase("image-tagger", "nv_inference_queue_duration_us_total") / success / 1e6
    assert queue_s > mean_s / 2  # latency dominated by queueing


def test_counters_only_go_up_and_a_minute_adds_what_it_served(servers: dict[str, ModelServer], clock: FakeClock):
    """Scrapes every quarter minute over 40 minutes (two of replica 1's outages): every counter, bucket and sum
    of a running replica is at least its last value; a whole minute adds exactly what that minute served."""
    for server in servers.values():
        for replica in range(server.replicas):
            last: Samples | None = None
            for quarter in range(160):
                clock.now = 1_763_820_000.0 + quarter * 15
                if server.is_down(replica, server.current_minute):
                    last = None  # a restarted process starts again from zero
                    continue
                types, samples = parse(server.metrics(replica))
                if last is not None:
                    went_down = [k for k, v in samples.items() if k in last and v < last[k]
                                 and _cumulative(k[0], types)]
                    assert went_down == [], (server.name, replica, quarter, went_down[:3])
                last = samples
    clock.now = 1_763_820_000.0
    chat = servers["chat-assistant"]
    m = chat.current_minute
    at_start = parse(chat.metrics(0))[1]
    clock.now += 60
    at_end = parse(chat.metrics(0))[1]
    truth = chat.minute(0, m).truth
    http = sum(at_end[k] - at_start.get(k, 0) for k in at_end if k[0] == "http_requests_total")
    assert http == truth["requests"]
    finished = sum(at_end[k] - at_start.get(k, 0) for k in at_end if k[0] == "vllm:request_success_total")
    assert finished == truth["served"] + truth["aborted"]


def _cumulative(sample: str, types: dict[str, str]) -> bool:
    family = next((f for f in types if sample == f or sample.startswith(f + "_")), sample)
    return types.get(family) in ("counter", "histogram")


def test_a_down_replica_does_not_answer_and_restarts_from_zero(clock: FakeClock):
    server = ModelServer("chat", VllmShape(), replicas=2, outage=Outage(replica=1, every=10, minutes=2, offset=5),
                         clock=clock)
    with ModelServerHTTP(server) as http:
        up, down = http.targets
        assert up != down and up.endswith("/metrics")
        clock.now += 4.5 * 60  # minute 4: both running
        before = parse(requests.get(down, timeout=5).content)[1]
        served_before = only(before, "http_requests_total", status="2xx")
        clock.now += 60  # minute 5: replica 1 down
        with pytest.raises(requests.ConnectionError):
            requests.get(down, timeout=5)
        assert requests.get(up, timeout=5).status_code == 200
        clock.now += 2 * 60  # minute 7: back, restarted
        after = parse(requests.get(down, timeout=5).content)[1]
        assert 0 < only(after, "http_requests_total", status="2xx") < served_before
        assert requests.get(down.replace("/metrics", "/health"), timeout=5).status_code == 200
        assert requests.get(down.replace("/metrics", "/nope"), timeout=5).status_code == 404
        # While one replica is down, the other takes all the traffic.
        alone, shared = server.minute(0, 5).truth, server.minute(0, 4).truth
        assert alone["requests"] > 1.5 * shared["requests"]


def test_the_same_seed_gives_the_same_servers(clock: FakeClock):
    def body(seed: int) -> bytes:
        s = ModelServer("chat", VllmShape(), replicas=2, clock=clock, start=clock.now, seed=seed)
        s.advance(7.5)
        return s.metrics(1)

    assert body(7) == body(7)
    assert body(7) != body(8)
