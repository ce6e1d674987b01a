"""A Triton-shaped server (triton-inference-server core src/metrics.cc; prometheus-cpp writes the text).

Triton publishes no latency histograms by default: `nv_inference_*_duration_us` are cumulative microsecond
counters over SUCCESSFUL requests, so only a mean is available (Δduration / Δsuccess). With dynamic batching the
model's instances serve at most `concurrency` requests at once; past `max_queue_size` waiting, new requests are
rejected (`nv_inference_request_failure{reason="REJECTED"}`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..traffic import lognormal_mean, queue_minute
from .series import Family, Key, Labels, ReplicaMinute

GPU_UUID = "GPU-5f2c1d8e-3b7a-4c1e-9a44-0d6b2e8f1a90"
GPU_MEMORY_BYTES = 16 * 1024 ** 3
CPU_MEMORY_BYTES = 32 * 1024 ** 3
FAILURE_REASONS = ("REJECTED", "CANCELED", "BACKEND", "OTHER")

FAMILIES = (
    Family("nv_inference_request_success", "counter",
           "Number of successful inference requests, all batch sizes"),
    Family("nv_inference_request_failure", "counter", "Number of failed inference requests, all batch sizes"),
    Family("nv_inference_count", "counter", "Number of inferences performed (does not include cached requests)"),
    Family("nv_inference_exec_count", "counter",
           "Number of model executions performed (does not include cached requests)"),
    Family("nv_inference_request_duration_us", "counter",
           "Cumulative inference request duration in microseconds (includes cached requests)"),
    Family("nv_inference_queue_duration_us", "counter",
           "Cumulative inference queuing duration in microseconds (includes cached requests)"),
    Family("nv_inference_compute_input_duration_us", "counter",
           "Cumulative compute input duration in microseconds (does not include cached requests)"),
    Family("nv_inference_compute_infer_duration_us", "counter",
           "Cumulative compute inference duration in microseconds (does not include cached requests)"),
    Family("nv_inference_compute_output_duration_us", "counter",
           "Cumulative inference compute output duration in microseconds (does not include cached requests)"),
    Family("nv_inference_pending_request_count", "gauge",
           "Instantaneous number of pending requests awaiting execution per-model."),
    Family("nv_gpu_utilization", "gauge", "GPU utilization rate [0.0 - 1.0)"),
    Family("nv_gpu_memory_total_bytes", "gauge", "GPU total memory, in bytes"),
    Family("nv_gpu_memory_used_bytes", "gauge", "GPU used memory, in bytes"),
    Family("nv_cpu_utilization", "gauge", "CPU utilization rate [0.0 - 1.0]"),
    Family("nv_cpu_memory_total_bytes", "gauge", "CPU total memory (RAM), in bytes"),
    Family("nv_cpu_memory_used_bytes", "gauge", "CPU used memory (RAM), in bytes"),
)


@dataclass(frozen=True)
class TritonShape:
    model: str = "tagger_resnet50"
    version: str = "1"
    qps: float = 250.0
    qps_variation: float = 0.05
    concurrency: int = 24  # instances x preferred batch size: requests in execution at once
    max_queue_size: int = 400
    compute_median_s: float = 0.1
    preferred_batch: int = 8
    backend_error_ratio: float = 0.002
    kind: str = "triton"
    families: tuple[Family, ...] = FAMILIES

    @property
    def per_replica_concurrency(self) -> int:
        return self.concurrency

    @property
    def compute_s(self) -> float:
        return lognormal_mean(self.compute_median_s, 0.3)

    def simulate(self, lam: float, queue: float, rng: random.Random) -> tuple[ReplicaMinute, float]:
        served, rejected, queue_end, wait_s = queue_minute(queue, lam, self.concurrency / self.compute_s,
                                                           self.max_queue_size)
        n, n_rejected = round(served), round(rejected)
        n_backend = round(n * self.backend_error_ratio)
        success = n - n_backend
        busy = min(1.0, served / 60 * self.compute_s / self.concurrency)
        compute_us = success * self.compute_s * 1e6
        model: Labels = (("model", self.model), ("version", self.version))
        counts: dict[Key, float] = {
            ("nv_inference_request_success", model): success,
            ("nv_inference_count", model): success,
            ("nv_inference_exec_count", model): round(success / self.preferred_batch),
            ("nv_inference_request_duration_us", model): round(success * wait_s * 1e6 + compute_us),
            ("nv_inference_queue_duration_us", model): round(success * wait_s * 1e6),
            ("nv_inference_compute_input_duration_us", model): round(compute_us * 0.05),
            ("nv_inference_compute_infer_duration_us", model): round(compute_us * 0.9),
            ("nv_inference_compute_output_duration_us", model): round(compute_us * 0.05),
        }
        failures = {"REJECTED": n_rejected, "CANCELED": 0, "BACKEND": n_backend, "OTHER": 0}
        for reason in FAILURE_REASONS:
            counts[("nv_inference_request_failure", (*model, ("reason", reason)))] = failures[reason]
        gpu: Labels = (("gpu_uuid", GPU_UUID),)
        gauges: dict[Key, float] = {
            ("nv_inference_pending_request_count", model): round(queue_end),
            ("nv_gpu_utilization", gpu): round(min(0.99, 0.03 + 0.95 * busy + rng.uniform(-0.01, 0.01)), 3),
            ("nv_gpu_memory_total_bytes", gpu): GPU_MEMORY_BYTES,
            ("nv_gpu_memory_used_bytes", gpu): round(GPU_MEMORY_BYTES * rng.uniform(0.70, 0.72)),
            ("nv_cpu_utilization", ()): round(0.1 + 0.3 * busy + rng.uniform(-0.02, 0.02), 3),
            ("nv_cpu_memory_total_bytes", ()): CPU_MEMORY_BYTES,
            ("nv_cpu_memory_used_bytes", ()): round(CPU_MEMORY_BYTES * rng.uniform(0.27, 0.29)),
        }
        truth = {"requests": n + n_rejected, "served": n, "success": success, "errors_4xx": 0,
                 "errors_5xx": n_rejected + n_backend, "wait_s": wait_s, "waiting": round(queue_end),
                 "mean_latency_s": wait_s + self.compute_s}
        return ReplicaMinute(counts, gauges, truth), queue_end
