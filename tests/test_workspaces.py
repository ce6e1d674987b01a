"""Several Databricks workspaces in one daemon: the `workspaces:` settings, and two simulated workspaces with
endpoints of the same names polled side by side over real HTTP, one of them then failing."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from exporter.commands import build_sinks, build_source
from exporter.config import ConfigError, load_settings
from exporter.daemon import Daemon
from exporter.simulator import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_TOKEN, SimulatorServer, build_demo_workspace
from exporter.sources.databricks.settings import WorkspaceSettings

from .alerting import wait_for
from .fake_datadog import FakeDatadog
from .fake_datadog import no_datadog_environment  # noqa: F401 (an autouse fixture)


def settings_with(workspaces: list, **more: object):
    return load_settings(overrides={"workspaces": workspaces, **more})


# -- settings -----------------------------------------------------------------------------------


def test_workspaces_name_their_credentials_by_reference():
    s = settings_with([{"name": "east", "host": "https://east.example.com", "token_env": "EAST_TOKEN"},
                       {"name": "west", "profile": "west"},
                       {"name": "eu-1", "host": "https://eu.example.com", "client_id_env": "EU_ID",
                        "client_secret_env": "EU_SECRET"}])
    assert [w.name for w in s.workspaces] == ["east", "west", "eu-1"]
    environ = {"EAST_TOKEN": "dapi-east", "EU_ID": "id-eu", "EU_SECRET": "secret-eu"}
    assert s.workspaces[0].auth(environ) == {"host": "https://east.example.com", "token": "dapi-east", "auth_type": "pat"}
    assert s.workspaces[1].auth(environ) == {"host": None, "profile": "west"}
    assert s.workspaces[2].auth(environ) == {"host": "https://eu.example.com", "client_id": "id-eu",
                                             "client_secret": "secret-eu", "auth_type": "oauth-m2m"}


def test_an_unset_variable_is_named_and_no_value_is_shown():
    w = WorkspaceSettings(name="east", host="https://east.example.com", token_env="EAST_TOKEN")
    with pytest.raises(ValueError, match="environment variable EAST_TOKEN is not set"):
        w.auth({"OTHER": "dapi-secret-value"})


@pytest.mark.parametrize("entry, message", [
    ({"name": "east", "host": "https://e", "token": "dapi-123"}, "credentials are never written in the configuration"),
    ({"name": "east", "host": "https://e", "client_secret": "s"}, "credentials are never written in the configuration"),
    ({"name": "east", "host": "https://e", "token_env": "T", "colour": "blue"}, "unknown key"),
    ({"name": "east", "host": "https://e"}, "exactly one of profile, token_env or client_id_env"),
    ({"name": "east", "host": "https://e", "token_env": "T", "profile": "p"}, "exactly one of"),
    ({"name": "east", "host": "https://e", "client_id_env": "ID"}, "client_id_env and client_secret_env go together"),
    ({"name": "east", "token_env": "T"}, "host is required"),
    ({"name": "East Coast", "host": "https://e", "token_env": "T"}, "workspaces.0.name"),
    ({"name": "east", "host": "https://e", "token_env": "dapi-123 secret"}, "workspaces.0.token_env"),
])
def test_bad_workspace_entries_are_refused_clearly(entry, message):
    with pytest.raises(ConfigError) as err:
        settings_with([entry])
    assert message in str(err.value)
    assert "dapi-123" not in str(err.value).replace("'dapi-123 secret'", "")  # a literal secret is never echoed


def test_names_are_unique_and_one_workspace_style_at_a_time():
    with pytest.raises(ConfigError, match="names must be unique.*east repeated"):
        settings_with([{"name": "east", "host": "https://a", "token_env": "A"},
                       {"name": "east", "host": "https://b", "token_env": "B"}])
    with pytest.raises(ConfigError, match="not both"):
        settings_with([{"name": "east", "host": "https://a", "token_env": "A"}], databricks={"host": "https://x"})


def test_workspaces_from_the_environment_as_json(monkeypatch):
    monkeypatch.setenv("SERVING_EXPORTER_WORKSPACES", '[{"name": "east", "host": "https://a", "token_env": "A"}]')
    assert [w.name for w in load_settings().workspaces] == ["east"]


def test_one_source_per_workspace_and_the_single_workspace_unchanged():
    s = settings_with([{"name": "east", "host": "https://a", "token_env": "A"},
                       {"name": "west", "host": "https://b", "token_env": "B"}])
    source = build_source(s, environ={})
    assert [child.workspace for child in source.sources] == ["east", "west"]  # type: ignore[attr-defined]
    assert source.workspace is None  # several: each endpoint names its own
    single = build_source(load_settings(overrides={"databricks": {"host": "https://adb-1.example.com"}}), environ={})
    assert type(single).__name__ == "DatabricksSource" and single.workspace is None  # the host, once connected


# -- two simulated workspaces in one daemon -----------------------------------------------------


class TwoWorkspaces:
    """Two demo workspaces (the same endpoint names in both) as `east` (PAT) and `west` (OAuth M2M), each with
    its credentials in its own environment variables, polled by one daemon with a Datadog sink."""

    def __init__(self, fake: FakeDatadog, monkeypatch: pytest.MonkeyPatch):
        self.east_ws = build_demo_workspace(minute_seconds=1.0)
        self.west_ws = build_demo_workspace(minute_seconds=1.0)
        self.east = SimulatorServer(self.east_ws).start()
        self.west = SimulatorServer(self.west_ws).start()
        environ = {"EAST_TOKEN": DEMO_TOKEN, "WEST_ID": DEMO_CLIENT_ID, "WEST_SECRET": DEMO_CLIENT_SECRET}
        monkeypatch.setenv("DD_API_KEY", fake.api_key)
        monkeypatch.setenv("SERVING_EXPORTER_DATADOG_URL", fake.url)
        self.settings = load_settings(overrides=dict(
            listen="127.0.0.1:0", poll_interval_seconds=1, request_timeout_seconds=2, retry_budget_seconds=1,
            max_concurrent_requests=8, datadog={"request_timeout_seconds": 0.5, "shutdown_flush_seconds": 1},
            workspaces=[{"name": "east", "host": self.east.url, "token_env": "EAST_TOKEN"},
                        {"name": "west", "host": self.west.url, "client_id_env": "WEST_ID",
                         "client_secret_env": "WEST_SECRET"}]))
        self.daemon = Daemon(self.settings, build_source(self.settings, environ), sinks=build_sinks(self.settings),
                             minute_clock=lambda: self.east_ws.timestamp_ms(self.east_ws.current_minute) / 1000)

    def scrape(self) -> dict[tuple[str, frozenset], float]:
        text = requests.get(f"{self.daemon.url}/metrics", timeout=5).text
        return {(s.name, frozenset(s.labels.items())): s.value
                for fam in text_string_to_metric_families(text) for s in fam.samples}

    def value(self, name: str, **labels: str) -> float | None:
        return self.scrape().get((name, frozenset(labels.items())))

    def stop(self) -> None:
        self.daemon.stop()
        self.east.stop()
        self.west.stop()


@pytest.fixture
def two(monkeypatch: pytest.MonkeyPatch) -> Iterator[TwoWorkspaces]:
    with FakeDatadog() as fake:
        stack = TwoWorkspaces(fake, monkeypatch)
        stack.fake = fake  # type: ignore[attr-defined]
        stack.daemon.start()
        try:
            yield stack
        finally:
            stack.stop()


@pytest.mark.integration
def test_two_workspaces_show_both_and_survive_one_failing(two: TwoWorkspaces, caplog):
    caplog.set_level(logging.INFO)
    qps = "model_serving_requests_per_second"

    def both_have_figures() -> bool:
        samples = two.scrape()
        return all((qps, frozenset({"workspace": w, "serving_endpoint": "recommender", "served_entity": ""}.items()))
                   in samples for w in ("east", "west"))

    wait_for(both_have_figures, 30, what="recommender's figures from both workspaces")
    # /metrics: the namesakes are two series, told apart by `workspace`; API usage is counted per workspace.
    for w in ("east", "west"):
        assert two.value("model_serving_exporter_up", workspace=w, serving_endpoint="recommender") == 1.0
        assert two.value("model_serving_exporter_api_requests_total", workspace=w, call="list", outcome="2xx") >= 1
        # Limits are per workspace: each one's standard endpoints (the demo's seven less its route-optimized one)
        # are summed apart, never the two workspaces together (12).
        assert two.value("model_serving_workspace_standard_endpoints", workspace=w, shard_index="0") == 6.0
    # The JSON API: each endpoint with its workspace.
    doc = requests.get(f"{two.daemon.url}/api/v1/endpoints", timeout=5).json()
    named = sorted((e["workspace"], e["name"]) for e in doc["endpoints"] if e["name"] == "recommender")
    assert named == [("east", "recommender"), ("west", "recommender")] and doc["workspace"] is None
    # The status page: both rows, and unambiguous links (a bare name shared by two workspaces is not guessed).
    fleet = requests.get(two.daemon.url + "/", timeout=5).text
    assert 'data-endpoint="recommender" data-workspace="east"' in fleet
    assert 'href="/endpoints/recommender?workspace=west"' in fleet
    assert '<dd id="workspaces">east, west</dd>' in fleet
    page = requests.get(two.daemon.url + "/endpoints/recommender?workspace=west", timeout=5)
    assert page.status_code == 200 and '<span id="workspace">west</span>' in page.text
    assert requests.get(two.daemon.url + "/endpoints/recommender", timeout=5).status_code == 404
    # Datadog: each endpoint's points tagged with its own workspace.
    fake: FakeDatadog = two.fake  # type: ignore[attr-defined]

    def tagged(w: str) -> bool:
        return any("endpoint:recommender" in tags and f"workspace:{w}" in tags for _, _, _, _, tags in fake.points())

    wait_for(lambda: tagged("east") and tagged("west"), 30, what="Datadog points of both workspaces")

    # West goes away: its endpoints stay, down, with their figures; east polls on.
    two.west.stop()
    west_up = {"workspace": "west", "serving_endpoint": "recommender"}
    wait_for(lambda: two.value("model_serving_exporter_up", **west_up) == 0.0, 30, what="west's endpoints down")
    east_seen = two.value("model_serving_exporter_last_success_timestamp_seconds", workspace="east",
                          serving_endpoint="recommender")
    west_seen = two.value("model_serving_exporter_last_success_timestamp_seconds", **west_up)
    wait_for(lambda: two.value("model_serving_exporter_last_success_timestamp_seconds", workspace="east",
                               serving_endpoint="recommender") > east_seen + 1, 30, what="east polled twice more")
    samples = two.scrape()
    assert samples[("model_serving_exporter_up", frozenset({"workspace": "east", "serving_endpoint": "recommender"}.items()))] == 1.0
    assert samples[("model_serving_exporter_last_success_timestamp_seconds", frozenset(west_up.items()))] == west_seen
    assert (qps, frozenset({**west_up, "served_entity": ""}.items())) in samples  # its window's figures stay
    assert sum(v for (name, labels), v in samples.items() if name == "model_serving_exporter_list_errors_total"
               and ("workspace", "west") in labels) >= 1
    assert not any(name == "model_serving_exporter_list_errors_total" and ("workspace", "east") in labels
                   for name, labels in samples)
    assert sum(v for (name, labels), v in samples.items() if name == "model_serving_exporter_fetch_errors_total"
               and ("workspace", "west") in labels) >= 1
    assert not any(name == "model_serving_exporter_fetch_errors_total" and ("workspace", "east") in labels
                   for name, labels in samples)
    assert any("listing the west endpoints failed" in r.getMessage() for r in caplog.records)
    doc = requests.get(f"{two.daemon.url}/api/v1/endpoints", timeout=5).json()
    status = {(e["workspace"], e["name"]): e["status"]["up"] for e in doc["endpoints"]}
    assert status[("east", "recommender")] and not status[("west", "recommender")]
    # No credential anywhere it could be read.
    exposed = requests.get(f"{two.daemon.url}/metrics", timeout=5).text + str(doc) + caplog.text
    assert DEMO_TOKEN not in exposed and DEMO_CLIENT_SECRET not in exposed


def test_a_workspace_whose_variable_is_unset_fails_alone_and_names_the_variable(caplog):
    """The credentials are read when the client is built: a missing variable is that workspace's `auth` failure,
    counted and logged with the variable's name, while the other workspace is listed and polled."""
    workspace = build_demo_workspace(minute_seconds=60.0)
    with SimulatorServer(workspace) as east:
        settings = load_settings(overrides=dict(
            request_timeout_seconds=2, retry_budget_seconds=1, poll_interval_seconds=5,
            workspaces=[{"name": "east", "host": east.url, "token_env": "EAST_TOKEN"},
                        {"name": "west", "host": east.url, "token_env": "WEST_TOKEN"}]))
        from exporter.pipeline.poller import Poller

        poller = Poller(build_source(settings, {"EAST_TOKEN": DEMO_TOKEN}), settings)
        try:
            snap = poller.poll()
        finally:
            poller.close()
    assert snap.ready and {r.info.workspace for r in snap.endpoints} == {"east"}
    assert all(r.status.up for r in snap.endpoints) and len(snap.endpoints) == 7
    assert snap.list_errors == {("west", "auth"): 1}
    assert any("environment variable WEST_TOKEN is not set" in r.getMessage() for r in caplog.records)
