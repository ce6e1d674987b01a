"""Monitors and dashboard as code: the files match the Prometheus rules and the API schema, and
`serving-exporter datadog sync-monitors | sync-dashboard` plans in dry-run and applies idempotently
against a fake Datadog API."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import yaml

from exporter.cli import build_parser, main
from exporter.config import load_settings
from exporter.pipeline.targets import Targets
from exporter.sinks.datadog.sync import (DEFAULT_DASHBOARD, DEFAULT_MONITORS, ID_TAG, MANAGED_TAG, SyncError, api_client,
                                   load_dashboard, load_monitors, plan_monitors)

from .fake_datadog import FakeDatadog
from .fake_datadog import no_datadog_environment  # noqa: F401 (an autouse fixture)

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "alerts" / "prometheus" / "alerting-rules.yml"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
DEFAULTS = Targets()


@pytest.fixture
def fake(monkeypatch):
    with FakeDatadog() as f:
        monkeypatch.setenv("DD_API_KEY", f.api_key)
        monkeypatch.setenv("DD_APP_KEY", f.app_key)
        monkeypatch.setenv("SERVING_EXPORTER_DATADOG_URL", f.url)
        yield f


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(["datadog", *args, "--log-level", "WARNING"])
    out, err = capsys.readouterr()
    return code, out, err


# -- the monitor file ---------------------------------------------------------------------------


def by_id() -> dict:
    return {m.id: m for m in load_monitors()}


def prometheus_alerts() -> dict[str, dict]:
    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    return {r["alert"]: r for r in rules}


def minutes(duration: str) -> int:
    number, unit = int(duration[:-1]), duration[-1]
    return number * {"m": 1, "h": 60}[unit]


def test_monitors_are_valid_monitor_api_bodies():
    monitors = load_monitors()  # raises on any schema problem
    assert len(monitors) >= 9
    for m in monitors:
        assert MANAGED_TAG in m.body["tags"] and f"{ID_TAG}:{m.id}" in m.body["tags"]
        assert m.body["type"] == "query alert"


@pytest.mark.parametrize("ident,check", [("error-rate-high", "error_ratio"), ("queueing", "queue_depth"),
                                         ("latency-p50-high", "latency_p50"), ("latency-p90-high", "latency_p90"),
                                         ("latency-p99-high", "latency_p99"), ("cpu-saturated", "cpu_utilization"),
                                         ("memory-saturated", "memory_utilization")])
def test_figure_monitors_use_the_default_targets_and_the_prometheus_durations(ident, check):
    monitor = by_id()[ident]
    target = DEFAULTS.by_check()[check]
    query = monitor.body["query"]
    threshold = float(re.search(r"> (\S+)$", query).group(1))
    assert threshold == target == monitor.body["options"]["thresholds"]["critical"]
    rule = prometheus_alerts()[monitor.prometheus_alert]
    window = int(re.match(r"min\(last_(\d+)m\)", query).group(1))
    assert window == minutes(rule["for"])  # `for:` is "above for the whole window"
    assert monitor.body["options"]["require_full_window"] is True
    assert "level:endpoint" in query and "by {workspace,endpoint}" in query
    severity = rule["labels"]["severity"]
    assert f"severity:{severity}" in monitor.body["tags"]
    assert monitor.body["priority"] == (1 if severity == "critical" else 3)


def test_paging_monitors_are_error_rate_and_queueing():
    paging = {m.id for m in load_monitors() if "severity:critical" in m.body["tags"]}
    assert paging == {"error-rate-high", "queueing"}
    assert by_id()["error-rate-high"].body["options"]["thresholds"]["critical"] == 0.01
    assert by_id()["queueing"].body["options"]["thresholds"]["critical"] == 0


def test_staleness_is_a_no_data_monitor():
    for ident in ("metrics-stale", "exporter-down"):
        options = by_id()[ident].body["options"]
        assert options["notify_no_data"] is True and options["no_data_timeframe"] == 10
        assert "{{#is_no_data}}" in by_id()[ident].body["message"]


def test_every_monitor_links_its_runbook_section():
    headings = {line[3:].strip().lower() for line in RUNBOOKS.read_text().splitlines() if line.startswith("## ")}
    alerts = prometheus_alerts()
    base = re.search(r"runbook_url: (\S+)#", RULES.read_text()).group(1)
    for m in load_monitors():
        assert m.prometheus_alert in alerts, m.prometheus_alert
        anchor = m.prometheus_alert.lower()
        assert anchor in headings
        assert f"{base}#{anchor}" in m.body["message"]


def test_an_invalid_monitor_file_is_rejected_with_every_problem(tmp_path):
    data = yaml.safe_load(DEFAULT_MONITORS.read_text())
    data["monitors"][0]["options"]["thresholds"] = "high"
    data["monitors"][1]["bogus"] = 1
    data["monitors"][2]["id"] = data["monitors"][3]["id"]
    bad = tmp_path / "monitors.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(SyncError) as info:
        load_monitors(bad)
    text = str(info.value)
    assert "error-rate-high" in text and "bogus" in text and "duplicate id" in text


# -- sync-monitors ------------------------------------------------------------------------------


def test_dry_run_without_keys_prints_the_plan_and_changes_nothing(capsys):
    code, out, _ = run_cli(["sync-monitors", "--dry-run"], capsys)
    assert code == 0
    assert "create    error-rate-high" in out and "dry run: nothing changed" in out
    assert out.count("\n  create ") == len(load_monitors())


def test_apply_without_keys_fails_clearly(capsys):
    code, _, err = run_cli(["sync-monitors"], capsys)
    assert code == 2 and "DD_API_KEY and DD_APP_KEY" in err


def test_sync_monitors_is_idempotent_and_updates_in_place(fake, capsys, tmp_path):
    code, out, _ = run_cli(["sync-monitors", "--dry-run"], capsys)
    assert code == 0 and "dry run" in out and fake.writes("/api/v1/monitor") == []
    code, out, _ = run_cli(["sync-monitors"], capsys)
    assert code == 0 and fake.invalid == []
    created = fake.writes("/api/v1/monitor")
    assert len(created) == len(load_monitors()) and {r.method for r in created} == {"POST"}
    # Again: nothing to do, nothing written.
    code, out, _ = run_cli(["sync-monitors"], capsys)
    assert code == 0 and f"{len(load_monitors())} unchanged" in out
    assert len(fake.writes("/api/v1/monitor")) == len(created)
    # A changed threshold and a renamed monitor update the existing monitors, in the plan first.
    data = yaml.safe_load(DEFAULT_MONITORS.read_text())
    data["monitors"][0]["query"] = data["monitors"][0]["query"].replace("> 0.01", "> 0.02")
    data["monitors"][0]["options"]["thresholds"]["critical"] = 0.02
    data["monitors"][1]["name"] += " (renamed)"
    changed = tmp_path / "monitors.yaml"
    changed.write_text(yaml.safe_dump(data))
    code, out, _ = run_cli(["sync-monitors", "--file", str(changed), "--dry-run"], capsys)
    assert "update    error-rate-high" in out and "changes: query, options.thresholds" in out
    assert "update    queueing" in out and "changes: name" in out
    assert len(fake.writes("/api/v1/monitor")) == len(created)
    code, out, _ = run_cli(["sync-monitors", "--file", str(changed)], capsys)
    puts = [r for r in fake.writes("/api/v1/monitor") if r.method == "PUT"]
    assert code == 0 and len(puts) == 2 and len(fake.monitors) == len(created)
    stored = next(m for m in fake.monitors.values() if f"{ID_TAG}:error-rate-high" in m["tags"])
    assert stored["query"].endswith("> 0.02") and stored["options"]["thresholds"]["critical"] == 0.02
    code, out, _ = run_cli(["sync-monitors", "--file", str(changed)], capsys)
    assert len(fake.writes("/api/v1/monitor")) == len(created) + 2  # idempotent again


def test_monitors_left_out_of_the_file_are_reported_and_pruned_on_request(fake, capsys, tmp_path):
    assert run_cli(["sync-monitors"], capsys)[0] == 0
    data = yaml.safe_load(DEFAULT_MONITORS.read_text())
    data["monitors"] = data["monitors"][1:]
    fewer = tmp_path / "monitors.yaml"
    fewer.write_text(yaml.safe_dump(data))
    code, out, _ = run_cli(["sync-monitors", "--file", str(fewer)], capsys)
    assert code == 0 and "orphan    error-rate-high" in out and len(fake.monitors) == len(load_monitors())
    code, out, _ = run_cli(["sync-monitors", "--file", str(fewer), "--prune"], capsys)
    assert code == 0 and "deleted error-rate-high" in out and len(fake.monitors) == len(load_monitors()) - 1


def test_the_plan_ignores_what_datadog_adds():
    spec = load_monitors()[0]
    stored = copy.deepcopy(spec.body)
    stored.update(id=5, type="metric alert", overall_state="OK", message=spec.body["message"].strip() + "\n")
    stored["options"].update(notify_audit=False, silenced={}, thresholds={"critical": 0.010000000000000002})
    stored["tags"] = list(reversed(stored["tags"]))
    (change,) = plan_monitors([spec], [stored])
    assert change.action == "unchanged", change.fields


def test_api_errors_are_reported_without_the_body(fake, capsys):
    fake.fail(400, path_prefix="/api/v1/monitor")
    code, _, err = run_cli(["sync-monitors"], capsys)
    assert code == 1 and "list monitors failed: 400" in err and "fake fault 400" in err
    assert fake.api_key not in err and fake.app_key not in err


# -- the dashboard ------------------------------------------------------------------------------


def test_dashboard_is_a_valid_dashboard_with_the_required_panels():
    ident, body = load_dashboard()  # raises on any schema problem
    assert ident == "model-serving"
    assert any(v["name"] == "endpoint" and v["prefix"] == "endpoint" for v in body["template_variables"])
    text = json.dumps(body)
    definitions = [w["definition"] for w in body["widgets"]]
    queries = {d.get("title"): json.dumps(d) for d in definitions}

    def panel(word: str) -> str:
        return next(q for title, q in queries.items() if title and word.lower() in title.lower())

    latency = panel("Latency")
    assert all(f"percentile:{p}" in latency for p in ("p50", "p90", "p99"))
    assert {f"y = {DEFAULTS.latency_p50_seconds}", f"y = {DEFAULTS.latency_p90_seconds}",
            f"y = {DEFAULTS.latency_p99_seconds}"} <= {m["value"] for m in json.loads(latency)["markers"]}
    assert "requests_per_second" in panel("Requests per second")
    assert f"y = {DEFAULTS.error_ratio}" in panel("Error ratio (4xx")
    assert "queue_depth" in panel("Queue depth") and "y = 0" in panel("Queue depth")
    assert f"y = {DEFAULTS.cpu_utilization_ratio}" in panel("utilisation")
    assert "provisioned_concurrency" in panel("concurrency") and "required_concurrency" in panel("concurrency")
    assert any(d["type"] == "list_stream" and d["requests"][0]["query"]["data_source"] == "event_stream"
               and "event_type:remediation_hint" in d["requests"][0]["query"]["query_string"] for d in definitions)
    assert "$endpoint" in latency and text.count("$endpoint") >= 10


def test_dashboard_metrics_are_metrics_the_sink_sends():
    from exporter.sinks.datadog.points import METRICS

    _, body = load_dashboard()
    used = set(re.findall(r"model_serving\.([a-z_.]+)\{", json.dumps(body)))
    assert used and used <= set(METRICS)
    for m in load_monitors():
        assert set(re.findall(r"model_serving\.([a-z_.]+)\{", m.body["query"])) <= set(METRICS)


def test_sync_dashboard_creates_then_leaves_it_alone_then_updates(fake, capsys, tmp_path):
    code, out, _ = run_cli(["sync-dashboard", "--dry-run"], capsys)
    assert code == 0 and ": create" in out and fake.writes("/api/v1/dashboard") == []
    code, out, _ = run_cli(["sync-dashboard"], capsys)
    assert code == 0 and "created dashboard" in out and len(fake.dashboards) == 1 and fake.invalid == []
    code, out, _ = run_cli(["sync-dashboard"], capsys)
    assert code == 0 and ": unchanged" in out and len(fake.writes("/api/v1/dashboard")) == 1
    body = json.loads(DEFAULT_DASHBOARD.read_text())
    body["widgets"][2]["definition"]["title"] = "QPS"
    changed = tmp_path / "dash.json"
    changed.write_text(json.dumps(body))
    code, out, _ = run_cli(["sync-dashboard", "--file", str(changed)], capsys)
    assert code == 0 and "changes: widgets" in out and "updated dashboard" in out
    assert len(fake.dashboards) == 1 and len(fake.writes("/api/v1/dashboard")) == 2
    assert run_cli(["sync-dashboard", "--file", str(changed)], capsys)[1].count("unchanged") == 1


# -- command line and configuration -------------------------------------------------------------


@pytest.mark.parametrize("action", ["sync-monitors", "sync-dashboard"])
def test_every_datadog_flag_has_help(action, capsys):
    (sub,) = [a for a in build_parser()._actions if a.dest == "command"]
    (inner,) = [a for a in sub.choices["datadog"]._actions if a.dest == "datadog_command"]
    for option in inner.choices[action]._actions:
        assert option.help, option.option_strings
    with pytest.raises(SystemExit):
        main(["datadog", action, "--help"])
    out = capsys.readouterr().out
    assert "--dry-run" in out and "DD_APP_KEY" in out and "SERVING_EXPORTER_DATADOG_URL" in out


def test_the_url_override_and_site_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("DD_API_KEY", "k")
    monkeypatch.setenv("DD_APP_KEY", "a")
    monkeypatch.setenv("DD_SITE", "datadoghq.eu")
    assert api_client(load_settings()).configuration.host == "https://api.datadoghq.eu"
    monkeypatch.setenv("SERVING_EXPORTER_DATADOG_URL", "http://127.0.0.1:9/dd/")
    assert api_client(load_settings()).configuration.host == "http://127.0.0.1:9/dd"
    monkeypatch.delenv("SERVING_EXPORTER_DATADOG_URL")
    monkeypatch.setenv("DD_SITE", "not a site")
    with pytest.raises(Exception, match="DD_SITE"):
        api_client(load_settings())


def test_docs_list_every_metric_setting_and_monitor():
    from exporter.sinks.datadog.settings import DatadogSettings
    from exporter.sinks.datadog.points import METRICS

    docs = (ROOT / "docs" / "datadog.md").read_text()
    assert not [m for m in METRICS if f"`model_serving.{m}`" not in docs]
    assert not [k for k in DatadogSettings.model_fields if f"`datadog.{k}`" not in docs]
    assert not [m.id for m in load_monitors() if m.id.split("-p")[0] not in docs]
    for variable in ("DD_API_KEY", "DD_APP_KEY", "DD_SITE", "SERVING_EXPORTER_DATADOG_URL"):
        assert variable in docs


def test_datadog_settings_from_the_environment(monkeypatch):
    from exporter.config import ConfigError

    monkeypatch.setenv("SERVING_EXPORTER_DATADOG_URL", "http://127.0.0.1:8126/")
    monkeypatch.setenv("SERVING_EXPORTER_DATADOG__TAGS", '["env:prod", "team:ml"]')
    monkeypatch.setenv("SERVING_EXPORTER_DATADOG__BUFFER_BYTES", "5000000")
    monkeypatch.setenv("SERVING_EXPORTER_DATADOG__SPILL_DIRECTORY", "/var/lib/serving-exporter/datadog")
    settings = load_settings()
    assert settings.datadog_url == "http://127.0.0.1:8126"
    assert settings.datadog.tags == ["env:prod", "team:ml"] and settings.datadog.buffer_bytes == 5_000_000
    assert str(settings.datadog.spill_directory) == "/var/lib/serving-exporter/datadog"
    for name, value, problem in [("SERVING_EXPORTER_DATADOG__TAGS", '["endpoint:x"]', "set by the exporter"),
                                 ("SERVING_EXPORTER_DATADOG__TAGS", '["9lives"]', "invalid Datadog tag"),
                                 ("SERVING_EXPORTER_DATADOG_URL", "ftp://x", "http:// or https://"),
                                 ("SERVING_EXPORTER_DATADOG__BUFFER_BYTES", "10", "greater than or equal to 1000000"),
                                 ("SERVING_EXPORTER_DATADOG__SPILL_MAX_BYTES", "-1", "greater than or equal to 1000000"),
                                 ("SERVING_EXPORTER_DATADOG__BUFFER_POINTS", "100000", "replaced by buffer_bytes"),
                                 ("SERVING_EXPORTER_DATADOG__API_KEY", "x", "unknown key")]:
        with monkeypatch.context() as m:
            m.setenv(name, value)
            with pytest.raises(ConfigError, match=problem):
                load_settings()


def test_the_sink_is_off_without_an_api_key_and_keys_are_not_settings(monkeypatch, capsys):
    from exporter.commands import build_sinks

    assert build_sinks(load_settings(), environ={}) == []
    sinks = build_sinks(load_settings(), environ={"DD_API_KEY": "secret-key-1", "DD_SITE": "us5.datadoghq.com"})
    assert len(sinks) == 1 and sinks[0].target.url == "https://api.us5.datadoghq.com"
    monkeypatch.setenv("DD_API_KEY", "secret-key-1")
    monkeypatch.setenv("DD_APP_KEY", "secret-key-2")
    assert main(["check-config"]) == 0
    out = capsys.readouterr().out
    assert "secret-key" not in out and "datadog_url: null" in out and "buffer_bytes: 64000000" in out
