"""Shared fixtures. Integration tests need real binaries; under CI=true they fail instead of skipping."""

from __future__ import annotations

import logging
import os
import shutil

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="rewrite golden files from the current output")


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path):
    """No developer settings, Databricks or Datadog credentials or ~/.databrickscfg leak into a test, and a test
    that configures logging (the CLI does) leaves the root logger as it found it."""
    for var in [v for v in os.environ if v.upper().startswith(("SERVING_EXPORTER_", "DATABRICKS_", "DD_"))]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("HOME", str(tmp_path))
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden")) or os.environ.get("UPDATE_GOLDEN") == "1"


def require_binary(name: str,
                   install: str = "apt-get install --no-install-recommends prometheus prometheus-alertmanager") -> str:
    """Path of a required program; a missing one fails under CI=true and skips elsewhere."""
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} not found (Debian: {install})"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def promtool() -> str:
    return require_binary("promtool")


class FakeClock:
    """A frozen wall clock for the simulators' tests: time moves only when a test sets `now`."""

    def __init__(self, now: float = 1_763_820_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
