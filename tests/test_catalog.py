"""The metric catalog is the one definition of every family: the exposition, Datadog and the docs follow it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.catalog import FAMILIES
from exporter.sinks.datadog.points import METRICS

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "fixtures" / "golden" / "metrics.prom"
# prometheus_client reports an info family as a gauge with the `_info` suffix in the text format.
PARSED_TYPE = {"gauge": "gauge", "counter": "counter", "histogram": "histogram", "info": "gauge"}
EXPOSED_NAME = {"gauge": "{}", "counter": "{}", "histogram": "{}", "info": "{}_info"}


def golden_families() -> dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(GOLDEN.read_text()) if f.name.startswith("model_serving_")}


def test_the_golden_exposition_has_exactly_the_catalog_families_with_their_help_and_type():
    golden = golden_families()
    expected = {EXPOSED_NAME[f.type].format(f.prometheus_name): f for f in FAMILIES}
    assert set(golden) == set(expected)
    for name, family in expected.items():
        assert golden[name].documentation == family.help, name
        assert golden[name].type == PARSED_TYPE[family.type], name


def test_the_golden_exposition_has_exactly_the_catalog_labels():
    for parsed in golden_families().values():
        family = next(f for f in FAMILIES if parsed.name in (f.prometheus_name, f.prometheus_name + "_info"))
        for sample in parsed.samples:
            bucket = {"le"} if sample.name.endswith("_bucket") else set()
            allowed = set(family.label_names) | set(family.info_labels) | bucket
            assert set(sample.labels) == allowed, (sample.name, sample.labels)


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_names_follow_the_prometheus_conventions(family):
    name = family.name
    assert re.fullmatch(r"[a-z][a-z0-9_]*", name) and not name.endswith(("_total", "_info", "_count", "_sum", "_bucket"))
    assert (family.unit == "seconds") == (name.endswith("_seconds") and not name.endswith("_timestamp_seconds"))
    assert (family.unit == "timestamp") == name.endswith("_timestamp_seconds")
    assert (family.unit == "ratio") == ("_ratio" in name)
    assert family.help.endswith(".") and "\n" not in family.help
    assert not {"le", "quantile", "endpoint", "cluster", "service", "env", "environment", "region"} & set(family.label_names)
    assert (family.type == "info") == bool(family.info_labels)


def test_every_family_sent_to_datadog_has_its_metric_definitions():
    sent = {m.family.name for m in METRICS.values()}
    assert sent == {f.name for f in FAMILIES if f.datadog is not None}
    assert {"exporter_build", "exporter_shard", "exporter_render_errors"}.isdisjoint(sent)


def test_generated_docs_are_current():
    run = subprocess.run([sys.executable, str(ROOT / "docs" / "generate.py"), "--check"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_the_docs_table_lists_every_family():
    text = (ROOT / "docs" / "metrics.md").read_text()
    table = text.split("<!-- BEGIN generated: families -->")[1].split("<!-- END generated: families -->")[0]
    assert [f.prometheus_name for f in FAMILIES if f"`{f.prometheus_name}" not in table] == []
