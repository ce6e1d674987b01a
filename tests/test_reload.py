"""Configuration reload: SIGHUP and POST /-/reload on a real `serving-exporter run` process against the
simulated workspace, and on an in-process daemon what a reload keeps (windows, hint state) and refuses."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from exporter.config import Settings, load_settings
from exporter.daemon import Daemon
from exporter.logs import JsonFormatter
from exporter.simulator import DEMO_TOKEN, SimulatorServer, build_demo_workspace

from .alerting import free_port
from .test_poller import FakeSource

ROOT = Path(__file__).resolve().parent.parent
RELOAD_OK = "model_serving_exporter_config_last_reload_successful"
RELOAD_AT = "model_serving_exporter_config_last_reload_success_timestamp_seconds"


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def p99_target(found: dict, endpoint: str = "fraud-scorer") -> float | None:
    wanted = {("serving_endpoint", endpoint), ("check", "latency_p99")}  # in whichever workspace (the demo's host)
    return next((v for (name, labels), v in found.items() if name == "model_serving_target" and wanted <= labels), None)


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 30, alive: Callable[[], None] = lambda: None):
    """Until `condition` holds; `alive` fails at once, with the log, if the exporter process died meanwhile."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        alive()
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout_s}s: {what}")


# -- a real process -------------------------------------------------------------------------------


class Process:
    def __init__(self, tmp_path: Path, config: Path, *flags: str):
        self.simulator = SimulatorServer(build_demo_workspace(minute_seconds=1.0)).start()
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log_path = tmp_path / "exporter.log"
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "SERVING_EXPORTER_", "DD_"))}
        environ.update(DATABRICKS_HOST=self.simulator.url, DATABRICKS_TOKEN=DEMO_TOKEN, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, "-m", "exporter", "run", "--config", str(config), "--listen",
                                      self.url.removeprefix("http://"), "--poll-interval", "1", *flags],
                                     cwd=ROOT, env=environ, stdout=self.log_path.open("w"), stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        wait_for(self.ready, "the exporter is ready", 60, self.alive)

    def alive(self) -> None:
        assert self.proc.poll() is None, f"the exporter exited with {self.proc.returncode}:\n{self.log()}"

    def ready(self) -> bool:
        try:
            return requests.get(self.url + "/readyz", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    def metrics(self) -> dict[tuple[str, frozenset], float]:
        return samples(requests.get(self.url + "/metrics", timeout=10).text)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.simulator.stop()


@pytest.fixture
def process(tmp_path) -> Iterator[Callable[..., Process]]:
    started: list[Process] = []

    def start(config: Path, *flags: str) -> Process:
        started.append(Process(tmp_path, config, *flags))
        return started[-1]

    yield start
    for proc in started:
        proc.stop()


@pytest.mark.integration
def test_sighup_and_post_reload_apply_a_good_file_and_keep_the_old_one_on_a_bad_file(tmp_path, process):
    config = tmp_path / "config.yaml"
    config.write_text("targets:\n  latency_p99_seconds: 0.5\n")
    exporter = process(config, "--web.enable-lifecycle")
    first = exporter.metrics()
    assert p99_target(first) == 0.5 and first[(RELOAD_OK, frozenset())] == 1
    started_at = first[(RELOAD_AT, frozenset())]

    # A good file, by SIGHUP: the new target shows once a poll has run with it.
    config.write_text("targets:\n  latency_p99_seconds: 0.25\n")
    exporter.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: p99_target(exporter.metrics()) == 0.25, "the reloaded target on /metrics", alive=exporter.alive)
    after = exporter.metrics()
    assert after[(RELOAD_OK, frozenset())] == 1 and after[(RELOAD_AT, frozenset())] > started_at

    # A bad file, by POST /-/reload: refused with the reason; the running configuration stays.
    config.write_text("targets:\n  latency_p99_secnds: 0.1\n")
    answer = requests.post(exporter.url + "/-/reload", timeout=10)
    assert answer.status_code == 500
    assert "targets.latency_p99_secnds: unknown key" in answer.text
    refused = exporter.metrics()
    assert refused[(RELOAD_OK, frozenset())] == 0
    assert refused[(RELOAD_AT, frozenset())] == after[(RELOAD_AT, frozenset())]
    assert "reloading the configuration failed" in exporter.log()
    exporter.proc.send_signal(signal.SIGHUP)  # the same by signal: logged, the process goes on
    wait_for(lambda: exporter.log().count("reloading the configuration failed") >= 2, "the second refusal logged",
             alive=exporter.alive)
    polled = requests.get(exporter.url + "/api/v1/endpoints", timeout=10).json()["completed_at"]
    wait_for(lambda: requests.get(exporter.url + "/api/v1/endpoints", timeout=10).json()["completed_at"] > polled,
             "another poll", alive=exporter.alive)
    assert p99_target(exporter.metrics()) == 0.25

    # Fixed again: applied, and the metric says so.
    config.write_text("targets:\n  latency_p99_seconds: 0.75\n")
    assert requests.put(exporter.url + "/-/reload", timeout=10).status_code == 200
    assert exporter.metrics()[(RELOAD_OK, frozenset())] == 1
    wait_for(lambda: p99_target(exporter.metrics()) == 0.75, "the fixed target on /metrics", alive=exporter.alive)


