"""Alerting rules, their promtool unit tests, the Alertmanager example, the runbooks, and the
whole paging path end to end: simulator -> exporter -> Prometheus (rules) -> Alertmanager -> webhook."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from prometheus_client.parser import text_string_to_metric_families

from exporter.catalog import FAMILIES
from exporter.pipeline.targets import TARGET_CHECKS
from exporter.pipeline.rules import RULES
from exporter.commands import Demo
from exporter.config import load_settings
from exporter.simulator.workspace import Workspace

from .alerting import (
    ALERTMANAGER_EXAMPLE, ROOT, RULES_DIR, RUNBOOKS, WebhookReceiver, alerting_rules, alertmanager,
    alertmanager_config, exporter_daemon, free_port, load_generator, prometheus, query, rule_files, rule_test_files,
    selectors, wait_for,
)
from .conftest import require_binary

generate = load_generator()
SEVERITIES = {"critical", "warning"}


# ---- the rules themselves (no binaries needed) ----------------------------------------------------

def test_generated_rules_are_current():
    for name, text in generate.render().items():
        assert (RULES_DIR / name).read_text() == text, "run: python alerts/generate.py"


def test_every_alert_follows_the_conventions():
    rules = alerting_rules()
    assert {r["alert"] for r in rules} >= {
        "ModelServingErrorRateHigh", "ModelServingErrorBudgetBurn", "ModelServingQueueing", "ModelServingLatencyHigh",
        "ModelServingSaturation", "ModelServingEndpointNotReady", "ModelServingExporterDown", "ModelServingMetricsStale",
        "ModelServingExporterThrottled", "ModelServingWorkspaceLimitNear", "ModelServingReplicasSaturated",
        "ModelServingKvCacheSaturated", "ModelServingReplicasDown"}
    for r in rules:
        assert re.fullmatch(r"ModelServing([A-Z][a-z0-9]+)+", r["alert"]), r["alert"]
        assert r["labels"]["severity"] in SEVERITIES, r["alert"]
        assert r.get("for"), f"{r['alert']}: no for: duration"
        ann = r["annotations"]
        assert ann["summary"] and ann["description"], r["alert"]
        assert ann["runbook_url"] == generate.RUNBOOK_URL.format(anchor=r["alert"].lower())
        # The description names the endpoint (or the exporter instance, or for the workspace the job) and the value.
        assert "$value" in ann["description"] or r["alert"] == "ModelServingEndpointNotReady", r["alert"]
        assert any(f"$labels.{label}" in ann["description"] for label in ("serving_endpoint", "instance", "job")), r["alert"]
    burn = {(r["labels"]["severity"], r["labels"]["long_window"], r["labels"]["short_window"])
            for r in rules if r["alert"] == "ModelServingErrorBudgetBurn"}
    assert burn == {("critical", "1h", "5m"), ("critical", "6h", "30m"), ("warning", "1d", "2h"), ("warning", "3d", "6h")}


def test_the_slo_objective_is_set_in_one_place(monkeypatch):
    monkeypatch.setattr(generate, "SLO_OBJECTIVE", 0.999)
    text = generate.render()[generate.ALERTING_FILE]
    assert "/ 0.001 > 14.4" in text and "/ 0.01 " not in text and "99.9% success SLO" in text


def test_scaled_rules_are_the_production_rules_on_a_faster_clock():
    """The end-to-end test runs render(scale=1/60): same rules, every duration divided by 60."""
    def seconds(text: str) -> float:
        units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
        number, unit = re.fullmatch(r"(\d+)(ms|s|m|h|d)", text).groups()
        return int(number) * units[unit]

    fast, slow = generate.render(scale=1 / 60), generate.render()
    prod = alerting_rules_of(slow[generate.ALERTING_FILE])
    test = alerting_rules_of(fast[generate.ALERTING_FILE])
    assert [r["alert"] for r in prod] == [r["alert"] for r in test]
    for p, t in zip(prod, test):
        assert seconds(t["for"]) * 60 == seconds(p["for"]), p["alert"]
        assert t["labels"]["severity"] == p["labels"]["severity"]
    windows = lambda text: [seconds(w) for w in re.findall(r"\[(\w+)\]", text)]  # noqa: E731
    assert [w * 60 for w in windows(fast[generate.RECORDING_FILE])] == windows(slow[generate.RECORDING_FILE])


def alerting_rules_of(text: str) -> list[dict]:
    return [r for g in yaml.safe_load(text)["groups"] for r in g["rules"] if "alert" in r]


def test_rules_use_only_families_the_exporter_exports():
    suffixes = {"gauge": ("",), "counter": ("_total",), "info": ("_info",), "histogram": ("_bucket", "_count", "_sum")}
    exported = {f.prometheus_name + suffix for f in FAMILIES for suffix in suffixes[f.type]}
    recorded = {r["record"] for p in rule_files() for g in yaml.safe_load(p.read_text())["groups"]
                for r in g["rules"] if "record" in r}
    text = "\n".join(p.read_text() for p in rule_files())
    used = set(re.findall(r"\b(model_serving_[a-z0-9_]+)\b", text)) - {"model_serving_data", "model_serving_request_errors"}
    assert used and used <= exported, sorted(used - exported)
    assert set(re.findall(r"\b([a-z_]*endpoint:[a-z0-9_:]+)", text)) <= recorded


def test_every_alert_has_firing_and_silent_promtool_cases():
    fires: set[str] = set()
    silent: set[str] = set()
    for path in rule_test_files():
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                (fires if case.get("exp_alerts") else silent).add(case["alertname"])
    names = {r["alert"] for r in alerting_rules()}
    assert names <= fires, f"no case where these fire: {sorted(names - fires)}"
    assert names <= silent, f"no case where these stay silent: {sorted(names - silent)}"


def test_every_alert_has_a_runbook_section_with_links_that_resolve():
    text = RUNBOOKS.read_text()
    sections = dict(re.findall(r"^## (\S+)\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S))
    remediation = (ROOT / "docs" / "remediation.md").read_text()
    rule_ids = set(re.findall(r"^## ([a-z0-9_]+)$", remediation, flags=re.M))
    for name in {r["alert"] for r in alerting_rules()}:
        body = sections.get(name)
        assert body, f"docs/runbooks.md has no section for {name}"
        for part in ("**Meaning.**", "**First checks.**", "**Remediation.**", "**Dashboard.**"):
            assert part in body, f"{name}: no {part}"
    linked = set(re.findall(r"remediation\.md#([a-z0-9_]+)", text))
    assert linked and linked <= rule_ids, sorted(linked - rule_ids)


# ---- promtool and amtool ------------------------------------------------------------------------

@pytest.mark.integration
@pytest.mark.parametrize("path", rule_files(), ids=lambda p: p.name)
def test_promtool_check_rules(path: Path):
    result = subprocess.run([require_binary("promtool"), "check", "rules", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.integration
def test_promtool_checks_the_test_only_rules(tmp_path: Path):
    paths = generate.write(tmp_path, scale=1 / 60)
    result = subprocess.run([require_binary("promtool"), "check", "rules", *map(str, paths)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.integration
@pytest.mark.parametrize("path", rule_test_files(), ids=lambda p: p.name)
def test_promtool_test_rules(path: Path):
    result = subprocess.run([require_binary("promtool"), "test", "rules", str(path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.integration
def test_amtool_check_config():
    result = subprocess.run([require_binary("amtool"), "check-config", str(ALERTMANAGER_EXAMPLE)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.integration
@pytest.mark.parametrize("labels,receiver", [
    ({"severity": "critical", "alertname": "ModelServingQueueing"}, "pager"),
    ({"severity": "warning", "alertname": "ModelServingLatencyHigh"}, "ticket"),
    ({"severity": "info", "alertname": "SomethingElse"}, "ticket"),
])
def test_alertmanager_routes_critical_to_the_pager_and_warnings_to_tickets(labels: dict, receiver: str):
    args = [require_binary("amtool"), "config", "routes", "test", f"--config.file={ALERTMANAGER_EXAMPLE}",
            "serving_endpoint=recommender", *(f"{k}={v}" for k, v in labels.items())]
    result = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.split() == [receiver], result.stdout + result.stderr


def test_alertmanager_example_groups_by_endpoint_and_inhibits_warnings():
    config = yaml.safe_load(ALERTMANAGER_EXAMPLE.read_text())
    assert config["route"]["group_by"] == ["serving_endpoint"]
    [rule] = config["inhibit_rules"]
    assert rule["source_matchers"] == ['severity="critical"'] and 'severity="warning"' in rule["target_matchers"]
    assert rule["equal"] == ["serving_endpoint"]


# ---- end to end ---------------------------------------------------------------------------------

MINUTE_S = 1.0  # one simulated minute per second; the rules run on the same clock (scale 1/60)
ERRORS, QUEUE, HEALTHY = "payments", "ranking", "steady"


@pytest.fixture
def exporter_stack() -> Iterator[tuple[str, str]]:
    """Three healthy simulated endpoints and the exporter daemon; yields (simulator URL, exporter host:port)."""
    workspace = Workspace(minute_seconds=MINUTE_S, seed=7)
    for name in (ERRORS, QUEUE, HEALTHY):
        workspace.add_endpoint(name, "healthy")
    with exporter_daemon(workspace) as (simulator, daemon):
        yield simulator, daemon.url.removeprefix("http://")


def set_scenario(simulator: str, endpoint: str, preset: str) -> None:
    requests.post(f"{simulator}/simulator/v1/endpoints/{endpoint}/scenario", json={"preset": preset},
                  timeout=5).raise_for_status()


@pytest.mark.integration
def test_pages_arrive_for_exactly_the_failing_endpoints_and_resolve(exporter_stack, tmp_path: Path):
    prometheus_bin, alertmanager_bin = require_binary("prometheus"), require_binary("prometheus-alertmanager")
    started = time.monotonic()
    simulator, target = exporter_stack
    rules = generate.write(tmp_path / "rules", scale=MINUTE_S / 60)  # production rules, 60x faster
    _slow_down_exporter_down(rules)
    with WebhookReceiver() as hook, \
            alertmanager(alertmanager_bin, alertmanager_config(ALERTMANAGER_EXAMPLE, hook.url), tmp_path) as am, \
            prometheus(prometheus_bin, rules, target, am, tmp_path) as prom:
        # Baseline: Prometheus scrapes all three endpoints and the rules see fresh data.
        wait_for(lambda: len(query(prom, "serving_endpoint:model_serving_data:fresh == 1")) == 3, 30,
                 "fresh data for the three endpoints in Prometheus")
        time.sleep(3)  # a few evaluations of a healthy workspace
        assert hook.snapshot() == [], f"notifications before any fault: {[(a['labels']['alertname'], a['labels'].get('serving_endpoint'), a['labels'].get('reason')) for a in hook.alerts()]}"

        fault_at = time.monotonic()
        set_scenario(simulator, ERRORS, "error_burst")
        set_scenario(simulator, QUEUE, "queueing")
        paged = {
            "ModelServingErrorRateHigh": wait_for(lambda: hook.first("pager", "ModelServingErrorRateHigh", ERRORS), 60,
                                                  f"ModelServingErrorRateHigh for {ERRORS}"),
            "ModelServingQueueing": wait_for(lambda: hook.first("pager", "ModelServingQueueing", QUEUE), 60,
                                             f"ModelServingQueueing for {QUEUE}"),
        }
        # The warnings of the same endpoints (latency, saturation) fire too, held back by the page.
        suppressed = wait_for(lambda: _inhibited(am, "ModelServingLatencyHigh", ERRORS), 40,
                              f"ModelServingLatencyHigh for {ERRORS} to fire and be inhibited")
        assert not [a for a in hook.alerts("ticket") if a["labels"].get("serving_endpoint") in (ERRORS, QUEUE)], \
            "a warning got through while its endpoint paged"

        recover_at = time.monotonic()
        set_scenario(simulator, ERRORS, "healthy")
        set_scenario(simulator, QUEUE, "healthy")
        resolved = {
            "ModelServingErrorRateHigh": wait_for(
                lambda: hook.first("pager", "ModelServingErrorRateHigh", ERRORS, "resolved"), 60, "errors page to resolve"),
            "ModelServingQueueing": wait_for(
                lambda: hook.first("pager", "ModelServingQueueing", QUEUE, "resolved"), 60, "queueing page to resolve"),
        }
        finished = time.monotonic()

    pages = {(a["labels"]["alertname"], a["labels"].get("serving_endpoint")) for a in hook.alerts("pager")}
    endpoints_of = lambda name: {e for n, e in pages if n == name}  # noqa: E731
    assert endpoints_of("ModelServingQueueing") == {QUEUE}
    # The queueing endpoint also answers 429 to its overflow, which counts as errors: it may page
    # for its error ratio (and burn rate) too. The 5xx endpoint never pages for queueing.
    assert ERRORS in endpoints_of("ModelServingErrorRateHigh")
    assert endpoints_of("ModelServingErrorRateHigh") <= {ERRORS, QUEUE}
    assert {n for n, _ in pages} <= {"ModelServingErrorRateHigh", "ModelServingQueueing", "ModelServingErrorBudgetBurn"}
    everything = hook.alerts()
    assert not [a for a in everything if a["labels"].get("serving_endpoint") == HEALTHY], "the healthy endpoint was notified"
    assert not [a for a in everything if a["labels"]["alertname"] in ("ModelServingExporterDown", "ModelServingMetricsStale")]

    print(f"\nend-to-end paging (1 simulated minute = {MINUTE_S:g}s; rules scaled by 1/60):")
    for name, n in paged.items():
        print(f"  {name:28s} fault -> webhook      {n.at - fault_at:5.1f}s")
    for name, n in resolved.items():
        print(f"  {name:28s} recovery -> resolved  {n.at - recover_at:5.1f}s")
    print(f"  ModelServingLatencyHigh for {ERRORS} fired and was inhibited by {suppressed} alert(s); no ticket sent")
    print(f"  pages: {sorted(pages)}")
    print(f"  whole test {finished - started:5.1f}s")
    assert finished - started < 150


def _slow_down_exporter_down(rule_files: list[Path]) -> None:
    """Scaled 1/60, ExporterDown's 5m becomes 5 s: less than Prometheus may take to start and scrape
    on a loaded CI machine, so absent() would page before the first scrape. 30 s keeps the test honest."""
    for path in rule_files:
        doc = yaml.safe_load(path.read_text())
        for group in doc.get("groups", []):
            for rule in group.get("rules", []):
                if rule.get("alert") == "ModelServingExporterDown":
                    rule["for"] = "30s"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))


def _inhibited(alertmanager_url: str, alertname: str, endpoint: str) -> int:
    """How many alerts inhibit that alert in Alertmanager; 0 while it is not inhibited."""
    alerts = requests.get(f"{alertmanager_url}/api/v2/alerts", timeout=5,
                          params={"filter": [f'alertname="{alertname}"', f'serving_endpoint="{endpoint}"']}).json()
    for a in alerts:
        if a["status"]["state"] == "suppressed" and a["status"]["inhibitedBy"]:
            return len(a["status"]["inhibitedBy"])
    return 0


# ---- the whole demo: last in the module, so its processes do not share the machine with the paging test ----

LLM, TRITON = "chat-assistant", "image-tagger"  # the demo's self-hosted servers (exporter/simulator/demo.py)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Iterator[tuple[Demo, str]]:
    """The whole demo (commands.Demo: simulated workspace, vLLM and Triton servers, the daemon polling them on
    the simulated clock) and a real Prometheus evaluating the production rules 60x faster against it.
    Yields (demo, Prometheus URL). No Alertmanager: these tests read the rules' expressions, not notifications."""
    tmp = tmp_path_factory.mktemp("demo-rules")
    running = Demo(load_settings(overrides=dict(listen="127.0.0.1:0", poll_interval_seconds=1, request_timeout_seconds=2,
                                                retry_budget_seconds=1, max_concurrent_requests=8)), MINUTE_S)
    try:
        assert running.daemon.wait_ready(15), "no poll completed"
        rules = generate.write(tmp / "rules", scale=MINUTE_S / 60)
        with prometheus(require_binary("prometheus"), rules, running.daemon.url.removeprefix("http://"),
                        f"http://127.0.0.1:{free_port()}", tmp) as prom:
            yield running, prom
    finally:
        running.stop()


