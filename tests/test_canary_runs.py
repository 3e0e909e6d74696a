"""Data-loss canaries in real runs: each canary on a real tree and database, no snapshot
deleted anywhere while an alert holds, `ack` and the quiet-days release, status and email."""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import FULLS_ONLY, write_config
from watcher.backup.report import RunReport
from watcher.backup.run import run_backup
from watcher.config.settings import CanaryConfig, Config, FolderConfig, RetentionConfig
from watcher.notify.message import build_report_message
from watcher.service.status import collect_status, format_status
from watcher.state.canary_file import HOLD_FILE

KEEP_ONE = RetentionConfig(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0)


@pytest.fixture
def tight(cfg: Config, siip: Path) -> Config:
    """keep_last = 1 and full archives only (no delta keeps its base), so any prune that is
    not held back shows at once; plus 30 code files."""
    for i in range(30):
        (siip / "app" / f"modulo_{i}.py").write_text(f"def f{i}():\n    return {i}\n" * 40)
    return dataclasses.replace(cfg, retention=KEEP_ONE, snapshot=FULLS_ONLY)


def run(cfg: Config) -> RunReport:
    report = run_backup(cfg, trigger="manual", email=False)
    assert report.snapshot is not None, report.errors
    return report


def archives(cfg: Config) -> list[str]:
    return sorted(p.name for p in cfg.local.dir.glob("*.tar.zst"))


def alerts(report: RunReport) -> list[str]:
    return [w.message for w in report.warnings if w.message.startswith("data-loss alert")]


def empty_the_database(siip: Path) -> None:
    for suffix in ("-wal", "-shm"):
        Path(f"{siip / 'siip_database.db'}{suffix}").unlink(missing_ok=True)
    (siip / "siip_database.db").write_bytes(b"")


def test_an_emptied_database_holds_pruning_until_ack(tight: Config, siip: Path,
                                                     tmp_path: Path, cli: Any) -> None:
    run(tight)
    empty_the_database(siip)

    second = run(tight)
    assert [a for a in alerts(second) if "siip_database.db is empty" in a]
    assert second.status == "warning" and second.alert and second.alert["event"] == "raised"
    assert second.pruned == [] and len(archives(tight)) == 2
    assert (tight.local.dir / HOLD_FILE).exists()

    # the alert holds on the next, quiet run: still nothing deleted
    (siip / "siip_database.db").unlink()
    sqlite3.connect(siip / "siip_database.db").execute("CREATE TABLE t (x)").connection.close()
    third = run(tight)
    assert third.alert and third.alert["event"] in ("held", "raised again")
    assert third.pruned == [] and len(archives(tight)) == 3
    assert any("nothing was pruned" in w.message for w in third.warnings)

    config = write_config(tmp_path / "siip-watcher.toml", siip, tight.local.dir,
                          "[retention]\nkeep_last = 1\nkeep_daily = 0\nkeep_weekly = 0\n"
                          "keep_monthly = 0\n")
    status = cli("-c", config, "status", check=True)
    assert "ALERT" in status.stdout and "siip-watcher ack" in status.stdout
    acked = cli("-c", config, "ack", check=True)
    assert "Acknowledged" in acked.stdout and "is empty" in acked.stdout
    assert not (tight.local.dir / HOLD_FILE).exists()
    assert "No data-loss alert" in cli("-c", config, "ack", check=True).stdout

    fourth = run(tight)
    assert fourth.alert is None
    assert archives(tight) == [Path(fourth.snapshot.file).name]


def test_many_files_changed_at_once(tight: Config, siip: Path) -> None:
    run(tight)
    for i in range(15):
        (siip / "app" / f"modulo_{i}.py").write_text("# reescrito\n")
    for i in range(15, 20):
        (siip / "app" / f"modulo_{i}.py").unlink()
    report = run(tight)
    assert [a for a in alerts(report) if "disappeared (5) or changed (15)" in a], report.warnings
    assert len(archives(tight)) == 2


def test_a_normal_day_of_edits_raises_nothing_and_prunes(tight: Config, siip: Path) -> None:
    run(tight)
    for i in range(3):
        (siip / "app" / f"modulo_{i}.py").write_text("# editado\n" * 10)
    report = run(tight)
    assert alerts(report) == [] and report.alert is None
    assert archives(tight) == [Path(report.snapshot.file).name]


def test_text_files_turned_random_look_like_ransomware(tight: Config, siip: Path) -> None:
    strict = dataclasses.replace(tight, canary=CanaryConfig(changed_share=1.0))
    run(strict)
    for i in range(12):
        (siip / "app" / f"modulo_{i}.py").write_bytes(os.urandom(2000))
    report = run(strict)
    assert [a for a in alerts(report) if "random-looking bytes" in a], report.warnings
    assert report.alert and report.alert["kinds"] == ["incompressible"]


def test_a_database_that_lost_most_of_its_rows(tight: Config, siip: Path) -> None:
    run(tight)
    db = sqlite3.connect(siip / "siip_database.db")
    with db:
        db.execute("DELETE FROM personas WHERE id > 100")
    db.execute("VACUUM")
    db.close()
    report = run(tight)
    assert [a for a in alerts(report) if "lost more than half of its pages" in a]


def test_quiet_runs_release_the_hold_after_the_configured_days(tight: Config,
                                                               siip: Path) -> None:
    run(tight)
    empty_the_database(siip)
    run(tight)
    (siip / "siip_database.db").unlink()
    sqlite3.connect(siip / "siip_database.db").execute("CREATE TABLE t (x)").connection.close()
    held = run(tight)
    assert held.alert and held.alert["event"] == "held" and held.pruned == []

    # the alert was last raised eight days ago (release_after_days = 7)
    hold_file = tight.local.dir / HOLD_FILE
    record = json.loads(hold_file.read_text())
    for key in ("raised_at", "last_raised_at"):
        record[key] = (datetime.fromisoformat(record[key]) - timedelta(days=8)).isoformat()
    hold_file.write_text(json.dumps(record))
    released = run(tight)
    assert released.alert is None and not hold_file.exists()
    assert archives(tight) == [Path(released.snapshot.file).name]


def test_the_alert_email_says_so_in_its_subject_and_first_lines(tight: Config,
                                                                siip: Path) -> None:
    run(tight)
    empty_the_database(siip)
    report = run(tight)
    message = build_report_message(tight, report, "warning")
    assert "ALERTA posible pérdida de datos" in message["Subject"]
    body = message.get_body(("plain",)).get_content()
    assert "una base de datos quedó vacía" in body and "siip-watcher ack" in body
    english = dataclasses.replace(tight, email=dataclasses.replace(tight.email, language="en"))
    assert "ALERT possible data loss" in build_report_message(english, report, "warning")[
        "Subject"]
    status = collect_status(tight)
    assert status["alert"] and "ALERT" in format_status(status)


def test_nothing_is_pruned_at_a_destination_either_while_an_alert_holds(
        tight: Config, siip: Path, tmp_path: Path) -> None:
    nas = tmp_path / "nas"
    nas.mkdir()
    with_nas = dataclasses.replace(tight, folder=FolderConfig(enabled=True, path=str(nas)))
    first = run(with_nas)
    empty_the_database(siip)
    second = run(with_nas)
    assert second.alert is not None
    at_nas = sorted(p.name for p in nas.glob("*.tar.zst"))
    assert at_nas == sorted([Path(first.snapshot.file).name, Path(second.snapshot.file).name])
    assert second.pruned == []
