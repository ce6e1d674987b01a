"""The load generator: Locust as a library, in a child process of `serving-exporter loadtest`.

    python -m exporter.loadtest.generator PLAN.json RESULT.json

Locust is imported first, so its gevent monkey-patching precedes every import of urllib3 (see the
package docstring). Each Locust user is one client sending the payload in a closed loop: the next
request leaves when the answer to the last one arrives. A LoadTestShape walks the plan's steps; the
clients' answers are collected from `events.request` per step, without the step's warm-up. The
result (per step, the stop reason, Locust's totals and error messages) is written as JSON.
"""

from __future__ import annotations

import locust  # noqa: I001  (must stay first: it monkey-patches the process with gevent)
import locust.runners
from locust import FastHttpUser, LoadTestShape, constant, task
from locust.env import Environment

import json
import re
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit

import gevent
import gevent.event

from .plan import ERROR_PAUSE_SECONDS, WARMUP_SHARE, Plan
from .results import StepResult
from .target import AuthHeaders

# Users per second a step adds: within a second for most steps (Locust warns about anything faster).
SPAWN_RATE = 100.0


@dataclass
class _Step:
    users: int
    began: float
    requests: int = 0
    errors_429: int = 0
    latencies_ok_s: list[float] = field(default_factory=list)
    cpu_percent: float | None = None
    cpu_warning: bool = False

    def result(self, ended: float, warmup_s: float) -> StepResult:
        return StepResult.measure(self.users, max(0.0, ended - self.began - warmup_s), self.latencies_ok_s,
                                  self.requests, self.errors_429, self.cpu_percent, self.cpu_warning)


class Recorder:
    """Per-step collection of the answers, fed by Locust's events."""

    def __init__(self, plan: Plan, clock=time.monotonic, out=sys.stdout):
        self.plan, self.clock, self.out = plan, clock, out
        self.warmup_s = WARMUP_SHARE * plan.step_seconds
        self.current: _Step | None = None
        self.steps: list[StepResult] = []
        self.stop_reason = "completed"

    def begin(self, users: int) -> None:
        self.end()
        self.current = _Step(users, self.clock())

    def end(self) -> None:
        if self.current is not None:
            step = self.current.result(self.clock(), self.warmup_s)
            self.steps.append(step)
            self.current = None
            p = ", ".join(f"{label} {v:.3f} s" for label, v in (("P50", step.p50_s), ("P99", step.p99_s)) if v is not None)
            print(f"step {len(self.steps)}/{len(self.plan.steps)}: {step.users} clients, {step.rps:.1f} req/s"
                  f"{', ' + p if p else ''}, errors {100 * step.error_ratio:.1f}% (429: {100 * step.ratio_429:.1f}%)"
                  f"{', LOAD GENERATOR CPU ABOVE 90%' if step.cpu_warning else ''}", file=self.out, flush=True)

    def on_request(self, response_time: float, response=None, exception=None, **_: object) -> None:
        step = self.current
        if step is None or self.clock() < step.began + self.warmup_s:
            return
        status = getattr(response, "status_code", 0) or 0
        step.requests += 1
        if status == 429:
            step.errors_429 += 1
        if exception is None and 200 <= status < 300:
            step.latencies_ok_s.append(response_time / 1000.0)

    def on_usage(self, cpu_usage: float, **_: object) -> None:
        if self.current is not None:
            self.current.cpu_percent = max(self.current.cpu_percent or 0.0, cpu_usage)

    def on_cpu_warning(self, **_: object) -> None:
        if self.current is not None:
            self.current.cpu_warning = True


class StepShape(LoadTestShape):
    """The plan's steps, each `step_seconds` long; stops after a step with too many errors."""

    def __init__(self, plan: Plan, recorder: Recorder):
        super().__init__()
        self.plan, self.recorder = plan, recorder
        self.index = -1

    def tick(self) -> tuple[int, float] | None:
        rec = self.recorder
        if rec.current is None or rec.clock() - rec.current.began >= self.plan.step_seconds:
            rec.end()
            last = rec.steps[-1] if rec.steps else None
            if last is not None and last.error_ratio > self.plan.stop_error_ratio:
                rec.stop_reason = (f"stopped after the step with {last.users} clients: {100 * last.error_ratio:.1f}% errors, "
                                   f"above --stop-error-ratio {self.plan.stop_error_ratio:g}")
                return None
            self.index += 1
            if self.index >= len(self.plan.steps):
                return None
            rec.begin(self.plan.steps[self.index])
        return self.plan.steps[self.index], SPAWN_RATE


