"""The backlog of metric payloads awaiting delivery: compact in memory, optionally spilled to disk.

A payload is one request body, already serialised and gzip-compressed (about 9 bytes a point instead of
about 300 for a Python object), with the number and the oldest and newest timestamps of its points. The
backlog is a FIFO, oldest first, in two parts: the oldest payloads on disk (if a spill directory is set),
the newest in memory. When memory holds more than `memory_bytes`, its oldest payloads move to the disk
(or, without one, are dropped); when the disk holds more than `disk_bytes`, its oldest payloads are
dropped. So every payload on disk is older than every payload in memory, and sending the head of the
disk first, then of memory, sends oldest first.

On disk each payload is one file, the body exactly as sent (`zcat` shows the JSON), named
`<sequence>-<oldest>-<newest>-<points>.json.gz`, so a restart rebuilds the queue from the names alone.
A file is written under a temporary name and renamed, so a crash never leaves half a payload under a
real name. A failing disk (full, read-only, gone) is logged and counted, never raised: the payload then
stays in memory as long as memory allows. Used by the sender thread only; the gauges are plain ints.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_NAME = re.compile(r"(\d{12})-(\d+)-(\d+)-(\d+)\.json\.gz")
_TMP_SUFFIX = ".tmp"
LOCK_FILE = "serving-exporter.lock"


@dataclass(frozen=True, slots=True)
class Payload:
    """One request body (gzip-compressed JSON) and what the backlog needs to know about its points."""

    body: bytes
    points: int
    oldest: int  # timestamp (s) of its oldest point
    newest: int


@dataclass(slots=True)
class _Entry:
    seq: int
    points: int
    oldest: int
    newest: int
    size: int
    body: bytes | None  # None while it is on disk only


class Backlog:
    """See the module docstring. `drop(reason, points)` is called for every payload given up on."""

    def __init__(self, memory_bytes: int, drop: Callable[[str, int], None], directory: Path | None = None,
                 disk_bytes: int = 0):
        self.memory_bytes, self.disk_bytes = memory_bytes, disk_bytes
        self._drop = drop
        self._memory: deque[_Entry] = deque()
        self._disk: deque[_Entry] = deque()
        self._seq = 0
        self.memory_used = self.disk_used = 0  # bytes of the bodies
        self.points = 0  # points waiting (kept as a number: the collector reads it from another thread)
        self.spilled_points = 0
        self.errors: Counter[str] = Counter()  # failed disk operations by operation
        self._failing = False  # writes are failing: logged once per streak, counted every time
        self.directory: Path | None = None
        self._lock_fd: int | None = None
        if directory is not None:
            self._open(Path(directory))

    # -- the queue ----------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._disk) + len(self._memory)

    def append(self, payload: Payload) -> None:
        self._seq += 1
        self._memory.append(_Entry(self._seq, payload.points, payload.oldest, payload.newest, len(payload.body), payload.body))
        self.memory_used += len(payload.body)
        self.points += payload.points
        while self.memory_used > self.memory_bytes and self._memory:
            self._evict_oldest_in_memory("buffer_full")

    def head(self) -> tuple[int, Payload] | None:
        """The oldest payload and its id (for `remove`), or None when empty. An unreadable
        spilled file is dropped (reason `spill_unreadable`) and the next one is tried."""
        while self._disk:
            entry = self._disk[0]
            body = entry.body if entry.body is not None else self._read(entry)
            if body:
                entry.body = body  # kept while it is the head: a retry does not read the file again
                return entry.seq, Payload(body, entry.points, entry.oldest, entry.newest)
            self._drop("spill_unreadable", self._forget_disk_head().points)
        if self._memory:
            e = self._memory[0]
            return e.seq, Payload(e.body or b"", e.points, e.oldest, e.newest)
        return None

    def remove(self, seq: int) -> None:
        """Remove the head with id `seq` (delivered or rejected); nothing if it was dropped meanwhile."""
        if self._disk and self._disk[0].seq == seq:
            self._forget_disk_head()
        elif self._memory and self._memory[0].seq == seq:
            entry = self._memory.popleft()
            self.memory_used -= entry.size
            self.points -= entry.points

    def expire(self, oldest_allowed: int, keep: int | None = None) -> int:
        """Drop whole payloads whose newest point is older than `oldest_allowed`, except the one with id
        `keep` (being sent); return the points dropped. (A payload only partly too old is trimmed by the
        sender when it sends it.)"""
        dropped = 0
        for part in (self._disk, self._memory):
            kept: deque[_Entry] = deque()
            for entry in part:
                if entry.newest < oldest_allowed and entry.seq != keep:
                    dropped += entry.points
                    if part is self._disk:
                        self._unlink(entry)
                        self.disk_used -= entry.size
                    else:
                        self.memory_used -= entry.size
                    self.points -= entry.points
                else:
                    kept.append(entry)
            part.clear()
            part.extend(kept)
        return dropped

    def spill_all(self) -> int:
        """Move every payload in memory to disk (at shutdown); return the points that could not be kept."""
        lost = 0
        while self._memory:
            entry = self._memory[0]
            if self.directory is not None and self._write(entry):
                self._memory.popleft()
                self.memory_used -= entry.size
            else:
                lost += entry.points
                self.memory_used -= self._memory.popleft().size
        self.points -= lost
        return lost

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock
            self._lock_fd = None

    # -- memory -> disk -----------------------------------------------------------------------------

    def _evict_oldest_in_memory(self, reason: str) -> None:
        entry = self._memory.popleft()
        self.memory_used -= entry.size
        if self.directory is None or not self._write(entry):
            self.points -= entry.points
            self._drop(reason, entry.points)

    def _write(self, entry: _Entry) -> bool:
        """Write `entry` at the end of the disk queue; False if the disk cannot take it."""
        assert self.directory is not None and entry.body is not None
        if entry.size > self.disk_bytes:
            return False
        while self.disk_used + entry.size > self.disk_bytes and self._disk:
            self._drop("buffer_full", self._forget_disk_head().points)
        path = self._path(entry)
        tmp = path.with_name(path.name + _TMP_SUFFIX)
        try:
            with open(tmp, "wb") as f:
                f.write(entry.body)
            os.replace(tmp, path)
        except OSError as exc:
            self.errors["write"] += 1
            (log.debug if self._failing else log.warning)(
                "cannot spill Datadog points to %s: %s (counted in model_serving_exporter_datadog_spill_errors_total; "
                "logged again when it recovers)", self.directory, _reason(exc))
            self._failing = True
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
            return False
        if self._failing:
            self._failing = False
            log.warning("spilling Datadog points to %s again", self.directory)
        self._disk.append(entry)
        entry.body = None
        self.disk_used += entry.size
        self.spilled_points += entry.points
        return True

    def _read(self, entry: _Entry) -> bytes | None:
        try:
            return self._path(entry).read_bytes() or None
        except OSError as exc:
            self.errors["read"] += 1
            log.warning("cannot read spilled Datadog points %s: %s", self._path(entry), _reason(exc))
            return None

    def _forget_disk_head(self) -> _Entry:
        entry = self._disk.popleft()
        self._unlink(entry)
        self.disk_used -= entry.size
        self.points -= entry.points
        return entry

    def _unlink(self, entry: _Entry) -> None:
        try:
            self._path(entry).unlink(missing_ok=True)
        except OSError as exc:  # a file left behind is sent again after a restart: logged, not fatal
            self.errors["delete"] += 1
            log.warning("cannot delete spilled Datadog points %s: %s", self._path(entry), _reason(exc))

    def _path(self, entry: _Entry) -> Path:
        assert self.directory is not None
        return self.directory / f"{entry.seq:012d}-{entry.oldest}-{entry.newest}-{entry.points}.json.gz"

    # -- start-up -----------------------------------------------------------------------------------

    def _open(self, directory: Path) -> None:
        """Take the directory (creating it) and queue what an earlier process left there, oldest first.
        A directory that cannot be used leaves the backlog in memory only (logged and counted)."""
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise
            names = sorted(os.listdir(directory))
        except OSError as exc:
            self.errors["open"] += 1
            busy = exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
            log.error("Datadog spill directory %s is not usable (%s): keeping points in memory only", directory,
                      "used by another exporter process" if busy else _reason(exc))
            return
        self.directory, self._lock_fd = directory, fd
        for name in names:
            if name.endswith(_TMP_SUFFIX) and _NAME.fullmatch(name[:-len(_TMP_SUFFIX)]):
                self._unlink_name(name)  # a write cut short by a crash
                continue
            m = _NAME.fullmatch(name)
            if not m:
                continue  # not ours: left alone
            try:
                size = (directory / name).stat().st_size
            except OSError:
                continue
            seq, oldest, newest, points = map(int, m.groups())
            self._disk.append(_Entry(seq, points, oldest, newest, size, None))
            self.disk_used += size
            self.points += points
            self._seq = max(self._seq, seq)
        if self._disk:
            log.info("Datadog spill directory %s: %d points from before the restart (%d bytes) will be sent first",
                     directory, self.points, self.disk_used)

    def _unlink_name(self, name: str) -> None:
        assert self.directory is not None
        try:
            (self.directory / name).unlink(missing_ok=True)
        except OSError:
            self.errors["delete"] += 1


def _reason(exc: OSError) -> str:
    """The error without the file name (it is logged once, apart): e.g. 'No space left on device'."""
    return exc.strerror or type(exc).__name__
