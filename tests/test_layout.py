"""The package's shape: every module imports on its own, no import cycle anywhere in exporter/, and no
Databricks wire name outside exporter/sources/databricks/ (and the simulator, which fakes Databricks)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "exporter"
DATABRICKS_ONLY = (PACKAGE / "sources" / "databricks", PACKAGE / "simulator")

# From the platform's API reference (not from the code under test): metric names, workload types and
# sizes, readiness and deployment states, and its one confirmed label.
DATABRICKS_NAMES = (
    "request_count_total", "request_4xx_count_total", "request_5xx_count_total", "request_latency_ms",
    "cpu_usage_percentage", "mem_usage_percentage", "provisioned_concurrent_requests_total", "gpu_usage_percentage",
    "gpu_memory_usage_percentage", "gpu_mem_usage_percentage", "model_queue_time_ms", "model_prediction_latency_ms",
    "CPU_MEDIUM", "CPU_LARGE", "GPU_SMALL", "GPU_MEDIUM", "GPU_LARGE", "GPU_XLARGE", "MULTIGPU_MEDIUM",
    "DEPLOYMENT_READY", "DEPLOYMENT_CREATING", "DEPLOYMENT_FAILED", "DEPLOYMENT_RECOVERING", "DEPLOYMENT_ABORTED",
    "NOT_UPDATING", "UPDATE_FAILED", "UPDATE_CANCELED", "NOT_READY", "workspaceId",
)
# Words too common to search as text; as string literals they are Databricks' workload and state names.
DATABRICKS_LITERALS = {"CPU", "Small", "Medium", "Large", "READY", "IN_PROGRESS"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _runtime_imports(path: Path) -> set[str]:
    """Modules `path` imports when it runs, function-level imports included (a lazy import still closes a
    cycle), `if TYPE_CHECKING:` blocks excluded."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
            and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING") for n in ast.walk(node)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)  # `from pkg import submodule`
    return {m for m in found if m in MODULES}


def _graph() -> dict[str, set[str]]:
    """module -> modules whose import it triggers: each imported module and its packages (importing
    a.b.c runs a/__init__ and a/b/__init__ first), minus the importer's own packages, which are running."""
    graph = {}
    for name, path in MODULES.items():
        own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        edges = set()
        for target in _runtime_imports(path):
            parts = target.split(".")
            edges.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
        graph[name] = {e for e in edges if e in MODULES and e != name and e not in own}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_check_finds_a_cycle():
    """The checker itself: a cycle through a lazy import and a package __init__ is found."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_anywhere_in_the_package():
    graph = _graph()
    assert graph["exporter.config"] >= {"exporter.pipeline.rules", "exporter.sinks.datadog.settings"}  # it sees edges
    assert _cycles(graph) == []


def test_every_module_imports_on_its_own():
    """Each module in a fresh interpreter: an import-order-dependent cycle fails here."""
    def load(name: str) -> tuple[str, int, str]:
        run = subprocess.run([sys.executable, "-c", f"import {name}"], cwd=ROOT, capture_output=True, text=True,
                             timeout=120)
        return name, run.returncode, run.stderr[-500:]

    with ThreadPoolExecutor(4) as pool:
        failed = [(n, err) for n, code, err in pool.map(load, sorted(MODULES)) if code != 0]
    assert not failed, failed


@pytest.mark.parametrize("path", [p for p in MODULES.values() if not p.is_relative_to(DATABRICKS_ONLY[0])
                                  and not p.is_relative_to(DATABRICKS_ONLY[1])],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_no_databricks_name_outside_its_source(path):
    text = path.read_text()
    # Whole names only: another server's metric may contain one (Ray Serve's ray_serve_http_request_latency_ms).
    assert [n for n in DATABRICKS_NAMES if re.search(rf"(?<![A-Za-z0-9_:]){n}(?![A-Za-z0-9_])", text)] == []
    literals = {node.value for node in ast.walk(ast.parse(text)) if isinstance(node, ast.Constant)}
    assert literals & DATABRICKS_LITERALS == set()


def test_the_databricks_package_does_hold_them():
    """The scan above looks for names that really are in use (in the Databricks package)."""
    text = "".join(p.read_text() for p in (PACKAGE / "sources" / "databricks").glob("*.py"))
    assert [n for n in ("request_latency_ms", "cpu_usage_percentage", "GPU", "DEPLOYMENT_READY", "UPDATE_FAILED")
            if n not in text] == []
