"""Regenerate the docs that derive from the code: docs/remediation.md (from the rule table) and the
family tables of docs/metrics.md and docs/datadog.md (from the metric catalog).

    python docs/generate.py          # rewrite them
    python docs/generate.py --check  # exit 1 if any is stale (tests/test_catalog.py does the same)

A generated table sits between `<!-- BEGIN generated: NAME -->` and `<!-- END generated: NAME -->`.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from exporter.catalog import markdown_table  # noqa: E402
from exporter.pipeline.rules import markdown  # noqa: E402
from exporter.sinks.datadog.points import markdown_table as datadog_table  # noqa: E402

DOCS = Path(__file__).resolve().parent
BLOCKS = {"metrics.md": {"families": markdown_table}, "datadog.md": {"metrics": datadog_table}}


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
