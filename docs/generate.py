"""Regenerate the docs that derive from the code: docs/remediation.md (from the rule table), the
family tables of docs/metrics.md and docs/datadog.md (from the metric catalog), the series cost
table of docs/metrics.md (counted in the golden exposition of the recorded demo polls), and the
checks of docs/check.md (from exporter/check.py).

    python docs/generate.py          # rewrite them
    python docs/generate.py --check  # exit 1 if any is stale (tests/test_catalog.py does the same)

A generated table sits between `<!-- BEGIN generated: NAME -->` and `<!-- END generated: NAME -->`.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from exporter.catalog import FAMILIES, markdown_table  # noqa: E402
from exporter.check import markdown as check_table  # noqa: E402
from exporter.pipeline.rules import markdown  # noqa: E402
from exporter.sinks.datadog.points import markdown_table as datadog_table  # noqa: E402

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
GOLDEN = ROOT / "tests" / "fixtures" / "golden" / "metrics.prom"


def series_costs() -> str:
    """Series per endpoint and per served entity of each family, as the golden exposition has them (the
    most any recorded endpoint has), and whether the alert rules and Grafana dashboards read the family."""
    from prometheus_client.parser import text_string_to_metric_families

    per_row: dict[tuple[str, bool], Counter[str]] = {}
    platform: dict[str, str] = {}  # endpoint -> its platform label
    endpoint_total: Counter[str] = Counter()  # series of the endpoint as a whole
    for family in text_string_to_metric_families(GOLDEN.read_text()):
        for sample in family.samples:
            endpoint = sample.labels.get("serving_endpoint")
            if endpoint is not None:
                entity = sample.labels.get("served_entity")
                key = (family.name, bool(entity))
                per_row.setdefault(key, Counter())[endpoint + "/" + sample.labels.get("served_entity", "")] += 1
                endpoint_total[endpoint] += 0 if entity else 1
                if family.name == "model_serving_endpoint_info":
                    platform[endpoint] = sample.labels["platform"]
    alerts = "".join(p.read_text() for p in sorted((ROOT / "alerts" / "prometheus").rglob("*.y*ml")))
    grafana = "".join(p.read_text() for p in sorted((ROOT / "dashboards" / "grafana").rglob("*.json")))
    lines = ["| family | series per endpoint | per served entity | alert rules read it | dashboards read it |",
             "|---|---|---|---|---|"]
    total = [0, 0]
    for f in FAMILIES:
        if f.scope == "exporter":
            continue
        exposed = f.prometheus_name + ("_info" if f.type == "info" else "")
        counts = [max(per_row.get((exposed, entity), Counter({"": 0})).values()) for entity in (False, True)]
        total = [total[0] + counts[0], total[1] + counts[1]]
        note = " (one per active hint)" if f.name == "remediation" else ""
        lines.append(f"| `{f.name}` | {counts[0]}{note} | {counts[1]} | {'yes' if f.prometheus_name in alerts else 'no'} "
                     f"| {'yes' if f.prometheus_name in grafana else 'no'} |")
    for name in sorted(set(platform.values())):
        most = max(n for endpoint, n in endpoint_total.items() if platform.get(endpoint) == name)
        lines.append(f"| **all, the largest {name} endpoint** | **{most}** | | | |")
    lines.append(f"| **all families together** | **{total[0]}** | **{total[1]}** | | |")
    return "\n".join(lines) + "\n"


BLOCKS = {"metrics.md": {"families": markdown_table, "series-costs": series_costs},
          "datadog.md": {"metrics": datadog_table},
          "check.md": {"checks": check_table}}


def expected() -> dict[Path, str]:
    """Every generated file's intended text."""
    out = {DOCS / "remediation.md": markdown()}
    for name, blocks in BLOCKS.items():
        path = DOCS / name
        text = path.read_text()
        for block, render in blocks.items():
            pattern = re.compile(rf"(<!-- BEGIN generated: {block} -->\n).*?(<!-- END generated: {block} -->)", re.S)
            if not pattern.search(text):
                raise SystemExit(f"{path}: no generated block {block!r}")
            text = pattern.sub(lambda m: m.group(1) + render() + m.group(2), text)
        out[path] = text
    return out


def main(argv: list[str]) -> int:
    stale = [path for path, text in expected().items() if not path.exists() or path.read_text() != text]
    if "--check" in argv:
        for path in stale:
            print(f"{path} is stale: run python docs/generate.py", file=sys.stderr)
        return 1 if stale else 0
    for path, text in expected().items():
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
