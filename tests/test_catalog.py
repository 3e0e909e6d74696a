"""The catalog's read-only open: `status` reads through it while the service writes, and on
a backup folder it may not write to."""

from __future__ import annotations

import os
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from tests.helpers import make_config
from watcher.backup.report import RunReport, SnapshotInfo
from watcher.service.status import collect_status
from watcher.state.catalog import CATALOG_FILE, Catalog, utcnow


def _filled(local: Path) -> Catalog:
    local.mkdir(parents=True, exist_ok=True)
    catalog = Catalog(local)
    older = utcnow() - timedelta(hours=2)
    for sid, at in (("siip-old", older), ("siip-new", utcnow())):
        catalog.add_snapshot(SnapshotInfo(id=sid, file=f"{sid}.tar.zst", created_at=at, size=7,
                                          sha256="0" * 64, files=1, bytes_in=7),
                             trigger="interval", duration=1.0, fingerprint=f"fp-{sid}")
    run_id = catalog.start_run("interval", older)
    catalog.record_notification(run_id, "email", "failed", "refused")
    catalog.record_notification(run_id, "email", "sent")
    catalog.record_notification(run_id, "heartbeat", "sent")
    return catalog


def test_read_only_open_finds_no_catalog_without_creating_one(tmp_path: Path) -> None:
    assert Catalog.read_only(tmp_path) is None
    assert not (tmp_path / CATALOG_FILE).exists()
    # a file that is not a catalog yet (no snapshots table) counts as none, and stays as it was
    db = sqlite3.connect(tmp_path / CATALOG_FILE)
    db.execute("CREATE TABLE other (x)")
    db.commit()
    db.close()
    before = (tmp_path / CATALOG_FILE).read_bytes()
    assert Catalog.read_only(tmp_path) is None
    assert (tmp_path / CATALOG_FILE).read_bytes() == before


def test_read_only_open_reads_what_the_writer_wrote_and_writes_nothing(tmp_path: Path) -> None:
    _filled(tmp_path)
    path = tmp_path / CATALOG_FILE
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    reader = Catalog.read_only(tmp_path)
    assert reader is not None and not reader.writable
    assert reader.snapshot_count() == 2
    newest = reader.newest_snapshot()
    assert newest is not None and (newest.id, newest.fingerprint) == ("siip-new", "fp-siip-new")
    run = reader.last_run()
    assert run is not None and run.status == "running"
    assert reader.last_run(finished=True) is None
    notes = reader.last_notifications()
    assert list(notes) == ["email", "heartbeat"]
    assert (notes["email"].state, notes["email"].error) == ("sent", None)
    with pytest.raises(sqlite3.OperationalError, match="read-only"):
        reader.set_copy("siip-new", "drive", "pending")
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [CATALOG_FILE]


def test_status_never_waits_for_a_writer(tmp_path: Path, siip: Path) -> None:
    cfg = make_config(siip, tmp_path / "backups")
    _filled(cfg.local.dir)
    # a writer in the middle of its transaction (the service recording an upload): a write
    # lock would wait the whole busy timeout here, a reader goes ahead at once
    writer = sqlite3.connect(cfg.local.dir / CATALOG_FILE, timeout=0, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("UPDATE runs SET summary = 'busy'")
        status = collect_status(cfg)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert status["snapshots"] == 2 and status["last_snapshot"]["id"] == "siip-new"
    assert status["last_run"]["result"] == "running"
    assert status["notifications"]["email"]["state"] == "sent"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="needs POSIX permissions that bind this user (root ignores them)")
def test_status_works_on_a_read_only_backup_folder(tmp_path: Path, siip: Path) -> None:
    cfg = make_config(siip, tmp_path / "backups")
    catalog = _filled(cfg.local.dir)
    report = RunReport(name="siip", trigger="interval", started_at=utcnow())
    report.finish(utcnow())
    catalog.finish_run(1, report, "no snapshot")
    os.chmod(catalog.path, 0o444)
    os.chmod(cfg.local.dir, 0o555)
    try:
        status = collect_status(cfg)
    finally:
        os.chmod(cfg.local.dir, 0o755)
        os.chmod(catalog.path, 0o644)
    assert status["snapshots"] == 2 and status["last_run"]["result"] == report.status
