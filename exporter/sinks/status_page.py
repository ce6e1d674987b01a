"""The status page: the fleet at `/`, one page per endpoint at `/endpoints/<name>`, the exporter's own health.

Server-rendered HTML from the snapshot only (no JavaScript, no build chain), so it shows exactly what
/metrics and the JSON API show. Jinja2 with autoescaping on every template: endpoint names, tags, platform
words and error messages are user-controlled, and escaping is the engine's job rather than each call site's.
The Content-Security-Policy forbids scripts altogether, as a second line should a value slip through.
The snapshot carries no credential (sources never put one in it), so neither can the page.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, StrictUndefined

from .. import __version__
from ..model import EndpointInfo, EndpointReport, Figures, Snapshot
from ..pipeline.targets import TARGET_CHECKS

ENDPOINT_PATH = "/endpoints/"
HEADERS = [("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:"),
           ("X-Content-Type-Options", "nosniff"), ("Cache-Control", "no-store")]

# Health states, worst first: the fleet table's order and the colour of a row. A confirmed critical problem
# comes before an endpoint the exporter cannot read (which may be fine), and that before lesser findings.
STATES = ("critical", "down", "warning", "info", "no data", "ok")

# A check's unit, from its target's name (pipeline/targets.py): *_seconds, *ratio, or a count.
CHECK_UNITS = {check: "seconds" if key.endswith("_seconds") else "ratio" if key.endswith("ratio") else "count"
               for key, check in TARGET_CHECKS.items()}


def state_of(report: EndpointReport) -> str:
    severities = {h.severity for h in report.hints}
    if "critical" in severities:
        return "critical"
    if not report.status.up:
        return "down"
    if "warning" in severities or any(c.breached for c in report.endpoint.checks):
        return "warning"
    if severities:
        return "info"
    return "no data" if report.endpoint.figures.minutes == 0 else "ok"


def worst_first(reports: Sequence[EndpointReport]) -> list[EndpointReport]:
    """By state, then by the number of breached checks and of hints (more first), then by name."""
    return sorted(reports, key=lambda r: (STATES.index(state_of(r)), -sum(c.breached for c in r.endpoint.checks),
                                          -len(r.hints), r.info.name))


# The fleet table's other orders (`/?sort=`, the column headers' links): largest first, no figure last, then
# worst first among equals.
SORTS: dict[str, Callable[[Figures], float | None]] = {
    "qps": lambda f: f.qps, "p99": lambda f: f.latency_p99, "errors": lambda f: f.error_ratio,
    "queue": lambda f: f.queue_depth,
    "utilisation": lambda f: max((v for v in (f.cpu_ratio, f.memory_ratio, f.gpu_ratio) if v is not None), default=None),
}


BY_NAME = "endpoint"


def ordered(reports: Sequence[EndpointReport], sort: str | None) -> list[EndpointReport]:
    """Worst first (`sort` None), by one of SORTS, or by name (BY_NAME)."""
    reports = worst_first(reports)
    if sort == BY_NAME:
        return sorted(reports, key=lambda r: r.info.name)
    if sort is None:
        return reports
    figure = SORTS[sort]

    def key(report: EndpointReport) -> tuple[bool, float]:
        value = figure(report.endpoint.figures)
        missing = value is None or not math.isfinite(value)
        return missing, 0.0 if missing else -value  # type: ignore[operator]

    return sorted(reports, key=key)  # stable: worst first among equals


def fmt(value: float | None, unit: str = "count") -> str:
    """A figure for people: seconds as ms (or s), ratios as %, "–" when there is none."""
    if value is None or not math.isfinite(value):
        return "–"
    if unit == "seconds":
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"
    if unit == "ratio":
        return f"{value * 100:.1f} %"
    if unit == "qps":
        return f"{value:.2f}" if value < 10 else f"{value:.1f}"
    return f"{value:.1f}" if value != int(value) else f"{value:.0f}"


def endpoint_url(info: EndpointInfo) -> str:
    """The endpoint's page; with `?workspace=` where it has one, as two workspaces may each have the name."""
    query = f"?workspace={quote(info.workspace, safe='')}" if info.workspace else ""
    return ENDPOINT_PATH + quote(info.name, safe="") + query


