"""Ready-made workspaces: the demo endpoints, and N synthetic ones for benchmarks."""

from __future__ import annotations

import time
from typing import Callable

from .model_servers import ModelServer, Outage, TritonShape, VllmShape
from .scenario import PRESETS
from .workspace import Workspace

PRODUCTION = {"env": "production"}


def build_demo_workspace(minute_seconds: float = 60.0, seed: int = 7,
                         clock: Callable[[], float] = time.time) -> Workspace:
    """Seven endpoints, each showing a different condition the exporter should diagnose."""
    ws = Workspace(minute_seconds=minute_seconds, clock=clock, seed=seed)
    # Healthy: autoscaling keeps ~30% headroom; text format with timestamps, endpoint-level.
    ws.add_endpoint("fraud-scorer", "healthy", qps=40.0, service_time_median_s=0.030,
                    route_optimized=True, tags={**PRODUCTION, "team": "risk"})
    # Fixed capacity 12 a few percent under ~90 QPS: full queue, 429s, queue-time histogram.
    ws.add_endpoint("recommender", "queueing", entity_label="served_entity",
                    served_entities=[("recommender-v2", 100)],
                    tags={**PRODUCTION, "team": "personalization"})
    # A canary taking 10% of traffic fails 40% of its requests: ~4% 5xx for the endpoint.
    ws.add_endpoint("support-chat", "healthy", qps=6.0, service_time_median_s=1.2,
                    service_time_sigma=0.5, task="llm/v1/chat", workload_type="GPU_MEDIUM",
                    workload_size="Medium", cpu_percent_at_full_busy=45.0, memory_percent=58.0,
                    gpu_percent_at_full_busy=85.0, gpu_memory_percent=62.0,
                    served_entities=[("support-chat-v3", 90), ("support-chat-v4", 10)],
                    entity_overrides={"support-chat-v4": {"error_5xx_ratio": 0.4}},
                    entity_label="served_model_name", tags={"env": "staging", "team": "cx"})
    ws.add_endpoint("doc-embedder", "cpu_saturated", tags={"team": "search"})
    ws.add_endpoint("search-ranker", "high_qps_no_route_opt", openmetrics=True,
                    tags={**PRODUCTION, "team": "search"})
    ws.add_endpoint("vision-classifier", "gpu_idle", cumulative_histogram=True,
                    gpu_memory_metric_name="gpu_mem_usage_percentage", tags={"team": "vision"})
    ws.add_endpoint("batch-scorer", "scale_to_zero", timestamps=False,
                    tags={**PRODUCTION, "team": "risk"})
    return ws


def build_demo_model_servers(minute_seconds: float = 60.0, seed: int = 7, clock: Callable[[], float] = time.time,
                             start: float | None = None) -> list[ModelServer]:
    """The demo's self-hosted endpoints, each in a state the exporter should diagnose."""
    return [
        # vLLM, two replicas, offered ~10% more than their 2 x 64 sequence slots serve: running pinned at 64,
        # requests waiting, the KV cache ~97% full with preemptions, and a TTFT of ~18 s that is nearly all queue.
        # Replica 1 crashes for 3 minutes in every 20 (and restarts with its counters from zero).
        ModelServer("chat-assistant", VllmShape(), replicas=2, outage=Outage(replica=1, every=20, minutes=3, offset=12),
                    minute_seconds=minute_seconds, clock=clock, start=start, seed=seed,
                    tags={**PRODUCTION, "team": "genai"}),
        # Triton, one GPU replica offered a little more than it executes: the queue is full at max_queue_size and
        # the overflow is rejected (~3-12% failures), with the mean latency dominated by queueing.
        ModelServer("image-tagger", TritonShape(), minute_seconds=minute_seconds, clock=clock, start=start, seed=seed,
                    tags={"team": "vision"}),
    ]


def build_synthetic_workspace(n: int, minute_seconds: float = 60.0, seed: int = 7,
                              clock: Callable[[], float] = time.time) -> Workspace:
    """`n` endpoints named synthetic-0000... cycling through the presets."""
    ws = Workspace(minute_seconds=minute_seconds, clock=clock, seed=seed)
    presets = list(PRESETS)
    for i in range(n):
        ws.add_endpoint(f"synthetic-{i:04d}", presets[i % len(presets)])
    return ws
