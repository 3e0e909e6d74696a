"""Consistent copies of live SQLite databases.

A file copy of a database in WAL mode misses what is still in the -wal file and can be torn by
a concurrent write. SQLite's online backup API, run from our own connection in one step
(``pages=-1``), copies a single consistent read snapshot without blocking WAL writers; the read
transaction lasts only as long as the copy, so the app's checkpoints are not held back.

A connection that keeps the database locked (a long write transaction in rollback-journal
mode, ``locking_mode=EXCLUSIVE``) blocks that read. Python's ``backup()`` would retry such a
"database is locked" forever; here each attempt is short, and between attempts the copy
answers a stop request, logs who holds the lock, and gives up at ``lock_timeout``.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from watcher.archive.files import open_private

log = logging.getLogger("watcher.snapshot.take")

#: page cache of the connection that checks a copy, in KiB (SQLite's default is 2000)
CHECK_CACHE_KIB = 16 * 1024
#: the check run on every copy before it is archived. quick_check reads every page and every
#: row, so it finds the damage that loses rows (torn or garbled pages, broken b-trees, bad
#: records); it skips matching each index against its table, which costs five times as much
#: (1.5 against 0.3 CPU-s on a 300 MB copy, 9.6 against 1.2 on 1.2 GB, on the production
#: server, every run) and whose failures REINDEX repairs without loss. `siip-watcher verify`
#: runs the full integrity_check on the archived copy (figures in docs/benchmarks.md).
CHECK_PRAGMA = "quick_check"


#: SQLite errors that mean the file itself is damaged or is not a database
DAMAGED_ERRORS = {"SQLITE_CORRUPT", "SQLITE_NOTADB"}
#: SQLite errors that mean another connection holds a lock we need
LOCKED_ERRORS = {"SQLITE_BUSY", "SQLITE_LOCKED"}
#: how long one copy attempt waits inside SQLite for a lock, and then between attempts: a
#: commit's lock lasts milliseconds, and a stop request is answered within about this long
LOCK_RETRY_SECONDS = 0.25
#: while a database stays locked, a log line this often
LOCK_LOG_SECONDS = 30.0
#: sqlite3_backup_step's answers that mean "locked, try again"
_BUSY_STATUS = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED


#: free bytes under which a disk I/O error on the copy is taken for a full disk
NEARLY_FULL_BYTES = 1 << 20
#: a /proc/locks line up to the lock's device:inode, the last field read (see lock_holder)
_LOCK_FIELDS = 6


class DatabaseCopyError(Exception):
    """A source database is missing, unreadable or corrupt; the message names it and
    ``cause`` says which (see :data:`watcher.backup.report.CAUSES`)."""

    def __init__(self, message: str, cause: str = "database_unreadable") -> None:
        super().__init__(message)
        self.cause = cause


@dataclass(frozen=True)
class DatabaseCopy:
    """A checked copy of one database, ready to be archived."""

    source: Path
    copy: Path
    pages: int
    page_size: int
    size: int
    check: str
    check_pragma: str
    #: when the copy was complete (UTC): its data is at least this recent
    copied_at: datetime


class CopyInterrupted(Exception):
    """``stop`` was set while a database was being copied or checked."""


def copy_database(source: Path, target: Path, *, lock_timeout: float = 300.0,
                  stop: threading.Event | None = None,
                  log_every: float = LOCK_LOG_SECONDS) -> DatabaseCopy:
    """Copy ``source`` to ``target`` with the online backup API and check the copy.

    While another connection keeps ``source`` locked, the copy waits up to ``lock_timeout``
    seconds (``source.lock_timeout_seconds``), logging a warning every ``log_every`` seconds.
    Raises :class:`DatabaseCopyError` with a one-line reason when the source is missing,
    stays locked, or is not a healthy database, and :class:`CopyInterrupted` when ``stop`` is
    set while waiting or checking; ``target`` is removed in every case.
    """
    if not source.is_file():
        raise DatabaseCopyError(
            f"database {source} not found; fix source.databases in the configuration "
            f"(paths are relative to source.root)", "database_missing"
        )
    target.unlink(missing_ok=True)
    wait = _LockWait(source, lock_timeout, log_every, stop)
    try:
        # created private before a page is in it: the copy holds the whole database for as
        # long as a locked source keeps it waiting, and SQLite would create it per the umask
        os.close(open_private(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
        src = _open_source(source)
        try:
            dst = sqlite3.connect(target)
            try:
                # a scratch copy: the archive is fsynced, this file never needs to be
                dst.execute("PRAGMA synchronous = OFF")
                dst.execute("PRAGMA journal_mode = OFF")
                # one step: a stepped backup restarts on every commit of a busy writer.
                # Python retries a locked step by itself, forever; the progress callback
                # runs after every attempt and raises to end the wait.
                src.backup(dst, pages=-1, progress=wait, sleep=LOCK_RETRY_SECONDS)
                copied_at = datetime.now(UTC)
            finally:
                dst.close()
        finally:
            src.close()
        return _check(source, target, stop, copied_at=copied_at)
    except (DatabaseCopyError, CopyInterrupted):
        target.unlink(missing_ok=True)
        raise
    except sqlite3.Error as exc:
        target.unlink(missing_ok=True)
        if stop is not None and stop.is_set():
            raise CopyInterrupted(str(source)) from None
        if exc.sqlite_errorname in LOCKED_ERRORS:
            raise wait.failure(exc) from None
        if exc.sqlite_errorname == "SQLITE_FULL" or (
                exc.sqlite_errorname.startswith("SQLITE_IOERR") and _nearly_full(target)):
            # the copy goes to the backup dir: that disk is full, the database is fine
            raise DatabaseCopyError(
                f"the disk of the backup dir is full while copying {source} ({exc}); free "
                f"space there or lower the retention.keep_* settings, then run again",
                "disk_full") from None
        if exc.sqlite_errorname in DAMAGED_ERRORS:
            raise DatabaseCopyError(
                f"database {source} is damaged ({exc}); restore it from a previous snapshot "
                f"or repair it with sqlite3 .recover", "database_damaged"
            ) from None
        raise DatabaseCopyError(
            f"database {source} could not be copied: {exc}; check that the service user can "
            f"read it and its folder"
        ) from None


def _nearly_full(target: Path) -> bool:
    """Whether the copy's disk is (all but) full: SQLite reports ENOSPC in the middle of a
    write as a plain "disk I/O error" (SQLITE_IOERR_WRITE), not always as SQLITE_FULL."""
    try:
        return shutil.disk_usage(target.parent).free < NEARLY_FULL_BYTES
    except OSError:
        return False


class _LockWait:
    """The backup's progress callback: bounds, logs and interrupts the wait for a lock."""

    def __init__(self, source: Path, limit: float, log_every: float,
                 stop: threading.Event | None) -> None:
        self.source, self.limit, self.log_every, self.stop = source, limit, log_every, stop
        self.since: float | None = None     # when the first attempt found the lock taken
        self.next_log = 0.0

    def __call__(self, status: int, remaining: int, total: int) -> None:
        if status not in _BUSY_STATUS:
            return
        now = time.monotonic()
        if self.since is None:
            self.since = now
            self.next_log = now + self.log_every
        if self.stop is not None and self.stop.is_set():
            raise CopyInterrupted(str(self.source))
        if now - self.since >= self.limit:
            raise self.failure(None)
        if now >= self.next_log:
            self.next_log = now + self.log_every
            log.warning("database %s is locked by %s; waited %.0f s, the run fails at %g s "
                        "(source.lock_timeout_seconds)", self.source, lock_holder(self.source),
                        now - self.since, self.limit)

    def failure(self, exc: sqlite3.Error | None) -> DatabaseCopyError:
        """The run's error at the limit, or when SQLite itself gave up on a lock (``exc``)."""
        holder = lock_holder(self.source)
        if exc is not None:
            return DatabaseCopyError(
                f"database {self.source} could not be read: {exc}, held by {holder}; end the "
                f"transaction or process holding it and run again")
        waited = time.monotonic() - self.since if self.since is not None else 0.0
        return DatabaseCopyError(
            f"database {self.source} stayed locked by {holder} for {waited:.0f} s; end the "
            f"transaction or process holding it, or raise source.lock_timeout_seconds "
            f"(now {self.limit:g})")


