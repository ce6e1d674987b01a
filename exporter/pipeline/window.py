"""Per-series memory across polls: the minutes inside the analysis window and the
cumulative counters synthesised from them.

Each source minute is stored once under its minute key (from the source's own
timestamp when it sends one, otherwise from the clock at poll time), so polling
faster than the source refreshes never counts a minute twice.

A source that cannot say whether its histograms are per minute or cumulative
(`Observation.histograms == "unknown"`) has them told apart per observation (see
`HistogramStream`); per-minute histograms are stored as they come.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace

from ..model import Counters, Figures, Histogram, MinuteFigures, reported_fields
from .analysis import analyze

MINUTE_MS = 60_000
HISTOGRAMS = ("latency", "queue_time", "ttft", "tpot")  # the MinuteFigures histograms
# ... with at most one observation per request, so the request count can tell a cumulative body; TPOT observes
# every generated token, so it is told by its count's trend alone.
PER_REQUEST = frozenset({"latency", "queue_time", "ttft"})


class HistogramStream:
    """Turns a histogram series that may be per-minute or cumulative into per-minute deltas.

    With the minute's request count (the normal case): a per-minute histogram
    cannot hold more observations than the minute had requests, so a `_count` above
    requests × 1.05 + 2 (slack for minute-boundary skew; no slack when the minute had
    no requests at all) means cumulative; a series
    once cumulative stays so while `_count` does not decrease. A decrease ends that:
    the body is then taken as is, which is right for a per-minute series and for a
    cumulative one that just reset (it is the delta since the reset, as PromQL's
    rate() assumes), and the next minute re-detects a cumulative series.

    Without request counts: four non-decreasing, growing `_count`s in a row mean
    cumulative, and a decrease after that is taken as a reset, not a change of kind.

    The first body of a cumulative series has no predecessor and yields no minute.
    """

    STREAK = 4

    def __init__(self) -> None:
        self.cumulative = False
        self.previous: Histogram | None = None
        self._counts: list[float] = []

    def per_minute(self, raw: Histogram, requests: float | None) -> Histogram | None:
        previous, self.previous = self.previous, raw
        self._counts = (self._counts + [raw.count])[-self.STREAK:]
        if requests is not None:
            grew = previous is not None and raw.count >= previous.count
            slack = 2 if requests > 0 else 0  # an idle minute cannot have observations of its own
            self.cumulative = raw.count > requests * 1.05 + slack or (self.cumulative and grew)
        elif not self.cumulative:
            self.cumulative = self._streak()
        if not self.cumulative:
            return raw
        if previous is None:
            return None
        return raw.minus(previous) or raw  # None from minus() means a reset

    def _streak(self) -> bool:
        c = self._counts
        return len(c) >= self.STREAK and all(b >= a for a, b in zip(c, c[1:])) and c[-1] > c[0]


class SeriesWindow:
    """Minutes of one endpoint or served entity, plus its synthesised counters."""

    def __init__(self, window_minutes: int) -> None:
        self.window_minutes = window_minutes
        self.minutes: dict[int, MinuteFigures] = {}
        self._reported: dict[int, frozenset[str]] = {}  # by minute key: the fields the minute reports
        self.newest_key: int | None = None
        self._streams = {name: HistogramStream() for name in HISTOGRAMS}
        self.counters = Counters()
        self._version = 0  # bumped when a minute is stored: the window changes only then
        self._analysed: tuple[int, float | None, Figures] | None = None

    def ingest(self, minute_key: int, raw: MinuteFigures, histograms: str = "per_minute") -> bool:
        """Store one minute; return False (and change nothing) if it is not newer than the newest stored.
        `histograms` is the Observation's: "unknown" sends them through the per-minute/cumulative detection."""
        if self.newest_key is not None and minute_key <= self.newest_key:
            return False  # seen, or late: the histogram deltas need minutes in order
        figures = raw
        if histograms == "unknown":
            told = {name: stream.per_minute(h, raw.requests if name in PER_REQUEST else None)
                    if (h := getattr(raw, name)) else None for name, stream in self._streams.items()}
            if any(h is not getattr(raw, name) for name, h in told.items()):  # else per minute already: as it came
                figures = replace(raw, **told)
        self.minutes[minute_key] = figures
        self._reported[minute_key] = reported_fields(figures)
        self.newest_key = minute_key if self.newest_key is None else max(self.newest_key, minute_key)
        for key in [k for k in self.minutes if k <= self.newest_key - self.window_minutes]:
            del self.minutes[key], self._reported[key]
        self.counters = _advance(self.counters, figures)
        self._version += 1
        return True

    def figures(self, capacity: float | None) -> Figures:
        """The window's analysis, computed again only when a minute was stored (or the capacity changed):
        a poll that finds no new minute costs no analysis."""
        cached = self._analysed
        if cached is None or cached[0] != self._version or cached[1] != capacity:
            reported = frozenset().union(*self._reported.values())
            cached = self._analysed = (self._version, capacity, analyze(self.in_window(), capacity, reported))
        return cached[2]

    def per_minute(self, capacity: float | None) -> PerMinute:
        """Each minute of the window analysed alone, oldest first, when first read (see PerMinute)."""
        return PerMinute(tuple(self.in_window()), capacity)

    def in_window(self) -> list[tuple[int, MinuteFigures]]:
        return sorted(self.minutes.items())


class PerMinute(Sequence[Figures]):
    """The window's minutes, each analysed alone, oldest first: the status page's charts. Analysed when first
    read, not at every poll: only the page of one endpoint reads them, and a poll that analysed every new minute
    for the charts spent nearly as much on them as on the window's own figures. Holds the minutes as they were at the poll (stored
    minutes never change), so reading it later, from another thread, gives the poll's figures."""

    def __init__(self, minutes: tuple[tuple[int, MinuteFigures], ...], capacity: float | None) -> None:
        self._minutes = minutes
        self._capacity = capacity
        self._figures: tuple[Figures, ...] | None = None

    def _analysed(self) -> tuple[Figures, ...]:
        if self._figures is None:  # two threads reading at once may both analyse: the same figures either way
            self._figures = tuple(analyze([minute], self._capacity) for minute in self._minutes)
        return self._figures

    def __len__(self) -> int:
        return len(self._minutes)

    def __getitem__(self, index):  # type: ignore[no-untyped-def]
        return self._analysed()[index]

    def __iter__(self) -> Iterator[Figures]:
        return iter(self._analysed())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and tuple(self) == tuple(other)

    def __hash__(self) -> int:
        return hash(self._analysed())

    def __repr__(self) -> str:
        return f"PerMinute({len(self)} minutes)"


def _advance(counters: Counters, minute: MinuteFigures) -> Counters:
    duration = counters.duration
    if minute.latency is not None:
        if duration is None or not duration.same_layout(minute.latency):
            # A new bucket layout restarts the histogram: Prometheus treats it as a reset.
            duration = minute.latency
        else:
            duration = duration.plus(minute.latency)
    return Counters(
        requests=counters.requests + (minute.requests or 0.0),
        errors_4xx=counters.errors_4xx + (minute.errors_4xx or 0.0),
        errors_5xx=counters.errors_5xx + (minute.errors_5xx or 0.0),
        duration=duration,
    )


def minute_key_of(timestamp_ms: int | None, now_s: float) -> int:
    """The source minute a body belongs to: its sample timestamps, else the poll time."""
    ms = timestamp_ms if timestamp_ms is not None else int(now_s * 1000)
    return ms // MINUTE_MS
