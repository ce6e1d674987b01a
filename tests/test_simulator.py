"""The demo workspace simulator: REST shapes, metrics text, traffic coherence, faults, auth."""

from __future__ import annotations

import time

import pytest
import requests
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from exporter.simulator import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_TOKEN,
    PRESETS,
    Scenario,
    SimulatorServer,
    Workspace,
    build_demo_workspace,
    build_synthetic_workspace,
)

from .conftest import FakeClock

DEMO = ["fraud-scorer", "recommender", "support-chat", "doc-embedder", "search-ranker",
        "vision-classifier", "batch-scorer"]
BUCKET_BOUNDS = ["5.0", "10.0", "25.0", "50.0", "100.0", "250.0", "500.0", "1000.0", "2500.0",
                 "5000.0", "10000.0", "30000.0", "60000.0", "120000.0", "300000.0", "600000.0",
                 "+Inf"]
AUTH = {"Authorization": f"Bearer {DEMO_TOKEN}"}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ws(clock: FakeClock) -> Workspace:
    # A frozen clock: simulated minutes move only when a test advances them.
    return build_demo_workspace(clock=clock)


@pytest.fixture
def server(ws: Workspace):
    with SimulatorServer(ws) as s:
        yield s


def get(server: SimulatorServer, path: str, headers=AUTH, timeout: float = 10
        ) -> requests.Response:
    return requests.get(server.url + path, headers=headers, timeout=timeout)


def control(server: SimulatorServer, method: str, path: str, body=None) -> requests.Response:
    return requests.request(method, f"{server.url}/simulator/v1{path}", json=body, timeout=10)


def metrics(server: SimulatorServer, name: str) -> requests.Response:
    return get(server, f"/api/2.0/serving-endpoints/{name}/metrics")


def families(response: requests.Response) -> dict:
    parse = parse_openmetrics if "openmetrics" in response.headers["Content-Type"] else parse_text
    return {f.name: f for f in parse(response.text)}


def value(fams: dict, name: str) -> float:
    """Sum of a family's samples named `name` (over entities, when labelled per entity)."""
    family = name.rsplit("_", 1)[0] if name.endswith(("_sum", "_count")) else name
    return sum(s.value for s in fams[family].samples if s.name == name)


# -- REST shapes ---------------------------------------------------------------------------------
def test_list_shape(server: SimulatorServer) -> None:
    response = get(server, "/api/2.0/serving-endpoints")
    assert response.status_code == 200
    endpoints = response.json()["endpoints"]
    assert [e["name"] for e in endpoints] == DEMO
    for e in endpoints:
        assert set(e) == {"name", "id", "creator", "creation_timestamp", "last_updated_timestamp",
                          "state", "tags", "task", "config"}
        assert len(e["id"]) == 32 and int(e["id"], 16) >= 0
        assert e["state"] == {"ready": "READY", "config_update": "NOT_UPDATING"}
        for entity in e["config"]["served_entities"]:  # no workload or scaling fields in the list
            assert set(entity) == {"name", "entity_name", "entity_version"}
    by_name = {e["name"]: e for e in endpoints}
    assert {"key": "env", "value": "production"} in by_name["batch-scorer"]["tags"]
    assert by_name["support-chat"]["task"] == "llm/v1/chat"


def test_detail_shape(server: SimulatorServer) -> None:
    chat = get(server, "/api/2.0/serving-endpoints/support-chat").json()
    assert chat["permission_level"] == "CAN_MANAGE"
    assert chat["route_optimized"] is False and "endpoint_url" not in chat
    entities = chat["config"]["served_entities"]
    assert [e["name"] for e in entities] == ["support-chat-v3", "support-chat-v4"]
    for e in entities:
        assert e["workload_type"] == "GPU_MEDIUM" and e["workload_size"] == "Medium"
        assert {"scale_to_zero_enabled", "min_provisioned_concurrency",
                "max_provisioned_concurrency"} <= set(e)
        assert e["state"]["deployment"] == "DEPLOYMENT_READY"
    assert chat["config"]["traffic_config"]["routes"] == [
        {"served_model_name": "support-chat-v3", "traffic_percentage": 90},
        {"served_model_name": "support-chat-v4", "traffic_percentage": 10}]
    assert chat["config"]["config_version"] >= 1
    assert "ai_gateway" not in chat  # no rate limit unless the scenario sets one

    fraud = get(server, "/api/2.0/serving-endpoints/fraud-scorer").json()
    assert fraud["route_optimized"] is True and fraud["endpoint_url"].startswith("https://")
    batch = get(server, "/api/2.0/serving-endpoints/batch-scorer").json()
    assert batch["config"]["served_entities"][0]["scale_to_zero_enabled"] is True


