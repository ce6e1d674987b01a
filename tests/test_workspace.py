"""The per-workspace limits of standard endpoints: totals, the endpoints named to move first, the hint's
hysteresis, and the families on /metrics (also summed across shards as the recording rules do)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from exporter.config import load_settings
from exporter.model import (
    Counters, EndpointInfo, EndpointReport, Figures, PollStatus, SeriesReport, ServedEntity, Snapshot,
)
from exporter.pipeline.workspace import WorkspaceAnalysis, WorkspaceLimits, usage
from exporter.sinks.budget import SeriesBudget
from exporter.sinks.prometheus import render


def info(name: str, route_optimized: bool | None = False, kind: str = "custom") -> EndpointInfo:
    entity = ServedEntity(name=f"{name}-v1", kind=kind, min_provisioned_concurrency=4, max_provisioned_concurrency=16)
    return EndpointInfo(name=name, ready=True, detailed=route_optimized is not None, route_optimized=route_optimized,
                        served_entities=(entity,))


def figures(qps: float | None, latency: float | None = 0.1) -> Figures:
    return Figures(minutes=5, latest_minute_ms=60_000, qps=qps, qps_min=qps, qps_max=qps, latency_mean=latency)


def report(i: EndpointInfo, f: Figures) -> EndpointReport:
    return EndpointReport(i, SeriesReport(None, f, (), Counters()), (), PollStatus(up=True, last_success_s=1.0))


LIMITS = WorkspaceLimits()


def test_totals_count_standard_endpoints_only():
    found = usage([(info("a"), figures(100.0, 0.2)), (info("b", route_optimized=True), figures(5000.0)),
                   (info("c", route_optimized=None), figures(20.0, 0.5)), (info("d"), figures(None))], LIMITS)
    # a and c (not yet known to be route-optimized: counted, conservatively) and d (no figures: 0).
    assert (found.qps, found.concurrent_requests, found.endpoints) == (120.0, 30.0, 3)
    assert found.qps_ratio == pytest.approx(0.6) and found.concurrency_ratio == pytest.approx(30 / 192)
    assert found.ratio == pytest.approx(0.6)
    assert found.candidates == () and found.ratio_after is None  # under the 0.8 threshold


def test_over_the_threshold_names_the_largest_custom_endpoints_until_the_rest_fits():
    rows = [(info("small"), figures(30.0)), (info("big"), figures(120.0)),
            (info("foundation", kind="foundation_model"), figures(90.0)), (info("mid"), figures(60.0))]
    found = usage(rows, LIMITS)
    assert found.qps == 300.0 and found.qps_ratio == 1.5
    # big first (120); the foundation model cannot move; mid next (60): 300 - 180 = 120 = 60% < 80%.
    assert found.candidates == (("big", 120.0), ("mid", 60.0))
    assert found.ratio_after == pytest.approx(0.6)


def test_exactly_at_the_threshold_counts_and_just_under_does_not():
    assert usage([(info("a"), figures(160.0, 0.0))], LIMITS).candidates == (("a", 160.0),)
    assert usage([(info("a"), figures(159.9, 0.0))], LIMITS).candidates == ()


def test_the_concurrency_limit_names_endpoints_too():
    # 50 QPS x 3 s = 150 concurrent requests: 78% of 192 at a threshold of 0.75.
    found = usage([(info("slow"), figures(50.0, 3.0)), (info("fast"), figures(10.0, 0.01))],
                  WorkspaceLimits(usage_ratio_threshold=0.75))
    assert found.qps_ratio < 0.75 < found.concurrency_ratio
    assert found.candidates == (("slow", 50.0),)


def test_limits_are_configurable():
    rows = [(info("a"), figures(300.0, 0.0))]
    assert usage(rows, WorkspaceLimits(requests_per_second=1000.0)).candidates == ()
    with pytest.raises(ValueError):
        WorkspaceLimits(usage_ratio_threshold=1.5)


def snapshot(qps_by_name: dict[str, float], at: float = 1000.0) -> Snapshot:
    return Snapshot(endpoints=tuple(report(info(n), figures(q)) for n, q in qps_by_name.items()), completed_at_s=at,
                    polls={"success": 1})


def hints(snap: Snapshot) -> dict[str, str]:
    return {r.info.name: h.detail for r in snap.endpoints for h in r.hints if h.id == "workspace_limit_near"}


def test_the_hint_names_the_endpoint_with_the_numbers_after_fire_after_polls_and_clears_with_hysteresis():
    analysis = WorkspaceAnalysis(load_settings())  # fire_after_polls 2, clear_after_polls 2
    busy, calm = {"ranker": 220.0, "scorer": 40.0}, {"ranker": 100.0, "scorer": 40.0}
    first = analysis.apply(snapshot(busy, 1000.0))
    assert hints(first) == {} and first.usage.candidates == (("ranker", 220.0),)
    second = analysis.apply(snapshot(busy, 1060.0))
    assert set(hints(second)) == {"ranker"}
    detail = hints(second)["ranker"]
    for fragment in ("2 standard endpoints use 130.0% of its ~200 QPS (260 QPS)", "over the 80.0% threshold",
                     "enable route optimization on this endpoint (220 QPS) first", "leaves 20.0%", "OAuth"):
        assert fragment in detail, detail
    [hint] = [h for r in second.endpoints for h in r.hints]
    assert (hint.severity, hint.since_s) == ("warning", 1060.0)
    assert set(hints(analysis.apply(snapshot(calm, 1120.0)))) == {"ranker"}  # one calm poll: still active
    assert hints(analysis.apply(snapshot(calm, 1180.0))) == {}


def test_one_shot_commands_fire_at_once_and_a_disabled_rule_names_nobody():
    busy = {"ranker": 220.0, "scorer": 40.0}
    assert set(hints(WorkspaceAnalysis(load_settings()).apply(snapshot(busy), immediate=True))) == {"ranker"}
    off = load_settings(overrides={"remediation": {"disabled": ["workspace_limit_near"]}})
    assert hints(WorkspaceAnalysis(off).apply(snapshot(busy), immediate=True)) == {}


def test_later_candidates_say_which_move_first():
    snap = WorkspaceAnalysis(load_settings()).apply(snapshot({"a": 150.0, "b": 120.0, "c": 100.0}), immediate=True)
    found = hints(snap)
    assert set(found) == {"a", "b"}
    assert "(120 QPS) as number 2, after a;" in found["b"] and "moving a, b leaves" in found["b"]


def test_many_small_endpoints_keep_the_detail_short():
    many = {f"ep{i:03d}": 1.0 for i in range(400)}  # 400 QPS: 241 endpoints must move to get under 160
    snap = WorkspaceAnalysis(load_settings()).apply(snapshot(many), immediate=True)
    found = hints(snap)
    assert len(found) == snap.usage.rank["ep240"] + 1 == 241
    assert "as number 241, after ep000, ep001, ep002 and 237 more" in found["ep240"]
    assert "moving ep000, ep001, ep002 and 238 more leaves 79.5%" in found["ep240"]
    assert max(len(d) for d in found.values()) < 600


def test_families_on_metrics_and_their_sum_across_shards():
    """Two shards, each with half of the endpoints: each exports its part under its shard_index, and the sum of
    their figures and ratios over shard_index (what the recording rules compute) is the whole workspace's."""
    from prometheus_client.parser import text_string_to_metric_families

    settings = load_settings()
    whole = {"a": 150.0, "b": 60.0, "c": 30.0, "d": 10.0}
    shards = [{"a": 150.0, "c": 30.0}, {"b": 60.0, "d": 10.0}]

    def values(snap: Snapshot) -> dict[tuple[str, str], tuple[str, float]]:
        """(family, limit) -> (shard_index, value)"""
        text = render(snap, SeriesBudget(), openmetrics=False).decode()
        return {(s.name, s.labels.get("limit", "")): (s.labels["shard_index"], s.value)
                for f in text_string_to_metric_families(text) for s in f.samples
                if s.name.startswith("model_serving_workspace_")}

    total = values(WorkspaceAnalysis(settings).apply(snapshot(whole)))
    parts = [values(WorkspaceAnalysis(settings).apply(replace(snapshot(s), shard=(i, 2)))) for i, s in enumerate(shards)]
    assert {shard for shard, _ in total.values()} == {"0"}
    assert [{shard for shard, _ in p.values()} for p in parts] == [{"0"}, {"1"}]
    assert total[("model_serving_workspace_requests_per_second", "")][1] == 250.0
    assert total[("model_serving_workspace_limit", "requests_per_second")][1] == 200.0
    assert total[("model_serving_workspace_limit", "concurrent_requests")][1] == 192.0
    assert total[("model_serving_workspace_limit_usage_ratio_threshold", "")][1] == 0.8
    assert total[("model_serving_workspace_limit_usage_ratio", "requests_per_second")][1] == 1.25
    for key in total:
        if key[0] in ("model_serving_workspace_requests_per_second", "model_serving_workspace_concurrent_requests",
                      "model_serving_workspace_standard_endpoints", "model_serving_workspace_limit_usage_ratio"):
            assert sum(p[key][1] for p in parts) == pytest.approx(total[key][1]), key


def test_no_usage_no_workspace_samples():
    text = render(Snapshot(), SeriesBudget(), openmetrics=False).decode()
    assert "# TYPE model_serving_workspace_requests_per_second gauge" in text
    assert "\nmodel_serving_workspace_requests_per_second " not in text


def test_a_vanished_endpoint_forgets_its_state():
    analysis = WorkspaceAnalysis(load_settings())
    analysis.apply(snapshot({"ranker": 220.0}))
    analysis.apply(snapshot({"other": 10.0}))
    back = analysis.apply(snapshot({"ranker": 220.0}))
    assert hints(back) == {}  # held once again, not twice


def test_entity_changes_do_not_matter_only_the_endpoint_row():
    i = info("a")
    r = report(i, figures(250.0))
    r = replace(r, entities=(SeriesReport("a-v1", figures(999.0), (), Counters()),))
    snap = WorkspaceAnalysis(load_settings()).apply(Snapshot(endpoints=(r,), completed_at_s=1.0), immediate=True)
    assert snap.usage.qps == 250.0
