"""A snapshot dated in the future (a clock that was wrong once) must not make retention delete
every new snapshot (issue 14, item 5)."""

from __future__ import annotations

import shutil
from pathlib import Path

from watcher.backup.run import run_backup
from watcher.config.settings import Config, RetentionConfig


def test_runs_keep_their_snapshot_beside_one_dated_2099(cfg: Config) -> None:
    cfg = cfg.__class__(**{**cfg.__dict__, "retention": RetentionConfig(
        keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0)})
    first = run_backup(cfg, trigger="manual", email=False)
    assert first.status == "ok", first.errors
    archive = Path(first.snapshot.file)
    future = archive.with_name(f"{cfg.name}-20991231T000000Z.tar.zst")
    shutil.copy(archive, future)
    future.with_name(future.name + ".sha256").write_text(
        archive.with_name(archive.name + ".sha256").read_text().replace(archive.name,
                                                                        future.name))

    second = run_backup(cfg, trigger="manual", email=False)

    assert Path(second.snapshot.file).exists(), "the run pruned the snapshot it just took"
    assert second.snapshot.id not in second.pruned
    assert future.exists()
    assert any("ahead of this machine's clock" in w.message for w in second.warnings)
    assert second.status == "warning"
