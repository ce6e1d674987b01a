"""The self-hosted source over real HTTP: replicas summed, counter resets, vanished and down replicas, bad
bodies isolated per replica, polls faster and slower than a minute, the entity cap, DNS and file_sd
discovery, credentials (rotated, never leaked), the settings' validation, and the composite source."""

from __future__ import annotations

import json
import logging

import pytest
from pydantic import ValidationError

from exporter.model import EndpointInfo
from exporter.pipeline.poller import Poller
from exporter.config import Settings
from exporter.sinks.prometheus import render
from exporter.sinks.budget import SeriesBudget
from exporter.sources.base import ApiUsage, FetchError, Observation
from exporter.sources.composite import CompositeSource
from exporter.sources.selfhosted import SelfHostedSource
from exporter.sources.selfhosted.settings import SelfHostedSettings

from .selfhosted_replicas import Replicas

T0 = 6_000.0 + 5  # 5 s into a minute


def vllm(requests: float, waiting: float = 0.0, model: str = "m", extra: str = "") -> str:
    """A minimal vLLM body: finished requests, one latency bucket and the waiting gauge."""
    return (f'vllm:request_success_total{{finished_reason="stop",model_name="{model}"}} {requests}\n'
            f'vllm:e2e_request_latency_seconds_bucket{{le="1.0",model_name="{model}"}} {requests}\n'
            f'vllm:e2e_request_latency_seconds_bucket{{le="+Inf",model_name="{model}"}} {requests}\n'
            f'vllm:e2e_request_latency_seconds_sum{{model_name="{model}"}} {requests / 2}\n'
            f'vllm:e2e_request_latency_seconds_count{{model_name="{model}"}} {requests}\n'
            f'vllm:num_requests_waiting{{model_name="{model}"}} {waiting}\n' + extra)