def lock_holder(database: Path) -> str:
    """Who holds a write lock on ``database`` (or its -shm), as "pid N (name)", when the
    system says (Linux /proc/locks); else "another connection"."""
    try:
        ids = set()
        for path in (database, Path(str(database) + "-shm")):
            try:
                st = os.stat(path)
            except OSError:
                continue
            ids.add((os.major(st.st_dev), os.minor(st.st_dev), st.st_ino))
        with open("/proc/locks", encoding="ascii", errors="replace") as fh:
            lines = fh.read().splitlines()
    except (OSError, AttributeError):
        return "another connection"
    pids: list[int] = []
    for line in lines:
        fields = line.split()
        # "1: POSIX  ADVISORY  WRITE 367 fe:00:2166526 1073741824 1073742335"; a blocked
        # waiter's line has "->" and describes a lock not yet held
        if len(fields) < _LOCK_FIELDS or "->" in fields or fields[3] != "WRITE":
            continue
        try:
            major, minor, ino = fields[5].split(":")
            key = (int(major, 16), int(minor, 16), int(ino))
            pid = int(fields[4])
        except ValueError:
            continue
        if key in ids and pid > 0 and pid != os.getpid() and pid not in pids:
            pids.append(pid)
    if not pids:
        return "another connection"
    # the process name only: a command line can hold a password
    return ", ".join(f"pid {pid} ({_process_name(pid)})" for pid in pids[:3])


