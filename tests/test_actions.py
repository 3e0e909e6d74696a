"""The actions behind `list`, `verify`, `restore`, `prune` and `ack`, called directly: what they
return, and what they refuse before touching anything. The command line around them is
tested in tests/test_cli.py."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from scripts.fakedrive import DriveServer
from tests.fakes.drive import FAST_RETRY, drive_config
from tests.helpers import FULLS_ONLY
from watcher.actions import UsageError
from watcher.actions import fetch as fetch_module
from watcher.actions.ack import acknowledge
from watcher.actions.fetch import fetched
from watcher.actions.list import LocalSnapshot, RemoteSnapshot, list_snapshots
from watcher.actions.prune import prune_now
from watcher.actions.restore import restore_snapshot
from watcher.actions.verify import verify_snapshots
from watcher.backup.canary import Hold
from watcher.backup.run import run_backup
from watcher.config.settings import Config, RetentionConfig
from watcher.destinations.base import RemoteFile
from watcher.destinations.folder import LocalFolderDestination
from watcher.state.canary_file import read_hold, write_hold
from watcher.state.catalog import Catalog, utcnow

KEEP_ONE = RetentionConfig(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0)


def snapshots(cfg: Config, count: int, **kw: Any) -> list[str]:
    ids = []
    for _ in range(count):
        report = run_backup(cfg, trigger="manual", email=False, **kw)
        assert report.snapshot is not None, report.errors
        ids.append(report.snapshot.id)
    return ids


@pytest.fixture
def drive(cfg: Config, tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Config, DriveServer]]:
    """``cfg`` with Drive enabled, against a local Drive server; a server that is down is
    given up on in milliseconds, not the production half minute."""
    monkeypatch.setattr("watcher.destinations.gdrive.destination.DEFAULT_RETRY", FAST_RETRY)
    creds = tmp_path / "creds"
    creds.mkdir()
    with DriveServer() as server:
        yield replace(cfg, drive=replace(drive_config(server, creds), chunk_mib=1)), server


def test_list_joins_the_local_dir_and_each_destination(
        drive: tuple[Config, DriveServer]) -> None:
    cfg, _ = drive
    assert list_snapshots(cfg, "local") == []
    assert not cfg.local.dir.exists()  # listing never creates the local dir
    uploaded, queued = snapshots(cfg, 1)[0], snapshots(cfg, 1, upload=False)[0]

    local = list_snapshots(cfg, "local")
    assert [type(r) for r in local] == [LocalSnapshot, LocalSnapshot]
    assert [(r.id, r.stored_at) for r in local] == [(queued, ["local"]),
                                                    (uploaded, ["local", "drive"])]
    assert local[1].file == str(cfg.local.dir / f"{uploaded}.tar.zst")
    assert local[1].to_dict()["created_at"] == local[1].created_at.isoformat()

    remote = list_snapshots(cfg, "drive")
    assert [type(r) for r in remote] == [RemoteSnapshot]
    assert (remote[0].id, remote[0].stored_at) == (uploaded, ["drive"])
    assert remote[0].link and list(remote[0].to_dict()) == [
        "id", "created_at", "size", "sha256", "stored_at", "link", "kind", "base",
        "encrypted_for", "opens"]
    assert (remote[0].encrypted_for, remote[0].opens) == (None, None)   # a plain copy


def test_verify_yields_each_outcome_and_refuses_nothing_to_verify(cfg: Config) -> None:
    cfg = replace(cfg, snapshot=FULLS_ONLY)  # damages a full's file by name
    cfg.local.dir.mkdir()
    with pytest.raises(UsageError, match="no snapshots to verify"):
        next(verify_snapshots(cfg, "local", None, every=True))
    good, bad = snapshots(cfg, 2)
    archive = cfg.local.dir / f"{bad}.tar.zst"
    data = bytearray(archive.read_bytes())
    data[-100] ^= 0xFF
    archive.write_bytes(bytes(data))

    outcomes = list(verify_snapshots(cfg, "local", None, every=True))
    assert [(o.snapshot_id, o.result.ok) for o in outcomes] == [(bad, False), (good, True)]
    assert [o.snapshot_id for o in verify_snapshots(cfg, "local", good)] == [good]
    assert [o.snapshot_id for o in verify_snapshots(cfg, "local", None)] == [bad]


def test_restore_returns_what_it_wrote_and_checks_the_target_before_downloading(
        drive: tuple[Config, DriveServer], tmp_path: Path) -> None:
    cfg, server = drive
    [sid] = snapshots(cfg, 1)
    done = restore_snapshot(cfg, "drive", "latest", tmp_path / "restored")
    assert done.snapshot_id == sid and done.result.files > 0
    assert (tmp_path / "restored" / "siip_database.db").is_file()

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    server.stop()  # a download would fail with a connection error, not the refusal
    with pytest.raises(UsageError, match="--force"):
        restore_snapshot(cfg, "drive", sid, busy)
    assert [p.name for p in busy.iterdir()] == ["keep.txt"]


class HostileFolder(LocalFolderDestination):
    """A destination whose listing names a file with an id that is a path, not a snapshot."""

    downloads = 0

    def list(self) -> list[RemoteFile]:
        return [RemoteFile(snapshot_id="../../evil", name="../../evil.tar.zst", size=1,
                           remote_id="x", sha256="0" * 64)]

    def get(self, remote: RemoteFile, target: Path, *, progress: Any = None) -> Path:
        HostileFolder.downloads += 1
        return super().get(remote, target, progress=progress)


def test_fetch_never_downloads_a_file_whose_id_is_not_a_snapshot_id(
        cfg: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg.local.dir.mkdir()
    monkeypatch.setattr(fetch_module, "open_destination",
                        lambda cfg, name: HostileFolder(tmp_path / "nas", name=name))
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(UsageError, match="is not like NAME-YYYYMMDDTHHMMSSZ"), \
            fetched(cfg, "nas", "latest"):
        pass
    assert HostileFolder.downloads == 0
    assert sorted(tmp_path.rglob("*")) == before


def test_prune_keeps_locally_what_a_destination_still_waits_for(
        drive: tuple[Config, DriveServer]) -> None:
    cfg, server = drive
    cfg = replace(cfg, snapshot=FULLS_ONLY)  # no delta keeping its base besides
    server.stop()  # Drive down: every copy stays queued
    queued = snapshots(cfg, 3)
    # the newest is kept by the policy; the others only because Drive still waits for them
    keep_one = replace(cfg, retention=KEEP_ONE)
    server.start()
    catalog = Catalog(cfg.local.dir)
    for sid in queued[:2]:
        assert catalog.copies(sid)[0].state == "pending"

    dry = prune_now(keep_one, dry_run=True)
    assert dry.deleted == {"local": [], "drive": []}
    assert sorted(dry.protected) == sorted(queued[:2])

    # once one of them has reached Drive, it may go
    catalog.set_copy(queued[0], "drive", "uploaded")
    done = prune_now(keep_one)
    assert done.deleted == {"local": [queued[0]], "drive": []}
    assert done.protected == [queued[1]]
    assert sorted(p.name for p in cfg.local.dir.glob("*.tar.zst")) == sorted(
        f"{sid}.tar.zst" for sid in queued[1:])


def test_ack_returns_the_alert_it_cleared(cfg: Config) -> None:
    with pytest.raises(UsageError, match="is not a folder"):
        acknowledge(cfg)
    cfg.local.dir.mkdir()
    assert acknowledge(cfg) is None
    raised = utcnow().replace(microsecond=0)
    write_hold(cfg.local.dir, Hold(raised, raised, "siip-x", ("siip_database.db is empty",)))
    cleared = acknowledge(cfg)
    assert cleared is not None and cleared.reasons == ("siip_database.db is empty",)
    assert cleared.raised_at == raised
    assert read_hold(cfg.local.dir, utcnow()) is None