class Clock:
    def __init__(self, now: float = T0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def source_for(endpoint: dict, clock: Clock, **kwargs) -> SelfHostedSource:  # type: ignore[no-untyped-def]
    settings = SelfHostedSettings.model_validate({"endpoints": [{"name": "ep", "kind": "vllm", **endpoint}]})
    return SelfHostedSource(settings, clock=clock, **kwargs)


@pytest.fixture
def replicas():
    with Replicas() as r:
        yield r


def test_replicas_are_summed_and_a_restarted_one_counts_its_new_value(replicas: Replicas) -> None:
    a = replicas.serve("/a", vllm(100, waiting=2))
    b = replicas.serve("/b", vllm(1000, waiting=3))
    clock = Clock()
    source = source_for({"targets": [a, b]}, clock)
    try:
        source.fetch("ep")
        replicas.serve("/a", vllm(130, waiting=1))
        replicas.serve("/b", vllm(20, waiting=4))  # restarted: 20 requests since
        clock.now += 60
        minute = source.fetch("ep").endpoint
    finally:
        source.close()
    assert minute.requests == 30 + 20
    assert minute.latency.counts == (50.0, 50.0) and minute.latency.sum == 15 + 10
    assert minute.queue_depth == 1 + 4  # gauges: the latest, summed over replicas


def test_a_down_replica_and_a_bad_body_are_left_out_and_reported(replicas: Replicas, caplog) -> None:  # type: ignore[no-untyped-def]
    a = replicas.serve("/a", vllm(100))
    b = replicas.serve("/b", vllm(100))
    c = replicas.serve("/c", vllm(100))
    clock = Clock()
    source = source_for({"targets": [a, b, c], "per_replica_concurrency": 8}, clock)
    try:
        source.fetch("ep")
        assert source.list_endpoints()[0].capacity == 24
        replicas.serve("/a", vllm(160))
        replicas.serve("/b", "garbage {{{ not an exposition\n")
        replicas.serve("/c", "oops", status=500)
        clock.now += 60
        with caplog.at_level(logging.WARNING):
            observed = source.fetch("ep")
        info = source.list_endpoints()[0]
    finally:
        source.close()
    assert observed.endpoint.requests == 60  # replica a only
    states = {r.target: (r.up, (r.error or "").split(":")[0]) for r in observed.replicas}
    assert states == {a: (True, ""), b: (False, "parse_error"), c: (False, "http_5xx")}
    assert source.replica_errors[("ep", "parse_error")] == 1 and source.replica_errors[("ep", "http_5xx")] == 1
    assert info.ready is True and info.capacity == 8 and info.state == "1/3 replicas answering"
    assert "replica" in caplog.text and "down" in caplog.text


def test_no_replica_answering_is_a_failed_fetch_that_names_them(replicas: Replicas) -> None:
    a = replicas.serve("/a", "x", status=503)
    source = source_for({"targets": [a, replicas.url("/missing")]}, Clock())
    try:
        with pytest.raises(FetchError) as failed:
            source.fetch("ep")
        assert source.list_endpoints()[0].ready is False
    finally:
        source.close()
    assert [r.up for r in failed.value.replicas] == [False, False]  # type: ignore[attr-defined]


def test_polls_faster_than_a_minute_neither_lose_nor_double_counts(replicas: Replicas) -> None:
    url = replicas.serve("/m", vllm(0))
    clock = Clock(6_000.0)  # on a minute boundary
    source = source_for({"targets": [url]}, clock)
    stored: dict[int, float | None] = {}
    try:
        for step in range(13):  # every 15 s for three minutes; 10 requests arrive between polls
            replicas.serve("/m", vllm(10 * step))
            observed = source.fetch("ep")
            key = observed.timestamp_ms // 60_000
            stored.setdefault(key, observed.endpoint.requests)  # the window keeps a minute's first observation
            clock.now += 15
    finally:
        source.close()
    assert list(stored.values()) == [None, 40.0, 40.0, 40.0]  # 4 polls' worth a minute; the first is the baseline


def test_polls_slower_than_a_minute_give_the_per_minute_average(replicas: Replicas) -> None:
    url = replicas.serve("/m", vllm(0))
    clock = Clock()
    source = source_for({"targets": [url]}, clock)
    try:
        source.fetch("ep")
        replicas.serve("/m", vllm(90))
        clock.now += 90
        minute = source.fetch("ep").endpoint
    finally:
        source.close()
    assert minute.requests == pytest.approx(60.0)  # 90 requests over 90 s
    assert minute.latency.count == pytest.approx(60.0) and minute.latency.sum == pytest.approx(30.0)


def test_a_vanished_replica_loses_its_baseline(replicas: Replicas, tmp_path) -> None:  # type: ignore[no-untyped-def]
    a = replicas.serve("/a", vllm(100))
    b = replicas.serve("/b", vllm(100))
    port = replicas.server.server_address[1]
    sd = tmp_path / "targets.json"
    sd.write_text(json.dumps([{"targets": [f"127.0.0.1:{port}"], "labels": {"__metrics_path__": "/a"}},
                              {"targets": [f"127.0.0.1:{port}"], "labels": {"__metrics_path__": "/b"}}]))
    clock = Clock()
    source = source_for({"file_sd": [str(tmp_path / "*.json")]}, clock)
    try:
        assert {r.target for r in source.fetch("ep").replicas} == {a, b}
        sd.write_text(json.dumps([{"targets": [f"127.0.0.1:{port}"], "labels": {"__metrics_path__": "/a"}}]))
        replicas.serve("/a", vllm(110))
        clock.now += 60
        observed = source.fetch("ep")
        assert [r.target for r in observed.replicas] == [a] and observed.endpoint.requests == 10
        # Back after a while: a new baseline, not a difference against the one it had.
        sd.write_text(json.dumps([{"targets": [f"127.0.0.1:{port}"], "labels": {"__metrics_path__": p}}
                                  for p in ("/a", "/b")]))
        replicas.serve("/b", vllm(400))
        clock.now += 60
        assert source.fetch("ep").endpoint.requests == 0  # a unchanged, b's first reading only a baseline
    finally:
        source.close()


def test_models_past_the_cap_count_towards_the_endpoint_only(replicas: Replicas) -> None:
    body = lambda n: "".join(vllm(n, model=m) for m in ("a", "b", "c"))  # noqa: E731
    url = replicas.serve("/m", body(10))
    clock = Clock()
    source = source_for({"targets": [url]}, clock, max_entities=2)
    try:
        source.fetch("ep")
        replicas.serve("/m", body(20))
        clock.now += 60
        observed = source.fetch("ep")
    finally:
        source.close()
    assert sorted(observed.entities) == ["a", "b"]
    assert observed.endpoint.requests == 30 and observed.entities["a"].requests == 10
    assert source.dropped_entities == {"ep": 1}


def test_dns_a_aaaa_and_srv_are_resolved_at_every_poll_and_a_failure_keeps_the_last_answer() -> None:
    answers: dict[tuple[str, str], object] = {
        ("vllm.ml.svc", "A"): [("10.0.0.5", None), ("10.0.0.6", None)],
        ("vllm6.ml.svc", "AAAA"): [("fd00::5", None)],
        ("_metrics._tcp.vllm.ml.svc", "SRV"): [("vllm-0.vllm.ml.svc", 8001), ("vllm-1.vllm.ml.svc", 8002)],
    }

    def resolver(name: str, rdtype: str, timeout_s: float):  # type: ignore[no-untyped-def]
        answer = answers[(name, rdtype)]
        if isinstance(answer, Exception):
            raise answer
        return answer

    settings = SelfHostedSettings.model_validate({"endpoints": [
        {"name": "a", "dns": {"name": "vllm.ml.svc", "type": "A", "port": 8000}},
        {"name": "aaaa", "dns": {"name": "vllm6.ml.svc", "type": "AAAA", "port": 8000, "scheme": "https"}},
        {"name": "srv", "dns": {"name": "_metrics._tcp.vllm.ml.svc", "type": "SRV", "path": "/stats"}},
    ]})
    source = SelfHostedSource(settings, resolver=resolver)
    discovery = source._discovery
    endpoints = {e.name: e for e in settings.endpoints}
    assert discovery.targets(endpoints["a"]) == ["http://10.0.0.5:8000/metrics", "http://10.0.0.6:8000/metrics"]
    assert discovery.targets(endpoints["aaaa"]) == ["https://[fd00::5]:8000/metrics"]
    assert discovery.targets(endpoints["srv"]) == ["http://vllm-0.vllm.ml.svc:8001/stats",
                                                   "http://vllm-1.vllm.ml.svc:8002/stats"]
    answers[("vllm.ml.svc", "A")] = [("10.0.0.7", None)]  # scaled: re-resolved at the next poll
    assert discovery.targets(endpoints["a"]) == ["http://10.0.0.7:8000/metrics"]
    answers[("vllm.ml.svc", "A")] = FetchError("dns", "timed out")
    assert discovery.targets(endpoints["a"]) == ["http://10.0.0.7:8000/metrics"]
    assert discovery.errors[("a", "dns")] == 1


def test_file_sd_yaml_is_reread_when_changed_and_a_broken_file_keeps_its_last_targets(tmp_path) -> None:  # type: ignore[no-untyped-def]
    sd = tmp_path / "vllm.yaml"
    sd.write_text("- targets: ['10.0.0.5:8000', '10.0.0.6:8000']\n")
    settings = SelfHostedSettings.model_validate({"endpoints": [{"name": "ep", "file_sd": [str(tmp_path / "*.yaml")]}]})
    source = SelfHostedSource(settings)
    discovery, endpoint = source._discovery, settings.endpoints[0]
    assert discovery.targets(endpoint) == ["http://10.0.0.5:8000/metrics", "http://10.0.0.6:8000/metrics"]
    sd.write_text("- targets: ['10.0.0.5:8000']\n  labels: {__scheme__: https, team: genai}\n")
    assert discovery.targets(endpoint) == ["https://10.0.0.5:8000/metrics"]
    sd.write_text("- targets: [oops\n")  # half written
    assert discovery.targets(endpoint) == ["https://10.0.0.5:8000/metrics"]
    assert discovery.errors[("ep", "file_sd")] == 1
    (tmp_path / "more.yaml").write_text("- targets: ['10.0.0.9:9000']\n")
    assert "http://10.0.0.9:9000/metrics" in discovery.targets(endpoint)


def test_a_rotated_token_is_used_and_never_appears_in_logs_errors_or_metrics(replicas: Replicas, tmp_path, caplog
                                                                             ) -> None:  # type: ignore[no-untyped-def]
    token_file = tmp_path / "token"
    token_file.write_text("first-SECRET-token\n")
    replicas.required_authorization = "Bearer second-SECRET-token"
    url = replicas.serve("/metrics", vllm(5))
    settings = Settings(self_hosted={"endpoints": [{"name": "ep", "kind": "auto", "targets": [url],
                                                    "auth": {"bearer_token_file": str(token_file)}}]},
                        poll_interval_seconds=5)
    source = SelfHostedSource(settings.self_hosted)
    poller = Poller(source, settings)
    try:
        with caplog.at_level(logging.DEBUG):
            refused = poller.poll()
            token_file.write_text("second-SECRET-token\n")  # rotated: read again at the next request
            answered = poller.poll()
    finally:
        poller.close()
    assert refused.endpoints[0].status.up is False and "unauthorized" in refused.endpoints[0].status.last_error
    assert answered.endpoints[0].status.up is True
    assert answered.endpoints[0].replicas[0].up is True
    assert replicas.headers[-1]["Authorization"] == "Bearer second-SECRET-token"
    shown = caplog.text + repr(refused) + repr(answered)
    shown += render(refused, SeriesBudget(), False).decode() + render(answered, SeriesBudget(), False).decode()
    assert "SECRET" not in shown


@pytest.mark.parametrize("endpoint, message", [
    ({"name": "x"}, "exactly one of targets, dns and file_sd"),
    ({"name": "x", "targets": ["http://a:1/m"], "file_sd": ["a.json"]}, "exactly one of targets, dns and file_sd"),
    ({"name": "x", "targets": ["ftp://a:1/m"]}, "http:// or https:// URL"),
    ({"name": "x", "targets": ["http://user:pw@a:1/m"]}, "http:// or https:// URL"),
    ({"name": "x", "targets": ["http://a:1/m"], "kind": "sglang"}, "Input should be"),
    ({"name": "x", "dns": {"name": "a", "type": "A"}}, "needs `port`"),
    ({"name": "x", "targets": ["http://a:1/m"], "auth": {"bearer_token": "inline"}}, "Extra inputs"),
    ({"name": "x", "targets": ["http://a:1/m"], "auth": {"bearer_token_env": "A", "bearer_token_file": "/f"}},
     "at most one"),
    ({"name": "x", "targets": ["http://a:1/m"], "colour": "red"}, "Extra inputs"),
])
def test_settings_are_validated_with_a_clear_message(endpoint: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SelfHostedSettings.model_validate({"endpoints": [endpoint]})


def test_self_hosted_settings_come_from_the_environment_as_json(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from exporter.config import load_settings

    monkeypatch.setenv("SERVING_EXPORTER_SELF_HOSTED", json.dumps(
        {"endpoints": [{"name": "chat", "kind": "vllm", "targets": ["http://127.0.0.1:8000/metrics"]}]}))
    assert load_settings().self_hosted.endpoints[0].name == "chat"


class FakeSource:
    def __init__(self, platform: str, names: list[str]):
        self.platform, self.workspace, self.refresh_seconds = platform, None, 60.0
        self.usage = ApiUsage()
        self.names, self.fail = names, False

    def list_endpoints(self, deadline=None):  # type: ignore[no-untyped-def]
        if self.fail:
            raise FetchError("timeout", "no answer")
        return [EndpointInfo(name=n, platform=self.platform) for n in self.names]

    def describe(self, name, deadline=None):  # type: ignore[no-untyped-def]
        return EndpointInfo(name=name, platform=self.platform)

    def fetch(self, name, deadline=None):  # type: ignore[no-untyped-def]
        from exporter.model import MinuteFigures
        return Observation(MinuteFigures(requests=1.0 if self.platform == "databricks" else 2.0))

    def close(self) -> None:
        pass


def test_the_composite_keeps_names_distinct_and_a_failing_listing_does_not_blank_the_other() -> None:
    databricks, selfhosted = FakeSource("databricks", ["fraud", "chat"]), FakeSource("self-hosted", ["chat", "vllm"])
    composite = CompositeSource([databricks, selfhosted])
    listed = composite.list_endpoints()
    assert [(i.name, i.platform) for i in listed] == [("fraud", "databricks"), ("chat", "databricks"),
                                                      ("vllm", "self-hosted")]
    assert composite.collisions["chat"] == 1
    assert composite.discovery_errors == {("chat", "name_clash"): 1}
    assert composite.fetch("vllm").endpoint.requests == 2.0 and composite.fetch("chat").endpoint.requests == 1.0
    selfhosted.fail = True
    assert [i.name for i in composite.list_endpoints()] == ["fraud", "chat", "vllm"]  # its last good listing
    assert composite.list_errors[("", "timeout")] == 1
    databricks.fail = True
    fresh = CompositeSource([databricks, selfhosted])
    with pytest.raises(FetchError):
        fresh.list_endpoints()


def test_build_source_picks_databricks_self_hosted_or_both(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from exporter.commands import build_source
    from exporter.sources.databricks import DatabricksSource

    hosted = {"endpoints": [{"name": "chat", "targets": ["http://127.0.0.1:1/metrics"]}]}
    for settings, environ, expected in [
        (Settings(), {}, DatabricksSource),
        (Settings(self_hosted=hosted), {}, SelfHostedSource),
        (Settings(self_hosted=hosted), {"DATABRICKS_HOST": "https://x.cloud.databricks.com"}, CompositeSource),
    ]:
        source = build_source(settings, environ)
        try:
            assert type(source) is expected
        finally:
            source.close()


def test_the_poller_drives_a_composite_whose_sources_run_on_different_loops(replicas: Replicas) -> None:
    one = SelfHostedSource(SelfHostedSettings.model_validate(
        {"endpoints": [{"name": "one", "targets": [replicas.serve("/1", vllm(1))]}]}))
    two = SelfHostedSource(SelfHostedSettings.model_validate(
        {"endpoints": [{"name": "two", "targets": [replicas.serve("/2", vllm(2))]}]}))
    poller = Poller(CompositeSource([one, two]), Settings(poll_interval_seconds=5))
    try:
        poller.poll()
        snap = poller.poll()  # the server kind, detected in the first bodies, is in the next listing
        assert one.loop is not two.loop
    finally:
        poller.close()
    assert [(e.info.name, e.status.up, e.info.server) for e in snap.endpoints] == [("one", True, "vllm"),
                                                                                 ("two", True, "vllm")]


def test_discovery_errors_reach_metrics(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A file_sd file that does not parse is counted where an operator sees it: on /metrics, by endpoint and reason."""
    (tmp_path / "sd.yaml").write_text("- targets: [oops\n")
    settings = Settings(self_hosted={"endpoints": [{"name": "ep", "file_sd": [str(tmp_path / "*.yaml")]}]},
                        poll_interval_seconds=5)
    poller = Poller(SelfHostedSource(settings.self_hosted), settings)
    try:
        poller.poll()
        snap = poller.poll()
    finally:
        poller.close()
    assert snap.discovery_errors == {("ep", "file_sd"): 2}
    text = render(snap, SeriesBudget(), False).decode()
    assert 'model_serving_exporter_discovery_errors_total{reason="file_sd",serving_endpoint="ep"} 2.0' in text

