"""The catalog: a small SQLite database in the local dir holding snapshots, their copies at
each destination, runs and notifications.

It is state, not truth: the archives are self-describing, and a lost catalog is rebuilt from
them (:func:`watcher.state.inventory.reconcile`). Connections are short-lived and every write is
its own transaction, so the CLI can read it while the service writes.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from watcher.backup.report import RunReport, SnapshotInfo

log = logging.getLogger(__name__)

CATALOG_FILE = "catalog.sqlite3"
#: 2 added each snapshot's kind ("full" or "delta") and base (a delta's full)
SCHEMA_VERSION = 2
#: how long a connection waits for another process's transaction (seconds): the service and
#: `once` wait long rather than fail a run; `status` answers an admin within seconds
WRITER_TIMEOUT = 30.0
READER_TIMEOUT = 10.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshots (
    id          TEXT PRIMARY KEY,
    file        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    size        INTEGER NOT NULL,
    sha256      TEXT NOT NULL,
    files       INTEGER NOT NULL,
    bytes_in    INTEGER NOT NULL,
    databases   TEXT NOT NULL DEFAULT '[]',
    duration    REAL,
    trigger     TEXT,
    local       INTEGER NOT NULL DEFAULT 1,
    fingerprint TEXT,
    kind        TEXT NOT NULL DEFAULT 'full',
    base        TEXT
);
CREATE TABLE IF NOT EXISTS copies (
    snapshot_id TEXT NOT NULL,
    destination TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('pending', 'uploaded', 'failed')),
    remote_id   TEXT,
    link        TEXT,
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    resume      TEXT,
    next_try_at TEXT,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (snapshot_id, destination)
);
CREATE TABLE IF NOT EXISTS runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    trigger     TEXT NOT NULL,
    status      TEXT NOT NULL,
    snapshot_id TEXT,
    summary     TEXT,
    report      TEXT
);
CREATE TABLE IF NOT EXISTS notifications (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id      INTEGER,
    channel     TEXT NOT NULL,
    state       TEXT NOT NULL,
    error       TEXT,
    at          TEXT NOT NULL
);
"""


def _is_damage(exc: sqlite3.DatabaseError) -> bool:
    """Garbage or corruption, as opposed to a lock, a permission or a full disk."""
    code = getattr(exc, "sqlite_errorname", "")
    if code in ("SQLITE_NOTADB", "SQLITE_CORRUPT"):
        return True
    return not isinstance(exc, sqlite3.OperationalError) and code not in (
        "SQLITE_FULL", "SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_READONLY", "SQLITE_CANTOPEN",
        "SQLITE_PERM", "SQLITE_IOERR")


#: columns added after the first schema, with their definition; a catalog written before
#: them gains them in place (every existing snapshot was a full)
_ADDED_COLUMNS = (("snapshots", "kind", "TEXT NOT NULL DEFAULT 'full'"),
                  ("snapshots", "base", "TEXT"))


def _migrate(db: sqlite3.Connection) -> None:
    """Add the columns an older catalog lacks (ALTER TABLE appends them, so the column order
    stays that of ``_SCHEMA``)."""
    for table, column, definition in _ADDED_COLUMNS:
        have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if column not in have:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")


def utcnow() -> datetime:
    """The current time, timezone-aware UTC (one clock for the whole package)."""
    return datetime.now(UTC)


def _ts(dt: datetime | None) -> str | None:
    return dt.astimezone(UTC).isoformat() if dt else None