# ---------------------------------------------------------------------------
# Inline SVG charts of the window's minutes.

WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM, PAD_TOP = 420, 140, 52, 20, 8
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c")


@dataclass(frozen=True)
class Line:
    label: str
    colour: str
    path: str  # SVG path data; a minute without the figure breaks the line


@dataclass(frozen=True)
class Chart:
    title: str
    unit: str
    lines: tuple[Line, ...]
    top: float  # the value at the top of the plot
    target_y: float | None  # where the target's line is drawn, None: no target or off the chart
    target: float | None
    first_minute: str  # the x axis' ends, HH:MM UTC
    last_minute: str
    width: int = WIDTH
    height: int = HEIGHT
    left: int = PAD_LEFT
    plot_bottom: int = HEIGHT - PAD_BOTTOM


def chart(title: str, unit: str, minutes: Sequence[Figures], series: dict[str, Callable[[Figures], float | None]],
          target: float | None = None) -> Chart | None:
    """One chart of `series` (label -> figure of a minute) over the window; None when no minute has any."""
    values = {label: [get(m) for m in minutes] for label, get in series.items()}
    present = [v for vs in values.values() for v in vs if v is not None and math.isfinite(v)]
    if not present:
        return None
    top = max(present + ([target] if target else [])) * 1.1 or 1.0
    plot_w, plot_h = WIDTH - PAD_LEFT - 8, HEIGHT - PAD_BOTTOM - PAD_TOP
    step = plot_w / max(1, len(minutes) - 1)

    def y(v: float) -> float:
        return PAD_TOP + plot_h * (1 - v / top)

    lines = []
    for (label, vs), colour in zip(values.items(), COLOURS):
        parts, pen_down = [], False
        for i, v in enumerate(vs):
            if v is None or not math.isfinite(v):
                pen_down = False
                continue
            x = PAD_LEFT + (i * step if len(vs) > 1 else plot_w / 2)
            parts.append(f"L{x:.1f},{y(v):.1f}" if pen_down else f"M{x:.1f},{y(v):.1f} h0.01")  # h: a lone point is a dot
            pen_down = True
        if parts:  # a figure the endpoint never reports (GPU on a CPU endpoint) gets no line nor legend
            lines.append(Line(label, colour, " ".join(parts)))
    return Chart(title, unit, tuple(lines), top, y(target) if target is not None and target < top else None, target,
                 _hhmm(minutes[0].latest_minute_ms), _hhmm(minutes[-1].latest_minute_ms))


def charts(report: EndpointReport) -> list[Chart]:
    targets = {c.name: c.target for c in report.endpoint.checks}
    minutes = report.endpoint.minutes
    made = [
        chart("Requests per second", "qps", minutes, {"QPS": lambda m: m.qps}),
        chart("Latency", "seconds", minutes, {"P50": lambda m: m.latency_p50, "P90": lambda m: m.latency_p90,
                                              "P99": lambda m: m.latency_p99}, targets.get("latency_p99")),
        chart("Error ratio", "ratio", minutes, {"4xx": lambda m: m.error_ratio_4xx, "5xx": lambda m: m.error_ratio_5xx,
                                                "all": lambda m: m.error_ratio}, targets.get("error_ratio")),
        chart("Queue depth", "count", minutes, {"queue": lambda m: m.queue_depth}, targets.get("queue_depth")),
        chart("Concurrency", "count", minutes, {"required": lambda m: m.required_concurrency,
                                                "provisioned": lambda m: m.provisioned_concurrency}),
        chart("Utilisation", "ratio", minutes, {"cpu": lambda m: m.cpu_ratio, "memory": lambda m: m.memory_ratio,
                                                "gpu": lambda m: m.gpu_ratio}, targets.get("cpu_utilization")),
        # LLM servers (absent elsewhere: a chart without any value is left out).
        chart("Time to first token", "seconds", minutes, {"P50": lambda m: m.ttft_p50, "P99": lambda m: m.ttft_p99,
                                                          "mean": lambda m: m.ttft_mean}, targets.get("ttft_p99")),
        chart("Time per output token", "seconds", minutes, {"P50": lambda m: m.tpot_p50, "P99": lambda m: m.tpot_p99,
                                                            "mean": lambda m: m.tpot_mean}, targets.get("tpot_p99")),
        chart("Running and waiting requests", "count", minutes, {"running": lambda m: m.requests_running,
                                                                 "waiting": lambda m: m.queue_depth
                                                                 if m.queue_depth_method == "server" else None}),
        chart("KV cache", "ratio", minutes, {"fullest replica": lambda m: m.kv_cache_ratio},
              targets.get("kv_cache_utilization")),
    ]
    return [c for c in made if c is not None]