def alert_expr(name: str) -> str:
    [rule] = [r for r in alerting_rules() if r["alert"] == name]
    return rule["expr"]


def selected(prom: str, alert: str) -> set[str]:
    """The endpoints an alert's expression selects now (pending or firing aside)."""
    return {r["metric"].get("serving_endpoint") for r in query(prom, alert_expr(alert))}


@pytest.mark.integration
def test_rule_selectors_match_the_live_exposition(demo):
    """Every `metric{label...}` selector in the rules names a family and labels the exporter serves, and every
    check or rule id it selects exists: the demo (workspace and self-hosted servers) shows every condition."""
    running, _ = demo

    def exposition() -> dict[str, set[str]]:
        text = requests.get(f"{running.daemon.url}/metrics", timeout=5).text
        labels: dict[str, set[str]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels.setdefault(sample.name, set()).update(sample.labels)
        return labels

    wanted = ["model_serving_remediation", "model_serving_latency_seconds", "model_serving_kv_cache_utilization_ratio",
              "model_serving_replicas_answering_ratio", "model_serving_requests_running"]
    families = wait_for(lambda: (lambda f: f if all(w in f for w in wanted) else None)(exposition()), 30,
                        "hints, latency and the self-hosted families in the demo's exposition")
    checks = set(TARGET_CHECKS.values())
    rule_ids = {rule.id for rule in RULES}
    text = "\n".join(p.read_text() for p in rule_files())
    found = selectors(text)
    assert found
    for name, matchers in found:
        assert name in families, f"{name} is not exported"
        for label, op, value in matchers:
            if value == "" and op == "=":
                continue  # served_entity="": the endpoint row, whose empty label Prometheus drops
            assert label in families[name], f"{name} has no label {label}"
            if label == "check":
                assert set(value.split("|")) <= checks, value
            if label == "rule":
                assert value in rule_ids, value
    # Labels named in ignoring/on/without/by exist on some family (the scrape adds job and instance, and pod
    # under the Prometheus Operator; the rules add check and reason themselves).
    named = {label.strip() for group in re.findall(r"\b(?:ignoring|on|without|by)\s*\(([^)]*)\)", text)
             for label in group.split(",")}
    served = set().union(*families.values())
    assert named - {"job", "instance", "pod", "check", "reason"} <= served, sorted(named - served)


@pytest.mark.integration
def test_self_hosted_alerts_select_the_demo_servers_in_the_states_they_simulate(demo):
    """Run by a real Prometheus on the demo's data, each self-hosted alert's expression selects exactly the
    endpoints whose simulated state calls for it (exporter/simulator/demo.py): chat-assistant's two vLLM replicas
    run all 2 x 64 sequences with requests waiting and the KV cache ~97 % full, and replica 1 is down in minutes
    12-14 of every 20; image-tagger (Triton) has a full queue but publishes no running-requests count and has no
    KV cache, so it pages through ModelServingQueueing, and never for the same queue twice."""
    _, prom = demo
    wait_for(lambda: {LLM, TRITON} <= {r["metric"]["serving_endpoint"] for r in
                                       query(prom, "serving_endpoint:model_serving_data:fresh == 1")}, 30,
             "fresh self-hosted data in Prometheus")
    # The full cache and the saturated replicas hold from the first minute; the replica outage starts at minute 12.
    full = wait_for(lambda: selected(prom, "ModelServingKvCacheSaturated") or None, 20, "KvCacheSaturated")
    assert full == {LLM}
    saturated = wait_for(lambda: selected(prom, "ModelServingReplicasSaturated") or None, 20, "ReplicasSaturated")
    assert saturated == {LLM}
    queueing = selected(prom, "ModelServingQueueing")
    assert TRITON in queueing and LLM not in queueing, queueing  # one page per queue
    down = wait_for(lambda: selected(prom, "ModelServingReplicasDown") or None, 40,
                    f"ReplicasDown while {LLM}'s replica 1 is down (minutes 12-14)")
    assert down == {LLM}
    replicas = {r["metric"]["replica"]: float(r["value"][1])
                for r in query(prom, f'max by (replica) (model_serving_replica_up{{serving_endpoint="{LLM}"}})')}
    assert sorted(replicas.values()) == [0.0, 1.0], replicas  # the answering replica and the one that is down
