"""`serving-exporter loadtest`: the plan's caps, the knee and the recommendation, the refusals, and a run
end to end against a simulated endpoint of known capacity (in a subprocess: Locust patches its process)."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from exporter.cli import main
from exporter.loadtest.plan import Plan, PlanError
from exporter.loadtest.results import StepResult, analyse
from exporter.model import EndpointInfo
from exporter.pipeline.rules import Thresholds
from exporter.simulator import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_TOKEN, SimulatorServer, Workspace

ROOT = Path(__file__).resolve().parents[1]
# The simulated endpoint of the end-to-end run: C parallel servers, lognormal service time of median S.
C, S_MEDIAN, S_SIGMA = 4, 0.1, 0.1
S_MEAN = 0.1005  # S_MEDIAN x exp(S_SIGMA^2 / 2)
HEADROOM = Thresholds().headroom_ratio  # what `recommend` adds; the load test must add the same


def plan(**changes) -> Plan:
    fields = dict(url="http://127.0.0.1:1/x", payload="{}", start_users=1, step_users=1, max_users=4, step_seconds=2,
                  max_duration_seconds=60, stop_error_ratio=0.05, timeout_seconds=5, auth="none")
    return Plan(**{**fields, **changes})


# -- the plan ------------------------------------------------------------------------------------------


def test_plan_steps_and_duration():
    p = plan(start_users=2, step_users=3, max_users=12, step_seconds=5)
    assert p.steps == [2, 5, 8, 11]
    assert p.duration_seconds == 20
    assert Plan.from_json(p.to_json()) == p


@pytest.mark.parametrize("changes, message", [
    ({"max_users": 2000}, "above the cap of 1024"),
    ({"start_users": 5, "max_users": 4}, "--max-users must be at least --start-users"),
    ({"step_users": 0}, "--step-users"),
    ({"step_seconds": 0.5}, "--step-seconds"),
    ({"max_users": 40, "max_duration_seconds": 60}, "the plan takes 80 s (40 steps x 2 s), above --max-duration 60 s"),
    ({"stop_error_ratio": 0}, "--stop-error-ratio"),
])
def test_plan_refuses_what_exceeds_its_caps(changes, message):
    with pytest.raises(PlanError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plan(**changes)


# -- the knee and the recommendation ------------------------------------------------------------------


def step(users: int, rps: float, mean: float, p99: float, requests: int | None = None, ok: int | None = None,
         errors_429: int = 0) -> StepResult:
    seconds = 10.0
    ok = round(rps * seconds) if ok is None else ok
    return StepResult(users, seconds, ok if requests is None else requests, ok, errors_429, mean, mean, p99, mean)


TARGETS = {"latency_p50": None, "latency_p90": None, "latency_p99": 0.5, "error_ratio": 0.01}


def test_knee_is_the_last_step_meeting_the_targets_and_the_recommendation_uses_the_headroom():
    steps = [step(1, 10, 0.1, 0.15), step(2, 20, 0.1, 0.2), step(4, 38, 0.105, 0.3), step(8, 40, 0.2, 0.45),
             step(12, 40, 0.3, 0.6), step(16, 40, 0.3, 0.4, requests=500, ok=400, errors_429=100)]
    a = analyse(steps, TARGETS, Thresholds(headroom_ratio=0.15), EndpointInfo(name="e"))
    assert a.knee == 3  # 12 clients miss the P99 target; the last step is past it (and has errors)
    assert a.failures[4] == ("P99 0.6 s > 0.5 s",)
    assert a.failures[5] == ("errors 20.0% >= 1%",)
    assert a.service_time_s == 0.1  # the mean latency of the least-loaded step
    assert a.recommendation.required_concurrency == pytest.approx(4.0)  # 40 QPS x 0.1 s
    assert (a.recommendation.min_concurrency, a.recommendation.max_concurrency) == (5, 5)  # ceil(4 x 1.15)
    assert a.server_concurrency(steps[4]) == pytest.approx(4.0)  # 12 clients, 4 servers busy: 8 queue


def test_expected_traffic_sets_min_and_max_and_a_later_passing_step_is_not_the_knee():
    steps = [step(1, 10, 0.1, 0.15), step(2, 20, 0.1, 0.9), step(4, 40, 0.1, 0.2)]
    a = analyse(steps, TARGETS, Thresholds(headroom_ratio=0.5), EndpointInfo(name="e"), baseline_qps=30, peak_qps=100)
    assert a.knee == 0
    assert (a.recommendation.min_concurrency, a.recommendation.max_concurrency) == (5, 15)  # 3 x 1.5, 10 x 1.5
    assert "baseline 30 / peak 100 QPS" in a.recommendation.basis


def test_no_knee_no_recommendation():
    a = analyse([step(1, 10, 0.6, 0.9)], TARGETS, Thresholds(), EndpointInfo(name="e"))
    assert a.knee is None and a.recommendation is None


# -- refusals (before any traffic) -----------------------------------------------------------------------


@pytest.fixture
def workspace() -> Workspace:
    # One simulated hour per real hour: a whole run lands in one minute, published by advance(1).
    ws = Workspace(minute_seconds=3600)
    ws.add_endpoint("capacity-4", "healthy", qps=0.0, service_time_median_s=S_MEDIAN, service_time_sigma=S_SIGMA,
                    min_provisioned_concurrency=C, max_provisioned_concurrency=C, max_queue_per_concurrency=2.0,
                    error_4xx_ratio=0.0)
    ws.add_endpoint("fast-lane", "healthy", route_optimized=True)
    return ws


@pytest.fixture
def simulator(workspace: Workspace):
    with SimulatorServer(workspace) as server:
        yield server


@pytest.fixture
def payload(tmp_path: Path) -> Path:
    path = tmp_path / "payload.json"
    path.write_text('{"dataframe_records": [{"amount": 12.5, "country": "DE"}]}')
    return path


class NoTerminal(io.StringIO):
    def isatty(self) -> bool:
        return False


def test_refuses_without_yes_when_there_is_no_terminal(simulator, workspace, payload, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DATABRICKS_HOST", simulator.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", DEMO_TOKEN)
    monkeypatch.setattr(sys, "stdin", NoTerminal())
    assert main(["loadtest", "capacity-4", "--payload", str(payload), "--out", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    assert "this sends real traffic" in captured.out  # the plan is shown first
    assert f"POST {simulator.url}/serving-endpoints/capacity-4/invocations" in captured.out
    assert "refusing to send load without --yes" in captured.err
    assert DEMO_TOKEN not in captured.out + captured.err
    assert workspace.requests_of("invocations") == 0
    assert not (tmp_path / "out").exists()


def test_a_declined_confirmation_sends_nothing(simulator, workspace, payload, monkeypatch, capsys):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setenv("DATABRICKS_HOST", simulator.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", DEMO_TOKEN)
    monkeypatch.setattr(sys, "stdin", Terminal("n\n"))
    assert main(["loadtest", "capacity-4", "--payload", str(payload)]) == 2
    assert "Send this load? [y/N]" in capsys.readouterr().out
    assert workspace.requests_of("invocations") == 0


def test_route_optimized_endpoint_refuses_a_personal_access_token(simulator, workspace, payload, monkeypatch, capsys):
    monkeypatch.setenv("DATABRICKS_HOST", simulator.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", DEMO_TOKEN)
    assert main(["loadtest", "fast-lane", "--payload", str(payload), "--yes"]) == 1
    err = capsys.readouterr().err
    assert "route-optimized: it takes OAuth tokens only" in err and "DATABRICKS_CLIENT_ID" in err
    assert DEMO_TOKEN not in err
    assert workspace.requests_of("invocations") == 0


@pytest.mark.parametrize("args, message", [
    (["--max-users", "5000"], "above the cap of 1024"),
    (["--step-seconds", "600", "--max-users", "10"], "above --max-duration 1800 s"),
])
def test_bad_plans_are_refused_before_the_endpoint_is_read(args, message, payload, capsys):
    assert main(["loadtest", "some-endpoint", "--payload", str(payload), "--yes", *args]) == 2
    assert message in capsys.readouterr().err


def test_payload_must_be_json(tmp_path, capsys):
    bad = tmp_path / "payload.json"
    bad.write_text("amount=12.5")
    assert main(["loadtest", "some-endpoint", "--payload", str(bad), "--yes"]) == 2
    assert f"--payload {bad}: not JSON" in capsys.readouterr().err


# -- the simulator's invocations API ---------------------------------------------------------------------


def test_simulated_invocations_queue_then_answer_429_and_show_in_metrics():
    ws = Workspace(minute_seconds=3600)
    ws.add_endpoint("one-server", "healthy", qps=0.0, service_time_median_s=0.5, service_time_sigma=0.0,
                    min_provisioned_concurrency=1, max_provisioned_concurrency=1, max_queue_per_concurrency=1.0,
                    error_4xx_ratio=0.0)
    statuses: list[int] = []
    with SimulatorServer(ws) as server:
        def invoke() -> None:
            r = requests.post(f"{server.url}/serving-endpoints/one-server/invocations", json={"inputs": [[1], [2]]},
                              headers={"Authorization": f"Bearer {DEMO_TOKEN}"}, timeout=10)
            statuses.append(r.status_code)
            if r.status_code == 200:
                assert r.json() == {"predictions": [0.0, 0.0]}

        threads = [threading.Thread(target=invoke) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # One served, one queued behind it, the third finds the queue full.
        assert sorted(statuses) == [200, 200, 429]
        ws.advance(1)
        text = requests.get(f"{server.url}/api/2.0/serving-endpoints/one-server/metrics",
                            headers={"Authorization": f"Bearer {DEMO_TOKEN}"}, timeout=10).text
    values = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert values["request_count_total"] == 3
    assert values["request_4xx_count_total"] == 1
    assert values["request_latency_ms_count"] == 2
    assert values["request_latency_ms_sum"] == pytest.approx(500 + 1000, abs=60)  # the queued one waited 0.5 s
    assert values["provisioned_concurrent_requests_total"] == 1


def test_a_full_simulated_queue_in_the_metrics_answers_429():
    from exporter.simulator import build_demo_workspace

    ws = build_demo_workspace()
    with SimulatorServer(ws) as server:
        r = requests.post(f"{server.url}/serving-endpoints/recommender/invocations", json={"inputs": [1]},
                          headers={"Authorization": f"Bearer {DEMO_TOKEN}"}, timeout=10)
    assert r.status_code == 429 and r.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED"


# -- end to end --------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_knee_and_recommendation_match_the_simulated_capacity(simulator, workspace, payload, tmp_path):
    """C servers of mean service time S carry C/S requests per second: the knee must be there, and the
    recommended concurrency is C plus the headroom of `recommend`. OAuth M2M tokens live 2 s, so the run
    refreshes them."""
    requests.put(f"{simulator.url}/simulator/v1/settings", json={"token_lifetime_s": 2}, timeout=10).raise_for_status()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "SERVING_EXPORTER_"))}
    env.update(DATABRICKS_HOST=simulator.url, DATABRICKS_CLIENT_ID=DEMO_CLIENT_ID, DATABRICKS_CLIENT_SECRET=DEMO_CLIENT_SECRET,
               HOME=str(tmp_path), SERVING_EXPORTER_TARGETS__LATENCY_P50_SECONDS="null",
               SERVING_EXPORTER_TARGETS__LATENCY_P90_SECONDS="null", SERVING_EXPORTER_TARGETS__LATENCY_P99_SECONDS="0.4")
    out = tmp_path / "report"
    tokens_before = workspace.requests_of("token")
    # 2, 5, 8, 11 clients fit C servers plus their queue of 2C (P99 about 3 S); 14 overflow it into 429s.
    proc = subprocess.run([sys.executable, "-m", "exporter", "loadtest", "capacity-4", "--payload", str(payload),
                           "--start-users", "2", "--step-users", "3", "--max-users", "14", "--step-seconds", "2",
                           "--out", str(out), "--yes"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert DEMO_CLIENT_SECRET not in proc.stdout + proc.stderr

    report = json.loads((out / "report.json").read_text())
    knee = report["knee"]
    assert knee["rps"] == pytest.approx(C / S_MEAN, rel=0.15)
    assert knee["users"] >= C  # the knee is at saturation, not before it
    rec = report["recommendation"]
    assert rec["required_concurrency"] == pytest.approx(C, rel=0.15)
    assert rec["max_concurrency"] == pytest.approx(C * (1 + HEADROOM), rel=0.15)
    # Client concurrency against server concurrency: below C every client is served, beyond it C servers are busy.
    first, last = report["steps"][0], report["steps"][-1]
    assert first["server_concurrency"] == pytest.approx(2, rel=0.15)
    assert last["server_concurrency"] == pytest.approx(C, rel=0.15)
    assert "HTTP 401" not in report["locust"]["errors"]  # the OAuth token was refreshed in time
    assert workspace.requests_of("token") - tokens_before >= 3

    rows = list(csv.DictReader((out / "steps.csv").open()))
    assert [int(r["clients"]) for r in rows] == [s["users"] for s in report["steps"]]
    assert (out / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (out / "report.txt").read_text()
    assert "<- knee" in text and "recommended provisioned concurrency" in text and text in proc.stdout

    # The endpoint's own metrics count every invocation, as the exporter would read them.
    workspace.advance(1)
    body, _ = workspace.metrics("capacity-4")
    values = {s.name: s.value for f in text_string_to_metric_families(body.decode()) for s in f.samples}
    assert values["request_count_total"] == workspace.requests_of("invocations")
    assert values["request_4xx_count_total"] > 0  # the 429s of the last step
