"""The upload queue with delta snapshots: a delta's base full reaches each destination before
the delta does, and the delta waits, untried and still queued, while its base's copy fails."""

from __future__ import annotations

from pathlib import Path

from scripts.fakedrive import DriveServer
from tests.fakes.drive import drive_config, drive_settings, make_archive, make_drive
from tests.helpers import make_config
from watcher.archive.files import archive_name, snapshot_time
from watcher.backup.report import SnapshotInfo
from watcher.backup.uploads import protected_snapshot_ids, send_copies
from watcher.config.settings import Config
from watcher.destinations.base import Destination
from watcher.destinations.folder import LocalFolderDestination
from watcher.destinations.gdrive.destination import KEY_SNAPSHOT
from watcher.state.catalog import Catalog

F1, D2, D3 = "siip-20261101T090000Z", "siip-20261101T120000Z", "siip-20261101T150000Z"
SIZE = 70_000


def _snapshot(cfg: Config, catalog: Catalog, sid: str, base: str | None = None) -> None:
    """A full (no ``base``) or a delta archive in the local dir, and its catalog row."""
    path, sha = make_archive(cfg.local.dir, sid, SIZE)
    if base:
        path = path.rename(cfg.local.dir / archive_name(sid, "delta"))
    created = snapshot_time(sid)
    assert created is not None
    catalog.add_snapshot(SnapshotInfo(id=sid, file=str(path), created_at=created, size=SIZE,
                                      sha256=sha, files=1, bytes_in=SIZE,
                                      kind="delta" if base else "full", base=base),
                         trigger="manual", duration=1.0)


def test_a_destination_enabled_after_the_base_gets_the_base_before_the_delta(
        tmp_path: Path) -> None:
    local = tmp_path / "backups"
    local.mkdir()
    cfg = make_config(tmp_path, local, check_paths=False)
    catalog = Catalog(local)
    _snapshot(cfg, catalog, F1)                  # taken before the NAS was set up: no copy row
    _snapshot(cfg, catalog, D2, base=F1)
    nas: list[Destination] = [LocalFolderDestination(tmp_path / "nas", name="folder")]

    results = send_copies(cfg, catalog, nas, [D2])

    assert [(r.snapshot_id, r.state) for r in results] == [(F1, "uploaded"), (D2, "uploaded")]
    assert sorted(p.name for p in (tmp_path / "nas").glob("*.tar.zst")) == [
        archive_name(F1), archive_name(D2, "delta")]
    assert [c.state for c in catalog.copies(destination="folder")] == ["uploaded"] * 2


def test_the_delta_waits_while_its_base_fails_and_follows_it_once_it_is_there(
        tmp_path: Path, drive_server: DriveServer) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    local = tmp_path / "backups"
    local.mkdir()
    cfg = make_config(tmp_path, local, check_paths=False,
                      drive=drive_settings(drive_config(drive_server, creds)))
    catalog = Catalog(local)
    drive: list[Destination] = [make_drive(cfg.drive)]
    _snapshot(cfg, catalog, F1)
    _snapshot(cfg, catalog, D2, base=F1)
    _snapshot(cfg, catalog, D3, base=F1)
    # the base's upload meets a full Drive: a failure trying again at once cannot fix
    drive_server.state.inject("initiate", "error", status=403, reason="storageQuotaExceeded")

    results = send_copies(cfg, catalog, drive, [F1, D2, D3])

    assert [(r.snapshot_id, r.state, r.key) for r in results] == [
        (F1, "failed", "fix_cause"), (D2, "pending", "waits_for_base"),
        (D3, "pending", "waits_for_base")]
    assert results[1].params == {"dest": "drive", "base": F1}
    on_drive = {f.app_properties.get(KEY_SNAPSHOT) for f in drive_server.state.live_files()}
    assert on_drive == set()
    base, *deltas = catalog.copies(destination="drive")
    assert base.snapshot_id == F1 and base.state == "failed" and base.attempts == 1
    for copy in deltas:            # untried, still queued, next due when the base is
        assert (copy.state, copy.attempts, copy.next_try_at) == ("pending", 0,
                                                                 base.next_try_at)
    assert protected_snapshot_ids(catalog, ["drive"]) == {F1, D2, D3}

    results = send_copies(cfg, catalog, drive, force=True)   # space freed, `once` run again

    assert [(r.snapshot_id, r.state) for r in results] == [
        (F1, "uploaded"), (D2, "uploaded"), (D3, "uploaded")]
    on_drive = {f.app_properties.get(KEY_SNAPSHOT) for f in drive_server.state.live_files()}
    assert on_drive == {F1, D2, D3}
    assert protected_snapshot_ids(catalog, ["drive"]) == set()


def test_a_delta_whose_base_is_gone_everywhere_fails_with_the_base_named(
        tmp_path: Path) -> None:
    local = tmp_path / "backups"
    local.mkdir()
    cfg = make_config(tmp_path, local, check_paths=False)
    catalog = Catalog(local)
    _snapshot(cfg, catalog, D2, base=F1)         # F1 was deleted by hand before any copy
    nas: list[Destination] = [LocalFolderDestination(tmp_path / "nas", name="folder")]

    [result] = send_copies(cfg, catalog, nas, [D2])

    assert (result.state, result.key, result.params["base"]) == ("failed", "base_gone", F1)
    assert F1 in (result.error or "")
    assert not (tmp_path / "nas").exists() or not list((tmp_path / "nas").iterdir())
    [copy] = catalog.copies(D2)
    assert copy.state == "failed" and copy.next_try_at is not None