# -- metrics text ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", DEMO)
def test_metrics_text_parses(server: SimulatorServer, ws: Workspace, name: str) -> None:
    response = metrics(server, name)
    assert response.status_code == 200
    scenario = ws.scenario(name)
    if scenario.openmetrics:
        assert response.headers["Content-Type"] == (
            "application/openmetrics-text; version=1.0.0; charset=utf-8")
        assert response.text.endswith("# EOF\n")
    else:
        assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    fams = families(response)
    assert {"request_count_total", "request_4xx_count_total", "request_5xx_count_total",
            "request_latency_ms", "cpu_usage_percentage", "mem_usage_percentage",
            "provisioned_concurrent_requests_total"} <= set(fams)
    assert fams["request_count_total"].type == "gauge"

    expected_ts = ws.timestamp_ms(ws.current_minute) / 1000 if scenario.timestamps else None
    for family in fams.values():
        for sample in family.samples:
            assert sample.labels["workspaceId"] == "1234567890123456"
            ts = sample.timestamp
            assert (float(ts) if ts is not None else None) == expected_ts

    # Histograms: the documented bounds, monotonic buckets, +Inf equal to _count.
    for hist in ("request_latency_ms", "model_queue_time_ms"):
        if hist not in fams:
            continue
        series: dict = {}
        for s in fams[hist].samples:
            key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
            series.setdefault(key, {"buckets": []})
            if s.name.endswith("_bucket"):
                series[key]["buckets"].append((s.labels["le"], s.value))
            else:
                series[key][s.name.rsplit("_", 1)[1]] = s.value
        for h in series.values():
            bounds = [le for le, _ in h["buckets"]]
            assert [float(b) for b in bounds] == [float(b) for b in BUCKET_BOUNDS]
            counts = [n for _, n in h["buckets"]]
            assert counts == sorted(counts) and counts[-1] == h["count"]


def test_entity_label_series(server: SimulatorServer) -> None:
    fams = families(metrics(server, "support-chat"))
    for name in ("request_count_total", "request_latency_ms", "cpu_usage_percentage",
                 "mem_usage_percentage", "provisioned_concurrent_requests_total"):
        labels = {s.labels.get("served_model_name") for s in fams[name].samples}
        assert labels == {"support-chat-v3", "support-chat-v4"}, name  # no unlabelled duplicate
    # Endpoint-level only when no entity label is configured.
    fams = families(metrics(server, "fraud-scorer"))
    assert [s.labels for s in fams["request_count_total"].samples] == [
        {"workspaceId": "1234567890123456"}]


def test_format_variants(ws: Workspace, server: SimulatorServer) -> None:
    vision = metrics(server, "vision-classifier").text
    assert "gpu_mem_usage_percentage{" in vision and "gpu_usage_percentage{" in vision
    assert "gpu_" not in metrics(server, "fraud-scorer").text
    ws.patch_scenario("fraud-scorer", memory_as_fraction=True)
    ws.advance(1)
    assert 0 < value(families(metrics(server, "fraud-scorer")), "mem_usage_percentage") <= 1


def test_cumulative_histogram_never_decreases(ws: Workspace, server: SimulatorServer) -> None:
    counts = []
    for _ in range(4):
        counts.append(value(families(metrics(server, "vision-classifier")),
                            "request_latency_ms_count"))
        ws.advance(1)
    assert counts == sorted(counts) and counts[-1] > counts[0]
    # A per-minute endpoint reports roughly one minute of requests.
    fams = families(metrics(server, "fraud-scorer"))
    assert value(fams, "request_latency_ms_count") == pytest.approx(
        value(fams, "request_count_total"), abs=1)


