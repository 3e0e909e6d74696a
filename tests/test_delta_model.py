"""The data model of full and delta snapshots: archive names, the local dir, destinations'
name parsing, the catalog's kind and base (and its migration from a catalog written before
them), and what `list` shows."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.helpers import make_config
from watcher.actions.list import list_snapshots
from watcher.archive.files import (
    archive_kind_of,
    archive_name,
    parse_archive_name,
    sidecar_line,
    snapshot_id_of,
)
from watcher.backup.report import SnapshotInfo
from watcher.backup.run import run_backup
from watcher.config.settings import Config
from watcher.destinations.folder import LocalFolderDestination
from watcher.state.catalog import CATALOG_FILE, Catalog, utcnow
from watcher.state.store import LocalStore

SID = "siip-20261127T181500Z"


def test_archive_names_of_both_kinds_parse_back_to_the_same_snapshot_id() -> None:
    assert archive_name(SID) == f"{SID}.tar.zst"
    assert archive_name(SID, "delta") == f"{SID}.delta.tar.zst"
    assert parse_archive_name(f"{SID}.tar.zst") == (SID, "full")
    assert parse_archive_name(f"{SID}.delta.tar.zst") == (SID, "delta")
    assert snapshot_id_of(f"{SID}.delta.tar.zst") == SID
    assert archive_kind_of(f"{SID}.delta.tar.zst") == "delta"
    assert archive_kind_of(f"{SID}.tar.zst") == "full"
    for other in ("notes.txt", ".tar.zst", ".delta.tar.zst", f"{SID}.tar.zst.sha256"):
        assert parse_archive_name(other) is None, other


def _fake_archive(folder: Path, name: str) -> None:
    (folder / name).write_bytes(b"x")
    (folder / (name + ".sha256")).write_text(sidecar_line("a" * 64, name))


def test_the_local_dir_and_a_folder_destination_see_deltas_by_snapshot_id(
        tmp_path: Path, cfg: Config) -> None:
    local = cfg.local.dir
    local.mkdir()
    _fake_archive(local, f"{SID}.tar.zst")
    delta = "siip-20261128T090000Z"
    _fake_archive(local, f"{delta}.delta.tar.zst")
    store = LocalStore(cfg)
    assert [(a.id, a.kind) for a in store.archives()] == [(delta, "delta"), (SID, "full")]
    assert store.find(delta).path.name == f"{delta}.delta.tar.zst"
    store.delete(delta)
    assert [a.id for a in store.archives()] == [SID]
    assert not (local / f"{delta}.delta.tar.zst.sha256").exists()

    nas = tmp_path / "nas"
    dest = LocalFolderDestination(nas)
    delta_file = local / f"{delta}.delta.tar.zst"
    delta_file.write_bytes(b"delta bytes")
    sha = hashlib.sha256(b"delta bytes").hexdigest()
    remote = dest.put(delta_file, snapshot_id=delta, sha256=sha)
    assert (remote.name, remote.kind, remote.snapshot_id) == (
        f"{delta}.delta.tar.zst", "delta", delta)
    assert [(r.snapshot_id, r.kind) for r in dest.list()] == [(delta, "delta")]
    assert dest.find(delta) is not None


_V1_SNAPSHOTS = """CREATE TABLE snapshots (
    id TEXT PRIMARY KEY, file TEXT NOT NULL, created_at TEXT NOT NULL, size INTEGER NOT NULL,
    sha256 TEXT NOT NULL, files INTEGER NOT NULL, bytes_in INTEGER NOT NULL,
    databases TEXT NOT NULL DEFAULT '[]', duration REAL, trigger TEXT,
    local INTEGER NOT NULL DEFAULT 1, fingerprint TEXT)"""


def test_a_catalog_written_before_deltas_reads_every_snapshot_as_a_full(tmp_path: Path) -> None:
    tmp_path.joinpath("local").mkdir()
    db = sqlite3.connect(tmp_path / "local" / CATALOG_FILE)
    db.execute(_V1_SNAPSHOTS)
    db.execute("INSERT INTO snapshots VALUES (?, 'f', ?, 1, ?, 1, 1, '[]', 1.0, 'manual', 1, "
               "NULL)", (SID, utcnow().isoformat(), "a" * 64))
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()

    catalog = Catalog(tmp_path / "local")
    [old] = catalog.snapshots()
    assert (old.id, old.kind, old.base) == (SID, "full", None)
    delta = "siip-20261128T090000Z"
    catalog.add_snapshot(SnapshotInfo(id=delta, file="d", created_at=utcnow(), size=1,
                                      sha256="b" * 64, files=1, bytes_in=1, kind="delta",
                                      base=SID), trigger="manual", duration=1.0)
    new = catalog.snapshot(delta)
    assert new is not None and (new.kind, new.base) == ("delta", SID)
    db = sqlite3.connect(tmp_path / "local" / CATALOG_FILE)
    assert db.execute("PRAGMA user_version").fetchone() == (2,)
    db.close()


def test_list_shows_kind_and_base(siip: Path, tmp_path: Path,
                                  cli: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    cfg = make_config(siip, tmp_path / "backups")
    report = run_backup(cfg, trigger="manual", email=False)
    assert report.status == "ok", report.errors
    [row] = list_snapshots(cfg, "local")
    assert row.to_dict()["kind"] == "full" and row.to_dict()["base"] is None
    config = tmp_path / "w.toml"
    config.write_text(f'[source]\nroot = "{siip}"\ndatabases = ["siip_database.db"]\n'
                      f'[local]\ndir = "{tmp_path / "backups"}"\n')
    out = cli("-c", str(config), "list", "--json", check=True)
    [entry] = json.loads(out.stdout)
    assert (entry["kind"], entry["base"]) == ("full", None)
    table = cli("-c", str(config), "list", check=True).stdout.splitlines()
    assert table[0].split()[3:] == ["SIZE", "KIND", "BASE", "STORED", "AT"]
    assert table[1].split()[4:6] == ["full", "-"]
