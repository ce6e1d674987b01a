"""`serving-exporter loadtest ENDPOINT --payload FILE`: plan, confirm, run the generator, report."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TextIO

from ..config import Settings
from . import report
from .plan import ERROR_PAUSE_SECONDS, WARMUP_SHARE, Plan, PlanError
from .results import StepResult, analyse, knee_rule
from .target import Target, TargetError, resolve


def run(args: argparse.Namespace, settings: Settings, stdin: TextIO | None = None, out: TextIO | None = None) -> int:
    stdin, out = stdin or sys.stdin, out or sys.stdout
    def fail(message: str, status: int) -> int:
        print(f"serving-exporter: {message}", file=sys.stderr)
        return status

    try:
        payload = read_payload(Path(args.payload))
        plan = Plan(url="", payload=payload, start_users=args.start_users, step_users=args.step_users,
                    max_users=args.max_users, step_seconds=args.step_seconds, max_duration_seconds=args.max_duration,
                    stop_error_ratio=args.stop_error_ratio, timeout_seconds=args.timeout, auth="none")
    except (PlanError, ValueError) as exc:
        return fail(str(exc), 2)
    try:
        target = resolve(args.endpoint, args.auth, settings.databricks.host, settings.databricks.profile,
                         settings.request_timeout_seconds, settings.retry_budget_seconds)
    except TargetError as exc:
        return fail(str(exc), 1)
    plan = dataclasses.replace(plan, url=target.url, auth=target.auth, host=settings.databricks.host,
                               profile=settings.databricks.profile)
    targets = settings.targets_for(target.info)
    out_dir = Path(args.out or f"loadtest-{re.sub(r'[^A-Za-z0-9_.-]+', '_', args.endpoint)[-60:]}-{time.strftime('%Y%m%d-%H%M%S')}")
    print(describe(target, plan, targets, out_dir), file=out, flush=True)
    if not args.yes:
        if not stdin.isatty():
            return fail("refusing to send load without --yes (and there is no terminal to confirm on)", 2)
        out.write("Send this load? [y/N] ")
        out.flush()
        if stdin.readline().strip().lower() not in ("y", "yes"):
            return fail("not confirmed; nothing was sent", 2)

    result = generate(plan)
    if result is None:
        return fail("the load generator failed (see above); no report", 1)
    steps = [StepResult(**s) for s in result["steps"]]
    thresholds = settings.remediation.for_endpoint(target.info)[0]
    analysis = analyse(steps, targets, thresholds, target.info, args.baseline_qps, args.peak_qps)
    text = report.write(out_dir, target, plan, analysis, result, targets)
    print(text, file=out, end="")
    print(f"reports: {', '.join(str(out_dir / f) for f in report.FILES)}", file=out)
    return 0 if analysis.knee is not None else 1


def read_payload(path: Path) -> str:
    """The request body: a JSON file, as the invocations API takes it."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"--payload {path}: cannot read: {exc.strerror}") from None
    try:
        json.loads(text)
    except ValueError as exc:
        raise ValueError(f"--payload {path}: not JSON ({exc})") from None
    return text


def describe(target: Target, plan: Plan, targets: dict[str, float | None], out_dir: Path) -> str:
    """What the run will do, printed before anything is sent."""
    steps = plan.steps
    shown = ", ".join(map(str, steps)) if len(steps) <= 8 else f"{steps[0]}, {steps[1]}, ... {steps[-1]}"
    auth = f"Databricks credentials ({target.auth_type or 'from the environment'})" if target.auth == "databricks" else "none"
    return "\n".join([
        "serving-exporter loadtest: this sends real traffic to the endpoint (it is billed and it may affect its users)",
        f"  endpoint  {target.info.name}  ({target.description})",
        f"  request   POST {target.url}  ({len(plan.payload.encode())}-byte JSON payload), timeout {plan.timeout_seconds:g} s",
        f"  auth      {auth}",
        f"  steps     {shown} concurrent clients, {plan.step_seconds:g} s each (the first {100 * WARMUP_SHARE:g}% not measured)",
        f"  duration  at most {plan.duration_seconds:g} s (cap --max-duration {plan.max_duration_seconds:g} s)",
        f"  stops     after the first step with more than {100 * plan.stop_error_ratio:g}% errors;"
        f" a client pauses {ERROR_PAUSE_SECONDS:g} s after an error",
        f"  knee      the highest step with {knee_rule(targets)}",
        f"  reports   {out_dir}/ ({', '.join(report.FILES)})",
    ])


def generate(plan: Plan) -> dict | None:
    """Run the generator in its child process (see the package docstring); its per-step lines go to our output."""
    with tempfile.TemporaryDirectory(prefix="serving-exporter-loadtest-") as tmp:
        plan_path, result_path = Path(tmp) / "plan.json", Path(tmp) / "result.json"
        plan_path.write_text(plan.to_json(), encoding="utf-8")
        child = subprocess.Popen([sys.executable, "-m", "exporter.loadtest.generator", str(plan_path), str(result_path)])
        try:
            status = child.wait()
        except KeyboardInterrupt:  # Ctrl-C reached the child too: it stops the run and writes what it measured
            status = child.wait()
        if status != 0 or not result_path.exists():
            return None
        return json.loads(result_path.read_text(encoding="utf-8"))
