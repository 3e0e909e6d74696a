"""A backup folder that cannot be written (a read-only mount, an auditor's copy) can still be
listed, verified and restored from; a local.dir that is a file is a clear configuration error
(issue 14, item 6 and its smaller sibling)."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import write_config
from watcher.backup.run import run_backup
from watcher.config.settings import Config


@pytest.fixture
def read_only_view(cfg: Config, tmp_path: Path) -> Iterator[Path]:
    """The backup folder bind-mounted read-only: writes fail even for root."""
    report = run_backup(cfg, trigger="manual", email=False)
    assert report.snapshot is not None, report.errors
    second = run_backup(cfg, trigger="manual", email=False)
    assert second.snapshot is not None
    # one archive the catalog does not know yet, as in a copy made by hand
    (cfg.local.dir / "catalog.sqlite3").rename(cfg.local.dir / "old-catalog.sqlite3")
    view = tmp_path / f"ro-{uuid.uuid4().hex[:6]}"
    view.mkdir()
    steps = [["mount", "--bind", str(cfg.local.dir), str(view)],
             ["mount", "-o", "remount,ro,bind", str(view)]]
    for step in steps:
        proc = subprocess.run(step, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            subprocess.run(["umount", "-l", str(view)], capture_output=True, check=False)
            pytest.skip(f"cannot make a read-only mount here: {proc.stderr.strip()}")
    try:
        yield view
    finally:
        subprocess.run(["umount", "-l", str(view)], check=False)


def test_list_verify_and_restore_from_a_read_only_folder(siip: Path, tmp_path: Path,
                                                         read_only_view: Path,
                                                         cli: Any) -> None:
    config = write_config(tmp_path / "ro.toml", siip, read_only_view)
    before = sorted(p.name for p in read_only_view.iterdir())

    listed = cli("-c", config, "list", "--json", check=True)
    rows = json.loads(listed.stdout)
    assert len(rows) == 2 and all(r["stored_at"] == ["local"] for r in rows)
    assert "Traceback" not in listed.stderr

    verified = cli("-c", config, "verify", "--all", check=True)
    assert verified.stdout.count(": OK") == 2

    target = tmp_path / "restored"
    cli("-c", config, "restore", "latest", "--to", str(target), check=True)
    assert (target / "siip_database.db").is_file()
    assert sorted(p.name for p in read_only_view.iterdir()) == before


def test_local_dir_that_is_a_file_is_a_configuration_error(siip: Path, tmp_path: Path,
                                                            cli: Any) -> None:
    plain = tmp_path / "not-a-folder"
    plain.write_text("x")
    config = write_config(tmp_path / "c.toml", siip, plain)
    listed = cli("-c", config, "list")
    once = cli("-c", config, "once", "--no-email")
    assert listed.returncode != 0 and once.returncode != 0
    for proc in (listed, once):
        assert "is a file, not a folder" in proc.stdout + proc.stderr, proc
    assert "no snapshots" not in listed.stdout