# -- traffic coherence -------------------------------------------------------------------------
def test_healthy_has_no_queue_or_5xx(ws: Workspace) -> None:
    for minute in range(-10, 20):
        if minute > ws.current_minute:
            ws.advance(1)
        m = ws.minute("fraud-scorer").total()
        assert m.rejected_429 == 0 and m.wait_ms == 0 and m.count_5xx == 0
        assert m.latency.count == m.requests > 0
        assert m.count_4xx <= 0.005 * m.requests + 1


def test_queueing_has_429_and_queue_wait(server: SimulatorServer) -> None:
    fams = families(metrics(server, "recommender"))
    requests_, errors_4xx = value(fams, "request_count_total"), value(fams, "request_4xx_count_total")
    assert 0.02 < errors_4xx / requests_ < 0.2
    assert value(fams, "model_queue_time_ms_sum") / value(fams, "model_queue_time_ms_count") > 50
    # Latency counts served requests only: 429s are rejected before reaching the model.
    assert value(fams, "request_latency_ms_count") < requests_
    assert value(fams, "provisioned_concurrent_requests_total") == 12
    assert "served_entity" in fams["request_count_total"].samples[0].labels


def test_error_burst_ratio(ws: Workspace) -> None:
    total = errors = 0
    for _ in range(10):
        m = ws.minute("support-chat").total()
        total, errors = total + m.requests, errors + m.count_5xx
        ws.advance(1)
    assert errors / total == pytest.approx(0.04, abs=0.015)
    # The burst sits on the canary only.
    v3, v4 = ws.minute("support-chat").entities
    assert v3.count_5xx == 0 and v4.count_5xx > 0


def test_cpu_follows_load(ws: Workspace) -> None:
    ws.patch_scenario("fraud-scorer", min_provisioned_concurrency=8,
                      max_provisioned_concurrency=8, qps_variation=0.0)
    ws.advance(1)
    low = ws.minute("fraud-scorer").total().cpu_percent
    ws.patch_scenario("fraud-scorer", qps=160.0)
    ws.advance(1)
    high = ws.minute("fraud-scorer").total().cpu_percent
    assert high > low + 25
    ws.patch_scenario("fraud-scorer", qps=1000.0)  # far past capacity: pinned at 100% busy
    ws.advance(2)
    assert ws.minute("fraud-scorer").total().cpu_percent >= 88


def test_saturated_gpu_idle_and_scale_to_zero_presets(ws: Workspace) -> None:
    doc = ws.minute("doc-embedder").total()
    assert doc.cpu_percent >= 88 and doc.memory_percent >= 80 and doc.provisioned == 8
    vision = ws.minute("vision-classifier").total()
    assert vision.gpu_percent < 10 and vision.gpu_memory_percent == pytest.approx(20, abs=1)
    seen = set()
    for _ in range(30):  # one period of the traffic wave
        m = ws.minute("batch-scorer").total()
        seen.add(m.provisioned == 0)
        if m.provisioned == 0:
            assert m.requests == 0
        ws.advance(1)
    assert seen == {True, False}


def test_autoscaling_lag(ws: Workspace) -> None:
    ws.patch_scenario("fraud-scorer", qps=2000.0, max_provisioned_concurrency=256)
    minutes = []
    for _ in range(6):
        ws.advance(1)
        minutes.append(ws.minute("fraud-scorer").total())
    assert [m.provisioned for m in minutes[:4]] == [8, 16, 32, 64]  # at most x2 per minute
    assert minutes[0].rejected_429 > 0  # the queue overflows until capacity catches up
    assert minutes[-1].rejected_429 == 0 and minutes[-1].wait_ms == 0


