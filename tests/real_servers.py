"""Real model servers for the tests: each installed from PyPI into its own virtualenv under .venv-servers/
(created on first use, cached across runs, rebuilt when its requirements change), loaded with a tiny iris model
trained in the test, bound to 127.0.0.1 on free ports, and stopped by the test. See docs/real-servers.md."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
VENVS = ROOT / ".venv-servers"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "real_servers"

# Pinned to the release lines whose metric names docs/self-hosted.md and the source's mappings were checked against.
REQUIREMENTS = {
    # uvloop 0.22+ makes MLServer 1.7's workers die at start ("There is no current event loop").
    "mlserver": ["mlserver>=1.7,<1.8", "mlserver-sklearn>=1.7,<1.8", "uvloop<0.22"],
    "bentoml": ["bentoml>=1.4,<1.5", "scikit-learn"],
    "kserve": ["kserve>=0.21,<0.22", "scikit-learn"],
}
IRIS = [5.1, 3.5, 1.4, 0.2]


def server_python(kind: str, log: Callable[[str], None] = print) -> Path:
    """The interpreter of `kind`'s virtualenv, creating it first if it is missing or its requirements changed.
    A lock file keeps two test sessions from building the same one at once."""
    venv = VENVS / kind
    python = venv / "bin" / "python"
    marker = venv / ".requirements.json"
    wanted = json.dumps(REQUIREMENTS[kind])
    VENVS.mkdir(exist_ok=True)
    with open(VENVS / f"{kind}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if python.exists() and marker.exists() and marker.read_text() == wanted:
            return python
        shutil.rmtree(venv, ignore_errors=True)
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
        result = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                                 *REQUIREMENTS[kind]], capture_output=True, text=True)
        if result.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            raise RuntimeError(f"installing {kind} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        marker.write_text(wanted)
        log(f"{kind}: installed {' '.join(REQUIREMENTS[kind])} in {time.monotonic() - started:.0f} s, "
            f"{_size_mb(venv):.0f} MB")
        return python


def _size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 1e6


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RealServer:
    """A running model server: where to send inference requests and where its metrics are."""

    kind: str
    infer_url: str
    metrics_url: str
    good: dict  # a valid request body
    bad: dict  # a request the server answers with an error (wrong feature count: the model raises)
    model: str = "iris"
    log_path: Path | None = None
    statuses: dict[int, int] = field(default_factory=dict)  # what the server answered to drive()

    def drive(self, total: int, bad_every: int, rate: float) -> dict[int, int]:
        """Send `total` requests at `rate` per second, every `bad_every`-th one malformed; returns (and adds to
        `statuses`) the count of each status the server answered."""
        answered: dict[int, int] = {}
        start = time.monotonic()
        for i in range(total):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            body = self.bad if bad_every and i % bad_every == bad_every - 1 else self.good
            # A new connection per request: a reused keep-alive connection was reset once in CI (KServe, under
            # load; most likely one the server had just closed), and a request lost that way breaks the exact counts.
            status = requests.post(self.infer_url, json=body, timeout=30, headers={"Connection": "close"}).status_code
            answered[status] = answered.get(status, 0) + 1
        for status, n in answered.items():
            self.statuses[status] = self.statuses.get(status, 0) + n
        return answered

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path and self.log_path.exists() else ""


@contextmanager
def _process(command: list[str], cwd: Path, env: dict[str, str], ready_url: str, log_path: Path,
             timeout: float = 90.0) -> Iterator[subprocess.Popen]:
    """Run a server in its own process group until the block ends; wait for `ready_url` to answer 200 first."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, cwd=cwd, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{command[0]} exited with {proc.returncode}:\n"
                                   f"{log_path.read_text(errors='replace')[-4000:]}")
            try:
                if requests.get(ready_url, timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{ready_url} not ready after {timeout:.0f} s:\n"
                                   f"{log_path.read_text(errors='replace')[-4000:]}")
            time.sleep(0.3)
        yield proc
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (its workers included), SIGKILL if it is still there after 15 s."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)
    except ProcessLookupError:
        pass
    try:  # workers that outlived their parent
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _train(python: Path, out: Path) -> None:
    subprocess.run([str(python), str(FIXTURES / "train_iris.py"), str(out)], check=True, capture_output=True,
                   timeout=120)


