"""Remediation rules: each fires with the endpoint's numbers, stays quiet on a near miss, and does not flap."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from exporter.pipeline.analysis import checks
from exporter.pipeline.rules import Remediation, Thresholds
from exporter.pipeline.targets import Targets
from exporter.model import EndpointInfo, Figures, ServedEntity
from exporter.pipeline.rules import RULE_IDS, RULES, HintMemory, conditions_now, evaluate, markdown, recommend

from .examples import healthy_figures

TARGETS = Targets().by_check()


def info(**changes) -> EndpointInfo:
    entity = ServedEntity(name="ep-v1", workload_type="CPU", workload_size="Small", compute="cpu", scale_to_zero_enabled=False,
                          min_provisioned_concurrency=4, max_provisioned_concurrency=16, deployment_state="DEPLOYMENT_READY",
                          deployed=True)
    entity = replace(entity, **changes.pop("entity", {}))
    base = EndpointInfo(name="ep", ready=True, state="READY", config_update="NOT_UPDATING", detailed=True,
                        route_optimized=True, served_entities=(entity,))
    return replace(base, **changes)


figures = healthy_figures


def fired(endpoint=None, figs=None, targets=None, **thresholds) -> dict[str, str]:
    endpoint, figs, targets = endpoint or info(), figs or figures(), targets or TARGETS
    settings = Remediation(thresholds=Thresholds(**thresholds))
    return {rule.id: detail for rule, detail in conditions_now(settings, endpoint, figs, checks(figs, targets), targets)}


def test_a_healthy_endpoint_gets_no_hint():
    assert fired() == {}


# (rule, endpoint changes, figure changes, expected detail fragments, near-miss endpoint changes, near-miss figure changes)
CASES = [
    ("endpoint_not_ready", {"ready": False, "state": "NOT_READY", "config_update": "UPDATE_FAILED", "update_failed": True}, {},
     ["state NOT_READY", "config update UPDATE_FAILED"], {"config_update": "IN_PROGRESS"}, {}),
    ("errors_high", {}, {"error_ratio": 0.05, "error_ratio_5xx": 0.04, "error_ratio_4xx": 0.01},
     ["error ratio 5.0% exceeds its target 1.0% (5xx 4.0%, 4xx 1.0%): server errors lead"], {},
     {"error_ratio": 0.0099, "error_ratio_5xx": 0.0099}),
    ("queueing", {}, {"queue_depth": 3.0, "queue_depth_method": "queue_time", "qps_max": 150.0, "latency_mean": 0.2,
                      "queue_wait_mean": 0.1},
     ["queue depth 3.0 (measured from queue time) over its target 0", "needs 15.0 concurrent requests against at most 16",
      "raise max_provisioned_concurrency to at least 18"], {}, {"queue_depth": 0.0}),
    ("throttled", {}, {"error_ratio_4xx": 0.03, "error_ratio": 0.03, "queue_depth": 2.0, "qps_min": 40.0,
                       "latency_mean": 0.2},
     ["3.0% of requests answered 4xx", "retry with exponential backoff", "raise min_provisioned_concurrency to at least 10"],
     {}, {"error_ratio_4xx": 0.004, "queue_depth": 2.0}),
    ("latency_high", {}, {"latency_p99": 0.8, "latency_mean": 0.5, "queue_wait_mean": 0.3},
     ["P99 0.8 s exceeds its target 0.5 s; queueing explains it: requests wait 0.3 s of the 0.5 s mean latency"], {},
     {"latency_p99": 0.5}),
    ("concurrency_undersized", {}, {"qps": 97.2, "latency_mean": 0.25},
     ["required concurrency 24.3 (97.2 QPS × 0.25 s) exceeds max provisioned concurrency 16: raise "
      "max_provisioned_concurrency to at least 28"], {}, {"qps": 64.0, "latency_mean": 0.25}),
    ("concurrency_oversized", {}, {"provisioned_concurrency": 64.0, "qps_min": 10.0, "qps_max": 20.0, "latency_mean": 0.05},
     ["64 provisioned but the busiest minute needs 1.0", "lower min_provisioned_concurrency to 1 and max_provisioned_concurrency to 2"],
     {}, {"provisioned_concurrency": 2.9, "qps_max": 20.0, "latency_mean": 0.05}),
    ("autoscaling_disabled", {"entity": {"min_provisioned_concurrency": 8, "max_provisioned_concurrency": 8}},
     {"qps_min": 20.0, "qps_max": 40.0, "latency_mean": 0.1},
     ["autoscaling is off (min = max = 8) while QPS ranged 20–40: set min_provisioned_concurrency 3 for the baseline and max 5"],
     {"entity": {"min_provisioned_concurrency": 8, "max_provisioned_concurrency": 8}}, {"qps_min": 30.0, "qps_max": 40.0}),
    ("route_optimization_recommended", {"route_optimized": False}, {"qps": 250.0},
     ["250 QPS exceeds the ~200 QPS", "accept only OAuth tokens"], {"route_optimized": False}, {"qps": 150.0}),
    ("cpu_high", {}, {"cpu_ratio": 0.85}, ["CPU 85.0% over its target 80.0%", "larger instance"], {}, {"cpu_ratio": 0.8}),
    ("memory_high", {}, {"memory_ratio": 0.9}, ["memory 90.0% over its target 80.0%"], {}, {"memory_ratio": 0.79}),
    ("gpu_recommended", {}, {"latency_p99": 0.9, "cpu_ratio": 0.9},
     ["P99 0.9 s over target with CPU at 90.0% on a CPU workload", "GPU workload"], {},
     {"latency_p99": 0.9, "cpu_ratio": 0.9, "queue_depth": 1.0}),
    ("gpu_underused", {"entity": {"workload_type": "GPU_SMALL", "compute": "gpu"}}, {"gpu_ratio": 0.04},
     ["GPU use 4.0% on GPU_SMALL"], {"entity": {"workload_type": "GPU_SMALL", "compute": "gpu"}}, {"gpu_ratio": 0.1}),
    ("scale_to_zero_in_production", {"tags": {"env": "production"}, "entity": {"scale_to_zero_enabled": True}}, {},
     ["endpoint is tagged production", "cold start"], {"entity": {"scale_to_zero_enabled": False}, "tags": {"env": "production"}}, {}),
    ("external_dependency_suspected", {}, {"latency_p99": 0.9, "cpu_ratio": 0.1},
     ["P99 0.9 s over target with CPU at only 10.0% and no queue", "cache"], {}, {"latency_p99": 0.9, "cpu_ratio": 0.3}),
    ("concurrency_limit_near", {"entity": {"max_provisioned_concurrency": 900}}, {},
     ["900 concurrent requests per served entity is 87.9% of the platform limit of 1024"],
     {"entity": {"max_provisioned_concurrency": 800}}, {}),
    ("qps_limit_near", {}, {"qps_max": 45_000.0}, ["the busiest minute reached 45,000 QPS, 90.0% of the ~50,000 QPS"],
     {}, {"qps_max": 39_000.0}),
    ("kv_cache_full", {}, {"kv_cache_ratio": 0.95, "preemptions_per_second": 0.5},
     ["KV cache 95.0% full (window mean of the fullest replica) over its target 90.0%", "0.5 preemptions/s",
      "raise --gpu-memory-utilization", "lower --max-num-seqs or --max-model-len", "or add replicas"],
     {}, {"kv_cache_ratio": 0.9}),
    ("ttft_high", {}, {"ttft_p99": 3.0, "ttft_mean": 1.2, "queue_wait_mean": 0.9},
     ["TTFT P99 3 s exceeds its target 2 s; queueing leads: requests wait 0.9 s of the 1.2 s mean TTFT"],
     {}, {"ttft_p99": 2.0, "ttft_mean": 1.2, "queue_wait_mean": 0.9}),
    ("tpot_high", {}, {"tpot_p99": 0.35}, ["TPOT P99 0.35 s exceeds its target 0.2 s: decoding is slow", "lower --max-num-seqs"],
     {}, {"tpot_p99": 0.2}),
    ("client_batching_suggested", {}, {"qps": 300.0, "latency_mean": 0.005},
     ["300 QPS of light requests (mean service 0.005 s)", "batch them client-side"], {}, {"qps": 300.0, "latency_mean": 0.02}),
]


def test_every_rule_has_a_case():
    # workspace_limit_near looks at the workspace's endpoints together: tests/test_workspace.py; replicas_down at
    # the replicas: tests/test_self_hosted_rules.py.
    assert {c[0] for c in CASES} == RULE_IDS - {"workspace_limit_near", "replicas_down"}


@pytest.mark.parametrize("rule,ep,figs,fragments,near_ep,near_figs", CASES, ids=[c[0] for c in CASES])
def test_rule_fires_with_numbers_and_not_on_a_near_miss(rule, ep, figs, fragments, near_ep, near_figs):
    hits = fired(info(**ep), figures(**figs))
    assert rule in hits, hits
    for fragment in fragments:
        assert fragment in hits[rule]
    assert rule not in fired(info(**near_ep), figures(**near_figs))


def test_errors_led_by_429_while_saturated_point_at_capacity():
    hits = fired(figs=figures(error_ratio=0.04, error_ratio_4xx=0.04, error_ratio_5xx=0.0, queue_depth=3.0))
    assert "mostly 429s — a capacity problem" in hits["errors_high"]


def test_latency_without_queueing_points_at_the_model():
    assert "without queueing: the time is spent serving" in fired(figs=figures(latency_p99=0.8))["latency_high"]


def test_queueing_within_capacity_asks_for_a_higher_minimum():
    hits = fired(figs=figures(queue_depth=1.0, qps_max=60.0, latency_mean=0.1))
    assert "raise min_provisioned_concurrency to at least 7" in hits["queueing"]


def test_route_optimization_only_for_custom_models_and_strict_targets():
    foundation = info(route_optimized=False, entity={"kind": "foundation_model"})
    assert "route_optimization_recommended" not in fired(foundation, figures(qps=250.0))
    strict = {**TARGETS, "latency_p50": 0.04}
    hits = fired(info(route_optimized=False), figures(), targets=strict)
    assert "P50 target 0.04 s is strict" in hits["route_optimization_recommended"]


def test_thresholds_are_configurable():
    assert "client_batching_suggested" in fired(figs=figures(qps=60.0, latency_mean=0.005), batching_qps=50.0)
    assert "client_batching_suggested" not in fired(figs=figures(qps=60.0, latency_mean=0.005))


def test_missing_data_never_fires():
    empty = Figures()
    assert fired(info(), empty) == {}
    assert "concurrency_undersized" not in fired(figs=figures(qps=None, latency_mean=0.25))
    undetailed = replace(info(route_optimized=None, detailed=False), ready=True)
    assert "route_optimization_recommended" not in fired(undetailed, figures(qps=250.0))


def test_recommendation_covers_baseline_and_peak():
    figs = figures(qps_min=40.0, qps_max=100.0, latency_mean=0.25, queue_wait_mean=0.05)
    rec = recommend(Remediation(), info(), figs, checks(figs, TARGETS), TARGETS)
    assert (rec.min_concurrency, rec.max_concurrency) == (10, 23)  # 40 x 0.2 x 1.15 = 9.2; 100 x 0.2 x 1.15 = 23
    assert "QPS 40–100" in rec.basis
    assert recommend(Remediation(), info(), Figures(), (), TARGETS) is None


# -- hysteresis --------------------------------------------------------------------------------


def run(series, settings=None, endpoint=None, fresh=True):
    """Evaluate a sequence of figures poll by poll; return the active rule ids after each poll."""
    settings, memory, out = settings or Remediation(), HintMemory(), []
    endpoint = endpoint or info()
    for i, figs in enumerate(series):
        figs = replace(figs, latest_minute_ms=figs.latest_minute_ms if figs.latest_minute_ms != 60_000 else 60_000 * (i + 1))
        hints = evaluate(settings, endpoint, figs, checks(figs, TARGETS), TARGETS, memory,
                         metrics_fresh=fresh, config_fresh=True, now_s=1000.0 + i)
        out.append({h.id for h in hints})
    return out


HOT, COOL = figures(cpu_ratio=0.81), figures(cpu_ratio=0.79)


def test_fires_after_consecutive_polls_and_clears_after_consecutive_misses():
    states = run([HOT, HOT, HOT, COOL, HOT, COOL, COOL, COOL])
    assert ["cpu_high" in s for s in states] == [False, True, True, True, True, True, False, False]


def test_a_value_oscillating_around_the_threshold_never_fires():
    assert not any("cpu_high" in s for s in run([HOT, COOL] * 6))


def test_an_active_hint_does_not_flap_on_an_oscillating_value():
    states = run([HOT, HOT] + [COOL, HOT] * 5)
    assert all("cpu_high" in s for s in states[1:])


def test_stale_data_changes_nothing():
    same_minute = [replace(HOT, latest_minute_ms=120_000)] * 5
    assert not any(run(same_minute))  # one new minute, then repeats: never two fresh polls
    assert not any(run([HOT] * 5, fresh=False))  # failing fetches


def test_hint_carries_since_and_the_latest_detail():
    settings, memory = Remediation(), HintMemory()
    for i, cpu in enumerate([0.81, 0.85, 0.9]):
        figs = figures(cpu_ratio=cpu, latest_minute_ms=60_000 * (i + 1))
        hints = evaluate(settings, info(), figs, checks(figs, TARGETS), TARGETS, memory,
                         metrics_fresh=True, config_fresh=True, now_s=100.0 + i)
    (hint,) = [h for h in hints if h.id == "cpu_high"]
    assert hint.since_s == 101.0 and "CPU 90.0%" in hint.detail and hint.severity == "warning"


def test_cost_rules_need_a_sustained_pattern():
    idle_gpu = info(entity={"workload_type": "GPU_SMALL", "compute": "gpu"})
    states = run([figures(gpu_ratio=0.02)] * 12, endpoint=idle_gpu)
    assert ["gpu_underused" in s for s in states].index(True) == 9  # the 10th poll


def test_rules_can_be_disabled_globally_and_per_endpoint():
    assert not any("cpu_high" in s for s in run([HOT] * 3, Remediation(disabled=["cpu_high"])))
    per_endpoint = Remediation(overrides=[{"match": {"name": "ep"}, "disabled": ["cpu_high"]}])
    assert not any("cpu_high" in s for s in run([HOT] * 3, per_endpoint))
    other = Remediation(overrides=[{"match": {"name": "other"}, "disabled": ["cpu_high"]}])
    assert "cpu_high" in run([HOT] * 3, other)[-1]


def test_unknown_rule_id_in_configuration_is_rejected():
    with pytest.raises(ValueError, match="unknown rule id"):
        Remediation(disabled=["cpu_hgih"])


def test_per_endpoint_thresholds():
    settings = Remediation(overrides=[{"match": {"name": "ep"}, "thresholds": {"batching_qps": 10}}])
    thresholds, _ = settings.for_endpoint(info())
    assert thresholds.batching_qps == 10 and thresholds.light_request_seconds == 0.02


# -- docs --------------------------------------------------------------------------------------


def test_generated_docs_are_current():
    path = Path(__file__).parents[1] / "docs" / "remediation.md"
    assert path.read_text() == markdown(), "run: python docs/generate.py"


def test_every_rule_is_documented_with_why_and_action():
    text = markdown()
    for rule in RULES:
        assert f"## {rule.id}" in text and rule.why in text and rule.action in text


def test_null_is_not_a_threshold():
    with pytest.raises(ValueError):
        Remediation(overrides=[{"match": {"name": "ep"}, "thresholds": {"headroom_ratio": None}}])
