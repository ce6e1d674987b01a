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
Elsewhere than glibc (musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging

log = logging.getLogger(__name__)


def _malloc_trim():  # type: ignore[no-untyped-def]
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


_TRIM = _malloc_trim()


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