@contextmanager
def mlserver(workdir: Path) -> Iterator[RealServer]:
    """Seldon MLServer with the sklearn runtime; metrics on their own port."""
    python = server_python("mlserver")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "iris").mkdir(exist_ok=True)
    _train(python, workdir / "iris" / "model.joblib")
    http, grpc, metrics = free_port(), free_port(), free_port()
    (workdir / "settings.json").write_text(json.dumps(
        {"host": "127.0.0.1", "http_port": http, "grpc_port": grpc, "metrics_port": metrics}))
    (workdir / "iris" / "model-settings.json").write_text(json.dumps(
        {"name": "iris", "implementation": "mlserver_sklearn.SKLearnModel", "parameters": {"uri": "./model.joblib"}}))
    log_path = workdir / "server.log"
    command = [str(python.parent / "mlserver"), "start", str(workdir)]
    with _process(command, workdir, {}, f"http://127.0.0.1:{http}/v2/models/iris/ready", log_path):
        def v2(values: list[float]) -> dict:
            return {"inputs": [{"name": "x", "shape": [1, len(values)], "datatype": "FP64", "data": values}]}

        yield RealServer("mlserver", f"http://127.0.0.1:{http}/v2/models/iris/infer",
                         f"http://127.0.0.1:{metrics}/metrics", v2(IRIS), v2(IRIS[:3]), log_path=log_path)


@contextmanager
def bentoml(workdir: Path) -> Iterator[RealServer]:
    """A BentoML 1.4 service; metrics on the API port."""
    python = server_python("bentoml")
    workdir.mkdir(parents=True, exist_ok=True)
    _train(python, workdir / "model.joblib")
    shutil.copy(FIXTURES / "bentoml_service.py", workdir / "bentoml_service.py")
    port = free_port()
    env = {"IRIS_MODEL": str(workdir / "model.joblib"), "BENTOML_HOME": str(workdir / "bentoml-home"),
           "BENTOML_DO_NOT_TRACK": "True"}
    log_path = workdir / "server.log"
    command = [str(python.parent / "bentoml"), "serve", "bentoml_service:Iris", "--host", "127.0.0.1",
               "--port", str(port)]
    with _process(command, workdir, env, f"http://127.0.0.1:{port}/readyz", log_path):
        yield RealServer("bentoml", f"http://127.0.0.1:{port}/classify", f"http://127.0.0.1:{port}/metrics",
                         {"features": [IRIS]}, {"features": [IRIS[:3]]}, model="Iris", log_path=log_path)


@contextmanager
def kserve(workdir: Path) -> Iterator[RealServer]:
    """KServe's Python model server (v1 protocol); metrics on the HTTP port."""
    python = server_python("kserve")
    workdir.mkdir(parents=True, exist_ok=True)
    _train(python, workdir / "model.joblib")
    port = free_port()
    log_path = workdir / "server.log"
    command = [str(python), str(FIXTURES / "kserve_server.py"), str(workdir / "model.joblib"), str(port)]
    with _process(command, workdir, {}, f"http://127.0.0.1:{port}/v1/models/iris", log_path):
        yield RealServer("kserve", f"http://127.0.0.1:{port}/v1/models/iris:predict",
                         f"http://127.0.0.1:{port}/metrics", {"instances": [IRIS]}, {"instances": [IRIS[:3]]},
                         log_path=log_path)


SERVERS = {"mlserver": mlserver, "bentoml": bentoml, "kserve": kserve}
