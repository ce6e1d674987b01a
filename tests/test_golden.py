"""Golden exposition: recorded API responses in, /metrics text out, compared byte for byte.

Regenerate after an intended change with `pytest tests/test_golden.py --update-golden`
(and re-record the inputs with `python tests/fixtures/golden/record.py` if the simulator changed).
"""

from __future__ import annotations

import platform
from dataclasses import replace
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from exporter.sinks.prometheus import ServingCollector
from exporter.config import load_settings
from exporter.model import ConfigReload
from exporter.pipeline.poller import Poller
from exporter.pipeline.workspace import WorkspaceAnalysis

from .replay import ReplaySource

GOLDEN = Path(__file__).parent / "fixtures" / "golden" / "metrics.prom"


def render() -> str:
    now = [0.0]  # frozen during a poll (worker threads read it in any order), a minute on between polls
    settings = load_settings()
    poller, workspace = Poller(ReplaySource(), settings, clock=lambda: now[0]), WorkspaceAnalysis(settings)
    try:
        for i in range(4):
            now[0] = 1763820030.0 + 60 * i
            snap = workspace.apply(poller.poll())  # as the daemon publishes it, with its reload outcome
            snap = replace(snap, config_reload=ConfigReload(successful=True, last_success_s=1763820000.0))
    finally:
        poller.close()
    registry = CollectorRegistry()
    registry.register(ServingCollector(lambda: snap))
    text = generate_latest(registry).decode()
    return text.replace(f'python_version="{platform.python_version()}"', 'python_version="X"')


def test_exposition_matches_golden(update_golden):
    text = render()
    if update_golden:
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "exposition changed; if intended, rerun with --update-golden and review the diff"


def test_golden_shows_the_failed_fetch_and_keeps_its_figures():
    text = GOLDEN.read_text()
    assert 'model_serving_exporter_up{serving_endpoint="doc-embedder",workspace="replay.example.com"} 0.0' in text
    assert 'model_serving_exporter_fetch_errors_total{call="metrics",reason="parse_error",serving_endpoint="doc-embedder",workspace="replay.example.com"} 1.0' in text
    assert 'model_serving_requests_per_second{served_entity="",serving_endpoint="doc-embedder",workspace="replay.example.com"}' in text