def user_class(plan: Plan, auth: AuthHeaders) -> type[FastHttpUser]:
    parts = urlsplit(plan.url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    body = plan.payload.encode()

    class InvocationsClient(FastHttpUser):
        host = f"{parts.scheme}://{parts.netloc}"
        wait_time = constant(0)
        insecure = False  # FastHttpUser skips certificate checks by default; a real endpoint's are verified
        network_timeout = plan.timeout_seconds
        connection_timeout = plan.timeout_seconds

        @task
        def invoke(self) -> None:
            headers = {**auth.headers(), "Content-Type": "application/json"}
            with self.client.post(path, data=body, headers=headers, name="invocations", catch_response=True) as resp:
                status = resp.status_code or 0
                if 200 <= status < 300:
                    return
                resp.failure(f"HTTP {status}" if status else "connection failed or timed out")
                if status == 401:
                    auth.rejected()
            gevent.sleep(ERROR_PAUSE_SECONDS)

    return InvocationsClient


def run(plan: Plan, auth: AuthHeaders, out=sys.stdout) -> dict:
    recorder = Recorder(plan, out=out)
    # Locust samples its own CPU every 10 s; sample at least twice per step so each step gets a figure.
    locust.runners.CPU_MONITOR_INTERVAL = max(1.0, min(10.0, plan.step_seconds / 2))
    env = Environment(user_classes=[user_class(plan, auth)], shape_class=StepShape(plan, recorder))
    env.events.request.add_listener(recorder.on_request)
    env.events.usage_monitor.add_listener(recorder.on_usage)
    env.events.cpu_warning.add_listener(recorder.on_cpu_warning)
    done = gevent.event.Event()
    env.events.test_stop.add_listener(lambda **_: done.set())
    runner = env.create_local_runner()
    auth.headers()  # authenticate before the first step, so its clients do not wait for it

    def interrupt(reason: str) -> None:
        recorder.stop_reason = reason
        gevent.spawn(runner.stop)

    gevent.signal_handler(signal.SIGINT, interrupt, "interrupted")
    gevent.signal_handler(signal.SIGTERM, interrupt, "terminated")
    runner.start_shape()
    # The plan's own length plus slack for the last tick; past it the run is cut (--max-duration).
    if not done.wait(timeout=plan.max_duration_seconds + plan.step_seconds + 5):
        recorder.stop_reason = f"cut at --max-duration {plan.max_duration_seconds:g} s"
        runner.stop()
    recorder.end()  # a step cut short by a stop
    runner.quit()
    total = env.stats.total
    return {"steps": [asdict(s) for s in recorder.steps], "stop_reason": recorder.stop_reason,
            "cpu_warning": any(s.cpu_warning for s in recorder.steps),
            "locust": {"requests": total.num_requests, "failures": total.num_failures,
                       "errors": {_message(e.error): e.occurrences for e in env.stats.errors.values()}}}


def _message(error: object) -> str:
    """Locust keeps an error as the repr of its exception, e.g. CatchResponseError('HTTP 429'): keep the message."""
    text = error if isinstance(error, str) else repr(error)
    match = re.fullmatch(r"""\w+\((['"])(.*)\1\)""", text)
    return match.group(2) if match else text


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m exporter.loadtest.generator PLAN.json RESULT.json", file=sys.stderr)
        return 2
    plan_path, result_path = argv
    with open(plan_path, encoding="utf-8") as f:
        plan = Plan.from_json(f.read())
    result = run(plan, AuthHeaders.for_plan(plan.auth, plan.host, plan.profile))
    with open(result_path, "w", encoding="utf-8") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
