"""A Source that replays recorded Databricks API responses (tests/fixtures/golden/polls.json) poll by poll,
through the Databricks source's own JSON and metrics parsers, plus one self-hosted vLLM endpoint whose figures
are written here (what the self-hosted source hands the pipeline), so the golden exposition has every family."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import math

from exporter.model import EndpointInfo, Histogram, MinuteFigures, Replica, ServedEntity
from exporter.sources import ApiUsage, FetchError, Observation
from exporter.sources.databricks.endpoints import endpoint_from_json
from exporter.sources.databricks.metrics import observe

POLLS = Path(__file__).parent / "fixtures" / "golden" / "polls.json"


class ReplaySource:
    platform = "databricks"
    workspace = "replay.example.com"
    refresh_seconds = 60.0

    def __init__(self, path: Path = POLLS):
        self.polls = json.loads(path.read_text())
        self.index = -1
        self.usage = ApiUsage()

    def close(self) -> None:
        pass

    def list_endpoints(self, deadline: float | None = None) -> list[EndpointInfo]:
        self.index += 1  # each list call starts the next recorded poll
        self.usage.count("list", "2xx")
        return [replace(endpoint_from_json(item), workspace=self.workspace)
                for item in self.polls[self.index]["list"]["endpoints"]] + [LLM]

    def describe(self, name: str, deadline: float | None = None) -> EndpointInfo:
        self.usage.count("detail", "2xx")
        if name == LLM.name:
            return LLM
        return replace(endpoint_from_json(self.polls[self.index]["details"][name], detailed=True), workspace=self.workspace)

    def fetch(self, name: str, deadline: float | None = None) -> Observation:
        if name == LLM.name:
            return llm_observation(self.index)
        recorded = self.polls[self.index]["metrics"][name]
        self.usage.count("metrics", ApiUsage.outcome(recorded["status"]))
        if recorded["status"] != 200:
            raise FetchError(f"http_{recorded['status']}", f"GET metrics of {name}: HTTP {recorded['status']}")
        return observe(recorded["body"].encode(), recorded["content_type"])


# Two of three vLLM replicas answer, 256 concurrent sequences each.
LLM = EndpointInfo(name="chat-assistant", platform="self-hosted", server="vllm", ready=True, detailed=True,
                   tags={"team": "genai"}, served_entities=(ServedEntity(name="chat-assistant", sized_capacity=512.0),))
REPLICAS = (Replica("http://10.0.0.5:8000/metrics", True), Replica("http://10.0.0.6:8000/metrics", True),
            Replica("http://10.0.0.7:8000/metrics", False, "timeout"))


def llm_observation(poll: int) -> Observation:
    """A busy minute of the vLLM endpoint, a little busier each poll."""
    requests = 600.0 + 60 * poll
    seconds = (0.5, 1.0, 2.5, 5.0, math.inf)
    return Observation(MinuteFigures(
        requests=requests, errors_4xx=0.0, errors_5xx=1.0,
        latency=Histogram(seconds, (0, 60, 300, 540, requests), 1500.0 + 300 * poll, requests),
        queue_time=Histogram((0.1, 0.5, math.inf), (500, 580, requests), 30.0, requests),
        ttft=Histogram((0.1, 0.5, 1.0, 2.5, math.inf), (200, 500, 580, 595, requests), 150.0, requests),
        tpot=Histogram((0.01, 0.025, 0.05, 0.1, math.inf), (0, 40_000, 85_000, 89_500, 90_000), 2700.0, 90_000),
        prompt_tokens=120_000.0, generation_tokens=90_000.0, preemptions=float(poll), kv_cache_ratio=0.6 + 0.1 * poll,
        queue_depth=2.0, requests_running=40.0 + 10 * poll), replicas=REPLICAS)
