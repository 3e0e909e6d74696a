"""Consistent copies of live SQLite databases.

A file copy of a database in WAL mode misses what is still in the -wal file and can be torn by
a concurrent write. SQLite's online backup API, run from our own connection in one step
(``pages=-1``), copies a single consistent read snapshot without blocking WAL writers; the read
transaction lasts only as long as the copy, so the app's checkpoints are not held back.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

#: page cache of the connection that checks a copy, in KiB (SQLite's default is 2000)
CHECK_CACHE_KIB = 16 * 1024
#: the check run on every copy before it is archived. quick_check reads every page and every
#: row, so it finds the damage that loses rows (torn or garbled pages, broken b-trees, bad
#: records); it skips matching each index against its table, which costs five times as much
#: (1.5 against 0.3 CPU-s on a 300 MB copy, 9.6 against 1.2 on 1.2 GB, on the production
#: server, every run) and whose failures REINDEX repairs without loss. `siip-watcher verify`
#: runs the full integrity_check on the archived copy. Departure from DESIGN.md, on purpose.
CHECK_PRAGMA = "quick_check"


#: SQLite errors that mean the file itself is damaged or is not a database
DAMAGED_ERRORS = {"SQLITE_CORRUPT", "SQLITE_NOTADB"}


class DatabaseCopyError(Exception):
    """A source database is missing, unreadable or corrupt; the message names it and
    ``cause`` says which (see :data:`watcher.report.CAUSES`)."""

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


class CopyInterrupted(Exception):
    """``stop`` was set while a database was being checked."""


def copy_database(source: Path, target: Path, *, busy_timeout: float = 60.0,
                  stop: threading.Event | None = None) -> DatabaseCopy:
    """Copy ``source`` to ``target`` with the online backup API and check the copy.

    Raises :class:`DatabaseCopyError` with a one-line reason when the source is missing or
    not a healthy database, and :class:`CopyInterrupted` when ``stop`` is set during the
    check; ``target`` is removed in both cases.
    """
    if not source.is_file():
        raise DatabaseCopyError(
            f"database {source} not found; fix source.databases in the configuration "
            f"(paths are relative to source.root)", "database_missing"
        )
    target.unlink(missing_ok=True)
    try:
        src = _open_source(source, busy_timeout)
        try:
            dst = sqlite3.connect(target)
            try:
                # a scratch copy: the archive is fsynced, this file never needs to be
                dst.execute("PRAGMA synchronous = OFF")
                dst.execute("PRAGMA journal_mode = OFF")
                # one step: a stepped backup restarts on every commit of a busy writer
                src.backup(dst, pages=-1)
            finally:
                dst.close()
        finally:
            src.close()
        if os.name == "posix":
            os.chmod(target, 0o600)
        return _check(source, target, stop)
    except sqlite3.Error as exc:
        target.unlink(missing_ok=True)
        if stop is not None and stop.is_set():
            raise CopyInterrupted(str(source)) from None
        if exc.sqlite_errorname in DAMAGED_ERRORS:
            raise DatabaseCopyError(
                f"database {source} is damaged ({exc}); restore it from a previous snapshot "
                f"or repair it with sqlite3 .recover", "database_damaged"
            ) from None
        raise DatabaseCopyError(
            f"database {source} could not be copied: {exc}; check that the service user can "
            f"read it and its folder"
        ) from None
    except DatabaseCopyError:
        target.unlink(missing_ok=True)
        raise


def _open_source(source: Path, busy_timeout: float) -> sqlite3.Connection:
    """Open the live database for reading, without changing it when possible.

    Read-only first (a hardened service may not write the project folder); a WAL database
    whose -shm the reader cannot create needs a normal connection, which only reads too.
    """
    uri = source.resolve().as_uri() + "?mode=ro"
    try:
        con = sqlite3.connect(uri, uri=True, timeout=busy_timeout)
        con.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return con
    except sqlite3.OperationalError:
        con = sqlite3.connect(source, timeout=busy_timeout)
        con.execute("PRAGMA query_only = ON")
        return con


def _check(source: Path, copy: Path, stop: threading.Event | None) -> DatabaseCopy:
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
                        size=copy.stat().st_size, check=result, check_pragma=CHECK_PRAGMA)
