"""A fake Databricks Model Serving workspace: real REST shapes and metrics text, coherent traffic,
and an invocations API served by the capacity the metrics report (invocations.py); and simulated self-hosted
model servers (model_servers/: vLLM- and Triton-shaped replicas with the projects' own metric names).

Used by `serving-exporter demo`, by integration tests that change scenarios at run time, and by
benchmarks with many synthetic endpoints. Standard library only (plus the package's own deps).
"""

from .demo import build_demo_model_servers, build_demo_workspace, build_synthetic_workspace
from .model_servers import ModelServer, ModelServerHTTP
from .scenario import PRESETS, Scenario
from .server import SimulatorServer
from .workspace import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_TOKEN,
    EndpointNotFound,
    Fault,
    Workspace,
)

__all__ = [
    "DEMO_CLIENT_ID",
    "DEMO_CLIENT_SECRET",
    "DEMO_TOKEN",
    "EndpointNotFound",
    "Fault",
    "ModelServer",
    "ModelServerHTTP",
    "PRESETS",
    "Scenario",
    "SimulatorServer",
    "Workspace",
    "build_demo_model_servers",
    "build_demo_workspace",
    "build_synthetic_workspace",
]
