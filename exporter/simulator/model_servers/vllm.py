"""A vLLM-shaped server (vllm/v1/metrics/loggers.py and the OpenAI server's prometheus-fastapi-instrumentator).

Continuous batching: at most `max_num_seqs` sequences run at once; the rest wait (`vllm:num_requests_waiting`).
A request takes prefill, then `generation_tokens` x time per output token. Clients give up after waiting
`max_waiting` deep in the queue: the engine counts those as finished with reason "abort". The KV cache fills with
the running sequences, and past ~95% the scheduler preempts some.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from ..traffic import lognormal_mean, queue_minute, shifted_lognormal_cdf
from .series import Family, Key, Labels, ReplicaMinute, histogram_series

# Bucket bounds as vLLM declares them (seconds).
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
               40.0, 80.0)
REQUEST_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
                   240.0, 480.0, 960.0, 1920.0, 7680.0)
HANDLER = "/v1/chat/completions"

FAMILIES = (
    Family("vllm:num_requests_running", "gauge", "Number of requests in model execution batches."),
    Family("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed."),
    Family("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage."),
    Family("vllm:num_preemptions_total", "counter", "Cumulative number of preemption from the engine."),
    Family("vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed."),
    Family("vllm:generation_tokens_total", "counter", "Number of generation tokens processed."),
    Family("vllm:request_success_total", "counter", "Count of successfully processed requests."),
    Family("vllm:time_to_first_token_seconds", "histogram", "Histogram of time to first token in seconds."),
    Family("vllm:inter_token_latency_seconds", "histogram", "Histogram of inter-token latency in seconds."),
    Family("vllm:e2e_request_latency_seconds", "histogram", "Histogram of e2e request latency in seconds."),
    Family("vllm:request_queue_time_seconds", "histogram",
           "Histogram of time spent in WAITING phase for request."),
    Family("http_requests_total", "counter", "Total number of requests by method, status and handler."),
)


@dataclass(frozen=True)
class VllmShape:
    model_name: str = "meta-llama/Llama-3.1-8B-Instruct"
    qps: float = 15.5
    qps_variation: float = 0.05
    max_num_seqs: int = 64
    max_waiting: int = 128  # per replica: deeper in the queue than this, clients give up
    prefill_median_s: float = 0.25
    tpot_median_s: float = 0.040
    prompt_tokens_mean: float = 640.0
    generation_tokens_mean: float = 220.0
    length_share: float = 0.12  # finished by hitting max_tokens rather than a stop token
    error_4xx_ratio: float = 0.004  # rejected by validation (context too long, bad parameters): never queued
    kind: str = "vllm"
    families: tuple[Family, ...] = FAMILIES

    @property
    def per_replica_concurrency(self) -> int:
        return self.max_num_seqs

    @property
    def service_s(self) -> float:
        """Mean time a request holds a sequence slot."""
        return lognormal_mean(self.prefill_median_s, 0.5) + self.generation_tokens_mean * self.tpot_median_s

    def simulate(self, lam: float, queue: float, rng: random.Random) -> tuple[ReplicaMinute, float]:
        valid = lam * (1 - self.error_4xx_ratio)
        served, aborted, queue_end, wait_s = queue_minute(queue, valid, self.max_num_seqs / self.service_s,
                                                          self.max_waiting)
        n, n_abort, n_4xx = round(served), round(aborted), round(lam * 60 * self.error_4xx_ratio)
        n_length = round(n * self.length_share)
        prompt = round(n * self.prompt_tokens_mean * rng.uniform(0.95, 1.05))
        generated = round(n * self.generation_tokens_mean * rng.uniform(0.95, 1.05))
        running = min(float(self.max_num_seqs), served / 60 * self.service_s)
        kv = min(0.995, 0.05 + 0.93 * running / self.max_num_seqs + rng.uniform(-0.01, 0.01))
        preemptions = round(n * 0.03 * rng.uniform(0.5, 1.5)) if kv > 0.95 else 0

        base: Labels = (("engine", "0"), ("model_name", self.model_name))
        counts: dict[Key, float] = {
            ("vllm:num_preemptions_total", base): preemptions,
            ("vllm:prompt_tokens_total", base): prompt,
            ("vllm:generation_tokens_total", base): generated,
        }
        for reason, value in (("stop", n - n_length), ("length", n_length), ("abort", n_abort)):
            counts[("vllm:request_success_total", (*base, ("finished_reason", reason)))] = value
        e2e_mean = wait_s + self.service_s
        counts.update(histogram_series(
            "vllm:time_to_first_token_seconds", base, TTFT_BUCKETS, n,
            shifted_lognormal_cdf(self.prefill_median_s, 0.5, wait_s),
            wait_s + lognormal_mean(self.prefill_median_s, 0.5)))
        tokens_after_first = max(0, generated - n)
        counts.update(histogram_series(
            "vllm:inter_token_latency_seconds", base, ITL_BUCKETS, tokens_after_first,
            shifted_lognormal_cdf(self.tpot_median_s, 0.3, 0.0), lognormal_mean(self.tpot_median_s, 0.3)))
        counts.update(histogram_series(
            "vllm:e2e_request_latency_seconds", base, REQUEST_BUCKETS, n,
            shifted_lognormal_cdf(self.service_s / math.exp(0.35 ** 2 / 2), 0.35, wait_s), e2e_mean))
        counts.update(histogram_series(
            "vllm:request_queue_time_seconds", base, REQUEST_BUCKETS, n,
            (lambda x: 1.0 - math.exp(-x / wait_s)) if wait_s > 0 else (lambda x: 1.0), wait_s))
        for status, value in (("2xx", n + n_abort), ("4xx", n_4xx)):
            counts[("http_requests_total", (("handler", HANDLER), ("method", "POST"), ("status", status)))] = value
        gauges: dict[Key, float] = {
            ("vllm:num_requests_running", base): round(running),
            ("vllm:num_requests_waiting", base): round(queue_end),
            ("vllm:kv_cache_usage_perc", base): round(kv, 4),
        }
        truth = {"requests": n + n_abort + n_4xx, "served": n, "aborted": n_abort, "errors_4xx": n_4xx,
                 "errors_5xx": 0, "wait_s": wait_s, "waiting": round(queue_end), "running": round(running),
                 "kv_cache_ratio": round(kv, 4), "prompt_tokens": prompt, "generation_tokens": generated,
                 "preemptions": preemptions}
        return ReplicaMinute(counts, gauges, truth), queue_end
