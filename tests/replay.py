"""A Source that replays recorded Databricks API responses (tests/fixtures/golden/polls.json) poll by poll,
through the Databricks source's own JSON and metrics parsers."""

from __future__ import annotations

import json
from pathlib import Path

from exporter.model import EndpointInfo
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
        return [endpoint_from_json(item) for item in self.polls[self.index]["list"]["endpoints"]]

    def describe(self, name: str, deadline: float | None = None) -> EndpointInfo:
        self.usage.count("detail", "2xx")
        return endpoint_from_json(self.polls[self.index]["details"][name], detailed=True)

    def fetch(self, name: str, deadline: float | None = None) -> Observation:
        recorded = self.polls[self.index]["metrics"][name]
        self.usage.count("metrics", ApiUsage.outcome(recorded["status"]))
        if recorded["status"] != 200:
            raise FetchError(f"http_{recorded['status']}", f"GET metrics of {name}: HTTP {recorded['status']}")
        return observe(recorded["body"].encode(), recorded["content_type"])