def test_scenario_change_via_control_api(ws: Workspace, server: SimulatorServer) -> None:
    before = get(server, "/api/2.0/serving-endpoints/fraud-scorer").json()
    response = control(server, "PUT", "/endpoints/fraud-scorer/scenario", {"preset": "queueing"})
    assert response.status_code == 200
    assert response.json()["effective_from_minute"] == ws.current_minute + 1
    # The published minute does not change retroactively.
    assert value(families(metrics(server, "fraud-scorer")), "request_4xx_count_total") < 10
    assert control(server, "POST", "/advance", {"minutes": 2}).json()["current_minute"] == 1
    fams = families(metrics(server, "fraud-scorer"))
    assert value(fams, "request_4xx_count_total") > 100
    assert value(fams, "provisioned_concurrent_requests_total") == 12
    assert fams["request_count_total"].samples[0].labels == {"workspaceId": "1234567890123456"}
    after = get(server, "/api/2.0/serving-endpoints/fraud-scorer").json()
    assert after["last_updated_timestamp"] > before["last_updated_timestamp"]
    assert after["config"]["config_version"] == before["config"]["config_version"] + 1
    assert {"key": "env", "value": "production"} in after["tags"]  # kept across the preset swap

    patch = control(server, "POST", "/endpoints/fraud-scorer/scenario", {"error_5xx_ratio": 0.5})
    assert patch.json()["scenario"]["emit_queue_time"] is True
    ws.advance(1)
    fams = families(metrics(server, "fraud-scorer"))
    assert value(fams, "request_5xx_count_total") > 0.3 * value(fams, "request_count_total")

    bad = control(server, "PUT", "/endpoints/fraud-scorer/scenario", {"no_such_field": 1})
    assert bad.status_code == 400 and bad.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert control(server, "PUT", "/endpoints/fraud-scorer/scenario",
                   {"preset": "nope"}).status_code == 400


def test_an_ai_gateway_rate_limit_shows_in_the_detail(ws: Workspace, server: SimulatorServer) -> None:
    before = get(server, "/api/2.0/serving-endpoints/support-chat").json()
    assert control(server, "POST", "/endpoints/support-chat/scenario",
                   {"rate_limit_calls_per_minute": 120}).status_code == 200
    after = get(server, "/api/2.0/serving-endpoints/support-chat").json()
    assert after["ai_gateway"] == {"rate_limits": [{"calls": 120, "key": "endpoint", "renewal_period": "minute"}]}
    assert after["last_updated_timestamp"] > before["last_updated_timestamp"]  # so the exporter re-reads the detail


def test_create_and_delete(ws: Workspace, server: SimulatorServer) -> None:
    created = control(server, "POST", "/endpoints",
                      {"name": "new-model", "preset": "gpu_idle", "openmetrics": True})
    assert created.status_code == 200
    assert control(server, "POST", "/endpoints", {"name": "new-model"}).status_code == 409
    response = metrics(server, "new-model")
    assert response.status_code == 200 and "gpu_usage_percentage" in families(response)

    assert control(server, "DELETE", "/endpoints/recommender").status_code == 200
    gone = metrics(server, "recommender")
    assert gone.status_code == 404 and gone.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert get(server, "/api/2.0/serving-endpoints/recommender").status_code == 404
    names = [e["name"] for e in get(server, "/api/2.0/serving-endpoints").json()["endpoints"]]
    assert "recommender" not in names and "new-model" in names
    state = control(server, "GET", "/endpoints").json()
    assert {e["name"] for e in state["endpoints"]} == set(names)
    assert control(server, "DELETE", "/endpoints/recommender").status_code == 404


# -- faults ------------------------------------------------------------------------------------------
def test_faults(server: SimulatorServer) -> None:
    def fault(**body) -> None:
        assert control(server, "POST", "/endpoints/fraud-scorer/fault", body).status_code == 200

    fault(kind="http_500")
    response = metrics(server, "fraud-scorer")
    assert response.status_code == 500 and response.json()["error_code"] == "INTERNAL_ERROR"

    fault(kind="http_429", retry_after=7)
    response = metrics(server, "fraud-scorer")
    assert response.status_code == 429 and response.headers["Retry-After"] == "7"
    assert response.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED"

    fault(kind="http_403")
    assert metrics(server, "fraud-scorer").status_code == 403

    fault(kind="garbage")
    response = metrics(server, "fraud-scorer")
    assert response.status_code == 200
    with pytest.raises(ValueError):
        list(parse_text(response.content.decode("utf-8", "replace")))

    fault(kind="empty")
    response = metrics(server, "fraud-scorer")
    assert response.status_code == 200 and response.content == b""

    fault(kind="timeout", delay_s=0.3)
    started = time.monotonic()
    assert metrics(server, "fraud-scorer").status_code == 200
    assert time.monotonic() - started >= 0.3
    with pytest.raises(requests.Timeout):
        get(server, "/api/2.0/serving-endpoints/fraud-scorer/metrics", timeout=0.1)

    fault(kind="none")
    assert metrics(server, "fraud-scorer").status_code == 200
    assert metrics(server, "recommender").status_code == 200  # faults are per endpoint
    assert control(server, "POST", "/endpoints/fraud-scorer/fault",
                   {"kind": "explode"}).status_code == 400


