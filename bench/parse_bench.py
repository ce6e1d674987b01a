"""CPU per Databricks /metrics body: the exporter's observe() (parse + assembly into MinuteFigures) and its
parse alone, against prometheus_client's text parser on the same bodies.

    python bench/parse_bench.py [BODIES.pkl] [--rounds N]

BODIES.pkl: `(minutes, details)` as recorded, `minutes` a list of `{endpoint: (body, content_type)}`.
Without it, 12 minutes of 200 endpoints come from the simulator in-process. Every body is observed with
`last=None` (a new minute: no short cut on an identical body). Each figure is µs per body, single thread:
for each chunk of 100 bodies the best of N passes, summed over the chunks and divided by the bodies.
"""

from __future__ import annotations

import argparse
import pickle
import time
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

from exporter.sources.databricks.metrics import observe
from exporter.sources.exposition import samples


def simulated_bodies(endpoints: int = 200, minutes: int = 12) -> list[tuple[bytes, str]]:
    from exporter.simulator.demo import build_synthetic_workspace

    workspace = build_synthetic_workspace(endpoints)
    bodies = []
    for _ in range(minutes):
        workspace.advance(1)
        bodies += [workspace.metrics(name) for name in workspace.names()]
    return bodies


def per_body_us(run: Callable[[object], object], items: list, rounds: int, chunk: int = 100) -> float:
    """The best of `rounds` runs of each chunk of bodies, summed: a burst of noise (a shared machine) spoils
    one chunk's run, not the figure."""
    total = 0.0
    for at in range(0, len(items), chunk):
        part = items[at:at + chunk]
        best = float("inf")
        for _ in range(rounds):
            start = time.perf_counter()
            for item in part:
                run(item)
            best = min(best, time.perf_counter() - start)
        total += best
    return total / len(items) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bodies", nargs="?", help="pickle of recorded bodies (default: simulate)")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    if args.bodies:
        with open(args.bodies, "rb") as f:
            minutes, _ = pickle.load(f)
        bodies = [pair for minute in minutes for pair in minute.values()]
    else:
        bodies = simulated_bodies()
    texts = [body.decode() for body, _ in bodies]
    size = sum(map(len, texts)) / len(texts)
    print(f"{len(bodies)} bodies, {size:.0f} bytes each on average, best of {args.rounds} passes per chunk")

    exporter = per_body_us(lambda pair: observe(pair[0], pair[1], 50, None), bodies, args.rounds)
    parse = per_body_us(samples, texts, args.rounds)
    reference = per_body_us(lambda text: [s for f in text_string_to_metric_families(text) for s in f.samples],
                            texts, args.rounds)
    print(f"observe() (parse + figures)      {exporter:7.1f} µs/body")
    print(f"  of which samples() (parse)     {parse:7.1f} µs/body")
    print(f"prometheus_client text parser    {reference:7.1f} µs/body")
    print(f"observe() / prometheus_client    {exporter / reference:7.2f}")


if __name__ == "__main__":
    main()
