"""Retention with delta snapshots: wherever a delta stays (the local dir, a destination, or
queued for one), its base full stays too, whatever the policy says."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tests.helpers import make_config
from watcher.actions.prune import prune_now
from watcher.archive.files import archive_name, parse_snapshot_id, sidecar_line
from watcher.backup.report import SnapshotInfo
from watcher.config.settings import Config
from watcher.destinations.folder import LocalFolderDestination
from watcher.state.catalog import Catalog

F1, F2, D3 = "siip-20261101T090000Z", "siip-20261102T090000Z", "siip-20261103T090000Z"
ONLY_THE_LAST = {"keep_last": 1, "keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0}


def _config(siip: Path, tmp_path: Path, nas: Path) -> Config:
    return make_config(siip, tmp_path / "backups", retention=ONLY_THE_LAST,
                       folder={"enabled": True, "path": str(nas)})


def _store(cfg: Config, sid: str, kind: str = "full", base: str | None = None) -> Path:
    """An archive in the local dir (its bytes do not matter to retention) and its row."""
    cfg.local.dir.mkdir(parents=True, exist_ok=True)
    data = f"{sid} {kind}".encode()
    sha = hashlib.sha256(data).hexdigest()
    path = cfg.local.dir / archive_name(sid, kind)
    path.write_bytes(data)
    path.with_name(path.name + ".sha256").write_text(sidecar_line(sha, path.name))
    parsed = parse_snapshot_id(sid)
    assert parsed is not None
    Catalog(cfg.local.dir).add_snapshot(
        SnapshotInfo(id=sid, file=str(path), created_at=parsed[1], size=len(data), sha256=sha,
                     files=1, bytes_in=len(data), kind=kind, base=base),
        trigger="manual", duration=1.0)
    return path


def _upload(cfg: Config, nas: Path, sid: str, path: Path) -> None:
    LocalFolderDestination(nas).put(path, snapshot_id=sid,
                                    sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    Catalog(cfg.local.dir).set_copy(sid, "folder", "uploaded")


def _at(place: Path) -> set[str]:
    return {p.name.split(".")[0] for p in place.glob("*.tar.zst")}


def test_prune_with_keep_last_1_keeps_the_base_locally_and_at_the_destination(
        siip: Path, tmp_path: Path) -> None:
    nas = tmp_path / "nas"
    cfg = _config(siip, tmp_path, nas)
    for sid, kind, base in ((F1, "full", None), (F2, "full", None), (D3, "delta", F2)):
        _upload(cfg, nas, sid, _store(cfg, sid, kind, base))

    result = prune_now(cfg)

    assert _at(cfg.local.dir) == {F2, D3} == _at(nas)
    assert result.deleted == {"local": [F1], "folder": [F1]}
    assert (nas / archive_name(D3, "delta")).is_file()
    assert Catalog(cfg.local.dir).copies(F1) == []


def test_a_destination_prunes_by_the_delta_names_alone_on_a_machine_without_the_catalog(
        siip: Path, tmp_path: Path) -> None:
    nas = tmp_path / "nas"
    first = _config(siip, tmp_path / "old", nas)
    for sid, kind, base in ((F1, "full", None), (F2, "full", None), (D3, "delta", F2)):
        _upload(first, nas, sid, _store(first, sid, kind, base))

    # a new machine: an empty local dir, the folder as the old one left it
    result = prune_now(_config(siip, tmp_path / "new", nas))

    assert _at(nas) == {F2, D3}
    assert result.deleted["folder"] == [F1]


def test_a_delta_still_queued_for_a_destination_keeps_its_base_there(
        siip: Path, tmp_path: Path) -> None:
    nas = tmp_path / "nas"
    cfg = _config(siip, tmp_path, nas)
    delta = "siip-20261101T120000Z"         # against F1, taken before the full F2
    _upload(cfg, nas, F1, _store(cfg, F1))
    _store(cfg, delta, "delta", F1)
    Catalog(cfg.local.dir).set_copy(delta, "folder", "pending")   # its upload failed so far
    _upload(cfg, nas, F2, _store(cfg, F2))

    result = prune_now(cfg)

    # the delta's copy is still to be sent, so it stays locally, and its base stays both
    # locally (the queue sends it first) and at the folder (where the delta is going)
    assert _at(cfg.local.dir) == {F1, delta, F2}
    assert _at(nas) == {F1, F2}
    assert result.protected == [delta]
    assert result.deleted == {"local": [], "folder": []}
