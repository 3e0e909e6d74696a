"""A database another process keeps locked: the run waits within a limit, says so, and stops.

The lock is real: a second Python process opens the project's database in rollback-journal
mode and holds ``BEGIN EXCLUSIVE`` with an uncommitted write, which keeps every reader out,
the backup API's included (a WAL writer would not: readers go on beside it).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.helpers import make_config, make_siip_tree, wait_until
from watcher.archive.restore import restore
from watcher.backup.report import RunReport
from watcher.backup.run import run_backup
from watcher.config.settings import Config
from watcher.snapshot.sqlite_copy import DatabaseCopyError, copy_database
from watcher.state.catalog import utcnow

HOLDER = r"""
import sqlite3, sys
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("BEGIN EXCLUSIVE")
con.execute("INSERT INTO personas (nombre) VALUES ('escrito bajo bloqueo')")
print("locked", flush=True)
sys.stdin.readline()
con.execute("COMMIT")
print("released", flush=True)
sys.stdin.readline()
"""


@pytest.fixture
def siip_rollback(tmp_path: Path) -> Path:
    """A SIIP-like project whose database uses a rollback journal, as many Flask apps do."""
    root = make_siip_tree(tmp_path / "siip", db_rows=500)
    con = sqlite3.connect(root / "siip_database.db")
    con.execute("PRAGMA journal_mode=DELETE")
    con.close()
    return root


@pytest.fixture
def holder(siip_rollback: Path) -> Iterator[subprocess.Popen[str]]:
    """A separate process holding an exclusive lock on the database until told to commit."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(siip_rollback /
                                                               "siip_database.db")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _run_in_thread(cfg: Config, stop: threading.Event | None = None,
                   progress: Callable[[int], None] | None = None
                   ) -> tuple[threading.Thread, list[RunReport]]:
    """A run in its own thread, so a run that never ends fails the test instead of hanging it."""
    result: list[RunReport] = []
    runner = threading.Thread(target=lambda: result.append(run_backup(
        cfg, trigger="manual", email=False, stop=stop, progress=progress)), daemon=True)
    runner.start()
    return runner, result


def test_a_database_locked_past_the_limit_fails_the_run_in_one_line(
        siip_rollback: Path, tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    local = tmp_path / "backups"
    cfg = make_config(siip_rollback, local, source={"lock_timeout_seconds": 1})
    runner, result = _run_in_thread(cfg)
    runner.join(timeout=300)
    assert not runner.is_alive(), "the run kept waiting for the locked database"
    report = result[0]
    assert report.status == "failed"
    message = report.errors[0].message
    assert "\n" not in message
    assert "siip_database.db stayed locked by" in message
    assert "source.lock_timeout_seconds (now 1)" in message
    if Path("/proc/locks").exists():
        assert f"pid {holder.pid} (python" in message
    assert not [p.name for p in local.iterdir() if p.name.endswith((".partial", ".tar.zst"))]


def test_a_stop_request_ends_a_run_waiting_for_a_locked_database(
        siip_rollback: Path, tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    # the default limit (minutes): only the stop request can end this run in time
    cfg = make_config(siip_rollback, tmp_path / "backups")
    stop = threading.Event()

    def progress(_: int) -> None:
        # the tree is being archived: the database copy started with the run and is waiting
        stop.set()

    runner, result = _run_in_thread(cfg, stop=stop, progress=progress)
    runner.join(timeout=300)
    assert not runner.is_alive(), "a stop request did not end a run waiting for a lock"
    report = result[0]
    assert report.status == "failed"
    assert report.errors[0].cause == "stopped"
    assert stop.is_set()


def test_waiting_for_a_lock_is_logged_with_the_holder_and_the_limit(
        siip_rollback: Path, tmp_path: Path, holder: subprocess.Popen[str],
        caplog: pytest.LogCaptureFixture) -> None:
    db = siip_rollback / "siip_database.db"
    with caplog.at_level(logging.WARNING, logger="watcher.snapshot.take"), \
            pytest.raises(DatabaseCopyError) as failed:
        copy_database(db, tmp_path / "copy.db", lock_timeout=2, log_every=0.5)
    lines = [r.getMessage() for r in caplog.records if str(db) in r.getMessage()]
    assert lines, "no log line while waiting for the lock"
    assert "is locked by" in lines[0] and "(source.lock_timeout_seconds)" in lines[0]
    if Path("/proc/locks").exists():
        assert f"pid {holder.pid}" in lines[0]
        assert f"pid {holder.pid}" in str(failed.value)
    assert not (tmp_path / "copy.db").exists()


def test_snapshot_is_named_after_the_copy_not_the_start_of_the_wait(
        siip_rollback: Path, tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    cfg = make_config(siip_rollback, tmp_path / "backups")
    released: list[datetime] = []

    def progress(_: int) -> None:
        # the run has started and its database copy is waiting: the lock goes only now
        if not released:
            released.append(utcnow())
            assert holder.stdin is not None
            holder.stdin.write("commit\n")
            holder.stdin.flush()

    report = run_backup(cfg, trigger="manual", email=False, progress=progress)
    assert report.status == "ok", report.errors
    assert released, "the lock was never released: the test missed its hook"
    snap = report.snapshot
    assert snap is not None
    assert snap.created_at >= released[0] > report.started_at
    assert snap.id == f"siip-{snap.created_at:%Y%m%dT%H%M%SZ}"
    assert Path(snap.file).name == f"{snap.id}.tar.zst"
    # the commit made under the lock is in the copy: its data is from after the release
    restored = tmp_path / "restored"
    restore(Path(snap.file), restored)
    con = sqlite3.connect(restored / "siip_database.db")
    try:
        rows = con.execute("SELECT count(*) FROM personas WHERE nombre = ?",
                           ("escrito bajo bloqueo",)).fetchone()[0]
    finally:
        con.close()
    assert rows == 1


def test_the_copy_is_private_while_it_waits_for_the_lock(
        siip_rollback: Path, tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    """The copy holds the whole database from its first page on; a lock can keep it waiting
    for minutes, and SQLite would create it per the umask."""
    local = tmp_path / "backups"
    cfg = make_config(siip_rollback, local)
    modes: list[int] = []

    def progress(_: int) -> None:
        if modes:
            return
        copy = wait_until(lambda: next(local.glob(".*.db0.partial"), None),
                          "the database copy to be created")
        modes.append(copy.stat().st_mode)
        assert holder.stdin is not None
        holder.stdin.write("commit\n")  # the copy was waiting: now it can go on
        holder.stdin.flush()

    old = os.umask(0o022)
    try:
        report = run_backup(cfg, trigger="manual", email=False, progress=progress)
    finally:
        os.umask(old)
    assert report.status == "ok", report.errors
    assert modes and oct(stat.S_IMODE(modes[0])) == "0o600"
