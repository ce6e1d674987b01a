"""Replicas' cumulative readings → one minute's figures for an endpoint and its models.

The pipeline stores at most one observation per minute (pipeline/window.py), so counts are emitted once per
clock minute: the first fetch in a new minute differences each replica's reading against its baseline (the
reading at the previous emission), scales the increase to one minute (× 60 / seconds elapsed) and advances
the baselines. Fetches within the same minute change nothing, so polling faster than once a minute neither
loses nor doubles a count; polling slower averages the increase over the minutes it spans, as rate() does.

A replica's first reading is its baseline only: its counts so far are not this minute's. A value lower than
the baseline is a restart: the new value is the increase (Prometheus's counter-reset rule). A replica down
or gone contributes nothing; one that comes back is differenced against its old baseline. Gauges are the
latest readings of the replicas that answered: summed (requests waiting, running) or the largest (a ratio).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field, fields

from ...model import Histogram, MinuteFigures
from .readings import Reading, ReplicaReading

log = logging.getLogger(__name__)

MINUTE_S = 60.0
# A replica whose baseline is younger than this keeps it for the next minute: an increase over a few seconds,
# scaled to a minute, would be mostly noise. Its counts are not lost, only counted in the next minute.
MIN_SPAN_S = 10.0
_FIELDS = frozenset(f.name for f in fields(MinuteFigures))


@dataclass
class Baseline:
    at_s: float
    reading: ReplicaReading


@dataclass
class Emitted:
    endpoint: MinuteFigures
    entities: dict[str, MinuteFigures]
    counted: int  # replicas whose increase is in the counts


@dataclass
class EndpointAggregate:
    """One endpoint's baselines (by target) and its models admitted as served entities (at most `max_entities`,
    first come; the rest count towards the endpoint only)."""

    max_entities: int
    baselines: dict[str, Baseline] = field(default_factory=dict)
    minute: int | None = None  # the clock minute of the last emission
    admitted: list[str] = field(default_factory=list)
    dropped: set[str] = field(default_factory=set)

    def due(self, now_s: float) -> bool:
        return self.minute is None or int(now_s // MINUTE_S) > self.minute

    def forget(self, keep: Iterable[str]) -> None:
        """Drop the baselines of targets no longer discovered."""
        keep = set(keep)
        for target in [t for t in self.baselines if t not in keep]:
            del self.baselines[target]

    def emit(self, readings: dict[str, ReplicaReading], now_s: float) -> Emitted:
        """The minute's figures from the replicas that answered (`readings`, by target); advances baselines."""
        self.minute = int(now_s // MINUTE_S)
        endpoint = _Sum()
        entities: dict[str, _Sum] = {}
        counted = 0
        for target, reading in readings.items():
            baseline = self.baselines.get(target)
            elapsed = now_s - baseline.at_s if baseline else 0.0
            increase = None
            if baseline is not None and elapsed >= MIN_SPAN_S:
                factor = MINUTE_S / elapsed
                increase = (_increase(reading.endpoint, baseline.reading.endpoint, factor),
                            {name: _increase(r, baseline.reading.entities.get(name), factor)
                             for name, r in reading.entities.items()})
                counted += 1
            if baseline is None or increase is not None:
                self.baselines[target] = Baseline(now_s, reading)
            endpoint.add(reading.endpoint, increase[0] if increase else None)
            for name, r in reading.entities.items():
                if self._admit(name):
                    entities.setdefault(name, _Sum()).add(r, increase[1][name] if increase else None)
        return Emitted(endpoint.figures(counted > 0),
                       {name: s.figures(counted > 0) for name, s in sorted(entities.items())}, counted)

    def _admit(self, name: str) -> bool:
        if name in self.admitted:
            return True
        if len(self.admitted) < self.max_entities:
            self.admitted.append(name)
            return True
        if name not in self.dropped:
            self.dropped.add(name)
            log.warning("more than %d models on one endpoint: %r counts towards the endpoint only",
                        self.max_entities, name[:100])
        return False


@dataclass
class _Increase:
    counts: dict[str, float]
    histograms: dict[str, Histogram]


def _increase(now: Reading, before: Reading | None, factor: float) -> _Increase:
    counts = {}
    for name, value in now.counts.items():
        previous = before.counts.get(name) if before else None
        # A series that appeared since counts whole; one lower than before restarted: its value is the increase.
        delta = value if previous is None or value < previous else value - previous
        counts[name] = delta * factor
    histograms = {}
    for name, histogram in now.histograms.items():
        previous = before.histograms.get(name) if before else None
        delta = (histogram.minus(previous) if previous is not None else None) or histogram
        histograms[name] = Histogram(delta.bounds, tuple(c * factor for c in delta.counts), delta.sum * factor,
                                     delta.count * factor)
    return _Increase(counts, histograms)


class _Sum:
    """Figures added up over replicas."""

    def __init__(self) -> None:
        self.counts: dict[str, float] = {}
        self.histograms: dict[str, Histogram] = {}
        self.gauges: dict[str, float] = {}

    def add(self, reading: Reading, increase: _Increase | None) -> None:
        for name, (value, combine) in reading.gauges.items():
            current = self.gauges.get(name)
            self.gauges[name] = value if current is None else (current + value if combine == "sum" else max(current, value))
        if increase is None:
            return
        for name, value in increase.counts.items():
            self.counts[name] = self.counts.get(name, 0.0) + value
        for name, histogram in increase.histograms.items():
            current = self.histograms.get(name)
            if current is None:
                self.histograms[name] = histogram
            elif current.same_layout(histogram):
                self.histograms[name] = current.plus(histogram)
            # else: replicas with other buckets (a rollout between versions) cannot be merged; left out

    def figures(self, counted: bool) -> MinuteFigures:
        values: dict = dict(self.gauges)
        if counted:
            values.update(self.counts)
            values.update(self.histograms)
        return MinuteFigures(**{k: v for k, v in values.items() if k in _FIELDS})
