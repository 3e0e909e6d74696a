"""A delta and its base from wherever they are: `restore` and `verify` of a delta whose base
is no longer in the local dir but is on Drive, a new machine restoring both from Drive, and
`--from folder` when the folder lost the base but the local dir has it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from scripts.fakedrive import DriveServer
from tests.fakes.drive import drive_config, drive_settings
from tests.helpers import assert_restored, make_config, not_private
from watcher.actions.restore import restore_snapshot
from watcher.actions.verify import verify_snapshots
from watcher.archive import read
from watcher.archive.files import archive_name
from watcher.backup.report import SnapshotInfo
from watcher.backup.run import run_backup
from watcher.config.settings import Config
from watcher.destinations.gdrive.destination import KEY_SNAPSHOT


def _backup(cfg: Config) -> SnapshotInfo:
    report = run_backup(cfg, trigger="manual", email=False)
    assert report.snapshot is not None and report.status == "ok", report.errors
    return report.snapshot


@pytest.fixture
def drive_cfg(siip: Path, tmp_path: Path, drive_server: DriveServer) -> Config:
    creds = tmp_path / "creds"
    creds.mkdir()
    return make_config(siip, tmp_path / "backups",
                       drive=drive_settings(drive_config(drive_server, creds)))


def test_a_delta_whose_base_is_only_on_drive_restores_and_verifies(
        drive_cfg: Config, siip: Path, tmp_path: Path, drive_server: DriveServer) -> None:
    base = _backup(drive_cfg)
    (siip / "app" / "views.py").write_text("def index():\n    return 'adiós'\n")
    delta = _backup(drive_cfg)
    assert (delta.kind, delta.base) == ("delta", base.id)
    for sid in (base.id, delta.id):
        assert len(drive_server.state.live_files(app_property=(KEY_SNAPSHOT, sid))) == 1
    (drive_cfg.local.dir / archive_name(base.id)).unlink()    # lost here, kept on Drive

    [outcome] = verify_snapshots(drive_cfg, "local", delta.id)
    assert outcome.result.ok, outcome.result.problems
    target = tmp_path / "restored"
    assert restore_snapshot(drive_cfg, "local", delta.id, target).snapshot_id == delta.id
    assert_restored(target, siip)
    assert (target / "app" / "views.py").read_text() == "def index():\n    return 'adiós'\n"

    # a new machine: the configuration and the sign-in, nothing in its local dir
    new = make_config(siip, tmp_path / "new-machine", drive=drive_settings(drive_cfg.drive))
    again = tmp_path / "on-the-new-machine"
    restore_snapshot(new, "drive", delta.id, again)
    assert_restored(again, siip)
    assert (again / "app" / "views.py").read_text() == "def index():\n    return 'adiós'\n"

    # gone from Drive too: verify names the base, restore refuses and writes nothing
    [copy] = drive_server.state.live_files(app_property=(KEY_SNAPSHOT, base.id))
    drive_server.state.files.pop(copy.id)
    [outcome] = verify_snapshots(drive_cfg, "local", delta.id)
    assert not outcome.result.ok and base.id in outcome.result.problems[0]
    with pytest.raises(Exception, match="base full is missing"):
        restore_snapshot(drive_cfg, "local", delta.id, tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists()


def test_from_a_folder_that_lost_the_base_the_local_dir_lends_it(
        siip: Path, tmp_path: Path) -> None:
    nas = tmp_path / "nas"
    nas.mkdir()
    cfg = make_config(siip, tmp_path / "backups", folder={"enabled": True, "path": str(nas)})
    base = _backup(cfg)
    (siip / "app" / "nuevo.py").write_text("print('hola')\n")
    delta = _backup(cfg)
    (nas / archive_name(base.id)).unlink()

    [outcome] = verify_snapshots(cfg, "folder", delta.id)
    assert outcome.result.ok, outcome.result.problems
    target = tmp_path / "restored"
    restore_snapshot(cfg, "folder", delta.id, target)
    assert_restored(target, siip)
    assert (target / "app" / "nuevo.py").read_text() == "print('hola')\n"


def test_verify_all_reads_each_full_once_and_names_a_damaged_base(
        siip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = make_config(siip, tmp_path / "backups", retention={"keep_last": 10})
    snapshots: list[SnapshotInfo] = []
    for n, full in enumerate((False, False, False, True, False)):
        (siip / "app" / f"cambio{n}.py").write_text(f"n = {n}\n")
        report = run_backup(cfg, trigger="manual", email=False, full=full)
        assert report.snapshot is not None, report.errors
        snapshots.append(report.snapshot)
    f1, d1, d2, f2, d3 = snapshots
    assert [s.kind for s in snapshots] == ["full", "delta", "delta", "full", "delta"]
    assert (d1.base, d2.base, d3.base) == (f1.id, f1.id, f2.id)
    reads: list[str] = []
    real_scan = read.scan

    def counting_scan(path: Path, *args: object, **kw: object) -> read.ScanResult:
        reads.append(path.name)
        return real_scan(path, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(read, "scan", counting_scan)

    outcomes = list(verify_snapshots(cfg, "local", None, every=True))

    assert [o.snapshot_id for o in outcomes] == [f2.id, d3.id, f1.id, d2.id, d1.id]
    assert all(o.result.ok for o in outcomes), [o.result.problems for o in outcomes]
    assert reads.count(Path(f1.file).name) == reads.count(Path(f2.file).name) == 1

    data = bytearray(Path(f1.file).read_bytes())
    data[len(data) // 2] ^= 0xFF
    Path(f1.file).write_bytes(bytes(data))
    reads.clear()
    outcomes = {o.snapshot_id: o.result for o in verify_snapshots(cfg, "local", None,
                                                                  every=True)}
    assert outcomes[f2.id].ok and outcomes[d3.id].ok and not outcomes[f1.id].ok
    for delta in (d1, d2):
        assert not outcomes[delta.id].ok
        assert any(f1.id in p and "damaged" in p for p in outcomes[delta.id].problems)
    assert reads.count(Path(f1.file).name) == 1


def test_verify_all_keeps_a_fulls_database_copies_private_whatever_the_umask(
        cfg: Config, siip: Path) -> None:
    """What `verify --all` keeps of a full for its deltas (the database copies) sits in the
    local dir, or in the system's /tmp when that is read-only: 0700 folders, 0600 files."""
    for full in (True, False):
        (siip / "app" / "otro.py").write_text(f"full = {full}\n")
        assert run_backup(cfg, trigger="manual", email=False, full=full).snapshot is not None
    old = os.umask(0o022)
    try:
        checks = verify_snapshots(cfg, "local", None, every=True)
        first = next(checks)  # the full: what it keeps for the delta is there now
        assert first.result.ok, first.result.problems
        kept = [p for p in cfg.local.dir.glob(".verify-fulls-*/**/*")] + \
            list(cfg.local.dir.glob(".verify-fulls-*"))
        assert any(p.is_file() for p in kept), f"nothing kept to look at: {kept}"
        assert not not_private({str(p): p.stat().st_mode for p in kept})
        assert all(o.result.ok for o in checks)
    finally:
        os.umask(old)