@pytest.mark.integration
def test_the_reload_endpoint_is_refused_without_the_lifecycle_flag(tmp_path, process):
    config = tmp_path / "config.yaml"
    config.write_text("targets:\n  latency_p99_seconds: 0.5\n")
    exporter = process(config)
    config.write_text("targets:\n  latency_p99_seconds: 0.25\n")
    answer = requests.post(exporter.url + "/-/reload", timeout=10)
    assert (answer.status_code, answer.text) == (403, "Lifecycle API is not enabled.\n")
    assert "configuration reloaded" not in exporter.log()
    assert exporter.metrics()[(RELOAD_OK, frozenset())] == 1


# -- in process: what a reload keeps and refuses ----------------------------------------------------


class Reloadable:
    """A daemon on the fake source whose configuration the test replaces, as a file edit would."""

    def __init__(self, lifecycle: bool = False):
        self.settings = self.base = load_settings(overrides={"listen": "127.0.0.1:0", "poll_interval_seconds": 1})
        self.daemon = Daemon(self.base, FakeSource(), load=lambda: self.settings, lifecycle=lifecycle).start()
        assert self.daemon.wait_ready(15)

    def change(self, **updates: object) -> Settings:
        data = self.base.model_dump()
        for key, value in updates.items():
            data[key] = value
        self.settings = load_settings(overrides=data)
        return self.settings

    def next_poll(self) -> None:
        done = self.daemon.snapshot().completed_at_s
        wait_for(lambda: self.daemon.snapshot().completed_at_s != done, "a poll")


@pytest.fixture
def reloadable() -> Iterator[Callable[..., Reloadable]]:
    made: list[Reloadable] = []

    def make(**kw: object) -> Reloadable:
        made.append(Reloadable(**kw))
        return made[-1]

    yield make
    for r in made:
        r.daemon.stop()


def test_a_reload_keeps_the_windows_and_hint_state_of_endpoints_still_selected(reloadable):
    r = reloadable()
    r.next_poll()
    states = {name: state for (_, name), state in r.daemon.poller.states.items()}  # keyed (workspace, name)
    windows = {name: state.windows[None] for name, state in states.items()}
    hints = {name: state.hints for name, state in states.items()}
    requests_seen = {name: w.counters.requests for name, w in windows.items()}
    assert set(states) == {"a", "b", "c"} and all(n > 0 for n in requests_seen.values())

    r.change(targets={**r.base.targets.model_dump(), "latency_p99_seconds": 0.125},
             endpoints={"exclude": [{"name": "c"}]})
    assert r.daemon.reload() is None
    r.next_poll()
    r.next_poll()
    after = {name: state for (_, name), state in r.daemon.poller.states.items()}
    assert set(after) == {"a", "b"}  # the new filter dropped c
    for name in ("a", "b"):
        assert after[name] is states[name] and after[name].windows[None] is windows[name]
        assert after[name].hints is hints[name] and hints[name].last_minute_ms is not None
        assert after[name].windows[None].counters.requests >= requests_seen[name]  # not started afresh
    report = {e.info.name: e for e in r.daemon.snapshot().endpoints}["a"]
    assert {c.name: c.target for c in report.endpoint.checks}["latency_p99"] == 0.125
    assert r.daemon.snapshot().config_reload.successful


def test_a_change_that_needs_a_restart_is_refused_and_nothing_applies(reloadable):
    r = reloadable()
    before = r.daemon.snapshot().config_reload
    r.change(window_seconds=600, targets={**r.base.targets.model_dump(), "latency_p99_seconds": 0.125})
    error = r.daemon.reload()
    assert error is not None and "window_seconds: changed, which needs a restart" in error
    status = r.daemon.snapshot().config_reload
    assert not status.successful and status.last_success_s == before.last_success_s
    r.next_poll()
    report = r.daemon.snapshot().endpoints[0]
    assert {c.name: c.target for c in report.endpoint.checks}["latency_p99"] == 0.5
    assert r.daemon.settings is r.base


def test_log_level_and_format_apply_at_once(reloadable):
    r = reloadable()
    r.change(log_level="DEBUG", log_format="json")
    assert r.daemon.reload() is None
    root = logging.getLogger()
    assert root.level == logging.DEBUG and isinstance(root.handlers[0].formatter, JsonFormatter)


def test_the_lifecycle_endpoint_answers_as_prometheus(reloadable):
    r = reloadable(lifecycle=True)
    url = r.daemon.url + "/-/reload"
    get = requests.get(url, timeout=10)
    assert (get.status_code, get.headers["Allow"]) == (405, "POST, PUT")
    assert requests.post(url, timeout=10).status_code == 200
    r.change(shard_count=2)
    refused = requests.post(url, timeout=10)
    assert refused.status_code == 500 and refused.text.startswith("failed to reload config: ")
    assert "shard_count: changed" in refused.text
