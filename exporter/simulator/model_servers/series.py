"""What one replica publishes for one minute, as flat series, and how it becomes Prometheus text.

A series is keyed by (sample name, labels); counters and histogram series hold the minute's increase, gauges
the minute's level. Keeping every kind of server in this one shape lets the fleet accumulate, interpolate and
reset them without knowing any server's metric names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

Labels = tuple[tuple[str, str], ...]
Key = tuple[str, Labels]  # (sample name, labels)


@dataclass(frozen=True)
class Family:
    """One metric family as the real server declares it: name, TYPE, HELP and the label names it carries."""

    name: str
    type: str  # counter | gauge | histogram
    help: str


@dataclass(frozen=True)
class ReplicaMinute:
    """One replica's minute: the increase of every cumulative series, the gauges' levels, and ground truth."""

    counts: Mapping[Key, float]
    gauges: Mapping[Key, float]
    truth: Mapping[str, float]  # what tests compare the exporter with (requests, errors, queue, ...)


def histogram_series(name: str, labels: Labels, bounds: Sequence[float], n: int,
                     cdf: Callable[[float], float], mean: float) -> dict[Key, float]:
    """n observations spread by `cdf` over `bounds` (+Inf added): cumulative `_bucket`s, `_sum` and `_count`.
    Expected counts are rounded; rounding a non-decreasing CDF keeps the buckets non-decreasing."""
    series: dict[Key, float] = {}
    for le in bounds:
        series[(f"{name}_bucket", (*labels, ("le", _le(le))))] = min(n, round(n * cdf(le))) if n else 0
    series[(f"{name}_bucket", (*labels, ("le", "+Inf")))] = n
    series[(f"{name}_sum", labels)] = n * mean if n else 0.0
    series[(f"{name}_count", labels)] = n
    return series


def _le(bound: float) -> str:
    return repr(float(bound))


def render(families: Sequence[Family], values: Mapping[Key, float]) -> bytes:
    """Prometheus text format 0.0.4: each family's HELP and TYPE, then its samples in the order given."""

    def lines() -> Iterator[str]:
        for family in families:
            samples = [(key, v) for key, v in values.items() if _family_of(key[0], family)]
            if not samples:
                continue
            yield f"# HELP {family.name} {family.help}"
            yield f"# TYPE {family.name} {family.type}"
            for (sample, labels), value in samples:
                label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
                yield f"{sample}{{{label_text}}} {_number(value)}" if labels else f"{sample} {_number(value)}"

    return ("\n".join(lines()) + "\n").encode()


def _family_of(sample: str, family: Family) -> bool:
    if family.type == "histogram":
        return sample in (f"{family.name}_bucket", f"{family.name}_sum", f"{family.name}_count")
    return sample == family.name


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
