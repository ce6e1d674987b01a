"""The fault matrix: a real `serving-exporter run` process against a fake workspace (tests/faults/platform.py)
whose endpoints each carry one fault, beside healthy control endpoints. For every fault: the process stays
up, /metrics and /healthz keep answering, the fault shows (the endpoint's `up`, its fetch-error reason, its
figures), the other endpoints are not affected, the figures already collected are neither lost nor
corrupted, and the workspace's token appears nowhere (logs, /metrics, the JSON API).

One exporter watches every per-endpoint fault at once (they cannot interfere: each has its own endpoint);
listing faults, configuration faults and signals get their own runs. docs/reliability.md has the table.
Run alone with `pytest -m faults`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from . import platform as p
from .exporter import POLL_S, ROOT, Stack, assert_no_token, start_exporter, stop

pytestmark = [pytest.mark.faults, pytest.mark.integration]

CONTROLS = ("ok-1", "ok-2", "ok-3")


@dataclass(frozen=True)
class Fault:
    """One endpoint's fault: what its /metrics (or detail call) does, and what the exporter must show."""

    name: str
    metrics: p.Behaviour | None = None  # None: healthy metrics
    detail: p.Behaviour | None = None
    reason: str | None = None  # the fetch-error reason it must be counted under; None: the endpoint stays up
    # A hung call is cut by the request timeout, or by the poll deadline when it started late in the poll.
    also: str | None = None
    check: Callable[[dict, dict], None] | None = None  # (endpoint JSON, /metrics samples) -> assertions


def _future() -> str:
    return p.body(ts_ms=p.minute_ms(+180))


def _past() -> str:
    return p.body(ts_ms=p.minute_ms(-180))


def _qps_unchanged(endpoint: dict, _: dict) -> None:
    assert endpoint["figures"]["qps"] == pytest.approx(10.0)


def _entities_capped(endpoint: dict, samples: dict) -> None:
    assert len(endpoint["served_entities"]) == 50  # max_served_entities
    rows = [k for k in samples if k[0] == "model_serving_requests_per_second" and ("serving_endpoint", endpoint["name"]) in k[1]]
    assert 1 <= len(rows) <= 51  # the endpoint's row and at most 50 entities' rows


def _detail_failed(endpoint: dict, samples: dict, reason: str) -> None:
    _qps_unchanged(endpoint, samples)  # the metrics are fine, and the configuration from the listing stays
    assert endpoint["config"]["served_entities"], endpoint["config"]
    errors = {(dict(k)["call"], dict(k)["reason"]): v
              for k, v in _ep_samples(samples, "model_serving_exporter_fetch_errors_total", endpoint["name"]).items()}
    assert errors.get(("detail", reason), 0) >= 1, errors


def _entity_config_capped(endpoint: dict, samples: dict) -> None:
    _qps_unchanged(endpoint, samples)
    assert len(endpoint["config"]["served_entities"]) == 50  # max_served_entities, as for their figures
    for family in ("model_serving_served_entity_info", "model_serving_configured_concurrency"):
        rows = _ep_samples(samples, family, endpoint["name"])
        assert 1 <= len({dict(k).get("served_entity") for k in rows}) <= 50, (family, len(rows))


def _hostile_labels_escaped(endpoint: dict, samples: dict) -> None:
    names = {e["name"] for e in endpoint["served_entities"]}
    assert 'quo"te' in names and "new\nline" in names and "ünï€ødé" in names


def _histogram_reset(endpoint: dict, _: dict) -> None:
    assert endpoint["status"]["up"]
    assert endpoint["figures"]["qps"] is not None and endpoint["figures"]["qps"] >= 0


HOSTILE = ['quo"te', "new\nline", "ünï€ødé", "back\\slash", "x" * 300]

