"""What each model server publishes, as a table per server kind: which metric feeds which MinuteFigures field,
in which unit, with which label naming the model. The names were read off each project's code (cited per
table); docs/self-hosted.md shows what each server provides and what it does not.

Spec kinds (readings.py applies them):
- Count: a cumulative counter (or a histogram's `_count`/`_sum`) into a count field; several Counts of one
  field add up (Triton: requests = successes + failures). `where` picks series by their labels.
- Hist: a cumulative histogram into a histogram field, its bounds and sum divided by `unit` (into seconds).
- Mean: a server that gives only a cumulative duration and a count (Triton's `_duration_us`, TorchServe's
  `_microseconds`): a histogram with the single +Inf bound, which carries a mean and never percentiles.
- Gauge: the latest value, divided by `unit`; series added up (`sum`: requests waiting) or the largest
  taken (`max`: a utilisation, the fullest device).
- GaugeRatio: used / total of two gauges (memory), per replica.
Where a spec lists several names, the first the body has wins (a renamed metric, or a second source of it).
Counter names are written without `_total`: the text parser adds it to every counter.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Labels = dict[str, str]
Where = Callable[[Labels], bool]

# Units as divisors into seconds and ratios (dividing by 1000 is exact where multiplying by 0.001 is not).
MS = 1e3
US = 1e6
PERCENT = 1e2


Names = tuple[str | tuple[str, ...], ...]  # alternatives, the first the body has wins; a tuple: several added up


@dataclass(frozen=True)
class Count:
    field: str
    names: Names
    where: Where | None = None
    entities_only: bool = False  # counts towards its model only: the endpoint counts the same requests elsewhere


@dataclass(frozen=True)
class Hist:
    field: str
    names: Names
    unit: float | tuple[float, ...] = 1.0  # per alternative when a tuple


@dataclass(frozen=True)
class Mean:
    field: str
    sum: str
    count: str
    unit: float = 1.0


@dataclass(frozen=True)
class Gauge:
    field: str
    names: tuple[str, ...]
    unit: float = 1.0
    combine: Literal["sum", "max"] = "sum"


@dataclass(frozen=True)
class GaugeRatio:
    field: str
    used: str
    total: str


Spec = Count | Hist | Mean | Gauge | GaugeRatio


@dataclass(frozen=True)
class Server:
    kind: str
    markers: tuple[str, ...]  # metric name prefixes that identify the server (auto detection)
    entity_labels: tuple[str, ...]  # the label naming the model, first present wins
    specs: tuple[Spec, ...]
    notes: str = ""


def status(cls: str, label: str = "status") -> Where:
    """Series whose status label is in class `cls` ("4" or "5"): `404`, `4xx` alike."""
    return lambda labels: labels.get(label, "")[:1] == cls


# Paths that are probes or the metrics scrape itself, never traffic (MLServer /v2/health/*, /v2/models/{m}/ready,
# BentoML /healthz /readyz /livez, vLLM /health, TorchServe /ping, Ray Serve /-/healthz).
_PROBE = re.compile(r"(/-)?/(metrics|healthz?|readyz|livez|ping|ready|live|v2/health/(live|ready)"
                    r"|v2/models/[^/]+(/versions/[^/]+)?/ready)/?")
PATH_LABELS = ("path", "handler", "endpoint", "route")


def is_probe(labels: Labels) -> bool:
    return any(_PROBE.fullmatch(labels[k]) for k in PATH_LABELS if k in labels)


def _vllm(prefix: str) -> tuple[Spec, ...]:
    """vLLM's engine metrics (vllm/v1/metrics/loggers.py), also re-exported by Ray Serve LLM as `ray_vllm:*`."""
    p = prefix
    return (
        # Every finished request, aborts and errors included (finished_reason=stop|length|abort|error|...).
        Count("requests", (f"{p}request_success",)),
        Hist("latency", (f"{p}e2e_request_latency_seconds",)),
        Hist("queue_time", (f"{p}request_queue_time_seconds",)),
        Hist("ttft", (f"{p}time_to_first_token_seconds",)),
        # inter_token_latency replaced time_per_output_token (deprecated, hidden by default).
        Hist("tpot", (f"{p}inter_token_latency_seconds", f"{p}time_per_output_token_seconds")),
        Count("prompt_tokens", (f"{p}prompt_tokens",)),
        Count("generation_tokens", (f"{p}generation_tokens",)),
        Count("preemptions", (f"{p}num_preemptions",)),
        Gauge("queue_depth", (f"{p}num_requests_waiting",)),
        Gauge("requests_running", (f"{p}num_requests_running",)),
        Gauge("kv_cache_ratio", (f"{p}kv_cache_usage_perc", f"{p}gpu_cache_usage_perc"), combine="max"),
    )


