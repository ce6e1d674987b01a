"""Snapshot -> Datadog points and events: every /metrics figure mirrored, names, types, tags, source-minute
timestamps, each minute once, per-minute counts that add up, hint events once per transition."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.exposition import generate_latest

from exporter.sinks.prometheus import ServingCollector
from exporter.catalog import FAMILIES
from exporter.model import Hint
from exporter.sinks.datadog.points import COUNT, GAUGE, METRICS, PREFIX, Translator, tag

from .fake_datadog import DemoPolls
from .fake_datadog import no_datadog_environment  # noqa: F401 (an autouse fixture)

# Families the catalog keeps out of Datadog (versions, the shard split, a per-scrape render count).
NOT_SENT = {f.prometheus_name + ("_info" if f.type == "info" else "") for f in FAMILIES if f.datadog is None}


@pytest.fixture(scope="module")
def polls():
    with DemoPolls() as p:
        snaps = [p.poll() for _ in range(4)]
        yield p, snaps


def exposition(snap) -> list:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServingCollector(lambda: snap))
    return list(text_string_to_metric_families(generate_latest(registry).decode()))


def datadog_name(sample_name: str, family_type: str) -> str:
    name = sample_name.removeprefix("model_serving_")
    if family_type == "histogram":
        base, _, suffix = name.rpartition("_")
        return f"{PREFIX}{base}.{suffix}"
    if family_type == "counter":
        name = name.removesuffix("_total")
    return PREFIX + name


def expected_tags(labels: dict[str, str]) -> set[str]:
    tags = set()
    for key, value in labels.items():
        if key == "served_entity":
            tags.add("level:endpoint" if value == "" else "level:served_entity")
            if value == "":
                continue
        if key == "serving_endpoint":
            key = "endpoint"  # Datadog keeps its tag name: the Prometheus Operator's label clash does not exist there
        if key == "le":
            key, value = "upper_bound", "inf" if value == "+Inf" else format(float(value), "g")
        if value != "":
            tags.add(tag(key, value))
    return tags


def test_every_figure_on_metrics_is_sent_with_the_same_value(polls):
    """The mirror: each gauge sample of /metrics for a snapshot is a Datadog point with the same value and
    the same labels as tags; counters and the histogram are there as per-minute counts."""
    _, snaps = polls
    translator = Translator()
    for snap in snaps[:-1]:
        translator.translate(snap)
    snap = snaps[-1]
    points, _ = translator.translate(snap)
    # Counters sent with skip_zero leave out a count that did not grow since the previous snapshot.
    skip_zero = {f.prometheus_name + "_total" for f in FAMILIES if f.datadog and f.datadog.skip_zero}
    before = {(s.name, tuple(sorted(s.labels.items()))): s.value for fam in exposition(snaps[-2]) for s in fam.samples}
    index = defaultdict(list)
    for p in points:
        index[p.metric].append(p)
    missing, wrong = [], []
    for family in exposition(snap):
        for sample in family.samples:
            if sample.name in NOT_SENT or sample.name.endswith("_created"):
                continue
            if sample.name in skip_zero and before.get((sample.name, tuple(sorted(sample.labels.items())))) == sample.value:
                continue
            name = datadog_name(sample.name, family.type)
            if name.removeprefix(PREFIX) not in METRICS or not index.get(name):
                missing.append(sample.name)
                continue
            want = expected_tags(sample.labels)
            found = [p for p in index[name] if want <= set(p.tags)]
            if not found:
                missing.append(f"{sample.name}{sample.labels}")
            elif family.type in ("gauge", "info") and not any(p.value == pytest.approx(sample.value) for p in found):
                wrong.append(f"{sample.name}{sample.labels}: {sample.value} vs {[p.value for p in found]}")
    assert not missing, missing[:10]
    assert not wrong, wrong[:10]


def test_names_types_units_and_tags(polls):
    p, snaps = polls
    translator = Translator(tags=["env:test", "team:ml"])
    points, _ = translator.translate(snaps[0])
    assert points
    workspace = tag("workspace", snaps[0].workspace)
    for point in points:
        short = point.metric.removeprefix(PREFIX)
        assert point.metric.startswith(PREFIX) and short in METRICS, point.metric
        assert point.type == METRICS[short].type
        assert {"env:test", "team:ml", workspace} <= set(point.tags)
        assert list(point.tags) == sorted(point.tags)
    counts = {pt.metric for pt in points if pt.type == COUNT}
    assert counts == {PREFIX + n for n in ("requests", "request_errors", "request_duration_seconds.count",
                                           "request_duration_seconds.sum", "request_duration_seconds.bucket", "exporter_polls",
                                           "exporter_api_requests")}
    qps = [pt for pt in points if pt.metric == PREFIX + "requests_per_second"]
    by_entity = {next((t for t in pt.tags if t.startswith("served_entity:")), None): pt for pt in qps
                 if "endpoint:support-chat" in pt.tags}
    assert set(by_entity) == {None, "served_entity:support-chat-v3", "served_entity:support-chat-v4"}
    assert "level:endpoint" in by_entity[None].tags and "level:served_entity" in by_entity["served_entity:support-chat-v4"].tags
    assert all(pt.type == GAUGE for pt in qps)


def test_figures_carry_the_source_minute_and_each_minute_goes_once():
    with DemoPolls() as p:
        translator = Translator()
        first = p.poll()
        points, _ = translator.translate(first)
        minute = {r.info.name: r.endpoint.figures.latest_minute_ms // 1000 for r in first.endpoints}
        qps = {_tag(pt, "endpoint"): pt.timestamp for pt in points
               if pt.metric == PREFIX + "requests_per_second" and "level:endpoint" in pt.tags}
        assert qps == minute
        poll_ts = {pt.timestamp for pt in points if pt.metric == PREFIX + "exporter_up"}
        assert poll_ts == {int(first.completed_at_s)}
        # The source has not moved on: only the poll-time state is sent again, no figure and no count.
        again, _ = translator.translate(p.poll(advance=False))
        assert again and not any(pt.metric in (PREFIX + "requests_per_second", PREFIX + "requests") for pt in again)
        assert {pt.metric for pt in again} <= {PREFIX + m for m, d in METRICS.items() if m.startswith(("exporter_", "endpoint_", "served_entity_", "configured_", "remediation", "workspace_"))}
        nxt, _ = translator.translate(p.poll())
        stamps = {pt.timestamp for pt in nxt if pt.metric == PREFIX + "requests_per_second"}
        assert stamps == {t + 60 for t in minute.values()}


def test_per_minute_counts_add_up_to_the_counters_without_double_counting():
    with DemoPolls() as p:
        translator = Translator()
        sent: dict[tuple[str, int], float] = {}
        last = None
        for advance in (True, False, True, True, False, True):
            last = p.poll(advance=advance)
            points, _ = translator.translate(last)
            for pt in points:
                if pt.metric == PREFIX + "requests" and "level:endpoint" in pt.tags:
                    key = (_tag(pt, "endpoint"), pt.timestamp)
                    assert key not in sent, f"minute {key} counted twice"
                    sent[key] = pt.value
        for report in last.endpoints:
            total = sum(v for (name, _), v in sent.items() if name == report.info.name)
            assert total == pytest.approx(report.endpoint.counters.requests)
        assert len({ts for _, ts in sent}) == 4  # four source minutes, whatever the number of polls


def test_a_counter_that_restarts_counts_from_zero(polls):
    _, snaps = polls
    translator = Translator()
    translator.translate(snaps[0])
    report = snaps[1].endpoints[0]
    restarted = replace(report, endpoint=replace(report.endpoint, counters=replace(report.endpoint.counters, requests=5.0)))
    points, _ = translator.translate(replace(snaps[1], endpoints=(restarted,) + snaps[1].endpoints[1:]))
    count = [pt.value for pt in points if pt.metric == PREFIX + "requests" and tag("endpoint", report.info.name) in pt.tags
             and "level:endpoint" in pt.tags]
    assert count == [5.0]


def test_histogram_buckets_can_be_left_out(polls):
    _, snaps = polls
    points, _ = Translator(histogram_buckets=False).translate(snaps[0])
    names = {pt.metric for pt in points}
    assert PREFIX + "request_duration_seconds.bucket" not in names and PREFIX + "request_duration_seconds.count" in names


def hint(rule="queueing", severity="critical", detail="queue depth 24.0 over its target 0", since=1000.0) -> Hint:
    return Hint(rule, severity, "Requests are queueing", detail, since)  # type: ignore[arg-type]


def with_hints(snap, name: str, hints: tuple[Hint, ...]):
    return replace(snap, endpoints=tuple(replace(r, hints=hints) if r.info.name == name else replace(r, hints=())
                                         for r in snap.endpoints))


def test_hint_events_fire_once_per_transition(polls):
    _, snaps = polls
    snap = snaps[0]
    translator = Translator(tags=["env:test"])
    _, events = translator.translate(with_hints(snap, "recommender", ()))
    assert events == []
    _, events = translator.translate(with_hints(snap, "recommender", (hint(),)))
    assert len(events) == 1
    e = events[0]
    assert e.active and e.alert_type == "error" and e.title == "recommender: Requests are queueing"
    # The workspace is part of the key: two workspaces' `recommender` hints never aggregate together.
    assert e.aggregation_key == f"serving-exporter:{snap.workspace}/recommender:queueing" and e.date_happened == 1000
    assert f"workspace:{snap.workspace}" in e.tags
    assert "queue depth 24.0 over its target 0" in e.text and "remediation.md#queueing" in e.text
    assert {"endpoint:recommender", "rule:queueing", "severity:critical", "env:test", "hint_state:active"} <= set(e.tags)
    # Still active, with new numbers: nothing new.
    _, events = translator.translate(with_hints(snap, "recommender", (hint(detail="queue depth 30.0"),)))
    assert events == []
    _, events = translator.translate(with_hints(snap, "recommender", (hint(), hint("cpu_high", "warning", "CPU 95%"))))
    assert [(e.rule, e.alert_type) for e in events] == [("cpu_high", "warning")]
    _, events = translator.translate(with_hints(snap, "recommender", (hint("cpu_high", "warning", "CPU 95%"),)))
    assert [(e.rule, e.active, e.alert_type, e.aggregation_key) for e in events] == [
        ("queueing", False, "success", f"serving-exporter:{snap.workspace}/recommender:queueing")]
    assert "cleared" in events[0].title and "hint_state:cleared" in events[0].tags
    # The endpoint disappears while its hint is active: the hint clears.
    gone = replace(snap, endpoints=tuple(r for r in snap.endpoints if r.info.name != "recommender"))
    _, events = translator.translate(gone)
    assert [(e.rule, e.active) for e in events] == [("cpu_high", False)] and "no longer polled" in events[0].text


def test_info_hints_are_low_priority_and_long_keys_are_hashed(polls):
    _, snaps = polls
    translator = Translator()
    long_rule = "x" * 120
    _, events = translator.translate(with_hints(snaps[0], "fraud-scorer", (hint(long_rule, "info", "idle"),)))
    assert events[0].alert_type == "info" and events[0].priority == "low"
    assert len(events[0].aggregation_key) <= 100 and len(events[0].title) <= 100


def test_events_can_be_turned_off(polls):
    _, snaps = polls
    _, events = Translator(events=False).translate(with_hints(snaps[0], "recommender", (hint(),)))
    assert events == []


def test_tags_follow_datadog_rules():
    assert tag("endpoint", "My Endpoint!") == "endpoint:my_endpoint_"
    assert tag("workspace", "adb-1.azuredatabricks.net:443") == "workspace:adb-1.azuredatabricks.net:443"
    assert len(tag("endpoint", "a" * 300)) == 200


def _tag(point, key: str) -> str:
    return next(t.split(":", 1)[1] for t in point.tags if t.startswith(key + ":"))
