"""The upload queue is never raced: the service's retry of queued uploads waits while `once`
holds the run lock. Real catalog, real archives, the Drive API of tests/drive_server.py."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_config
from tests.drive_fixtures import drive_config
from tests.drive_server import DriveServer
from tests.test_daemon import FakeRun, Running, wait_until
from watcher.catalog import Catalog
from watcher.config import Config
from watcher.destinations.gdrive import KEY_SNAPSHOT
from watcher.run import run_backup, run_lock

@pytest.fixture
def server() -> Iterator[DriveServer]:
    with DriveServer() as s:
        yield s


def drive_cfg(siip: Path, tmp_path: Path, server: DriveServer, **sections: Any) -> Config:
    creds = tmp_path / "creds"
    creds.mkdir(exist_ok=True)
    return make_config(siip, tmp_path / "backups", drive=asdict(drive_config(server, creds)),
                       **sections)


def copies(cfg: Config) -> dict[str, str]:
    return {c.snapshot_id: c.state for c in Catalog(cfg.local.dir).copies()}


def on_drive(server: DriveServer, sid: str) -> int:
    return len(server.state.live_files(app_property=(KEY_SNAPSHOT, sid)))


# --- the service's retry and `once` ---------------------------------------------------------


def test_queued_upload_retry_waits_while_once_holds_the_run_lock(
        siip: Path, tmp_path: Path, server: DriveServer, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    from watcher import daemon

    cfg = drive_cfg(siip, tmp_path, server, schedule={"interval_hours": 1.0})
    stored = run_backup(cfg, trigger="manual", upload=False, email=False).snapshot
    assert stored is not None and copies(cfg) == {stored.id: "pending"}
    monkeypatch.setattr(daemon, "UPLOAD_RETRY_MIN", timedelta(seconds=0.1))
    caplog.set_level(logging.INFO, logger="watcher")

    once = run_lock(cfg)   # what `siip-watcher once` holds while it snapshots and uploads
    once.acquire()
    try:
        svc = Running(cfg, FakeRun(cfg))
        # the retry either waits for `once` (and says so) or, racing it, sends the copy
        wait_until(lambda: "queued uploads wait" in caplog.text
                   or copies(cfg)[stored.id] == "uploaded", "the first retry round")
        assert copies(cfg) == {stored.id: "pending"}, "the retry ran while `once` held the lock"
        assert on_drive(server, stored.id) == 0 and server.state.ops("initiate") == []
    finally:
        once.release()
    wait_until(lambda: copies(cfg) == {stored.id: "uploaded"}, "the retry after `once` ended")
    assert svc.stop() == 0
    assert on_drive(server, stored.id) == 1
