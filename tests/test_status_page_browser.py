"""The status page in a real headless Chromium (Debian's `chromium`), against the real `serving-exporter demo`:
every demo endpoint is in the DOM with its state, hostile tags stay text, no credential shows, and a
screenshot is saved under artifacts/ (git-ignored; its path is printed)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from exporter.simulator import DEMO_CLIENT_SECRET, DEMO_TOKEN

from .alerting import _ok, free_port, wait_for
from .conftest import require_binary
from .test_status_page import Dom

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts"

# The demo's endpoints (README, "What the demo shows"), and the states the page can give.
DEMO_ENDPOINTS = ("fraud-scorer", "recommender", "support-chat", "doc-embedder", "search-ranker",
                  "vision-classifier", "batch-scorer")
STATES = ("critical", "down", "warning", "info", "no data", "ok")
HOSTILE_TAGS = {"owner": "<script>document.body.dataset.pwned='1'</script>",
                'x"><img src=x onerror="document.body.dataset.pwned=1">': "it's & <b>bold</b>"}


class Demo:
    def __init__(self, url: str, simulator: str):
        self.url, self.simulator = url, simulator

    def api(self) -> dict:
        return requests.get(f"{self.url}/api/v1/endpoints", timeout=5).json()

    def hints(self, name: str) -> set[str]:
        return {h["id"] for e in self.api()["endpoints"] if e["name"] == name for h in e["hints"]}


@pytest.fixture
def demo() -> Iterator[Demo]:
    port, sim_port = free_port(), free_port()
    proc = subprocess.Popen([sys.executable, "-m", "exporter", "demo", "--listen", f"127.0.0.1:{port}",
                             "--simulator-listen", f"127.0.0.1:{sim_port}", "--minute-seconds", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        d = Demo(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{sim_port}")
        wait_for(lambda: _ok(f"{d.url}/readyz"), timeout=30, what="the demo to become ready")
        yield d
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@pytest.fixture
def chromium(tmp_path: Path):
    binary = require_binary("chromium", install="apt-get install --no-install-recommends chromium")

    def run(*args: str) -> str:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        done = subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                               f"--user-data-dir={tmp_path / 'chromium'}", *args],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    return run


def test_demo_status_page_in_chromium(demo: Demo, chromium, capsys):
    requests.post(f"{demo.simulator}/simulator/v1/endpoints", timeout=5,
                  json={"name": "hostile-tags", "preset": "healthy", "tags": HOSTILE_TAGS}).raise_for_status()
    # The demo's diagnoses need a few polls: the queueing hint and the new endpoint's figures.
    wait_for(lambda: "queueing" in demo.hints("recommender") and "errors_high" in demo.hints("support-chat")
             and all(e["figures"]["minutes"] >= 2 for e in demo.api()["endpoints"]),
             timeout=60, what="the demo's hints and figures")

    dom_text = chromium("--dump-dom", f"{demo.url}/")
    dom = Dom(dom_text)
    rows = {a["data-endpoint"]: a["data-state"] for tag, a in dom.elements if tag == "tr" and "data-endpoint" in a}
    assert set(DEMO_ENDPOINTS) <= set(rows), rows
    assert all(state in STATES for state in rows.values()), rows
    assert rows["recommender"] == "critical" and rows["support-chat"] == "critical"  # errors_high, queueing
    assert rows["fraud-scorer"] in ("ok", "info")  # healthy: nothing breached, nothing to fix
    order = list(rows)
    assert order.index("recommender") < order.index("fraud-scorer")  # worst first
    for name in DEMO_ENDPOINTS:  # the state is what a person reads in the row, not only an attribute
        row = dom_text.split(f'data-endpoint="{name}"')[1].split("</tr>")[0]
        assert re.search(rf'<span class="state state-[a-z-]+">{rows[name]}</span>', row), row

    # Hostile tags: text in the DOM, never elements; nothing ran.
    assert "<script" not in dom_text and "<img" not in dom_text and "data-pwned" not in dom_text
    assert "&lt;script&gt;document.body.dataset.pwned='1'&lt;/script&gt;" in dom_text
    assert HOSTILE_TAGS["owner"] in "".join(dom.text)
    assert DEMO_TOKEN not in dom_text and DEMO_CLIENT_SECRET not in dom_text

    page = chromium("--dump-dom", f"{demo.url}/endpoints/recommender")
    assert 'data-state="critical"' in page and "Recommended provisioned concurrency" in page
    assert len(re.findall(r"<svg[^>]*role=\"img\"", page)) >= 5 and re.search(r'<path d="M[\d.]+,[\d.]+ ', page)
    assert re.search(r"<td>queueing</td>", page)

    ARTIFACTS.mkdir(exist_ok=True)
    for name, path in (("status-page-fleet.png", "/"), ("status-page-recommender.png", "/endpoints/recommender")):
        shot = ARTIFACTS / name
        shot.unlink(missing_ok=True)
        chromium("--window-size=1400,1600", f"--screenshot={shot}", f"{demo.url}{path}")
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with capsys.disabled():
            print(f"\nstatus page screenshot: {shot}")