FAULTS = [
    Fault("http-500", p.status(500), reason="internal_error"),
    Fault("http-404", p.status(404), reason="not_found"),
    Fault("http-403", p.status(403), reason="permission_denied"),
    Fault("http-429", p.status(429, {"Retry-After": "30"}), reason="too_many_requests"),
    Fault("http-503", p.status(503, {"Retry-After": "30"}), reason="temporarily_unavailable"),
    Fault("http-401", p.status(401), reason="unauthenticated"),
    Fault("redirect", p.redirect, reason="api_error"),
    Fault("never-answers", p.hang, reason="timeout", also="deadline"),
    Fault("trickles", p.trickle, reason="timeout", also="deadline"),
    Fault("reset", p.reset, reason="connection"),
    Fault("truncated", p.truncated, reason="connection"),
    Fault("garbage-bytes", p.raw(p.garbage_bytes()), reason="parse_error"),
    Fault("html-page", p.raw(b"<html><body>Sign in</body></html>", content_type="text/html"), reason="parse_error"),
    Fault("json-instead", p.raw(b'{"metrics": []}', content_type="application/json"), reason="parse_error"),
    Fault("not-utf8", p.raw("request_count_total 6\u00e9\n".encode("latin-1")), reason="parse_error"),
    Fault("huge-body", p.huge, reason="too_large"),
    Fault("gzip-bomb", p.gzip_bomb(), reason="too_large"),
    Fault("broken-gzip", p.raw(b"\x1f\x8b not really gzip", {"Content-Encoding": "gzip"}), reason="bad_response"),
    Fault("unknown-encoding", p.raw(b"whatever", {"Content-Encoding": "br"}), reason="bad_response"),
    Fault("nan-in-histogram", p.serving(lambda: p.body().replace("request_latency_ms_count{workspaceId=\"1234567890123456\"} 600",
                                                                   "request_latency_ms_count{workspaceId=\"1234567890123456\"} NaN")),
          reason="invalid_data"),
    Fault("inf-count", p.serving(lambda: p.body().replace("} 600 ", "} +Inf ", 1)), reason="invalid_data"),
    Fault("minus-inf-count", p.serving(lambda: p.body(errors_5xx="-Inf")), reason="invalid_data"),  # type: ignore[arg-type]
    Fault("negative-count", p.serving(lambda: p.body(requests=-600)), reason="invalid_data"),
    Fault("negative-cpu", p.serving(lambda: p.body(cpu=-40)), reason="invalid_data"),
    Fault("duplicate-series", p.serving(lambda: p.body() + p.body().split("\n")[2] + "\n"), reason="invalid_data"),
    Fault("nan-timestamp", p.serving(lambda: p.body().replace(f" {p.minute_ms()}\n", " NaN\n", 1)), reason="parse_error"),
    Fault("empty-body", p.raw(b""), check=lambda e, s: None),  # no data is not an error: the endpoint stays up
    Fault("unknown-families", p.serving(lambda: p.body(extra="# TYPE brand_new_metric gauge\nbrand_new_metric{x=\"1\"} 5\n")),
          check=_qps_unchanged),
    Fault("openmetrics", p.serving(lambda: p.body() + "# EOF\n", "application/openmetrics-text; version=1.0.0"),
          check=_qps_unchanged),
    Fault("gzip-body", p.gzipped(p.body()), check=_qps_unchanged),  # fine as long as the minute is the same
    Fault("10000-label-values", p.serving(p.entities(10000)), check=_entities_capped),
    Fault("hostile-labels", p.serving(p.entities(len(HOSTILE), lambda i: HOSTILE[i].replace("\\", "\\\\")
                                                  .replace('"', '\\"').replace("\n", "\\n"))),
          check=_hostile_labels_escaped),
    Fault("future-timestamps", p.serving(_future), check=_qps_unchanged),
    Fault("past-timestamps", p.serving(_past), check=_qps_unchanged),
    Fault("histogram-reset", p.serving(lambda: p.body(requests=50)), check=_histogram_reset),  # counts drop 600 -> 50
    Fault("detail-500", detail=p.status(500), check=lambda e, s: _detail_failed(e, s, "internal_error")),
    Fault("detail-garbage", detail=p.raw(b"<html>", content_type="text/html"),
          check=lambda e, s: _detail_failed(e, s, "bad_response")),
    Fault("1000-entities-config", None, check=lambda e, s: _entity_config_capped(e, s)),  # detail: 1,000 entities
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    platform = p.Platform()
    for name in (*CONTROLS, *(f.name for f in FAULTS)):
        platform.metrics[name] = p.healthy
    platform.extra_detail["1000-entities-config"] = {"config": {"served_entities": [
        {"name": f"e{i}", "workload_type": "CPU", "workload_size": "Small", "min_provisioned_concurrency": 4,
         "max_provisioned_concurrency": 4} for i in range(1000)]}}
    stack = start_exporter(platform, tmp_path_factory.mktemp("faults") / "exporter.log",
                           env={"SERVING_EXPORTER_DETAIL_REFRESH_SECONDS": "0"})  # every poll reads every detail
    try:
        yield stack
    finally:
        stop(stack)
        platform.close()


def _ep_samples(samples: dict, family: str, endpoint: str) -> dict[frozenset, float]:
    return {labels: v for (name, labels), v in samples.items()
            if name == family and ("serving_endpoint", endpoint) in labels}


# -- per-endpoint faults: all at once, one exporter -------------------------------------------------


def test_every_endpoint_fault_is_contained_visible_and_loses_nothing(stack):
    healthy = stack.wait_until(lambda eps: all(e["status"]["up"] and e["figures"]["qps"] == pytest.approx(10.0)
                                               for e in eps.values()), "every endpoint up at 10 QPS")
    before = {name: e["figures"] for name, e in healthy.items()}

    for fault in FAULTS:
        if fault.metrics is not None:
            stack.platform.metrics[fault.name] = fault.metrics
        if fault.detail is not None:
            stack.platform.detail[fault.name] = fault.detail
    stack.wait_polls(3)
    endpoints, samples = stack.endpoints(), stack.samples()

    # The process and its HTTP side are fine; /metrics parses (done above) and is `promtool`-clean elsewhere.
    assert stack.proc.poll() is None
    assert stack.get("/healthz").status_code == 200 and stack.get("/readyz").status_code == 200
    for name in CONTROLS:  # the healthy endpoints are not affected
        assert endpoints[name]["status"]["up"], endpoints[name]["status"]
        assert endpoints[name]["figures"]["qps"] == pytest.approx(10.0)

    problems = []
    for fault in FAULTS:
        e = endpoints[fault.name]
        up = _ep_samples(samples, "model_serving_exporter_up", fault.name)
        errors = {dict(labels)["reason"]: v for labels, v in
                  _ep_samples(samples, "model_serving_exporter_fetch_errors_total", fault.name).items()}
        try:
            if fault.reason is not None:
                assert not e["status"]["up"] and list(up.values()) == [0.0], f"not down: {e['status']}"
                reasons = {fault.reason, fault.also} - {None}
                assert sum(errors.get(r, 0) for r in reasons) >= 1, f"reason {reasons} not counted: {errors}"
                assert e["status"]["last_error"].split(":")[0] in reasons, e["status"]["last_error"]
                # What was collected before the fault stays as it was (no NaN, Inf, negative or doubled figures).
                assert e["figures"]["qps"] == pytest.approx(before[fault.name]["qps"]), e["figures"]
                assert e["figures"]["error_ratio"] == pytest.approx(before[fault.name]["error_ratio"])
            else:
                assert e["status"]["up"], f"went down: {e['status']}"
            if fault.check is not None:
                fault.check(e, samples)
        except AssertionError as exc:
            problems.append(f"{fault.name}: {exc}")
    assert not problems, "\n".join(problems)
    assert_no_token(stack.log(), stack.get("/metrics").text, stack.get("/api/v1/endpoints").text)

    # Recovery: every fault lifted, every endpoint back up with its figures.
    for fault in FAULTS:
        stack.platform.metrics[fault.name] = p.healthy
        stack.platform.detail.pop(fault.name, None)
    stack.wait_until(lambda eps: all(e["status"]["up"] for e in eps.values()), "every endpoint up again")
    assert stack.proc.poll() is None


# -- listing faults: one at a time, the known endpoints stay -----------------------------------------


LISTING_FAULTS = {
    "listing-429-retry-after-60": p.status(429, {"Retry-After": "60"}),
    "listing-500": p.status(500),
    "listing-hangs": p.hang,
    "listing-garbage-json": p.raw(b"{not json", content_type="application/json"),
    "listing-wrong-type": p.raw(b'{"endpoints": "temporarily unavailable"}', content_type="application/json"),
    "listing-html": p.raw(b"<html>maintenance</html>", content_type="text/html"),
}


@pytest.mark.parametrize("fault", list(LISTING_FAULTS))
def test_a_failed_listing_keeps_the_known_endpoints_and_publishes_on_time(stack, fault):
    stack.wait_until(lambda eps: all(e["status"]["up"] for e in eps.values()), "every endpoint up")
    known = set(stack.endpoints())
    failed_before = stack.samples().get(("model_serving_exporter_polls_total", frozenset({("result", "list_failed")})), 0)
    stack.platform.listing = LISTING_FAULTS[fault]
    try:
        started = time.monotonic()
        snap = stack.wait_polls(2, timeout_s=30)
        took = time.monotonic() - started
    finally:
        stack.platform.listing = None
    assert took < 6 * POLL_S  # polls keep their schedule: no Retry-After or hang holds them
    assert {e["name"] for e in snap["endpoints"]} == known  # nothing dropped
    if fault != "listing-hangs":  # a hung listing takes its request timeout (2 s here) out of the poll's 2.4 s
        assert all(e["status"]["up"] for e in snap["endpoints"] if e["name"] in CONTROLS)
    stack.wait_until(lambda eps: all(eps[name]["status"]["up"] for name in CONTROLS), "the controls up")
    failed_after = stack.samples()[("model_serving_exporter_polls_total", frozenset({("result", "list_failed")}))]
    assert failed_after >= failed_before + 1
    assert "listing endpoints failed" in stack.log()


def test_an_empty_listing_drops_the_endpoints_and_a_new_listing_brings_them_back(stack):
    names = dict(stack.platform.metrics)
    stack.platform.metrics.clear()
    try:
        stack.wait_until(lambda eps: not eps, "no endpoint left")
        assert stack.samples().get(("model_serving_exporter_endpoints_discovered", frozenset()), 0) == 0
    finally:
        stack.platform.metrics.update(names)
    stack.wait_until(lambda eps: set(eps) == set(names) and all(e["status"]["up"] for e in eps.values()),
                     "every endpoint back")


def test_a_deleted_and_a_renamed_endpoint(stack):
    stack.wait_until(lambda eps: "ok-3" in eps and "ok-2" in eps, "the controls listed")
    del stack.platform.metrics["ok-3"]  # deleted
    stack.platform.metrics["ok-2-renamed"] = stack.platform.metrics.pop("ok-2")  # renamed
    try:
        eps = stack.wait_until(lambda eps: "ok-3" not in eps and "ok-2" not in eps and "ok-2-renamed" in eps
                               and eps["ok-2-renamed"]["status"]["up"], "the listing adopted")
        assert eps["ok-1"]["status"]["up"]
        assert not [k for k in stack.samples() if ("serving_endpoint", "ok-3") in k[1]]  # its series are gone
    finally:
        stack.platform.metrics["ok-2"] = stack.platform.metrics.pop("ok-2-renamed")
        stack.platform.metrics["ok-3"] = p.healthy


def test_a_revoked_token_fails_as_unauthenticated_and_recovers(stack):
    stack.platform.accepted_token = "dapi-some-other-token"
    try:
        stack.wait_polls(2, timeout_s=30)
        errors = stack.samples()
        assert any(k[0] == "model_serving_exporter_fetch_errors_total" and ("reason", "unauthenticated") in k[1]
                   for k in errors) or "unauthenticated" in stack.log()
    finally:
        stack.platform.accepted_token = p.TOKEN
    stack.wait_until(lambda eps: all(e["status"]["up"] for e in eps.values()), "every endpoint up again")
    assert_no_token(stack.log())


# -- signals ---------------------------------------------------------------------------------------------


def test_sighup_mid_poll_reloads_without_stopping_and_sigterm_mid_poll_exits_cleanly_in_time(tmp_path):
    platform = p.Platform()
    platform.metrics.update({"ok": p.healthy, "stuck-1": p.hang, "stuck-2": p.hang, "stuck-3": p.hang})
    stack = None
    try:
        # The first poll starts at once; three of its fetches hang (cut only at 20 s).
        stack = start_exporter(platform, tmp_path / "exporter.log", poll_s=30,
                               env={"SERVING_EXPORTER_REQUEST_TIMEOUT_SECONDS": "20"}, wait_for="/healthz")
        while not any(path.endswith("/stuck-3/metrics") for path in platform.requests):
            time.sleep(0.1)
        stack.proc.send_signal(signal.SIGHUP)
        time.sleep(1)
        assert stack.proc.poll() is None and stack.get("/healthz").status_code == 200
        assert "received SIGHUP, reloading the configuration" in stack.log()
        assert stack.get("/readyz").status_code == 503  # still in the first poll: the fetches hang
        started = time.monotonic()
        stack.proc.send_signal(signal.SIGTERM)
        code = stack.proc.wait(30)
        took = time.monotonic() - started
    finally:
        if stack is not None:
            stop(stack)
        platform.close()
    assert code == 0
    assert took < 25  # the hung fetches are cancelled: inside Kubernetes' default 30 s grace period
    assert "stopped" in stack.log()


# -- configuration faults ------------------------------------------------------------------------------


@pytest.mark.parametrize("config, message", [
    ("tragets:\n  error_ratio: 0.01\n", "tragets: unknown key"),
    ("poll_interval_seconds: soon\n", "poll_interval_seconds"),
    ("target_overrides:\n  - match: {name: 'search-.*('}\n    targets: {latency_p99: 1}\n", "invalid regular expression"),
    ("listen: [not, a, string\n", "not valid YAML"),
])
def test_a_bad_configuration_file_stops_the_start_with_a_clear_error(tmp_path, config, message):
    path = tmp_path / "config.yaml"
    path.write_text(config)
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "SERVING_EXPORTER_"))}
    environ["DATABRICKS_TOKEN"] = p.TOKEN
    run = subprocess.run([sys.executable, "-m", "exporter", "run", "--config", str(path), "--once"], cwd=ROOT,
                         env=environ, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2, run.stderr
    assert message in run.stderr
    assert_no_token(run.stdout, run.stderr)
