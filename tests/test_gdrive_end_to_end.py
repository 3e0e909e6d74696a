"""The whole product with Drive, in real processes: `once` uploads the snapshot, Drive being
down leaves it queued (exit 3), and a new machine with only the configuration and the
sign-in lists, verifies and restores from Drive (the server is gone)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

import pytest

from scripts.fakedrive import DriveServer
from tests.fakes.drive import FAST_RETRY, drive_section
from tests.helpers import assert_restored, write_config
from watcher.cli import main
from watcher.destinations.gdrive.destination import KEY_SNAPSHOT

Cli = Callable[..., CompletedProcess[str]]


@pytest.fixture
def drive_toml(tmp_path: Path, drive_server: DriveServer) -> str:
    """The [drive] section both machines use: the sign-in and the folder."""
    return drive_section(drive_server, tmp_path)


@pytest.fixture
def config(siip: Path, tmp_path: Path, drive_toml: str) -> Path:
    """The configuration file of the machine that takes the snapshots."""
    return write_config(tmp_path / "server.toml", siip, tmp_path / "backups", drive_toml)


def test_once_uploads_then_a_new_machine_restores_from_drive(
        siip: Path, tmp_path: Path, cli: Cli, drive_server: DriveServer, config: Path,
        drive_toml: str) -> None:
    run = cli("-c", str(config), "once", "--no-email", "--json")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    [dest] = report["destinations"]
    assert dest["state"] == "uploaded" and dest["link"].startswith("https://drive.google")
    sid = report["snapshot"]["id"]
    assert len(drive_server.state.live_files(app_property=(KEY_SNAPSHOT, sid))) == 1

    # the server is gone: a new machine has the config and the sign-in, nothing else
    fresh_root = tmp_path / "new-machine" / "siip"
    fresh_root.mkdir(parents=True)
    config_b = write_config(tmp_path / "new.toml", fresh_root,
                            tmp_path / "new-machine" / "backups", drive_toml)
    listed = cli("-c", str(config_b), "list", "--from", "drive", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [r["id"] for r in json.loads(listed.stdout)] == [sid]

    verified = cli("-c", str(config_b), "verify", "latest", "--from", "drive")
    assert verified.returncode == 0, verified.stderr + verified.stdout

    target = tmp_path / "restored"
    restored = cli("-c", str(config_b), "restore", "latest", "--from", "drive", "--to",
                   str(target))
    assert restored.returncode == 0, restored.stderr
    assert_restored(target, siip)


def test_drive_down_keeps_the_snapshot_queued_and_exits_3(
        config: Path, drive_server: DriveServer, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # in-process, only to shorten the half minute of production retries to milliseconds
    monkeypatch.setattr("watcher.destinations.gdrive.destination.DEFAULT_RETRY", FAST_RETRY)
    drive_server.stop()
    code = main(["-c", str(config), "once", "--no-email", "--json"])
    run = capsys.readouterr()
    assert code == 3, run.err
    report = json.loads(run.out)
    [dest] = report["destinations"]
    assert dest["state"] == "pending" and dest["error"]
    assert Path(report["snapshot"]["file"]).exists()
    assert "upload_id" not in run.out + run.err


def test_once_sends_what_is_still_queued_too(
        siip: Path, config: Path, drive_server: DriveServer, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("watcher.destinations.gdrive.destination.DEFAULT_RETRY", FAST_RETRY)
    drive_server.stop()
    assert main(["-c", str(config), "once", "--no-email", "--json"]) == 3
    first = json.loads(capsys.readouterr().out)["snapshot"]["id"]
    drive_server.start()
    (siip / "app" / "new.py").write_text("x = 1\n")
    code = main(["-c", str(config), "once", "--no-email", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert {d["snapshot_id"]: d["state"] for d in report["destinations"]} == {
        first: "uploaded", report["snapshot"]["id"]: "uploaded"}
    assert len(drive_server.state.live_files()) == 2