def _dt(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


@dataclass(frozen=True)
class SnapshotRow:
    """One snapshot: its archive, totals, and whether the local dir still holds it."""

    id: str
    file: str
    created_at: datetime
    size: int
    sha256: str
    files: int
    bytes_in: int
    databases: list[dict[str, Any]]
    duration: float | None
    trigger: str | None
    local: bool
    fingerprint: str | None
    #: "full" (a whole archive) or "delta" (the changes since the full ``base``)
    kind: str = "full"
    base: str | None = None


@dataclass(frozen=True)
class CopyRow:
    """The copy of one snapshot at one destination, and its upload state."""

    snapshot_id: str
    destination: str
    state: str
    remote_id: str | None
    link: str | None
    attempts: int
    last_error: str | None
    resume: dict[str, Any] | None
    next_try_at: datetime | None
    updated_at: datetime


@dataclass(frozen=True)
class NotificationRow:
    """How one notification (email, heartbeat) went."""

    channel: str
    run_id: int | None
    state: str
    error: str | None
    at: datetime


@dataclass(frozen=True)
class RunRow:
    """One run of the backup, as `status` and the next run see it."""

    id: int
    started_at: datetime
    finished_at: datetime | None
    trigger: str
    status: str
    snapshot_id: str | None
    summary: str | None


@dataclass(frozen=True)
class RunPoint:
    """One finished run as the monitor's chart draws it: when, how it ended, how long it took
    and how big its snapshot was (None: no snapshot)."""

    started_at: datetime
    status: str
    duration: float | None
    size: int | None


class Catalog:
    """Typed access to the catalog database at ``local_dir/catalog.sqlite3``.

    ``Catalog(local_dir)`` creates the file and its tables when missing; every write is its
    own transaction. :meth:`read_only` opens an existing catalog for reading only
    (``writable=False``: nothing is created, every write method raises).
    """

    def __init__(self, local_dir: Path, *, writable: bool = True) -> None:
        self.path = Path(local_dir) / CATALOG_FILE
        self.writable = writable
        self._timeout = WRITER_TIMEOUT if writable else READER_TIMEOUT
        #: where a damaged catalog was moved when this open replaced it, else None
        self.recovered_from: Path | None = None
        if not writable:
            return
        try:
            self._create()
        except sqlite3.DatabaseError as exc:
            if not _is_damage(exc):
                raise  # locked, unreadable, cannot open: the file may be fine, leave it
            self.recovered_from = self._move_aside(exc)
            self._create()

    def _create(self) -> None:
        """Check an existing file and create what is missing of the schema."""
        existed = self.path.exists()
        db = self._connection()
        try:
            if existed:
                # damage in a page the schema script never reads would surface mid-run
                rows = db.execute("PRAGMA quick_check").fetchall()
                if rows != [("ok",)]:
                    raise sqlite3.DatabaseError(f"quick_check: {rows[0][0]}")
            db.executescript(_SCHEMA)  # commits on its own: no surrounding transaction
            _migrate(db)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        finally:
            db.close()
        if not existed and os.name == "posix":
            # it names every archive and file count; keep it as private as the archives
            os.chmod(self.path, 0o600)

    def _move_aside(self, exc: sqlite3.DatabaseError) -> Path:
        """Keep the damaged file for a post-mortem under a name no run reads again; the
        caller rebuilds from the archives (:func:`watcher.state.inventory.reconcile`)."""
        stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
        aside = self.path.with_name(f"{self.path.name}.damaged-{stamp}")
        os.replace(self.path, aside)
        for suffix in ("-journal", "-wal", "-shm"):
            side = Path(f"{self.path}{suffix}")
            if side.exists():
                os.replace(side, Path(f"{aside}{suffix}"))
        log.warning("the catalog %s was damaged (%s); it was moved aside to %s and is rebuilt "
                    "from the archives", self.path, exc, aside.name)
        return aside

    @classmethod
    def read_only(cls, local_dir: Path) -> Catalog | None:
        """The catalog in ``local_dir`` opened for reading only, or None if there is none yet.

        Nothing is created and nothing is written, not even the schema, and no write lock is
        ever taken: `status` reads through this while the service writes, and it works on a
        backup folder mounted read-only or owned by another user. A file without the
        snapshots table (not a catalog yet) counts as none. Raises :class:`sqlite3.Error`
        when the file exists but cannot be read.
        """
        catalog = cls(local_dir, writable=False)
        if not catalog.path.exists():
            return None
        with catalog._read() as db:
            found = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                               "name = 'snapshots'").fetchone()
        return catalog if found else None

    def _connection(self) -> sqlite3.Connection:
        if self.writable:
            db = sqlite3.connect(self.path, timeout=self._timeout, isolation_level=None)
        else:
            # mode=ro: SQLite refuses every write and never creates the file
            db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True,
                                 timeout=self._timeout, isolation_level=None)
        try:
            db.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")
        except BaseException:
            db.close()
            raise
        return db

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A write transaction, taken at once so two writers never deadlock."""
        if not self.writable:
            raise sqlite3.OperationalError(f"{self.path} is open read-only")
        db = self._connection()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            else:
                db.execute("COMMIT")
        finally:
            db.close()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: one consistent view, without the write lock of :meth:`_connect`."""
        db = self._connection()
        try:
            db.execute("BEGIN")
            try:
                yield db
            finally:
                if db.in_transaction:  # some errors have ended it already
                    db.execute("ROLLBACK")
        finally:
            db.close()

    # --- snapshots ------------------------------------------------------------------------

    def add_snapshot(self, info: SnapshotInfo, *, trigger: str | None,
                     duration: float | None, fingerprint: str | None = None) -> None:
        """Record a stored snapshot (replacing a row with the same id).

        ``fingerprint`` is the tree's (see :func:`watcher.snapshot.tree.summarize`) when it was
        taken.
        """
        dbs = json.dumps([d.record() for d in info.databases])
        with self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO snapshots (id, file, created_at, size, sha256, files, "
                "bytes_in, databases, duration, trigger, local, fingerprint, kind, base) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,1,?,?,?)",
                (info.id, info.file, _ts(info.created_at), info.size, info.sha256, info.files,
                 info.bytes_in, dbs, duration, trigger, fingerprint, info.kind, info.base),
            )

    def snapshots(self, limit: int | None = None) -> list[SnapshotRow]:
        """Every known snapshot (the newest ``limit`` ones), newest first."""
        with self._read() as db:
            rows = db.execute("SELECT * FROM snapshots ORDER BY created_at DESC, id DESC "
                              "LIMIT ?", (-1 if limit is None else limit,)).fetchall()
        return [_snapshot_row(r) for r in rows]

    def newest_snapshot(self) -> SnapshotRow | None:
        """The most recent snapshot (the service counts its interval from it)."""
        with self._read() as db:
            row = db.execute("SELECT * FROM snapshots ORDER BY created_at DESC, id DESC "
                             "LIMIT 1").fetchone()
        return _snapshot_row(row) if row else None

    def snapshot_count(self) -> int:
        """How many snapshots are known, here or at a destination."""
        with self._read() as db:
            return int(db.execute("SELECT count(*) FROM snapshots").fetchone()[0])

    def snapshot(self, snapshot_id: str) -> SnapshotRow | None:
        """The snapshot called ``snapshot_id``, if known."""
        with self._read() as db:
            row = db.execute("SELECT * FROM snapshots WHERE id = ?", (snapshot_id,)).fetchone()
        return _snapshot_row(row) if row else None

    def mark_local_deleted(self, snapshot_id: str) -> None:
        """The local archive is gone; forget the snapshot once no copy of it remains."""
        with self._connect() as db:
            db.execute("UPDATE snapshots SET local = 0 WHERE id = ?", (snapshot_id,))
            db.execute(
                "DELETE FROM snapshots WHERE id = ? AND NOT EXISTS (SELECT 1 FROM copies "
                "WHERE snapshot_id = ? AND state = 'uploaded')", (snapshot_id, snapshot_id))

    # --- copies at destinations -------------------------------------------------------------

    # keyword-only columns of the copies table
    def set_copy(  # noqa: PLR0913
        self,
        snapshot_id: str,
        destination: str,
        state: str,
        *,
        remote_id: str | None = None,
        link: str | None = None,
        error: str | None = None,
        count_attempt: bool = False,
        next_try_at: datetime | None = None,
        clear_resume: bool = False,
    ) -> None:
        """Create or update the copy of a snapshot at a destination."""
        with self._connect() as db:
            db.execute(
                "INSERT INTO copies (snapshot_id, destination, state, remote_id, link, attempts,"
                " last_error, next_try_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT (snapshot_id, destination) DO UPDATE SET state = excluded.state, "
                "remote_id = COALESCE(excluded.remote_id, remote_id), "
                "link = COALESCE(excluded.link, link), "
                "attempts = attempts + excluded.attempts, last_error = excluded.last_error, "
                "next_try_at = excluded.next_try_at, updated_at = excluded.updated_at",
                (snapshot_id, destination, state, remote_id, link, int(count_attempt), error,
                 _ts(next_try_at), _ts(utcnow())),
            )
            if clear_resume:
                db.execute("UPDATE copies SET resume = NULL WHERE snapshot_id = ? AND "
                           "destination = ?", (snapshot_id, destination))

    def save_resume(self, snapshot_id: str, destination: str, state: dict[str, Any]) -> None:
        """Persist a destination's resumable state (e.g. a Drive upload session)."""
        with self._connect() as db:
            db.execute("UPDATE copies SET resume = ?, updated_at = ? WHERE snapshot_id = ? AND "
                       "destination = ?", (json.dumps(state), _ts(utcnow()), snapshot_id,
                                           destination))

    def copies(self, snapshot_id: str | None = None, *, destination: str | None = None,
               state: str | None = None) -> list[CopyRow]:
        """Copies, filtered by snapshot, destination and state; oldest snapshot first."""
        sql, args = "SELECT * FROM copies WHERE 1=1", []
        for col, val in (("snapshot_id", snapshot_id), ("destination", destination),
                         ("state", state)):
            if val is not None:
                sql += f" AND {col} = ?"
                args.append(val)
        with self._read() as db:
            rows = db.execute(sql + " ORDER BY snapshot_id", args).fetchall()
        return [_copy_row(r) for r in rows]

    def delete_copy(self, snapshot_id: str, destination: str) -> None:
        """The copy at ``destination`` was deleted there (pruned)."""
        with self._connect() as db:
            db.execute("DELETE FROM copies WHERE snapshot_id = ? AND destination = ?",
                       (snapshot_id, destination))

    # --- runs and notifications -------------------------------------------------------------

    def start_run(self, trigger: str, started_at: datetime) -> int:
        """Record a run as running; returns its id for :meth:`finish_run`."""
        with self._connect() as db:
            cur = db.execute("INSERT INTO runs (started_at, trigger, status) VALUES (?,?,?)",
                             (_ts(started_at), trigger, "running"))
            return int(cur.lastrowid or 0)

    def finish_run(self, run_id: int, report: RunReport, summary: str) -> None:
        """Record how run ``run_id`` ended, with its whole report."""
        with self._connect() as db:
            db.execute(
                "UPDATE runs SET finished_at = ?, status = ?, snapshot_id = ?, summary = ?, "
                "report = ? WHERE id = ?",
                (_ts(report.finished_at), report.status,
                 report.snapshot.id if report.snapshot else None, summary,
                 json.dumps(report.to_dict()), run_id),
            )

    def abandon_unfinished_runs(self) -> int:
        """Runs left 'running' by a crash become 'failed'; returns how many."""
        with self._connect() as db:
            cur = db.execute("UPDATE runs SET status = 'failed', summary = 'interrupted "
                             "(the process stopped during the run)' WHERE status = 'running'")
            return cur.rowcount

    def last_run(self, *, finished: bool = False) -> RunRow | None:
        """The newest run (``finished``: the newest that is not running any more)."""
        where = " WHERE status != 'running'" if finished else ""
        with self._read() as db:
            r = db.execute("SELECT id, started_at, finished_at, trigger, status, snapshot_id, "
                           f"summary FROM runs{where} ORDER BY id DESC LIMIT 1").fetchone()
        return RunRow(r[0], _dt(r[1]), _dt(r[2]), r[3], r[4], r[5], r[6]) if r else None  # type: ignore[arg-type]

    def run_history(self, limit: int) -> list[RunPoint]:
        """The newest ``limit`` finished runs, oldest first. A pruned snapshot's size comes
        from the report the run stored."""
        with self._read() as db:
            rows = db.execute(
                "SELECT r.started_at, r.finished_at, r.status, COALESCE(s.size, "
                "json_extract(r.report, '$.snapshot.size')) FROM runs r LEFT JOIN snapshots s "
                "ON s.id = r.snapshot_id WHERE r.status != 'running' ORDER BY r.id DESC LIMIT ?",
                (limit,)).fetchall()
        points = []
        for started, finished, status, size in reversed(rows):
            start, end = _dt(started), _dt(finished)
            duration = (end - start).total_seconds() if start and end else None
            points.append(RunPoint(start, status, duration, size))  # type: ignore[arg-type]
        return points

    def run_report(self, run_id: int) -> dict[str, Any] | None:
        """The report run ``run_id`` stored when it finished (``RunReport.to_dict()``)."""
        with self._read() as db:
            row = db.execute("SELECT report FROM runs WHERE id = ?", (run_id,)).fetchone()
        return json.loads(row[0]) if row and row[0] else None

    def run_counts(self) -> dict[str, int]:
        """How many runs ended each way (ok, warning, failed) since the catalog began."""
        with self._read() as db:
            rows = db.execute("SELECT status, count(*) FROM runs WHERE status != 'running' "
                              "GROUP BY status").fetchall()
        return {status: int(n) for status, n in rows}

    def record_notification(self, run_id: int | None, channel: str, state: str,
                            error: str | None = None) -> None:
        """Record how a notification of run ``run_id`` on ``channel`` went."""
        with self._connect() as db:
            db.execute("INSERT INTO notifications (run_id, channel, state, error, at) "
                       "VALUES (?,?,?,?,?)", (run_id, channel, state, error, _ts(utcnow())))

    def last_notifications(self) -> dict[str, NotificationRow]:
        """The newest notification of each channel, by channel name (sorted)."""
        with self._read() as db:
            rows = db.execute("SELECT channel, run_id, state, error, at FROM notifications n "
                              "WHERE id = (SELECT max(id) FROM notifications m WHERE "
                              "m.channel = n.channel) ORDER BY channel").fetchall()
        return {r[0]: NotificationRow(r[0], r[1], r[2], r[3], _dt(r[4]))  # type: ignore[arg-type]
                for r in rows}


def _snapshot_row(r: tuple[Any, ...]) -> SnapshotRow:
    return SnapshotRow(
        id=r[0], file=r[1], created_at=_dt(r[2]), size=r[3], sha256=r[4],  # type: ignore[arg-type]
        files=r[5], bytes_in=r[6], databases=json.loads(r[7] or "[]"), duration=r[8],
        trigger=r[9], local=bool(r[10]), fingerprint=r[11], kind=r[12] or "full", base=r[13],
    )


def _copy_row(r: tuple[Any, ...]) -> CopyRow:
    return CopyRow(
        snapshot_id=r[0], destination=r[1], state=r[2], remote_id=r[3], link=r[4],
        attempts=r[5], last_error=r[6], resume=json.loads(r[7]) if r[7] else None,
        next_try_at=_dt(r[8]), updated_at=_dt(r[9]),  # type: ignore[arg-type]
    )
