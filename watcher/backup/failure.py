"""A run, or the service's start, that ended on an exception: what it tells the admin.

Such a failure can come before the run's report exists (a damaged catalog, a backup dir that
cannot be created, another snapshot holding the lock, a bug), yet it must reach the admin
like any failed run: in plain words (a ``cause`` from :data:`watcher.backup.report.CAUSES`), by
email and by heartbeat ``/fail``. Sending the notice may fail too; that is logged and never
replaces the failure it was about.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
import threading
from datetime import datetime
from pathlib import Path

from watcher.backup.report import Problem, RunReport
from watcher.config.settings import Config
from watcher.notify import notify
from watcher.state.catalog import CATALOG_FILE, Catalog, utcnow
from watcher.state.store import free_bytes

log = logging.getLogger("watcher.backup.run")


def problem_for(exc: BaseException, local_dir: Path) -> Problem:
    """The one-line problem, its advice and its cause for an exception that ended a run or
    the service's start with ``local_dir`` as the backup dir.

    A :class:`sqlite3.Error` is taken to come from the catalog: callers route whatever the
    snapshot itself raises through :func:`unexpected_problem` instead.
    """
    if isinstance(exc, sqlite3.Error):
        return _catalog_problem(exc, local_dir / CATALOG_FILE)
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        if exc.errno == errno.ENOSPC:
            return Problem(f"no space left on the disk of {local_dir}{where}",
                           "free some space there (or lower the retention counts)",
                           cause="disk_full")
        return Problem(f"cannot use the backup dir {local_dir}: {exc.strerror or exc}{where}",
                       "check that the service user owns that folder and may write it",
                       cause="backup_dir")
    return unexpected_problem(exc)


def unexpected_problem(exc: BaseException) -> Problem:
    """The problem for an error no step foresaw (a bug): its type and first line only."""
    # a UnicodeError quotes the character it could not handle, which may be a secret's
    detail = "" if isinstance(exc, UnicodeError) else f": {_one_line(exc)}"
    return Problem(f"unexpected {type(exc).__name__}{detail}",
                   "see the service log for the details, then run `siip-watcher once`; "
                   "report it if it happens again", cause="unexpected")


def _catalog_problem(exc: sqlite3.Error, path: Path) -> Problem:
    code = getattr(exc, "sqlite_errorname", "")
    if code == "SQLITE_FULL":
        return Problem(f"the catalog {path} cannot be written: the disk is full",
                       "free some space on that disk (or lower the retention counts)",
                       cause="disk_full")
    if isinstance(exc, sqlite3.OperationalError) and code not in ("SQLITE_NOTADB",
                                                                  "SQLITE_CORRUPT"):
        # locked, read-only, cannot open: the file may be fine, so it must not be moved
        return Problem(f"the catalog {path} cannot be used: {_one_line(exc)}",
                       "check that the service user may read and write it and that no other "
                       "program holds it open", cause="catalog", key="catalog_unusable",
                       params={"path": str(path)}, detail=_one_line(exc))
    return Problem(f"the catalog {path} is damaged: {_one_line(exc)}",
                   f"move it aside (rename it to {path.name}.damaged, say); the next run "
                   f"rebuilds it from the archives and queues their uploads again",
                   cause="catalog", key="catalog_damaged",
                   params={"path": str(path), "name": path.name}, detail=_one_line(exc))


def failed_report(cfg: Config, problem: Problem, *, trigger: str, phase: str = "run",
                  started_at: datetime | None = None) -> RunReport:
    """A finished, failed report holding only ``problem`` (nothing else is known)."""
    report = RunReport(name=cfg.name, trigger=trigger, started_at=started_at or utcnow(),
                       phase=phase)
    report.errors.append(problem)
    report.free_bytes = free_bytes(cfg.local.dir)
    report.finish(utcnow())
    return report


def send_notice(cfg: Config, report: RunReport, catalog: Catalog | None = None,
                run_id: int | None = None, *, email: bool = True,
                stop: threading.Event | None = None) -> None:
    """Email and ping for ``report`` as :func:`watcher.notify.notify` does; never raises,
    so the failure being reported stays the one the caller returns or raises."""
    try:
        notify(cfg, report, catalog, run_id, email=email, stop=stop)
    except Exception as exc:  # noqa: BLE001 - never replaces the failure being reported
        log.error("the admin could not be notified of this run (%s: %s); see the lines above",
                  type(exc).__name__, "" if isinstance(exc, UnicodeError) else _one_line(exc))


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
