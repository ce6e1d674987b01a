"""`serving-exporter check`: every check fails with its numbers and passes on a near miss, sizing before traffic
follows the guide's formula, the JSON output matches its schema, the JUnit output is valid JUnit XML, and the
exit status is 0 clean / 1 findings / 2 unreadable or bad arguments, against a real exporter and the demo."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import jsonschema
import pytest
import requests
import xmlschema
from junitparser import JUnitXml
from prometheus_client import CollectorRegistry

from exporter.check import ITEM_IDS, ITEMS, Expected, Subject, audit, from_json, markdown, size, to_json, to_junit, to_text
from exporter.cli import main
from exporter.config import load_settings
from exporter.model import (
    Counters, EndpointInfo, EndpointReport, Figures, PollStatus, RateLimit, SeriesReport, ServedEntity, Snapshot,
)
from exporter.pipeline.analysis import checks
from exporter.pipeline.rules import Thresholds
from exporter.pipeline.targets import Targets
from exporter.sinks.http import HttpServer, make_app, snapshot_json
from exporter.sinks.prometheus import Exposition

from .examples import healthy_figures

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "docs" / "check.schema.json").read_text())
JUNIT_XSD = xmlschema.XMLSchema(str(Path(__file__).parent / "fixtures" / "junit.xsd"))
TARGETS = Targets().by_check()
SETTINGS = load_settings()


def entity(**changes) -> ServedEntity:
    base = ServedEntity(name="ep-v1", workload_type="CPU", workload_size="Small", compute="cpu", scale_to_zero_enabled=False,
                        min_provisioned_concurrency=4, max_provisioned_concurrency=16, deployment_state="DEPLOYMENT_READY",
                        deployed=True)
    return replace(base, **changes)


def info(name: str = "ep", entity_changes: dict | None = None, **changes) -> EndpointInfo:
    base = EndpointInfo(name=name, ready=True, state="READY", config_update="NOT_UPDATING", detailed=True,
                        route_optimized=False, served_entities=(entity(**(entity_changes or {})),))
    return replace(base, **changes)


figures = healthy_figures


def outcome(check: str, endpoint: EndpointInfo | None = None, figs: Figures | None = None, targets=None,
            expected: Expected | None = None, **thresholds):
    figs = figs or figures()
    targets = targets or TARGETS
    subject = Subject(endpoint or info(), figs, checks(figs, targets), targets, Thresholds(**thresholds), expected)
    [item] = [i for i in ITEMS if i.id == check]
    return item.evaluate(subject)


EXPECT_100_AT_200MS = Expected(qps=100, latency_ms=200)  # the guide's example: 100 x 0.2 = 20 concurrent requests
S2Z = {"scale_to_zero_enabled": True, "min_provisioned_concurrency": 0}
GPU = {"workload_type": "GPU_SMALL", "compute": "gpu"}

# (check, arguments that make it fail, fragments of the message and fix, arguments of a near miss that passes)
CASES = [
    ("deployment_not_ready", dict(endpoint=info(ready=False, state="NOT_READY")), ["state NOT_READY", "redeploy"], {}),
    ("deployment_not_ready", dict(endpoint=info(entity_changes={"deployed": False, "deployment_state": "DEPLOYMENT_CREATING"})),
     ["ep-v1 DEPLOYMENT_CREATING", "not deployed yet"], dict(endpoint=info(entity_changes={"deployed": True}))),
    ("deployment_not_ready", dict(endpoint=info(update_failed=True, config_update="UPDATE_FAILED")),
     ["config update UPDATE_FAILED"], dict(endpoint=info(config_update="IN_PROGRESS"))),
    ("scale_to_zero_in_production", dict(endpoint=info(tags={"env": "production"}, entity_changes=S2Z)),
     ["scale-to-zero is on for ep-v1 although the endpoint is tagged production", "scale_to_zero_enabled: false",
      "min_provisioned_concurrency at least 2"], dict(endpoint=info(tags={"env": "staging"}, entity_changes=S2Z))),
    ("min_concurrency_below_baseline", dict(expected=EXPECT_100_AT_200MS),
     ["minimum provisioned concurrency 4 is below the 20 the baseline needs (expected: 100 QPS × 0.2 s",
      "set min_provisioned_concurrency to at least 20"], dict(expected=Expected(qps=20, latency_ms=200))),
    ("min_concurrency_below_baseline", dict(figs=figures(qps_min=150.0, qps_max=160.0, latency_mean=0.05)),
     ["below the 8 the baseline needs (observed: 150–160 QPS × 0.05 s"], dict(figs=figures(qps_min=80.0))),
    ("min_concurrency_below_baseline", dict(endpoint=info(entity_changes=S2Z), expected=Expected(qps=1, latency_ms=500)),
     ["minimum provisioned concurrency 0 (scale-to-zero) is below the 1"],
     dict(endpoint=info(entity_changes=S2Z), figs=figures(qps_min=0.0))),
    ("max_concurrency_below_peak", dict(expected=EXPECT_100_AT_200MS),
     ["maximum provisioned concurrency 16 is below the 23 the peak needs with 15% headroom", "= 20.0 concurrent requests",
      "set max_provisioned_concurrency to at least 23"], dict(expected=Expected(qps=69, latency_ms=200))),
    ("max_concurrency_below_peak", dict(expected=Expected(qps=10, latency_ms=200, peak_qps=100)),
     ["below the 23 the peak needs", "expected: 10–100 QPS"], dict(expected=Expected(qps=10, latency_ms=200, peak_qps=69))),
    ("autoscaling_disabled", dict(endpoint=info(entity_changes={"min_provisioned_concurrency": 8, "max_provisioned_concurrency": 8}),
                                  expected=EXPECT_100_AT_200MS),
     ["min = max = 8", "set min_provisioned_concurrency 20 for the baseline and max_provisioned_concurrency 23"],
     dict(endpoint=info(entity_changes={"min_provisioned_concurrency": 8, "max_provisioned_concurrency": 8, **S2Z}))),
    ("route_optimization_needed", dict(expected=Expected(qps=150, latency_ms=20, peak_qps=250)),
     ["250 QPS at peak (expected) is above the ~200 QPS", "only OAuth tokens"],
     dict(expected=Expected(qps=150, latency_ms=20, peak_qps=200))),
    ("route_optimization_needed", dict(figs=figures(qps_max=260.0)), ["260 QPS at peak (observed)"],
     dict(figs=figures(qps_max=260.0), endpoint=info(route_optimized=True))),
    ("route_optimization_needed", dict(targets={**TARGETS, "latency_p50": 0.05}), ["its P50 target 50 ms is under 100 ms"],
     dict(targets={**TARGETS, "latency_p50": 0.1})),
    ("concurrency_limit_exceeded", dict(endpoint=info(entity_changes={"max_provisioned_concurrency": 1100})),
     ["ep-v1 is configured for max 1100", "split the traffic"], dict(endpoint=info(entity_changes={"max_provisioned_concurrency": 1024}))),
    ("concurrency_limit_exceeded", dict(expected=Expected(qps=9000, latency_ms=100)), ["ep-v1 needs 1035 at peak (100% of"],
     dict(expected=Expected(qps=8900, latency_ms=100))),
    ("gpu_for_light_model", dict(endpoint=info(entity_changes=GPU), figs=figures(gpu_ratio=0.04)),
     ["GPU use 4.0% on GPU_SMALL", "serve the model on CPU"], dict(endpoint=info(entity_changes=GPU), figs=figures(gpu_ratio=0.1))),
    ("cpu_compute_bound", dict(figs=figures(latency_p99=0.9, cpu_ratio=0.9)),
     ["P99 0.9 s over target with CPU at 90.0% on a CPU workload", "GPU workload"],
     dict(figs=figures(latency_p99=0.9, cpu_ratio=0.79))),
    ("rate_limit_below_expected", dict(endpoint=info(rate_limits=(RateLimit(60, 60.0, "endpoint"),)), expected=Expected(qps=5, latency_ms=50)),
     ["AI Gateway allows 60 calls per 60 s (1 QPS) for the whole endpoint, below the 5 QPS at peak (expected)",
      "at least 300 calls per 60 s"],
     dict(endpoint=info(rate_limits=(RateLimit(300, 60.0, "endpoint"),)), expected=Expected(qps=5, latency_ms=50))),
    ("rate_limit_below_expected", dict(endpoint=info(rate_limits=(RateLimit(60, 60.0, None),)), figs=figures(qps_min=1.0, qps_max=2.0)),
     ["below the 2 QPS at peak (observed)"],
     dict(endpoint=info(rate_limits=(RateLimit(60, 60.0, "user"),)), figs=figures(qps_min=1.0, qps_max=2.0))),
    ("latency_target_missing", dict(targets={**TARGETS, "latency_p50": None, "latency_p90": None, "latency_p99": None}),
     ["no latency target", "targets.latency_p99_seconds"], dict(targets={**TARGETS, "latency_p50": None, "latency_p90": None})),
]


def test_every_check_has_a_case():
    assert {c[0] for c in CASES} == {i.id for i in ITEMS}


@pytest.mark.parametrize("check,failing,fragments,passing", CASES, ids=[c[0] for c in CASES])
def test_check_fails_with_numbers_and_fix_and_passes_on_a_near_miss(check, failing, fragments, passing):
    found = outcome(check, **failing)
    assert found.status == "fail", found
    text = found.message + " | " + found.fix
    for fragment in fragments:
        assert fragment in text, text
    near = outcome(check, **passing)
    assert near.status == "pass", near


def test_a_healthy_endpoint_passes_every_check():
    assert {i.id: outcome(i.id).status for i in ITEMS} == {i.id: "pass" for i in ITEMS}


@pytest.mark.parametrize("check,arguments,reason", [
    ("deployment_not_ready", dict(endpoint=info(ready=None)), "did not say"),
    ("scale_to_zero_in_production", dict(endpoint=info(detailed=False)), "not read"),
    ("min_concurrency_below_baseline", dict(figs=Figures()), "--expected-qps"),
    ("min_concurrency_below_baseline", dict(endpoint=info(entity_changes={"min_provisioned_concurrency": None})), "workload size"),
    ("max_concurrency_below_peak", dict(figs=Figures()), "--expected-qps"),
    ("autoscaling_disabled", dict(endpoint=info(entity_changes={"max_provisioned_concurrency": None})), "workload size"),
    ("route_optimization_needed", dict(endpoint=info(route_optimized=None)), "not read"),
    ("route_optimization_needed", dict(endpoint=info(entity_changes={"kind": "foundation_model"}), figs=figures(qps_max=300.0)),
     "custom models only"),
    ("gpu_for_light_model", dict(endpoint=info(entity_changes=GPU), figs=figures(gpu_ratio=None)), "no GPU utilisation"),
    ("cpu_compute_bound", dict(figs=figures(cpu_ratio=None)), "no latency or CPU"),
    ("rate_limit_below_expected", dict(endpoint=info(rate_limits=(RateLimit(60, 60.0, "endpoint"),)), figs=Figures()),
     "--expected-qps"),
])
def test_a_check_without_its_input_is_skipped_with_the_reason(check, arguments, reason):
    found = outcome(check, **arguments)
    assert found.status == "skip" and reason in found.message, found


def test_sizing_is_the_guides_formula():
    t = Thresholds()
    s = size(100, 100, 0.2, t, "expected")  # 100 QPS at 200 ms: 20 concurrent requests
    assert (s.min_concurrency, s.max_concurrency) == (20, 23)  # max: 20 x 1.15
    assert size(0, 0.1, 0.2, t, "observed").min_concurrency == 0 and size(0, 0.1, 0.2, t, "observed").max_concurrency == 1
    assert size(10, 100, 0.2, Thresholds(headroom_ratio=0), "expected").max_concurrency == 20


# -- the audit of an /api/v1/endpoints document ----------------------------------------------------------------


def report(i: EndpointInfo, f: Figures, targets=None) -> EndpointReport:
    return EndpointReport(i, SeriesReport(None, f, checks(f, targets or TARGETS), Counters()), (),
                          PollStatus(up=True, last_success_s=1.0))


def document(*reports: EndpointReport, shard=(0, 1)) -> dict:
    return snapshot_json(Snapshot(endpoints=reports, completed_at_s=1.0, polls={"success": 1}, shard=shard))


HEALTHY = report(info("healthy", route_optimized=True), figures())
BROKEN = report(info("broken", entity_changes={"min_provisioned_concurrency": 8, "max_provisioned_concurrency": 8}),
                figures(qps=250.0, qps_min=240.0, qps_max=260.0, latency_mean=0.02, gpu_ratio=None))
LIGHT_GPU = report(info("gpu", route_optimized=True, entity_changes=GPU), figures(gpu_ratio=0.02))


def test_the_json_api_round_trips_to_the_pipelines_objects():
    entry = document(BROKEN)["endpoints"][0]
    i, f, c = from_json(entry)
    assert (i, f, c) == (BROKEN.info, BROKEN.endpoint.figures, BROKEN.endpoint.checks)
    entry["config"]["a_newer_exporters_field"] = 1  # another version's extra keys are left out
    entry["figures"]["another"] = 2
    assert from_json(entry)[0] == BROKEN.info


def test_findings_exit_codes_and_the_workspace():
    a = audit(document(HEALTHY, BROKEN, LIGHT_GPU)["endpoints"], SETTINGS)
    failed = {(r.endpoint, r.check) for r in a.results if r.status == "fail"}
    assert failed == {("broken", "autoscaling_disabled"), ("broken", "route_optimization_needed"),
                      ("gpu", "gpu_for_light_model"), (None, "workspace_limit_near")}
    assert a.exit_code == 1
    [ws] = a.of(None)
    assert "use 125% of the ~200 QPS (250 QPS)" in ws.message and "broken (250 QPS)" in ws.fix
    # Only info findings left: pass at --fail-on warning, fail at --fail-on info.
    calm = audit(document(HEALTHY, LIGHT_GPU)["endpoints"], SETTINGS)
    assert calm.exit_code == 0 and calm.of(None)[0].status == "pass"  # no standard endpoint: 0% of the limits
    assert "use 0% of the ~200 QPS" in calm.of(None)[0].message
    assert audit(document(HEALTHY, LIGHT_GPU)["endpoints"], SETTINGS, fail_on="info").exit_code == 1
    assert audit(document(HEALTHY, BROKEN)["endpoints"], SETTINGS, fail_on="critical").exit_code == 0


def test_over_the_limit_with_nothing_that_can_move():
    foundation = report(info("fm", entity_changes={"kind": "foundation_model"}), figures(qps=250.0, qps_max=260.0))
    [ws] = audit(document(foundation)["endpoints"], SETTINGS).of(None)
    assert ws.status == "fail" and "no custom-model endpoint can move" in ws.message
    assert "spread the traffic over more workspaces" in ws.fix


def test_named_endpoints_only_and_the_workspace_check_when_one_is_standard():
    doc = document(HEALTHY, BROKEN)
    healthy = audit(doc["endpoints"], SETTINGS, only=["healthy"])
    assert {r.endpoint for r in healthy.results} == {"healthy", None}
    assert healthy.exit_code == 0 and healthy.of(None)[0].status == "skip"  # route-optimized: not its limits
    assert audit(doc["endpoints"], SETTINGS, only=["broken"]).of(None)[0].status == "fail"
    with pytest.raises(LookupError, match="no endpoint named 'nope'"):
        audit(doc["endpoints"], SETTINGS, only=["nope"])


def test_expected_traffic_sizes_before_traffic_and_counts_in_the_workspace():
    new = report(info("new", entity_changes={"min_provisioned_concurrency": 1, "max_provisioned_concurrency": 4}), Figures())
    doc = document(new)
    blind = audit(doc["endpoints"], SETTINGS)
    assert {r.check for r in blind.results if r.status == "skip"} >= {"min_concurrency_below_baseline", "max_concurrency_below_peak"}
    a = audit(doc["endpoints"], SETTINGS, expected={"new": Expected(qps=180, latency_ms=100)})
    assert dict(a.endpoints)["new"].min_concurrency == 18 and dict(a.endpoints)["new"].max_concurrency == 21
    failed = {r.check for r in a.results if r.status == "fail"}
    assert {"min_concurrency_below_baseline", "max_concurrency_below_peak", "workspace_limit_near"} <= failed
    with pytest.raises(LookupError):
        audit(doc["endpoints"], SETTINGS, expected={"typo": Expected(qps=1, latency_ms=1)})


def test_thresholds_and_limits_come_from_the_configuration():
    settings = load_settings(overrides={"workspace_limits": {"requests_per_second": 1000},
                                        "remediation": {"thresholds": {"route_optimization_qps": 300}}})
    a = audit(document(BROKEN)["endpoints"], settings)
    assert {r.check for r in a.results if r.status == "fail"} == {"autoscaling_disabled"}


def test_a_sharded_exporter_is_noted():
    a = audit(document(BROKEN, shard=(1, 3))["endpoints"], SETTINGS, shard=(1, 3))
    assert "shard 1 of 3" in a.note and "shard 1 of 3" in to_text(a)


# -- output formats ---------------------------------------------------------------------------------------------


def test_json_output_matches_its_documented_schema():
    a = audit(document(HEALTHY, BROKEN, LIGHT_GPU)["endpoints"], SETTINGS, source="test")
    out = to_json(a)
    jsonschema.validate(out, SCHEMA, format_checker=jsonschema.FormatChecker())
    assert json.loads(json.dumps(out)) == out
    assert out["summary"]["failed_by_severity"] == {"critical": 0, "warning": 3, "info": 1}
    assert out["summary"]["blocking"] == 3 and out["exit_code"] == 1
    assert out["workspace"]["move_first"] == [{"endpoint": "broken", "qps": 250.0}]
    assert set(SCHEMA["properties"]["results"]["items"]["properties"]["check"]["enum"]) == ITEM_IDS
    with pytest.raises(jsonschema.ValidationError):  # the schema is strict enough to catch a change
        jsonschema.validate({**out, "results": [{**out["results"][0], "status": "failed"}]}, SCHEMA)


def test_junit_output_is_valid_junit_with_a_case_per_endpoint_and_check(tmp_path):
    a = audit(document(HEALTHY, BROKEN, LIGHT_GPU)["endpoints"], SETTINGS, source="test")
    xml = to_junit(a)
    JUNIT_XSD.validate(xml)  # raises on any violation
    path = tmp_path / "check.xml"
    path.write_text(xml)
    suites = {s.name: s for s in JUnitXml.fromfile(str(path))}  # a reader CI actions use
    assert set(suites) == {"healthy", "broken", "gpu", "workspace"}
    assert all(s.tests == len(ITEMS) for n, s in suites.items() if n != "workspace")
    cases = {(s.name, c.name): c for s in suites.values() for c in s}
    assert len(cases) == 3 * len(ITEMS) + 1
    failing = {k for k, c in cases.items() if c.result and c.result[0]._tag == "failure"}
    assert failing == {("broken", "autoscaling_disabled"), ("broken", "route_optimization_needed"),
                       ("workspace", "workspace_limit_near")}
    # The info finding is below --fail-on warning: a passing case that says so.
    gpu = cases[("gpu", "gpu_for_light_model")]
    assert not gpu.result and "info finding, below --fail-on warning: GPU use 2.0%" in gpu.system_out
    assert suites["broken"].failures == 2 and suites["healthy"].failures == 0


def test_junit_escapes_hostile_text():
    hostile = report(info('we<ird>&"name', ready=False, state='NOT_<READY>&"'), figures())
    xml = to_junit(audit(document(hostile)["endpoints"], SETTINGS, source="a & b"))
    JUNIT_XSD.validate(xml)
    assert "NOT_&lt;READY&gt;&amp;" in xml


def test_text_output_lists_findings_with_their_fix():
    text = to_text(audit(document(HEALTHY, BROKEN)["endpoints"], SETTINGS, source="test"))
    assert re.search(r"^broken  FAIL  \(2 warning; ", text, re.M)
    assert re.search(r"^healthy  ok  \(11 passed, 0 skipped\)", text, re.M)
    assert "  warning  autoscaling_disabled: autoscaling is off" in text and "fix: enable route optimization" in text
    assert text.rstrip().endswith("exit 1")


def test_docs_list_every_check_id():
    text = (ROOT / "docs" / "check.md").read_text()
    assert markdown() in text, "docs/check.md is stale: run python docs/generate.py"
    for check in ITEM_IDS:
        assert f"### {check}" in text


# -- the command ------------------------------------------------------------------------------------------------


@pytest.fixture
def exporter_url() -> Iterator[str]:
    """A real exporter HTTP server serving a fixed snapshot (the healthy, broken and GPU endpoints)."""
    snap = Snapshot(endpoints=(HEALTHY, BROKEN, LIGHT_GPU), completed_at_s=1.0, polls={"success": 1})
    server = HttpServer(make_app(Exposition(lambda: snap, CollectorRegistry()), lambda: snap), "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


def test_exit_status_0_1_2(exporter_url, capsys, tmp_path):
    assert main(["check", "--exporter", exporter_url]) == 1
    assert main(["check", "--exporter", exporter_url, "healthy"]) == 0
    assert main(["check", "--exporter", exporter_url, "gpu"]) == 0
    assert main(["check", "--exporter", exporter_url, "gpu", "--fail-on", "info"]) == 1
    capsys.readouterr()
    assert main(["check", "--exporter", exporter_url, "nope"]) == 2
    assert "no endpoint named 'nope'" in capsys.readouterr().err
    assert main(["check", "--exporter", exporter_url + "/missing"]) == 2
    assert "cannot read" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["check", "--format", "yaml"])
    assert exc.value.code == 2


@pytest.mark.parametrize("argv,message", [
    (["--expected-qps", "10", "--expected-latency-ms", "50"], "go together, with the ENDPOINT(s)"),
    (["healthy", "--expected-qps", "10"], "go together"),
    (["healthy", "--expected-qps", "-1", "--expected-latency-ms", "50"], "greater than 0"),
])
def test_bad_expected_traffic_exits_2(exporter_url, capsys, argv, message):
    assert main(["check", "--exporter", exporter_url, *argv]) == 2
    assert message in capsys.readouterr().err


def test_expected_traffic_from_a_file(exporter_url, capsys, tmp_path):
    good = tmp_path / "expected.yaml"
    good.write_text("endpoints:\n  healthy: {qps: 400, latency_ms: 100}\n")
    assert main(["check", "--exporter", exporter_url, "healthy", "--expected", str(good), "--format", "json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["endpoints"] == [{"name": "healthy", "sizing": {
        "source": "expected", "baseline_qps": 400.0, "peak_qps": 400.0, "latency_seconds": 0.1, "min_concurrency": 40,
        "max_concurrency": 46, "basis": "expected: 400 QPS × 0.1 s mean latency"}}]
    bad = tmp_path / "bad.yaml"
    bad.write_text("endpoints:\n  healthy: {qps: 10, latency: 100}\n")
    assert main(["check", "--exporter", exporter_url, "--expected", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: endpoints.healthy.latency_ms: Field required" in err and "latency: Extra inputs" in err
    assert main(["check", "--exporter", exporter_url, "--expected", str(tmp_path / "absent.yaml")]) == 2


def test_the_exporters_workspace_limits_apply(capsys):
    """Like its targets, a running exporter's workspace limits are the ones that apply (its configuration may set
    the region's concurrency limit); an exporter that does not say leaves check's own."""
    from exporter.pipeline.workspace import WorkspaceAnalysis

    roomy = load_settings(overrides={"workspace_limits": {"requests_per_second": 1000}})
    snap = WorkspaceAnalysis(roomy).apply(Snapshot(endpoints=(BROKEN,), completed_at_s=1.0, polls={"success": 1}))
    server = HttpServer(make_app(Exposition(lambda: snap, CollectorRegistry()), lambda: snap), "127.0.0.1", 0).start()
    try:
        assert main(["check", "--exporter", f"http://127.0.0.1:{server.port}", "--format", "json"]) == 1
    finally:
        server.stop()
    out = json.loads(capsys.readouterr().out)
    assert out["workspace"]["qps_limit"] == 1000.0
    assert [r["status"] for r in out["results"] if r["check"] == "workspace_limit_near"] == ["pass"]


def test_the_workspace_cannot_be_read_exits_2(capsys):
    assert main(["check"]) == 2  # no credentials in the test environment
    assert "listing endpoints failed" in capsys.readouterr().err


@pytest.mark.integration
def test_against_the_demo_exporter_and_one_poll_of_the_demo_workspace(capsys, monkeypatch, tmp_path):
    """Done when: `check --exporter <demo>` lists the demo's problem endpoints and exits 1, the JUnit output is
    valid, the JSON matches its schema, a healthy endpoint passes; and the same without an exporter, one poll."""
    from exporter.simulator import DEMO_TOKEN, build_demo_workspace

    from .alerting import exporter_daemon, wait_for

    workspace = build_demo_workspace(minute_seconds=1.0)
    with exporter_daemon(workspace) as (simulator, daemon):
        def filled() -> bool:
            endpoints = requests.get(f"{daemon.url}/api/v1/endpoints", timeout=5).json()["endpoints"]
            return all(e["figures"]["minutes"] >= 3 for e in endpoints)

        wait_for(filled, 30, "three minutes of data for every demo endpoint")
        assert main(["check", "--exporter", daemon.url, "--format", "json"]) == 1
        out = json.loads(capsys.readouterr().out)
        jsonschema.validate(out, SCHEMA)
        failed = {(r["endpoint"], r["check"]) for r in out["results"] if r["status"] == "fail"}
        assert {("batch-scorer", "scale_to_zero_in_production"), ("recommender", "autoscaling_disabled"),
                ("recommender", "max_concurrency_below_peak"), ("search-ranker", "route_optimization_needed"),
                ("vision-classifier", "gpu_for_light_model"), ("doc-embedder", "cpu_compute_bound"),
                (None, "workspace_limit_near")} <= failed
        assert not [f for f in failed if f[0] == "fraud-scorer"]
        assert out["workspace"]["move_first"][0]["endpoint"] == "search-ranker"

        assert main(["check", "--exporter", daemon.url, "--format", "junit"]) == 1
        JUNIT_XSD.validate(capsys.readouterr().out)
        assert main(["check", "--exporter", daemon.url, "fraud-scorer"]) == 0
        assert "fraud-scorer  ok" in capsys.readouterr().out

        # One poll, no exporter; an AI Gateway limit of 2 QPS on the chat endpoint that gets about 6.
        workspace.patch_scenario("support-chat", rate_limit_calls_per_minute=120)
        monkeypatch.setenv("DATABRICKS_HOST", simulator)
        monkeypatch.setenv("DATABRICKS_TOKEN", DEMO_TOKEN)
        assert main(["check", "batch-scorer", "support-chat", "--log-level", "WARNING"]) == 1
        text = capsys.readouterr().out
        assert "(one poll)" in text and "critical scale_to_zero_in_production" in text
        assert "warning  rate_limit_below_expected: AI Gateway allows 120 calls per 60 s (2 QPS)" in text
