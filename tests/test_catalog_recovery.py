"""A damaged catalog is state, not truth: it is moved aside, rebuilt from the archives, warned
about once, and every command carries on (issue 14, item 3)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from tests.helpers import write_config
from watcher.backup.run import run_backup
from watcher.config.settings import Config
from watcher.state.catalog import CATALOG_FILE, Catalog


def damaged_files(local: Path) -> list[str]:
    return sorted(p.name for p in local.glob(f"{CATALOG_FILE}.damaged-*"))


def test_a_garbage_catalog_is_rebuilt_and_the_run_goes_on(cfg: Config) -> None:
    first = run_backup(cfg, trigger="manual", email=False)
    catalog = cfg.local.dir / CATALOG_FILE
    catalog.write_bytes(b"this is not an SQLite database\n" * 200)

    second = run_backup(cfg, trigger="manual", email=False)

    assert second.status == "warning" and second.snapshot is not None, second.errors
    assert [w for w in second.warnings if "moved aside" in w.message]
    assert len(damaged_files(cfg.local.dir)) == 1
    ids = [s.id for s in Catalog(cfg.local.dir).snapshots()]
    assert first.snapshot.id in ids and second.snapshot.id in ids  # rebuilt from the archives
    third = run_backup(cfg, trigger="manual", email=False)
    assert not [w for w in third.warnings if "moved aside" in w.message]  # warned once


def test_a_corrupt_page_behind_a_valid_header_is_caught_too(cfg: Config) -> None:
    run_backup(cfg, trigger="manual", email=False)
    catalog = cfg.local.dir / CATALOG_FILE
    db = sqlite3.connect(catalog)
    with db:
        db.executemany("INSERT INTO notifications (channel, state, at) VALUES ('x', 'y', 'z')",
                       [()] * 2000)
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    db.close()
    raw = bytearray(catalog.read_bytes())
    raw[page_size * 3: page_size * 4] = b"\xff" * page_size  # a b-tree page, header intact
    catalog.write_bytes(bytes(raw))

    report = run_backup(cfg, trigger="manual", email=False)
    assert report.snapshot is not None, report.errors
    assert [w for w in report.warnings if "moved aside" in w.message]


def test_list_prune_and_status_carry_on(cfg: Config, siip: Path, tmp_path: Path,
                                        cli: Any) -> None:
    first = run_backup(cfg, trigger="manual", email=False)
    (cfg.local.dir / CATALOG_FILE).write_bytes(b"\x00garbage" * 1000)
    config = write_config(tmp_path / "siip-watcher.toml", siip, cfg.local.dir)

    listed = cli("-c", config, "list", check=True)
    assert first.snapshot.id in listed.stdout
    assert "moved aside" in listed.stderr
    assert cli("-c", config, "prune", check=True).returncode == 0
    assert cli("-c", config, "status", check=True).returncode == 0


def test_a_catalog_that_cannot_be_opened_is_left_alone(cfg: Config) -> None:
    (cfg.local.dir).mkdir(parents=True, exist_ok=True)
    (cfg.local.dir / CATALOG_FILE).mkdir()  # not damage: the admin must look
    report = run_backup(cfg, trigger="manual", email=False)
    assert report.status == "failed" and report.errors[0].cause == "catalog"
    assert damaged_files(cfg.local.dir) == []
