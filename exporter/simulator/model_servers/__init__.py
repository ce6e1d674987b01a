"""Simulated self-hosted model servers for the demo and tests: replicas of vLLM- and Triton-shaped servers
whose /metrics carry each project's own metric names and labels, with cumulative counters and histograms
that advance with simulated traffic (the way a real server's do), on the simulator's compressed clock."""

from .fleet import ModelServer, Outage, ReplicaDown
from .http import ModelServerHTTP
from .triton import TritonShape
from .vllm import VllmShape

__all__ = ["ModelServer", "ModelServerHTTP", "Outage", "ReplicaDown", "TritonShape", "VllmShape"]
