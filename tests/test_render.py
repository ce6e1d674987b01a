"""The direct renderer is byte for byte prometheus_client's rendering of the same snapshot, in both formats."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from exporter.config import load_settings
from exporter.model import EndpointInfo
from exporter.pipeline.poller import Poller
from exporter.pipeline.workspace import WorkspaceAnalysis
from exporter.sinks.budget import SeriesBudget
from exporter.sinks.prometheus import ServingCollector, render

from .replay import ReplaySource
from .test_poller import FakeSource, body

HOSTILE = ('quote"in-name', "back\\slash", "new\nline", "ünïcode-名前", "brace}{,=", "")


def reference(snap, budget: SeriesBudget, openmetrics: bool) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServingCollector(lambda: snap, budget))
    return (generate_openmetrics if openmetrics else generate_latest)(registry)


def golden_snapshots():
    settings = load_settings()
    poller, workspace = Poller(ReplaySource(), settings, clock=lambda: 1763820030.0), WorkspaceAnalysis(settings)
    try:
        return [workspace.apply(poller.poll()) for _ in range(4)]  # as the daemon publishes them
    finally:
        poller.close()


def hostile_snapshot():
    source = FakeSource(names=HOSTILE)
    for name in HOSTILE:
        source.infos[name] = EndpointInfo(name=name, ready=True, last_updated_ms=1,
                                          tags={"team": 'a"b\\c\nd', "ü": "名前"})
        source.bodies[name] = body(requests=600, cpu=95.0)
    source.failures[HOSTILE[-1]] = RuntimeError("never answered")
    poller = Poller(source, load_settings(overrides={"poll_deadline_seconds": 10}))
    try:
        poller.poll()
        return poller.poll()
    finally:
        poller.close()


BUDGETS = [SeriesBudget(), SeriesBudget(served_entities=False, exclude_families=["request_duration_seconds", "target"])]


@pytest.mark.parametrize("openmetrics", [False, True], ids=["text", "openmetrics"])
@pytest.mark.parametrize("budget", BUDGETS, ids=["default", "lean"])
def test_golden_polls_render_exactly_as_prometheus_client(openmetrics, budget):
    for snap in golden_snapshots():
        assert render(snap, budget, openmetrics) == reference(snap, budget, openmetrics)


@pytest.mark.parametrize("openmetrics", [False, True], ids=["text", "openmetrics"])
def test_hostile_names_and_tags_are_escaped_exactly_as_prometheus_client(openmetrics):
    snap = hostile_snapshot()
    mine = render(snap, SeriesBudget(), openmetrics)
    assert mine == reference(snap, SeriesBudget(), openmetrics)
    assert b'serving_endpoint="quote\\"in-name"' in mine and b'serving_endpoint="new\\nline"' in mine


def test_an_empty_snapshot_renders_every_family_header():
    from exporter.model import Snapshot
    for openmetrics in (False, True):
        assert render(Snapshot(), SeriesBudget(), openmetrics) == reference(Snapshot(), SeriesBudget(), openmetrics)