# The LLM figures table of the endpoint page: (label, Figures attribute, fmt unit); rows without a value are hidden.
LLM_FIGURES = (
    ("requests running", "requests_running", "count"),
    ("TTFT P50 / P90 / P99", ("ttft_p50", "ttft_p90", "ttft_p99"), "seconds"), ("TTFT mean", "ttft_mean", "seconds"),
    ("TPOT P50 / P90 / P99", ("tpot_p50", "tpot_p90", "tpot_p99"), "seconds"), ("TPOT mean", "tpot_mean", "seconds"),
    ("prompt tokens / s", "prompt_tokens_per_second", "qps"),
    ("generated tokens / s", "generation_tokens_per_second", "qps"),
    ("KV cache (fullest replica)", "kv_cache_ratio", "ratio"), ("preemptions / s", "preemptions_per_second", "qps"),
)


def llm_figures(figures: Figures) -> list[tuple[str, str]]:
    """(label, formatted value) of the LLM figures the endpoint has."""
    rows = []
    for label, attrs, unit in LLM_FIGURES:
        values = [getattr(figures, a) for a in ((attrs,) if isinstance(attrs, str) else attrs)]
        if any(v is not None for v in values):
            rows.append((label, " / ".join(fmt(v, unit) for v in values)))
    return rows


def _hhmm(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%H:%M") if ms is not None else ""


# ---------------------------------------------------------------------------
# Pages.


class StatusPage:
    """Renders the pages from the current snapshot at each request (a person's refresh, not a scraper's)."""

    def __init__(self, snapshot: Callable[[], Snapshot], refresh_seconds: float,
                 clock: Callable[[], float] = time.time):
        self._snapshot = snapshot
        self._refresh = max(5, math.ceil(refresh_seconds))
        self._clock = clock
        self._env = Environment(loader=PackageLoader("exporter.sinks", "templates"), autoescape=True,
                                undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        self._env.filters["fmt"] = fmt
        self._env.globals.update(state_of=state_of, endpoint_url=endpoint_url, units=CHECK_UNITS,
                                 version=__version__, utc=_utc)

    def fleet(self, sort: str | None = None) -> bytes:
        """The fleet table, worst first or in the order `sort` names (SORTS, BY_NAME; another is ignored)."""
        snap = self._snapshot()
        sort = sort if sort in SORTS or sort == BY_NAME else None
        return self._render("fleet.html", snap, endpoints=ordered(snap.endpoints, sort), sort=sort)

    def endpoint(self, name: str, workspace: str | None = None) -> bytes | None:
        """The endpoint's page, or None if the snapshot has no such endpoint. Without `workspace`, the name must
        be the only one of its kind (a link from before there were several workspaces keeps working)."""
        snap = self._snapshot()
        found = [r for r in snap.endpoints if r.info.name == name
                 and (workspace is None or (r.info.workspace or "") == workspace)]
        if len(found) != 1:
            return None
        report = found[0]
        return self._render("endpoint.html", snap, report=report, charts=charts(report),
                            llm=llm_figures(report.endpoint.figures),
                            errors=sorted(((call, reason), n) for (ws, ep, call, reason), n in snap.fetch_errors.items()
                                          if (ws, ep) == report.info.key))

    def _render(self, template: str, snap: Snapshot, **context: object) -> bytes:
        now = self._clock()
        errors: Counter[tuple[str, str]] = Counter()
        for (_workspace, _endpoint, call, reason), n in snap.fetch_errors.items():
            errors[(call, reason)] += n
        return self._env.get_template(template).render(
            snap=snap, now=now, refresh=self._refresh, errors_by_reason=sorted(errors.items()),
            age=None if snap.completed_at_s is None else max(0.0, now - snap.completed_at_s), **context).encode()


def _utc(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