# -- auth ----------------------------------------------------------------------------------------------
def test_auth_tokens(ws: Workspace, server: SimulatorServer, clock: FakeClock) -> None:
    assert get(server, "/api/2.0/serving-endpoints", headers={}).status_code == 401
    bad = get(server, "/api/2.0/serving-endpoints", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401 and bad.json() == {
        "error_code": "UNAUTHENTICATED", "message": "Invalid access token."}
    assert metrics(server, "fraud-scorer").status_code == 200

    token_url = server.url + "/oidc/v1/token"
    form = {"grant_type": "client_credentials", "scope": "all-apis"}
    basic = requests.post(token_url, data=form, auth=(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET))
    assert basic.status_code == 200
    grant = basic.json()
    assert grant["token_type"] == "Bearer" and grant["expires_in"] == 3600
    assert grant["scope"] == "all-apis"
    in_form = requests.post(token_url, data={**form, "client_id": DEMO_CLIENT_ID,
                                             "client_secret": DEMO_CLIENT_SECRET})
    assert in_form.status_code == 200
    denied = requests.post(token_url, data=form, auth=(DEMO_CLIENT_ID, "wrong"))
    assert denied.status_code == 401
    assert denied.headers["Content-Type"].startswith("application/json")
    assert denied.json()["error"] == "invalid_client"

    bearer = {"Authorization": f"Bearer {grant['access_token']}"}
    assert get(server, "/api/2.0/serving-endpoints", headers=bearer).status_code == 200
    assert control(server, "POST", "/tokens/revoke").status_code == 200
    assert get(server, "/api/2.0/serving-endpoints", headers=bearer).status_code == 401
    assert get(server, "/api/2.0/serving-endpoints").status_code == 200  # the PAT still works

    assert control(server, "PUT", "/settings", {"token_lifetime_s": 5}).status_code == 200
    short = requests.post(token_url, data=form, auth=(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)).json()
    assert short["expires_in"] == 5
    bearer = {"Authorization": f"Bearer {short['access_token']}"}
    assert get(server, "/api/2.0/serving-endpoints", headers=bearer).status_code == 200
    clock.now += 6
    assert get(server, "/api/2.0/serving-endpoints", headers=bearer).status_code == 401

    assert ws.request_counts[("token", None)] == 4
    assert ws.request_counts[("metrics", "fraud-scorer")] == 1
    assert ws.requests_of("list") == 7


def test_discovery_documents(server: SimulatorServer) -> None:
    config = get(server, "/.well-known/databricks-config", headers={}).json()
    assert config == {"oidc_endpoint": server.url + "/oidc", "workspace_id": "1234567890123456",
                      "cloud": "aws"}
    oidc = get(server, "/oidc/.well-known/oauth-authorization-server", headers={}).json()
    assert oidc["token_endpoint"] == server.url + "/oidc/v1/token"
    assert oidc["issuer"] == server.url + "/oidc"


def test_sdk_with_personal_access_token(server: SimulatorServer) -> None:
    from databricks.sdk import WorkspaceClient

    client = WorkspaceClient(host=server.url, token=DEMO_TOKEN)
    listed = client.api_client.do("GET", "/api/2.0/serving-endpoints")
    assert [e["name"] for e in listed["endpoints"]] == DEMO
    detail = client.serving_endpoints.get("recommender")
    assert detail.config.served_entities[0].max_provisioned_concurrency == 12
    text = client.serving_endpoints.export_metrics("fraud-scorer").contents.read().decode()
    assert "request_count_total" in text


def test_sdk_with_oauth_m2m(ws: Workspace, server: SimulatorServer) -> None:
    from databricks.sdk import WorkspaceClient

    client = WorkspaceClient(host=server.url, client_id=DEMO_CLIENT_ID,
                             client_secret=DEMO_CLIENT_SECRET, auth_type="oauth-m2m")
    listed = client.api_client.do("GET", "/api/2.0/serving-endpoints")
    assert len(listed["endpoints"]) == len(DEMO)
    assert ws.requests_of("token") >= 1


# -- determinism and scale ---------------------------------------------------------------------
def test_same_seed_same_text() -> None:
    def bodies(seed: int) -> list[bytes]:
        ws = build_demo_workspace(seed=seed, clock=FakeClock())
        ws.advance(3)
        return [ws.metrics(name)[0] for name in DEMO]

    assert bodies(7) == bodies(7)
    assert bodies(7) != bodies(8)


def test_generation_independent_of_poll_pattern(clock: FakeClock) -> None:
    polled, skipped = build_demo_workspace(clock=clock), build_demo_workspace(clock=clock)
    for _ in range(5):
        polled.metrics("recommender")
        polled.advance(1)
        skipped.advance(1)
    polled.patch_scenario("recommender", qps=40.0)
    skipped.patch_scenario("recommender", qps=40.0)
    polled.advance(2)
    skipped.advance(2)
    assert polled.metrics("recommender") == skipped.metrics("recommender")


def test_synthetic_workspace_is_fast(clock: FakeClock) -> None:
    ws = build_synthetic_workspace(1000, clock=clock)
    names = ws.names()
    assert len(names) == 1000 and names[0] == "synthetic-0000" and names[-1] == "synthetic-0999"
    assert ws.scenario("synthetic-0001") == PRESETS[list(PRESETS)[1]]
    for name in names:  # catch up the history first
        ws.minute(name)
    ws.advance(1)
    started = time.perf_counter()
    for name in names:
        ws.metrics(name)
    assert time.perf_counter() - started < 1.0


def test_scenario_validation() -> None:
    with pytest.raises(ValueError):
        Scenario(entity_label="model")
    with pytest.raises(ValueError):
        Scenario(served_entities=[("a", 60), ("b", 30)])
    with pytest.raises(ValueError):
        Scenario(min_provisioned_concurrency=8, max_provisioned_concurrency=4)
    with pytest.raises(ValueError):
        Scenario(entity_overrides={"a": {"qps": 1.0}})
    with pytest.raises(ValueError):
        Scenario(rate_limit_calls_per_minute=-1)
    assert Scenario().with_preset("gpu_idle", openmetrics=True).openmetrics is True
    chat = build_demo_workspace(clock=FakeClock()).scenario("support-chat")
    assert Scenario(**chat.to_dict()) == chat  # the control API's JSON round-trips


@pytest.mark.parametrize("openmetrics", [False, True])
@pytest.mark.parametrize("entity_label", [None, "served_entity", "entity_name"])
@pytest.mark.parametrize("cumulative", [False, True])
def test_format_combinations_parse(openmetrics: bool, entity_label: str | None,
                                   cumulative: bool, clock: FakeClock) -> None:
    ws = Workspace(clock=clock)
    ws.add_endpoint("combo", "gpu_idle", openmetrics=openmetrics, entity_label=entity_label,
                    cumulative_histogram=cumulative, emit_queue_time=True,
                    served_entities=[("combo-a", 70), ("combo-b", 30)])
    body, content_type = ws.metrics("combo")
    parse = parse_openmetrics if openmetrics else parse_text
    fams = {f.name: f for f in parse(body.decode())}
    assert ("openmetrics" in content_type) is openmetrics
    assert {"model_queue_time_ms", "gpu_usage_percentage", "gpu_memory_usage_percentage"} <= set(fams)
    entities = {s.labels.get(entity_label) for s in fams["request_count_total"].samples}
    assert entities == ({"combo-a", "combo-b"} if entity_label else {None})
