"""One backup at a time per local dir: an OS file lock that a crash releases by itself.

A PID file goes stale when the process is killed; an flock/LockFileEx lock is dropped by the
kernel with the process, so a crashed service never blocks the next start.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import TracebackType

LOCK_FILE = "siip-watcher.state.lock"
SERVICE_LOCK_FILE = "siip-watcher.service.lock"


class LockBusy(Exception):
    """Another siip-watcher process holds the lock."""


class FileLock:
    """An exclusive, non-inheritable lock on ``path``; records the holder's pid for messages."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self, timeout: float = 0.0, poll: float = 0.2) -> None:
        """Take the lock, waiting up to ``timeout`` seconds; raise :class:`LockBusy`."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + timeout
        while True:
            try:
                _lock(fd)
                break
            except OSError:
                if time.monotonic() >= deadline:
                    holder = self.holder_pid()
                    os.close(fd)
                    who = f" (pid {holder})" if holder else ""
                    raise LockBusy(f"another siip-watcher process{who} holds {self.path}") \
                        from None
                time.sleep(poll)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                _unlock(fd)
            finally:
                os.close(fd)

    def holder_pid(self) -> int | None:
        """The pid written by the last holder (it may have exited)."""
        try:
            return int(self.path.read_text().strip() or 0) or None
        except (OSError, ValueError):
            return None

    def is_held_elsewhere(self) -> bool:
        """True if some other process holds the lock right now."""
        if self._fd is not None:
            return False
        try:
            fd = os.open(self.path, os.O_RDWR)
        except OSError:
            return False
        try:
            _lock(fd)
        except OSError:
            return True
        else:
            _unlock(fd)
            return False
        finally:
            os.close(fd)

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


if os.name == "nt":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _lock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
else:
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
