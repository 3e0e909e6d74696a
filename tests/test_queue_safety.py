"""The upload queue is never raced and never forgotten: the service's retry of queued uploads
waits while `once` holds the run lock, and a catalog rebuilt from the archives queues every
archive again, so none is pruned locally before it is known to be at Drive. Real catalog,
real archives, our Drive API server (fakedrive)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from scripts.fakedrive import DriveServer
from tests.fakes.drive import drive_config
from tests.fakes.service import FakeRun, Running
from tests.helpers import make_config, wait_until
from watcher.backup.run import run_backup, run_lock
from watcher.config.settings import Config
from watcher.destinations.gdrive.destination import KEY_SNAPSHOT
from watcher.service import daemon
from watcher.state.catalog import CATALOG_FILE, Catalog

#: keep only the newest snapshot: anything older is pruned unless it is protected
KEEP_ONE = {"keep_last": 1, "keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0}


def drive_cfg(siip: Path, tmp_path: Path, server: DriveServer, **sections: Any) -> Config:
    creds = tmp_path / "creds"
    creds.mkdir(exist_ok=True)
    return make_config(siip, tmp_path / "backups", drive=asdict(drive_config(server, creds)),
                       **sections)


def copies(cfg: Config) -> dict[str, str]:
    return {c.snapshot_id: c.state for c in Catalog(cfg.local.dir).copies()}


def on_drive(server: DriveServer, sid: str) -> int:
    return len(server.state.live_files(app_property=(KEY_SNAPSHOT, sid)))


def lose_catalog(cfg: Config) -> None:
    (cfg.local.dir / CATALOG_FILE).unlink()


# --- the service's retry and `once` ---------------------------------------------------------


def test_queued_upload_retry_waits_while_once_holds_the_run_lock(
        siip: Path, tmp_path: Path, drive_server: DriveServer, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture, services: Callable[[Config, Any], Running]) -> None:
    cfg = drive_cfg(siip, tmp_path, drive_server, schedule={"interval_hours": 1.0})
    stored = run_backup(cfg, trigger="manual", upload=False, email=False).snapshot
    assert stored is not None and copies(cfg) == {stored.id: "pending"}
    # `once` here stores no snapshot, so only the recheck notices that it ended
    monkeypatch.setattr(daemon, "UPLOADS_BUSY_RECHECK", timedelta(seconds=0.1))
    caplog.set_level(logging.INFO, logger="watcher")

    once = run_lock(cfg)   # what `siip-watcher once` holds while it snapshots and uploads
    once.acquire()
    try:
        svc = services(cfg, FakeRun(cfg))
        # the retry either waits for `once` (and says so) or, racing it, sends the copy
        wait_until(lambda: "queued uploads wait" in caplog.text
                   or copies(cfg)[stored.id] == "uploaded", "the first retry round")
        assert copies(cfg) == {stored.id: "pending"}, "the retry ran while `once` held the lock"
        assert on_drive(drive_server, stored.id) == 0 and drive_server.state.ops("initiate") == []
    finally:
        once.release()
    wait_until(lambda: copies(cfg) == {stored.id: "uploaded"}, "the retry after `once` ended")
    assert svc.stop() == 0
    assert on_drive(drive_server, stored.id) == 1


# --- a catalog rebuilt from the archives ----------------------------------------------------


def test_a_rebuilt_catalog_queues_waiting_uploads_and_keeps_them_from_pruning(
        siip: Path, tmp_path: Path, drive_server: DriveServer) -> None:
    # full archives only: the first is pruned at last, not kept as the others' base
    cfg = drive_cfg(siip, tmp_path, drive_server, retention=KEEP_ONE,
                    snapshot={"full_every_days": 0})
    first = run_backup(cfg, trigger="manual", upload=False, email=False).snapshot
    assert first is not None and copies(cfg) == {first.id: "pending"}
    lose_catalog(cfg)

    # a second snapshot, still without uploads: retention keeps one, and the first one has
    # never reached Drive, so it must stay
    second = run_backup(cfg, trigger="manual", upload=False, email=False)
    assert second.snapshot is not None
    assert first.id not in second.pruned
    assert Path(first.file).is_file(), "pruned locally before it ever reached Drive"
    assert copies(cfg) == {first.id: "pending", second.snapshot.id: "pending"}

    # the next run that reaches Drive sends all three, after which retention may prune the
    # older ones, locally and at Drive
    third = run_backup(cfg, trigger="manual", email=False)
    assert third.snapshot is not None
    sent = {d.snapshot_id: d.state for d in third.destinations}
    assert sent == {first.id: "uploaded", second.snapshot.id: "uploaded",
                    third.snapshot.id: "uploaded"}
    assert not Path(first.file).exists()


def test_a_rebuilt_catalog_finds_uploads_already_at_drive_without_sending_them_again(
        siip: Path, tmp_path: Path, drive_server: DriveServer) -> None:
    cfg = drive_cfg(siip, tmp_path, drive_server)
    first = run_backup(cfg, trigger="manual", email=False).snapshot
    assert first is not None and copies(cfg) == {first.id: "uploaded"}
    uploads = len(drive_server.state.ops("initiate"))
    lose_catalog(cfg)

    again = run_backup(cfg, trigger="manual", email=False)

    assert again.snapshot is not None
    assert copies(cfg) == {first.id: "uploaded", again.snapshot.id: "uploaded"}
    assert on_drive(drive_server, first.id) == 1
    assert len(drive_server.state.ops("initiate")) == uploads + 1  # only the new snapshot was sent
