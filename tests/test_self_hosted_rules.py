"""Remediation for self-hosted endpoints: advice in replicas, none of a managed platform's settings, replicas down,
and out of the Databricks workspace limits. Numbers worked out by hand next to each expectation."""

from __future__ import annotations

from dataclasses import replace

from exporter.model import EndpointInfo, Replica, ServedEntity
from exporter.pipeline.analysis import checks
from exporter.pipeline.rules import RULES, HintMemory, Remediation, conditions_now, evaluate, recommend
from exporter.pipeline.targets import Targets
from exporter.pipeline.workspace import WorkspaceLimits, usage

from .examples import healthy_figures as figures
from .test_rules import info as databricks_info

TARGETS = Targets().by_check()
UP = (Replica("http://10.0.0.5:8000/metrics", True), Replica("http://10.0.0.6:8000/metrics", True))
DOWN = Replica("http://10.0.0.7:8000/metrics", False, "timeout")
# Two replicas answer x 256 concurrent sequences each (per_replica_concurrency) = 512.
CHAT = EndpointInfo(name="chat", platform="self-hosted", server="vllm", ready=True,
                    served_entities=(ServedEntity(name="chat", sized_capacity=512.0),))


def fired(figs, endpoint=CHAT, replicas=UP + (DOWN,)) -> dict[str, str]:
    return {rule.id: detail for rule, detail in
            conditions_now(Remediation(), endpoint, figs, checks(figs, TARGETS), TARGETS, replicas)}


def test_llm_queueing_at_capacity_asks_for_replicas():
    hits = fired(figures(queue_depth=100.0, queue_depth_method="server", requests_running=500.0))
    # 500 running >= 0.9 x 512: saturated. 600 in flight x 1.15 / 256 per replica = 2.7 -> 3 replicas, 1 more.
    # Sized for what runs (500, more than the load's 1.9), not running + the waiting backlog: 500 x 1.15 / 256 -> 3.
    assert ("queue depth 100.0 (the server's own count of waiting requests) over its target 0: 500.0 running (more "
            "than the load's 1.9) need 500.0 concurrent requests against 512 — run 3 replicas (add 1: 500.0 concurrent "
            "requests / 256 per replica, +15% headroom)") == hits["queueing"]


def test_queueing_below_capacity_with_a_full_kv_cache_points_at_the_cache():
    hits = fired(figures(queue_depth=20.0, queue_depth_method="server", requests_running=300.0, kv_cache_ratio=0.97))
    assert "with only 300.0 of 512 running: the KV cache (97.0%) is full" in hits["queueing"]
    # 2 replicas x 0.97 / 0.9 = 2.16 -> 3 replicas bring each replica's cache under the target.
    assert hits["kv_cache_full"].endswith("or run 3 replicas (add 1) to bring it under target")
    assert "--gpu-memory-utilization" in hits["kv_cache_full"]
    tgi = fired(figures(kv_cache_ratio=0.97), replace(CHAT, server="tgi"))["kv_cache_full"]
    assert "--gpu-memory-utilization" not in tgi and "admit fewer concurrent sequences" in tgi


def test_undersized_and_oversized_in_replicas():
    hits = fired(figures(qps=120.0, latency_mean=5.0))  # 120 QPS x 5 s = 600 > 512
    assert ("required concurrency 600.0 (120 QPS × 5 s) exceeds the replicas' concurrency 512: run 3 replicas (add 1"
            in hits["concurrency_undersized"])
    quiet = fired(figures(qps_min=1.0, qps_max=2.0, latency_mean=5.0, provisioned_concurrency=512.0))
    # Busiest minute 2 x 5 = 10 in flight: 10 x 1.15 / 256 -> 1 replica instead of 2.
    assert "2 replicas serve 512 concurrent requests but the busiest minute needs 10.0" in quiet["concurrency_oversized"]
    assert quiet["concurrency_oversized"].endswith("1 replicas would do, to cut cost")


def test_ttft_led_by_prefill_names_prompt_levers():
    hits = fired(figures(ttft_p99=3.0, ttft_mean=1.5, queue_wait_mean=0.1))
    assert "prefill leads: 1.4 s of the 1.5 s mean TTFT is after the queue (0.1 s)" in hits["ttft_high"]
    assert "prefix caching" in hits["ttft_high"]


