"""The load test's reports: text (also printed), JSON, CSV per step, and a PNG chart."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from .plan import Plan
from .results import LATENCY_CHECKS, Analysis, error_limit, knee_rule
from .target import Target

FILES = ("report.txt", "report.json", "steps.csv", "chart.png")
CSV_COLUMNS = ("clients", "seconds", "requests", "ok", "rps", "p50_s", "p90_s", "p99_s", "mean_s", "error_ratio",
               "ratio_429", "in_flight", "server_concurrency", "cpu_percent", "cpu_warning", "meets_targets", "misses")


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def text(target: Target, plan: Plan, analysis: Analysis, run: dict[str, Any], targets: dict[str, float | None]) -> str:
    lines = [f"load test of {target.info.name}  ({target.description})", f"  POST {target.url}", "",
             f"{'clients':>7} {'req/s':>8} {'P50 s':>7} {'P90 s':>7} {'P99 s':>7} {'errors':>7} {'429':>6}"
             f" {'in flight':>9} {'servers':>7}  targets"]
    for i, (step, failed) in enumerate(zip(analysis.steps, analysis.failures)):
        servers = analysis.server_concurrency(step)
        lines.append(f"{step.users:>7} {step.rps:>8.1f} {_s(step.p50_s):>7} {_s(step.p90_s):>7} {_s(step.p99_s):>7}"
                     f" {100 * step.error_ratio:>6.1f}% {100 * step.ratio_429:>5.1f}%"
                     f" {_s(step.in_flight):>9} {_s(servers):>7}  {'; '.join(failed) or 'met'}"
                     f"{'  <- knee' if i == analysis.knee else ''}{'  [load generator CPU > 90%]' if step.cpu_warning else ''}")
    lines.append("")
    lines.append("in flight = req/s x mean latency (the clients' requests inside the endpoint, Little's law);"
                 " servers = req/s x service time (the concurrency that throughput keeps busy): the difference queues.")
    lines.append(f"knee = the highest step, before the first that fails, with {knee_rule(targets)}.")
    lines.append("")
    if analysis.knee is None:
        lines.append("knee: none — no step met the targets; no recommendation")
    else:
        knee = analysis.steps[analysis.knee]
        lines.append(f"knee: {knee.users} clients, {knee.rps:.1f} req/s, P99 {_s(knee.p99_s)} s")
    rec = analysis.recommendation
    if rec is not None:
        lines.append(f"required concurrency at the knee: {rec.required_concurrency:.2f}"
                     f" ({analysis.steps[analysis.knee].rps:.3g} QPS x {analysis.service_time_s:.3g} s)")  # type: ignore[index]
        lines.append(f"recommended provisioned concurrency: min {rec.min_concurrency}, max {rec.max_concurrency}  [{rec.basis}]")
    lines.append(f"run: {run['stop_reason']}; {run['locust']['requests']} requests, {run['locust']['failures']} failed")
    for message, count in sorted(run["locust"]["errors"].items(), key=lambda kv: -kv[1]):
        lines.append(f"  {count} x {message}")
    if run["cpu_warning"]:
        lines.append("WARNING: the load generator's CPU went above 90% (Locust's warning): its throughput and latencies"
                     " may be its own limit, not the endpoint's. Run fewer clients per process or more processes.")
    return "\n".join(lines) + "\n"


def to_json(target: Target, plan: Plan, analysis: Analysis, run: dict[str, Any], targets: dict[str, float | None]) -> dict:
    return {"endpoint": target.info.name, "url": target.url, "target": target.description,
            "plan": {"steps": plan.steps, "step_seconds": plan.step_seconds, "stop_error_ratio": plan.stop_error_ratio,
                     "timeout_seconds": plan.timeout_seconds},
            "targets": {k: targets.get(k) for k, _, _ in LATENCY_CHECKS} | {"error_ratio": error_limit(targets)},
            **analysis.to_json(), "stop_reason": run["stop_reason"], "cpu_warning": run["cpu_warning"],
            "locust": run["locust"]}


def steps_csv(analysis: Analysis) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in analysis.to_json()["steps"]:
        row = {**row, "clients": row["users"], "misses": "; ".join(row["misses"])}
        writer.writerow(["" if row[c] is None else row[c] for c in CSV_COLUMNS])
    return out.getvalue()


def chart(path: Path, title: str, analysis: Analysis, targets: dict[str, float | None]) -> None:
    """Throughput, and P50/P99 latency, against concurrent clients; the knee marked."""
    import logging

    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # not its font-cache chatter
    import matplotlib.pyplot as plt

    steps = analysis.steps
    clients = [s.users for s in steps]
    fig, left = plt.subplots(figsize=(8, 4.5), dpi=100)
    try:
        left.plot(clients, [s.rps for s in steps], "o-", color="tab:blue", label="throughput (2xx/s)")
        left.set_xlabel("concurrent clients")
        left.set_ylabel("requests per second", color="tab:blue")
        left.set_ylim(bottom=0)
        right = left.twinx()
        for attr, style, label in (("p50_s", "s--", "P50 latency"), ("p99_s", "^--", "P99 latency")):
            points = [(c, getattr(s, attr)) for c, s in zip(clients, steps) if getattr(s, attr) is not None]
            right.plot([c for c, _ in points], [v for _, v in points], style, color="tab:red" if attr == "p99_s" else "tab:orange",
                       label=label)
        if targets.get("latency_p99") is not None:
            right.axhline(targets["latency_p99"], color="tab:red", linewidth=0.8, linestyle=":", label="P99 target")
        right.set_ylabel("latency (s)", color="tab:red")
        right.set_ylim(bottom=0)
        if analysis.knee is not None:
            knee = steps[analysis.knee]
            left.axvline(knee.users, color="tab:green", linewidth=1.2)
            left.annotate(f"knee: {knee.users} clients\n{knee.rps:.1f} req/s", (knee.users, knee.rps),
                          textcoords="offset points", xytext=(6, -28), color="tab:green")
        handles = left.get_legend_handles_labels()
        more = right.get_legend_handles_labels()
        left.legend(handles[0] + more[0], handles[1] + more[1], loc="lower right", fontsize="small")
        left.set_title(title)
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)


def write(out_dir: Path, target: Target, plan: Plan, analysis: Analysis, run: dict[str, Any],
          targets: dict[str, float | None]) -> str:
    """Write the four files; returns the text report."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report = text(target, plan, analysis, run, targets)
    (out_dir / "report.txt").write_text(report, encoding="utf-8")
    (out_dir / "report.json").write_text(json.dumps(to_json(target, plan, analysis, run, targets), indent=1) + "\n",
                                         encoding="utf-8")
    (out_dir / "steps.csv").write_text(steps_csv(analysis), encoding="utf-8")
    chart(out_dir / "chart.png", f"load test of {target.info.name}", analysis, targets)
    return report
