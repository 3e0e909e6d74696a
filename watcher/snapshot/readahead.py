"""Reading the tree's small files ahead of the archive, on a thread of their own.

Per small file a snapshot opens it (through :func:`watcher.snapshot.member.open_member`, which
checks it is still what the walk saw), reads it, looks at it again (``fstat``: did it change
while being read?), hashes it and closes it: system calls and sha256, which release the GIL,
and which took about half of the main thread's time on a tree of small files. The main thread
builds the tar headers and manifest records; everything else being equal it is the one thread
a snapshot waits for, and on a busy machine each thread gets its own share of the cores. A
reader does that per-file work for the files the main thread names, in the order named, at
most ``ahead`` files and ``ahead_bytes`` bytes before the main thread takes them.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from watcher.snapshot.member import open_member

#: files up to this size are read whole before their header is written, so their member is
#: always internally consistent even when the app rewrites them mid-read
SMALL_FILE = 4 << 20
T = TypeVar("T")

#: how far the reader may run ahead of the archive: files, and bytes of what they hold
AHEAD_FILES = 64
AHEAD_BYTES = 16 << 20


@dataclass(frozen=True, slots=True)
class SmallRead:
    """A small file read whole: its bytes, ``fstat`` before and after the read, sha256."""

    data: bytes
    before: os.stat_result
    after: os.stat_result
    sha256: str

    @property
    def changed(self) -> bool:
        """Whether it changed while being read (size, mtime, or fewer bytes than it said)."""
        return (self.before.st_size != self.after.st_size
                or self.before.st_mtime_ns != self.after.st_mtime_ns
                or len(self.data) != self.before.st_size)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What reading one named file gave: ``read``; or nothing (it was over SMALL_FILE when
    opened: the caller streams it); or ``error``, why it could not be opened (vanished,
    swapped, unreadable: a warning); or ``failure``, what reading the opened file raised
    (the snapshot fails on it)."""

    read: SmallRead | None = None
    error: BaseException | None = None
    failure: BaseException | None = None


def read_small(fd: int, expected: int) -> bytes:
    """Up to ``expected`` bytes of the file, usually in one read.

    One byte more is asked for, so a file that grew shows at once; a file that grows or
    changes after the read is caught by the caller's second fstat. Reading on to confirm the
    end would cost a second system call per file, 15,000 of them on a typical tree.
    """
    data = os.read(fd, expected + 1)
    if len(data) < expected:  # a short read, or the file shrank: read on until the end
        parts = [data]
        got = len(data)
        while got <= expected:
            more = os.read(fd, expected + 1 - got)
            if not more:
                break
            parts.append(more)
            got += len(more)
        data = b"".join(parts)
    return data[:expected] if len(data) > expected else data


def read_member(path: str, walked: os.stat_result) -> Outcome:
    """Open, read and hash the regular file the walk saw as ``walked``, if it is small."""
    try:
        fd, before = open_member(path, walked)
    except OSError as exc:  # vanished, swapped (MemberChanged), unreadable
        return Outcome(error=exc)
    try:
        if before.st_size > SMALL_FILE:
            return Outcome()
        data = read_small(fd, before.st_size)
        after = os.fstat(fd)
    except OSError as exc:
        return Outcome(failure=exc)
    finally:
        os.close(fd)
    return Outcome(SmallRead(data, before, after, hashlib.sha256(data).hexdigest()))


class ReadAhead:
    """A thread that reads the files named with :meth:`ask`, answering :meth:`take` in order.

    The caller asks only while :meth:`room` says so, and takes one answer per file asked.
    """

    def __init__(self) -> None:
        self._asked: queue.SimpleQueue[tuple[str, os.stat_result] | None] = queue.SimpleQueue()
        self._answers: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        self._sizes: deque[int] = deque()  # of the files asked and not yet taken, oldest first
        self._bytes = 0
        self._thread = threading.Thread(target=self._run, name="tree-reader", daemon=True)
        self._thread.start()

    def room(self) -> bool:
        """Whether another file may be asked for now."""
        return len(self._sizes) < AHEAD_FILES and (self._bytes < AHEAD_BYTES or not self._sizes)

    def ask(self, path: str, walked: os.stat_result) -> None:
        """Read this file next (see :func:`read_member`)."""
        self._sizes.append(walked.st_size)
        self._bytes += walked.st_size
        self._asked.put((path, walked))

    def take(self) -> Outcome:
        """The outcome for the oldest file asked and not yet taken (waits for it)."""
        self._bytes -= self._sizes.popleft()
        return self._answers.get()

    def close(self) -> None:
        """Stop the thread once the files asked for are read (at most AHEAD_FILES)."""
        self._asked.put(None)
        self._thread.join()

    def _run(self) -> None:
        while (item := self._asked.get()) is not None:
            try:
                outcome = read_member(*item)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, which raises it
                outcome = Outcome(failure=exc)
            self._answers.put(outcome)

    def in_order(self, items: Iterable[T], target: Callable[[T], tuple[str, os.stat_result] | None]
                 ) -> Iterator[tuple[T, Outcome | None]]:
        """``items`` in their order, each with the outcome of reading it.

        ``target(item)`` names the file to read for an item as (path, the walk's ``lstat``),
        or None for one that needs no read (its outcome is then None). Reads are asked for
        as far ahead as :meth:`room` allows.
        """
        pending: deque[tuple[T, bool]] = deque()
        for item in items:
            file = target(item)
            if file is not None:
                while not self.room():
                    yield self._next(pending)
                self.ask(*file)
            pending.append((item, file is not None))
            while pending and not pending[0][1]:
                yield pending.popleft()[0], None
        while pending:
            yield self._next(pending)

    def _next(self, pending: deque[tuple[T, bool]]) -> tuple[T, Outcome | None]:
        item, asked = pending.popleft()
        return item, self.take() if asked else None