def test_no_managed_platform_advice_for_self_hosted_endpoints():
    # Figures and configuration on which the Databricks-only rules fire for a Databricks endpoint ...
    fixed = {"min_provisioned_concurrency": 900, "max_provisioned_concurrency": 900}
    configurations = [databricks_info(route_optimized=False, tags={"env": "production"}, entity={**fixed, "scale_to_zero_enabled": True}),
                      databricks_info(route_optimized=False, entity=fixed)]  # min = max without scale-to-zero
    figs = figures(qps=250.0, qps_min=20.0, qps_max=45_000.0, latency_mean=0.1, error_ratio_4xx=0.03,
                   error_ratio=0.03, queue_depth=3.0)
    only_managed = {r.id for r in RULES if r.managed_only} - {"workspace_limit_near", "gpu_underused"}
    assert only_managed <= {rule for managed in configurations for rule in fired(figs, managed, ())}
    for managed in configurations:
        # ... never fire for the same endpoint self-hosted, and no detail names a managed platform's setting.
        self_hosted = fired(figs, replace(managed, platform="self-hosted"), UP)
        assert not only_managed & set(self_hosted)
        assert {"queueing", "throttled"} <= set(self_hosted)
        for detail in self_hosted.values():
            for managed_word in ("provisioned_concurrency", "route optimization", "scale-to-zero", "workload"):
                assert managed_word not in detail, detail


def test_replicas_down_names_them_and_has_hysteresis():
    memory, settings, active = HintMemory(), Remediation(), []
    figs = figures()
    for i, replicas in enumerate([UP + (DOWN,)] * 3 + [UP] * 3):
        # No new minute at all: a replica going away is news even while the figures are stale.
        hints = evaluate(settings, CHAT, figs, checks(figs, TARGETS), TARGETS, memory, metrics_fresh=False,
                         config_fresh=False, now_s=float(i), replicas=replicas)
        active.append({h.id: h for h in hints}.get("replicas_down"))
    # Fires on the 2nd poll down (fire_after_polls 2), clears on the 2nd poll all up (clear_after_polls 2).
    assert [h is not None for h in active] == [False, True, True, True, False, False]
    assert active[1].detail.startswith("2 of 3 replicas answer (66.7%): http://10.0.0.7:8000/metrics: timeout")
    assert "replicas_down" not in fired(figs, replicas=UP)
    assert "replicas_down" not in fired(figs, replicas=())  # a Databricks endpoint has none


def test_recommendation_in_replicas():
    figs = figures(qps_min=40.0, qps_max=100.0, latency_mean=5.0)
    rec = recommend(Remediation(), CHAT, figs, checks(figs, TARGETS), TARGETS, UP)
    # 40 x 5 = 200 and 100 x 5 = 500 in flight; x 1.15 / 256 per replica = 0.9 and 2.2 -> 1 and 3 replicas.
    assert (rec.unit, rec.min_concurrency, rec.max_concurrency) == ("replicas", 1, 3)
    assert "256 concurrent requests per replica" in rec.basis
    unknown = replace(CHAT, served_entities=(ServedEntity(name="chat"),))  # no per_replica_concurrency configured
    assert recommend(Remediation(), unknown, figs, checks(figs, TARGETS), TARGETS, UP) is None
    assert "add replicas (set per_replica_concurrency for a number)" in fired(
        figures(qps=120.0, latency_mean=5.0, queue_depth=1.0, qps_max=120.0), unknown, UP)["queueing"]


def test_self_hosted_endpoints_are_outside_the_workspace_limits():
    databricks = databricks_info(route_optimized=False)
    found = usage([(CHAT, figures(qps=500.0)), (databricks, figures(qps=100.0))], WorkspaceLimits())
    assert found.endpoints == 1 and found.qps == 100.0 and found.candidates == ()


def test_targets_can_be_overridden_per_platform_and_server():
    from exporter.config import load_settings

    settings = load_settings(overrides={"target_overrides": [
        {"match": {"platform": "self-hosted"}, "targets": {"latency_p99_seconds": 30}},
        {"match": {"server": "vllm"}, "targets": {"ttft_p99_seconds": 1.0}}]})
    assert settings.targets_for(CHAT)["latency_p99"] == 30 and settings.targets_for(CHAT)["ttft_p99"] == 1.0
    tgi = replace(CHAT, server="tgi")
    assert settings.targets_for(tgi)["ttft_p99"] == 2.0
    assert settings.targets_for(databricks_info())["latency_p99"] == 0.5
