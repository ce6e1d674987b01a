"""Delivery plumbing that knows nothing about Datadog's payloads: the bounded buffer (of events) and the retry delays."""

from __future__ import annotations

import email.utils
import itertools
import random as _random
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Generic, TypeVar

T = TypeVar("T")

# Never wait longer than this for one retry, whatever a server asks for.
MAX_RETRY_AFTER_S = 3600.0


class BoundedBuffer(Generic[T]):
    """FIFO of items awaiting delivery, oldest first. Appending to a full buffer drops the oldest items
    (and says how many), so the newest data survives a long outage. Used by one thread only."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._items: deque[T] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def extend(self, items: Iterable[T]) -> int:
        """Append; return how many of the oldest items were dropped to make room."""
        self._items.extend(items)
        overflow = len(self._items) - self.capacity
        for _ in range(max(0, overflow)):
            self._items.popleft()
        return max(0, overflow)

    def head(self, n: int) -> list[T]:
        """The `n` oldest items, left in the buffer."""
        return list(itertools.islice(self._items, n))

    def remove_head(self, n: int) -> None:
        for _ in range(min(n, len(self._items))):
            self._items.popleft()

    def clear(self) -> int:
        n = len(self._items)
        self._items.clear()
        return n


class Backoff:
    """Retry delays: exponential from `initial` up to `maximum`, with jitter (each delay is drawn between
    half and all of the exponential value, so replicas that failed together do not retry together). A
    server's own hint (rate-limit reset, Retry-After) wins when given, plus a little jitter."""

    def __init__(self, initial: float, maximum: float, random: Callable[[], float] = _random.random):
        self.initial, self.maximum, self._random = initial, max(initial, maximum), random
        self.failures = 0

    def failure(self, server_hint_s: float | None = None) -> float:
        self.failures += 1
        if server_hint_s is not None:
            hint = min(max(0.0, server_hint_s), MAX_RETRY_AFTER_S)
            return hint + self._random() * min(1.0, 0.1 * hint)
        exponential = min(self.maximum, self.initial * 2 ** (self.failures - 1))
        return exponential * (0.5 + 0.5 * self._random())

    def success(self) -> None:
        self.failures = 0


def retry_after_seconds(headers: Mapping[str, str] | None, now_s: float, rate_limited: bool = False) -> float | None:
    """Seconds a server asks us to wait: when `rate_limited` (a 429, or a success with no requests left),
    Datadog's X-RateLimit-Reset (seconds until the rate-limit period resets,
    docs.datadoghq.com/api/latest/rate-limits/); else, or without it, Retry-After (seconds or an HTTP
    date). X-RateLimit-Reset on other answers only describes the period, so it is not a wait request."""
    if not headers:
        return None
    lower = {str(k).lower(): str(v) for k, v in headers.items()}
    reset = lower.get("x-ratelimit-reset") if rate_limited else None
    if reset is not None:
        try:
            return max(0.0, float(reset))
        except ValueError:
            pass
    retry_after = lower.get("retry-after")
    if retry_after is None:
        return None
    try:
        return max(0.0, float(retry_after))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(retry_after)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - now_s)


def exhausted(headers: Mapping[str, str] | None) -> bool:
    """True when a (successful) answer says no requests are left in the current rate-limit period."""
    if not headers:
        return False
    lower = {str(k).lower(): str(v) for k, v in headers.items()}
    return lower.get("x-ratelimit-remaining", "").strip() == "0"
