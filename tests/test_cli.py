"""The command line: help that explains every flag, and configuration errors as exit code 2."""

from __future__ import annotations

import json

import pytest

from exporter.cli import build_parser, main


def subcommands():
    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    return sub.choices


@pytest.mark.parametrize("name", ["run", "demo", "simulate", "recommend", "check", "check-config"])
def test_every_flag_has_help(name):
    for action in subcommands()[name]._actions:
        assert action.help, f"{name} {action.option_strings} has no help text"


@pytest.mark.parametrize("name", ["run", "demo", "simulate", "recommend", "check", "check-config"])
def test_help_prints_and_exits_zero(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for action in subcommands()[name]._actions:
        for flag in action.option_strings:
            assert flag in out


def test_run_help_documents_credentials_and_port(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    for word in ("DATABRICKS_HOST", "DATABRICKS_TOKEN", "DATABRICKS_CLIENT_ID", "DATABRICKS_CONFIG_PROFILE", "9877"):
        assert word in out


def test_config_error_exits_2_and_names_the_problem(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("targets:\n  error_rate: 0.05\n")
    assert main(["check-config", "--config", str(bad)]) == 2
    assert f"{bad}: targets.error_rate: unknown key" in capsys.readouterr().err


def test_check_config_prints_effective_settings(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SERVING_EXPORTER_TARGETS__LATENCY_P99_SECONDS", "0.3")
    assert main(["check-config"]) == 0
    out = capsys.readouterr().out
    assert "latency_p99_seconds: 0.3" in out and "poll_interval_seconds: 60.0" in out


def test_run_without_credentials_fails_clearly(capsys):
    assert main(["run", "--once"]) == 1
    assert "listing endpoints failed: auth: cannot authenticate to Databricks" in capsys.readouterr().err


def test_run_once_against_the_simulator_prints_the_snapshot(capsys, monkeypatch):
    from exporter.simulator import DEMO_TOKEN, SimulatorServer, build_demo_workspace

    with SimulatorServer(build_demo_workspace()) as server:
        monkeypatch.setenv("DATABRICKS_HOST", server.url)
        monkeypatch.setenv("DATABRICKS_TOKEN", DEMO_TOKEN)
        assert main(["run", "--once", "--log-level", "WARNING"]) == 0
    snapshot = json.loads(capsys.readouterr().out)
    assert snapshot["ready"] and len(snapshot["endpoints"]) == 7
    assert DEMO_TOKEN not in json.dumps(snapshot)


def test_recommend_one_shot_against_the_simulator(capsys, monkeypatch):
    from exporter.simulator import DEMO_TOKEN, SimulatorServer, build_demo_workspace

    with SimulatorServer(build_demo_workspace()) as server:
        monkeypatch.setenv("DATABRICKS_HOST", server.url)
        monkeypatch.setenv("DATABRICKS_TOKEN", DEMO_TOKEN)
        assert main(["recommend", "recommender", "--log-level", "WARNING"]) == 0
        out = capsys.readouterr().out
        assert out.startswith("recommender  (provisioned now 12")
        assert "recommended provisioned concurrency: min" in out and "queueing:" in out
        assert main(["recommend", "no-such-endpoint", "--log-level", "WARNING"]) == 1
        assert main(["recommend", "--json", "--log-level", "WARNING"]) == 0
        parsed = json.loads(capsys.readouterr().out)
        assert {e["name"] for e in parsed} >= {"recommender", "fraud-scorer"}


def test_recommend_reports_an_unreachable_exporter(capsys):
    assert main(["recommend", "--exporter", "http://127.0.0.1:9", "--log-level", "WARNING"]) == 1
    assert "cannot read http://127.0.0.1:9/api/v1/endpoints" in capsys.readouterr().err
