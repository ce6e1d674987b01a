"""Thread pools that start all their threads at once.

A ThreadPoolExecutor starts a thread whenever a task finds none idle, up to its bound, and never stops
one: its thread count grows with the first burst of slow calls (a workspace answering details in 20 s)
and stays there, which a soak reads as a leak. Started at once, the count is flat from the first poll and
the bound is visible at start-up.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor, wait


def started_pool(workers: int, name: str) -> ThreadPoolExecutor:
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
    # Every task waits until all are waiting: no task finds an idle thread, so each submit starts one.
    barrier = threading.Barrier(workers)
    wait([pool.submit(barrier.wait, 10) for _ in range(workers)])
    return pool
