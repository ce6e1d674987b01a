"""Thread pools start all their threads at once, so the daemon's thread count is flat from the start."""

from __future__ import annotations

import threading
import time

from exporter.threads import started_pool


def names() -> list[str]:
    return [t.name for t in threading.enumerate()]


def test_every_thread_of_the_pool_runs_before_any_task():
    pool = started_pool(5, "probe")
    try:
        assert sum(n.startswith("probe") for n in names()) == 5
        # A burst of slow tasks starts no further thread.
        futures = [pool.submit(time.sleep, 0.05) for _ in range(20)]
        for f in futures:
            f.result(5)
        assert sum(n.startswith("probe") for n in names()) == 5
    finally:
        pool.shutdown(wait=True)
    assert not any(n.startswith("probe") for n in names())
