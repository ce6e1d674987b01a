"""The series budget (`series:`): families left out and per-entity copies off, in both sinks; bad names rejected."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.catalog import FAMILIES
from exporter.config import ConfigError, load_settings
from exporter.pipeline.poller import Poller
from exporter.sinks.datadog.points import PREFIX as DD_PREFIX
from exporter.sinks.datadog.points import Translator
from exporter.sinks.prometheus import ServingCollector

from .replay import ReplaySource

HEAVY = ["request_duration_seconds", "target_breached"]
CONFIGURATION = {"model_serving_served_entity_info", "model_serving_configured_concurrency"}


def polled(settings):
    poller = Poller(ReplaySource(), settings)
    try:
        poller.poll()
        poller.poll()
        return poller.snapshot
    finally:
        poller.close()


def exposed(snap, budget) -> list:
    registry = CollectorRegistry()
    registry.register(ServingCollector(lambda: snap, budget))
    return [s for f in text_string_to_metric_families(generate_latest(registry).decode()) for s in f.samples]


def test_the_default_budget_exports_everything_per_entity():
    snap = polled(load_settings())
    names = {s.name for s in exposed(snap, load_settings().series)}
    assert "model_serving_request_duration_seconds_bucket" in names
    assert any(s.labels.get("served_entity") for s in exposed(snap, load_settings().series))


def test_left_out_families_and_entity_copies_vanish_from_prometheus_and_nothing_else():
    settings = load_settings(overrides={"series": {"served_entities": False, "exclude_families": HEAVY}})
    snap = polled(settings)
    full = exposed(snap, load_settings().series)
    lean = exposed(snap, settings.series)
    assert not any(s.name.startswith(("model_serving_request_duration_seconds", "model_serving_target_breached"))
                   for s in lean)
    # No figures per served entity; their configuration (endpoint-wide families) stays.
    assert {s.name for s in lean if s.labels.get("served_entity")} == CONFIGURATION
    kept = [s for s in full if (not s.labels.get("served_entity") or s.name in CONFIGURATION)
            and not s.name.startswith(("model_serving_request_duration_seconds", "model_serving_target_breached"))]
    assert sorted(map(repr, kept)) == sorted(map(repr, lean))
    per_endpoint = {}
    for s in lean:
        if "serving_endpoint" in s.labels:
            per_endpoint[s.labels["serving_endpoint"]] = per_endpoint.get(s.labels["serving_endpoint"], 0) + 1
    entities = {r.info.name: len(r.info.served_entities) for r in snap.endpoints}
    # A self-hosted LLM endpoint: 17 LLM series (figures and their targets) and 1 + one per replica.
    llm = {r.info.name: 18 + len(r.replicas) for r in snap.endpoints if r.info.platform == "self-hosted"}
    # The figures docs/metrics.md gives: at most 42, plus 3 per served entity for its configuration.
    assert all(n <= 42 + 3 * entities[name] + llm.get(name, 0) for name, n in per_endpoint.items()), (per_endpoint, entities)
    assert set(llm) == {"chat-assistant"}


def test_datadog_obeys_the_same_budget():
    settings = load_settings(overrides={"series": {"served_entities": False, "exclude_families": HEAVY}})
    snap = polled(settings)
    points, _ = Translator(budget=settings.series).translate(snap)
    metrics = {p.metric for p in points}
    assert not any(m.startswith((DD_PREFIX + "request_duration_seconds", DD_PREFIX + "target_breached")) for m in metrics)
    per_entity = {p.metric for p in points if any(t.startswith("served_entity:") for t in p.tags)}
    assert per_entity == {DD_PREFIX + "served_entity_info", DD_PREFIX + "configured_concurrency"}
    assert DD_PREFIX + "requests_per_second" in metrics
    full, _ = Translator().translate(snap)
    assert any(p.metric.startswith(DD_PREFIX + "request_duration_seconds") for p in full)


@pytest.mark.parametrize("names, words", [(["request_duraton_seconds"], "unknown families"),
                                          (["exporter_up"], "cannot be left out")])
def test_bad_family_names_are_rejected_with_the_reason(names, words):
    with pytest.raises(ConfigError) as err:
        load_settings(overrides={"series": {"exclude_families": names}})
    assert words in str(err.value) and "series.exclude_families" in str(err.value)


def test_the_budget_is_settable_from_the_environment(monkeypatch):
    monkeypatch.setenv("SERVING_EXPORTER_SERIES__SERVED_ENTITIES", "false")
    assert load_settings().series.served_entities is False


def test_every_series_family_can_be_named():
    names = [f.name for f in FAMILIES if not f.name.startswith("exporter_")]
    assert load_settings(overrides={"series": {"exclude_families": names}}).series.exclude_families == names
