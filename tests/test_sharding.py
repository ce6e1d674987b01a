"""Sharding: N replicas split a workspace's endpoints by a stable hash, each endpoint polled exactly once."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import requests

from exporter.config import ConfigError, load_settings
from exporter.daemon import Daemon
from exporter.pipeline.selection import shard_of
from exporter.simulator import DEMO_TOKEN, SimulatorServer, build_synthetic_workspace
from exporter.sources.databricks import DatabricksSource, client_factory

from .test_poller import FakeSource, make


def test_shards_partition_the_endpoints():
    names = [f"endpoint-{i}" for i in range(300)]
    shards = [{n for n in names if shard_of(n, 3) == i} for i in range(3)]
    assert set().union(*shards) == set(names)
    assert sum(len(s) for s in shards) == len(names)
    assert all(70 < len(s) < 130 for s in shards)  # roughly even


def test_replicas_in_other_processes_agree_on_the_shards():
    """Python's hash() differs per process; the shard must not."""
    code = "from exporter.pipeline.selection import shard_of; print([shard_of(f'e{i}', 7) for i in range(50)])"
    expected = str([shard_of(f"e{i}", 7) for i in range(50)])
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": seed},
                             capture_output=True, text=True, check=True).stdout.strip()
        assert out == expected


def test_each_poller_polls_only_its_share():
    names = [f"e{i}" for i in range(40)]
    polled = []
    for index in range(3):
        source, poller, _ = make(FakeSource(names), shard_count=3, shard_index=index)
        snap = poller.poll()
        polled.append({r.info.name for r in snap.endpoints})
        assert {n for kind, n in source.calls if kind == "metrics"} == polled[-1]
        assert snap.discovered == 40
    assert sorted(n for share in polled for n in share) == sorted(names)


def test_shard_index_from_a_statefulset_hostname(monkeypatch):
    monkeypatch.setenv("HOSTNAME", "serving-exporter-2")
    assert load_settings(overrides={"shard_count": 3}).shard() == (2, 3)
    monkeypatch.setenv("SERVING_EXPORTER_SHARD_INDEX", "1")
    assert load_settings(overrides={"shard_count": 3}).shard() == (1, 3)


def test_shard_index_out_of_range_is_a_config_error(monkeypatch):
    with pytest.raises(ConfigError, match="shard index 3 is not below shard_count 3"):
        load_settings(overrides={"shard_count": 3, "shard_index": 3})
    monkeypatch.setenv("HOSTNAME", "serving-exporter-5")
    with pytest.raises(ConfigError, match="shard index 5"):
        load_settings(overrides={"shard_count": 2})


@pytest.mark.integration
def test_replicas_against_the_demo_workspace_cover_every_endpoint_once():
    workspace = build_synthetic_workspace(60, minute_seconds=1.0)
    with SimulatorServer(workspace) as sim:
        daemons = []
        try:
            for index in range(3):
                settings = load_settings(overrides={"listen": "127.0.0.1:0", "poll_interval_seconds": 1,
                                                    "poll_deadline_seconds": 10, "shard_count": 3, "shard_index": index})
                factory = client_factory(5, 1, 8, host=sim.url, token=DEMO_TOKEN, auth_type="pat")
                daemons.append(Daemon(settings, DatabricksSource(factory)).start())
            assert all(d.wait_ready(15) for d in daemons)
            seen = [{e["name"] for e in requests.get(f"{d.url}/api/v1/endpoints", timeout=5).json()["endpoints"]}
                    for d in daemons]
            for d in daemons:
                metrics = requests.get(f"{d.url}/metrics", timeout=5).text
                assert f'model_serving_exporter_shard_info{{shard_count="3",shard_index="{daemons.index(d)}"}} 1.0' in metrics
            assert sorted(n for share in seen for n in share) == sorted(workspace.names())
            assert all(seen)  # every replica has work
            fetched = {n for kind, n in workspace.request_counts if kind == "metrics"}
            assert fetched == set(workspace.names())
        finally:
            for d in daemons:
                d.stop()
