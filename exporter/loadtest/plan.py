"""The load plan: which steps, for how long, within which caps, and when to stop early."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Literal

# Users are Locust greenlets in one process: beyond this the generator itself, not the endpoint, is
# measured. It is also the platform's provisioned-concurrency limit per served entity.
MAX_USERS_CAP = 1024
# The step shape is ticked about once a second by Locust, so a step shorter than this is not one.
MIN_STEP_SECONDS = 1.0
# The start of each step is not measured: the new clients start and the queue settles.
WARMUP_SHARE = 0.2
# After an error answer (429 included) a client pauses this long, so a rejecting endpoint is not hammered.
ERROR_PAUSE_SECONDS = 0.1


class PlanError(ValueError):
    """A plan that must not run; the message says which flag to change."""


@dataclass(frozen=True)
class Plan:
    url: str  # where each client POSTs the payload
    payload: str  # the JSON body, as read from --payload
    start_users: int
    step_users: int
    max_users: int
    step_seconds: float
    max_duration_seconds: float
    stop_error_ratio: float  # stop after the first step with a larger error share
    timeout_seconds: float  # one request
    auth: Literal["databricks", "none"]
    host: str | None = None  # for the SDK's credentials (auth databricks); never a secret
    profile: str | None = None

    def __post_init__(self) -> None:
        def require(ok: bool, message: str) -> None:
            if not ok:
                raise PlanError(message)

        require(self.start_users >= 1, "--start-users must be at least 1")
        require(self.step_users >= 1, "--step-users must be at least 1")
        require(self.max_users >= self.start_users, "--max-users must be at least --start-users")
        require(self.max_users <= MAX_USERS_CAP,
                f"--max-users {self.max_users} is above the cap of {MAX_USERS_CAP} clients one load generator drives")
        require(self.step_seconds >= MIN_STEP_SECONDS, f"--step-seconds must be at least {MIN_STEP_SECONDS:g}")
        require(0 < self.stop_error_ratio <= 1, "--stop-error-ratio must be in (0, 1]")
        require(self.timeout_seconds > 0, "--timeout must be > 0")
        require(self.duration_seconds <= self.max_duration_seconds,
                f"the plan takes {self.duration_seconds:g} s ({len(self.steps)} steps x {self.step_seconds:g} s), "
                f"above --max-duration {self.max_duration_seconds:g} s: use fewer or shorter steps, or raise --max-duration")

    @property
    def steps(self) -> list[int]:
        """Concurrent clients per step: start, start + step, ... up to max."""
        return list(range(self.start_users, self.max_users + 1, self.step_users))

    @property
    def duration_seconds(self) -> float:
        return len(self.steps) * self.step_seconds

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Plan:
        return cls(**json.loads(text))