def _process_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as fh:
            return fh.read().strip() or "?"
    except OSError:
        return "?"


def _open_source(source: Path) -> sqlite3.Connection:
    """Open the live database for reading, without changing it when possible.

    Read-only first (a hardened service may not write the project folder); a WAL database
    whose -shm the reader cannot create needs a normal connection, which only reads too.
    A lock held by another connection is not such a case: the copy waits for it.
    """
    uri = source.resolve().as_uri() + "?mode=ro"
    con: sqlite3.Connection | None = None
    try:
        con = sqlite3.connect(uri, uri=True, timeout=LOCK_RETRY_SECONDS)
        con.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return con
    except sqlite3.OperationalError as exc:
        if con is not None and exc.sqlite_errorname in LOCKED_ERRORS:
            return con
        if con is not None:
            con.close()
    con = sqlite3.connect(source, timeout=LOCK_RETRY_SECONDS)
    con.execute("PRAGMA query_only = ON")
    return con


def _check(source: Path, copy: Path, stop: threading.Event | None, *,
           copied_at: datetime) -> DatabaseCopy:
    con = sqlite3.connect(copy)
    # integrity_check looks every row up in every index: with SQLite's default 2 MB page
    # cache most lookups miss and cost a pread each (1.3 of 2.1 CPU-s on a 300 MB copy were
    # system time). 16 MB keeps the hot index pages: 1.5 CPU-s there, neutral on a 1.2 GB one.
    con.execute(f"PRAGMA cache_size = -{CHECK_CACHE_KIB}")
    if stop is not None:
        # lets a service shutdown interrupt a long integrity_check (it raises "interrupted")
        con.set_progress_handler(lambda: int(stop.is_set()), 100_000)
    try:
        rows = con.execute(f"PRAGMA {CHECK_PRAGMA}").fetchall()
        pages = con.execute("PRAGMA page_count").fetchone()[0]
        page_size = con.execute("PRAGMA page_size").fetchone()[0]
    finally:
        con.close()
    result = "ok" if rows == [("ok",)] else "; ".join(str(r[0]) for r in rows[:5])
    if result != "ok":
        raise DatabaseCopyError(
            f"database {source} failed PRAGMA {CHECK_PRAGMA} ({result}); the source is "
            f"damaged: restore it from a previous snapshot or repair it with sqlite3 .recover",
            "database_damaged"
        )
    return DatabaseCopy(source=source, copy=copy, pages=pages, page_size=page_size,
                        size=copy.stat().st_size, check=result, check_pragma=CHECK_PRAGMA,
                        copied_at=copied_at)
