"""Memory housekeeping of the daemon: long-lived objects out of the garbage collector's way, and freed
heap memory given back to the operating system after each poll.

The imports (the Databricks SDK's service modules above all) and the SDK client leave a few
hundred thousand long-lived objects that every full collection would traverse again: at 1,000
endpoints that was about a quarter of a poll's CPU. `freeze_long_lived()` moves them to the
permanent generation once (they are still freed by reference counting if dropped).

A poll of 1,000 endpoints and the render of its exposition allocate and free tens of
megabytes of short-lived objects. glibc keeps freed heap pages mapped, so without this the
resident size ratchets up to the highest peak ever seen (about 25 MiB more at 1,000
endpoints, measured by bench/bench.py); `malloc_trim(0)` returns them, in about a millisecond.
And glibc gives each thread that allocates much an arena of its own (8 per core), where
megabyte buffers of the HTTP threads stayed: `limit_malloc_arenas()` caps them at two, as
`MALLOC_ARENA_MAX=2` would. Elsewhere than glibc (musl, macOS) these do nothing.

A poll of 1,000 endpoints allocates a few hundred thousand short-lived objects, nearly all freed by
reference counting, while the objects of the fetches in flight stay alive. With CPython's default
young-generation threshold (700) that was about 50 collections per poll, each traversing the
in-flight objects again: 5-13 % of a poll's CPU (measured with gc.callbacks). `collect_less_often()`
raises the threshold to GC_YOUNG_THRESHOLD, so a poll runs few or no collections; cyclic garbage
(asyncio's futures and exceptions make some) waits a little longer before it is freed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging

log = logging.getLogger(__name__)


M_ARENA_MAX = -8  # mallopt's parameter number (malloc.h)
MALLOC_ARENAS = 2  # glibc's default is 8 per core: each HTTP thread's large buffers would stay in its own
GC_YOUNG_THRESHOLD = 50_000  # net allocations between young collections (CPython's default: 700)


def _glibc(name: str):  # type: ignore[no-untyped-def]
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):
        return None


_TRIM = _glibc("malloc_trim")
_MALLOPT = _glibc("mallopt")


def limit_malloc_arenas() -> None:
    """At most MALLOC_ARENAS glibc arenas (as MALLOC_ARENA_MAX=2 would): call before threads start."""
    if _MALLOPT is not None:
        _MALLOPT(M_ARENA_MAX, MALLOC_ARENAS)


def release_free_memory() -> None:
    if _TRIM is not None:
        try:
            _TRIM(0)
        except Exception:  # never let housekeeping fail a poll
            log.debug("malloc_trim failed", exc_info=True)


def freeze_long_lived() -> None:
    """Collect once, then keep every object alive now out of later collections (gc.freeze)."""
    gc.collect()
    gc.freeze()


def collect_less_often() -> None:
    """Young collections every GC_YOUNG_THRESHOLD net allocations instead of 700 (older generations as before)."""
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)