SERVERS: dict[str, Server] = {s.kind: s for s in (
    # Ray Serve (python/ray/serve/_private/proxy.py, metrics_utils) and Ray Serve LLM's vLLM engine metrics.
    # Before vllm: a Ray Serve LLM body has `ray_vllm:*`, never `vllm:*`.
    Server("ray-serve", ("ray_serve_", "ray_vllm:"), ("model_name",), (
        Count("requests", ("ray_serve_num_http_requests",)),
        Count("errors_4xx", ("ray_serve_num_http_requests",), status("4", "status_code")),
        Count("errors_5xx", ("ray_serve_num_http_requests",), status("5", "status_code")),
        Hist("latency", ("ray_serve_http_request_latency_ms",), MS),
        Gauge("queue_depth", ("ray_serve_deployment_queued_queries", "ray_vllm:num_requests_waiting")),
        Gauge("requests_running", ("ray_serve_num_ongoing_http_requests", "ray_vllm:num_requests_running")),
        Gauge("cpu_ratio", ("ray_node_cpu_utilization",), PERCENT, "max"),
        Gauge("gpu_ratio", ("ray_node_gpus_utilization",), PERCENT, "max"),
        *(s for s in _vllm("ray_vllm:") if s.field not in ("requests", "latency", "queue_depth", "requests_running")),
    )),
    # vLLM: engine metrics above; HTTP status classes from prometheus-fastapi-instrumentator (vllm/entrypoints/
    # openai/api_server.py), `status` = 2xx|4xx|5xx, `handler` = the route (probes and /metrics excluded).
    Server("vllm", ("vllm:",), ("model_name",), (
        *_vllm("vllm:"),
        Count("errors_4xx", ("http_requests",), status("4")),
        Count("errors_5xx", ("http_requests",), status("5")),
    )),
    # Hugging Face TGI (router/src/server.rs, router/src/infer/mod.rs): no model label, no time to first token
    # (its maintainers: derive it from queue + prefill, TGI issue 2887). Failures carry `err`: validation and
    # template errors answer 422, overloaded 429 (client side, 4xx); generation and incomplete ones are the
    # server's (5xx).
    Server("tgi", ("tgi_",), (), (
        Count("requests", ("tgi_request_success",)),
        Count("requests", ("tgi_request_failure",)),
        Count("errors_4xx", ("tgi_request_failure",), lambda l: l.get("err") in ("validation", "template", "overloaded")),
        Count("errors_5xx", ("tgi_request_failure",), lambda l: l.get("err") not in ("validation", "template", "overloaded")),
        Hist("latency", ("tgi_request_duration",)),
        Hist("queue_time", ("tgi_request_queue_duration",)),
        Hist("tpot", ("tgi_request_mean_time_per_token_duration",)),
        Count("prompt_tokens", ("tgi_request_input_length_sum",)),
        Count("generation_tokens", ("tgi_request_generated_tokens_sum",)),
        Gauge("queue_depth", ("tgi_queue_size",)),
        Gauge("requests_running", ("tgi_batch_current_size",)),
    )),
    # NVIDIA Triton (core src/metrics.cc): labels model, version. Duration counters in µs cover successful
    # requests only: mean = Δduration / Δsuccess. Failures have no status code: they count as 5xx.
    Server("triton", ("nv_inference_",), ("model",), (
        Count("requests", ("nv_inference_request_success",)),
        Count("requests", ("nv_inference_request_failure",)),
        Count("errors_5xx", ("nv_inference_request_failure",)),
        Mean("latency", "nv_inference_request_duration_us", "nv_inference_request_success", US),
        Mean("queue_time", "nv_inference_queue_duration_us", "nv_inference_request_success", US),
        Hist("ttft", ("nv_inference_first_response_histogram_ms",), MS),
        Gauge("queue_depth", ("nv_inference_pending_request_count",)),
        Gauge("gpu_ratio", ("nv_gpu_utilization",), combine="max"),
        GaugeRatio("gpu_memory_ratio", "nv_gpu_memory_used_bytes", "nv_gpu_memory_total_bytes"),
        Gauge("cpu_ratio", ("nv_cpu_utilization",), combine="max"),
        GaugeRatio("memory_ratio", "nv_cpu_memory_used_bytes", "nv_cpu_memory_total_bytes"),
    )),
    # TorchServe, metrics_mode=prometheus (frontend/server/src/main/resources/metrics_default.yaml): means
    # only (cumulative µs), utilisation in percent, 4XX/5XX counts per host (no model label).
    Server("torchserve", ("ts_inference_", "ts_queue_"), ("model_name",), (
        Count("requests", ("ts_inference_requests",)),
        Count("errors_4xx", ("Requests4XX",)),
        Count("errors_5xx", ("Requests5XX",)),
        Mean("latency", "ts_inference_latency_microseconds", "ts_inference_requests", US),
        Mean("queue_time", "ts_queue_latency_microseconds", "ts_inference_requests", US),
        Gauge("cpu_ratio", ("CPUUtilization",), PERCENT, "max"),
        Gauge("memory_ratio", ("MemoryUtilization",), PERCENT, "max"),
        Gauge("gpu_ratio", ("GPUUtilization",), PERCENT, "max"),
        Gauge("gpu_memory_ratio", ("GPUMemoryUtilization",), PERCENT, "max"),
    )),
    # BentoML (src/bentoml/_internal/server/http/instruments.py): `endpoint` is the route (probes excluded),
    # `http_response_code` the status; no model label.
    Server("bentoml", ("bentoml_",), (), (
        Count("requests", ("bentoml_service_request",)),
        Count("errors_4xx", ("bentoml_service_request",), status("4", "http_response_code")),
        Count("errors_5xx", ("bentoml_service_request",), status("5", "http_response_code")),
        Hist("latency", ("bentoml_service_request_duration_seconds",)),
        Gauge("requests_running", ("bentoml_service_request_in_progress",)),
    )),
    # Seldon MLServer (mlserver/metrics/, mlserver/rest/server.py via starlette_exporter; mlserver/handlers/
    # dataplane.py): REST traffic by path and status_code (probes excluded; gRPC traffic is not in these);
    # per-model successes and failures (no status: failures count as 5xx) for the models only.
    Server("mlserver", ("rest_server_", "model_infer_request_", "parallel_request_queue", "batch_request_queue"),
           ("model",), (
        Count("requests", ("rest_server_requests",)),
        Count("errors_4xx", ("rest_server_requests",), status("4", "status_code")),
        Count("errors_5xx", ("rest_server_requests",), status("5", "status_code")),
        Hist("latency", ("rest_server_request_duration_seconds",)),
        Gauge("requests_running", ("rest_server_requests_in_progress",)),
        Count("requests", ("model_infer_request_success",), entities_only=True),
        Count("requests", ("model_infer_request_failure",), entities_only=True),
        Count("errors_5xx", ("model_infer_request_failure",), entities_only=True),
    )),
    # KServe: the Knative queue-proxy in front of the model (`revision_*`, latencies in ms, status classes),
    # else KServe's own model server (python/kserve/kserve/metrics.py: request_{preprocess,predict,postprocess,
    # explain}_seconds histograms labelled model_name; no error counter). Its requests and latency are predict's
    # and explain's (one observation per call); pre- and post-processing are separate steps of the same calls.
    Server("kserve", ("revision_", "request_predict_seconds", "request_explain_seconds"), ("model_name",), (
        Count("requests", ("revision_request_count", ("request_predict_seconds_count", "request_explain_seconds_count"))),
        Count("errors_4xx", ("revision_request_count",), status("4", "response_code_class")),
        Count("errors_5xx", ("revision_request_count",), status("5", "response_code_class")),
        Hist("latency", ("revision_request_latencies", ("request_predict_seconds", "request_explain_seconds")), (MS, 1.0)),
        Gauge("queue_depth", ("revision_queue_depth",)),
    )),
)}
