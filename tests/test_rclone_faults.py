"""The rclone destination through the whole product, with the faults an office meets: the
server dies in the middle of an upload, it is down when the run starts, a stored copy gets
damaged. `once` runs in this process (the servers are the session's); a new machine with
only the configuration and the rclone.conf lists, verifies and restores."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scripts.rclone_servers import RcloneServer, RcloneServers
from tests.helpers import assert_restored, write_config
from watcher.cli import main
from watcher.encryption.keys import write_new_identity
from watcher.encryption.stream import AGE_HEADER

#: incompressible bytes in the project, so the archive takes a while to upload
BIG = 3_000_000


@pytest.fixture
def webdav(rclone_servers: RcloneServers) -> Iterator[RcloneServer]:
    """The session's WebDAV server, running again after the test whatever it did to it."""
    server = rclone_servers.by_kind["webdav"]
    yield server
    if server.proc is None:
        server.start()


def rclone_toml(remote: str, conf: Path) -> str:
    return f'[rclone]\nenabled = true\nremote = "{remote}"\nconfig_file = "{conf}"\n'


def once(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code = main(["-c", str(config), "once", "--no-email", "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out)


def kill_when_upload_starts(server: RcloneServer, stored: Path) -> threading.Thread:
    """A thread that kills ``server`` as soon as a temporary file with some bytes of an
    upload appears in ``stored``."""

    def started() -> bool:
        return stored.is_dir() and any(p.name.endswith(".partial") and p.stat().st_size > 0
                                       for p in stored.iterdir())

    def watch() -> None:
        stop_at = 600
        for _ in range(stop_at):
            if started():
                server.kill()
                return
            threading.Event().wait(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_killed_mid_upload_queued_then_sent_and_restored_on_a_new_machine(
        rclone_servers: RcloneServers, webdav: RcloneServer, siip: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    (siip / "static" / "uploads" / "scan.pdf").write_bytes(os.urandom(BIG))
    remote = webdav.remote()
    stored = webdav.folder(remote.split(":", 1)[1])
    section = rclone_toml(remote, rclone_servers.conf)
    config = write_config(tmp_path / "server.toml", siip, tmp_path / "backups", section)

    monkeypatch.setenv("RCLONE_BWLIMIT", "1M")      # the upload lasts seconds: time to kill
    killer = kill_when_upload_starts(webdav, stored)
    code, report = once(config, capsys)
    killer.join()
    assert webdav.proc is None, "the upload ended before the server could be killed"
    assert code == 3
    [dest] = report["destinations"]
    assert dest["name"] == "rclone" and dest["state"] == "pending"
    assert "cannot reach" in dest["error"]
    first = report["snapshot"]["id"]
    first_name = Path(report["snapshot"]["file"]).name
    assert Path(report["snapshot"]["file"]).exists()
    assert not list(stored.glob("*.tar.zst"))        # nothing under a final name
    assert list(stored.glob("*.partial"))            # what the kill left

    monkeypatch.delenv("RCLONE_BWLIMIT")
    webdav.start()
    (siip / "app" / "later.py").write_text("x = 2\n")
    code, report = once(config, capsys)
    assert code == 0, report
    second = report["snapshot"]["id"]
    # a delta of the first: the new machine's restore below fetches both
    second_name = Path(report["snapshot"]["file"]).name
    assert second_name == f"{second}.delta.tar.zst"
    # the queued copy first (the delta's base), then the new one
    assert [(d["snapshot_id"], d["state"]) for d in report["destinations"]] == [
        (first, "uploaded"), (second, "uploaded")]
    assert sorted(p.name for p in stored.iterdir()) == sorted(
        f"{name}{ext}" for name in (first_name, second_name) for ext in ("", ".sha256"))

    # a new machine: the configuration and the rclone.conf, nothing else
    fresh = tmp_path / "new" / "siip"
    fresh.mkdir(parents=True)
    config_b = write_config(tmp_path / "new.toml", fresh, tmp_path / "new" / "backups", section)
    assert main(["-c", str(config_b), "list", "--from", "rclone", "--json"]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == [second, first]
    target = tmp_path / "restored"
    assert main(["-c", str(config_b), "restore", "latest", "--from", "rclone", "--to",
                 str(target)]) == 0
    assert_restored(target, siip)

    # a stored copy damaged behind our back: verify says so
    with open(stored / second_name, "r+b") as f:
        f.seek(200)
        f.write(b"\x00rot\x00")
    capsys.readouterr()
    assert main(["-c", str(config_b), "verify", "latest", "--from", "rclone"]) != 0
    assert "sha256" in capsys.readouterr().err


def test_server_down_at_start_leaves_the_snapshot_queued(
        rclone_servers: RcloneServers, webdav: RcloneServer, siip: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    webdav.kill()
    config = write_config(tmp_path / "c.toml", siip, tmp_path / "backups",
                          rclone_toml(webdav.remote(), rclone_servers.conf))
    code, report = once(config, capsys)
    assert code == 3
    [dest] = report["destinations"]
    assert dest["state"] == "pending" and "cannot reach" in dest["error"]
    assert "stays queued" in dest["error"]
    assert Path(report["snapshot"]["file"]).exists()
    assert main(["-c", str(config), "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert "rclone" in json.dumps(status)


def test_with_encryption_only_age_files_reach_the_remote(
        rclone_servers: RcloneServers, siip: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """[encryption] applies to rclone copies as to every off-site copy (issue 11's seam)."""
    identity = tmp_path / "office-key.txt"
    public = write_new_identity(identity)
    server = rclone_servers.by_kind["sftp"]
    remote = server.remote()
    stored = server.folder(remote.split(":", 1)[1])
    section = (rclone_toml(remote, rclone_servers.conf)
               + f'[encryption]\nrecipients = ["{public}"]\n')
    config = write_config(tmp_path / "c.toml", siip, tmp_path / "backups", section)
    code, report = once(config, capsys)
    assert code == 0, report
    sid = report["snapshot"]["id"]
    assert sorted(p.name for p in stored.iterdir()) == [
        f"{sid}.tar.zst.age{ext}" for ext in ("", ".recipients", ".sha256")]
    assert (stored / f"{sid}.tar.zst.age").read_bytes().startswith(AGE_HEADER)

    fresh = tmp_path / "new" / "siip"
    fresh.mkdir(parents=True)
    config_b = write_config(tmp_path / "new.toml", fresh, tmp_path / "new" / "backups", section)
    target = tmp_path / "restored"
    assert main(["-c", str(config_b), "restore", "latest", "--from", "rclone", "--to",
                 str(target), "--identity", str(identity)]) == 0
    assert_restored(target, siip)


def test_retention_prunes_at_the_remote_too(
        rclone_servers: RcloneServers, siip: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    server = rclone_servers.by_kind["s3"]
    remote = server.remote()
    stored = server.folder(remote.split(":", 1)[1])
    # fulls only: a kept delta would keep its base full, here and at the remote
    section = (rclone_toml(remote, rclone_servers.conf) + "[retention]\nkeep_last = 1\n"
               "keep_daily = 0\nkeep_weekly = 0\nkeep_monthly = 0\n"
               "[snapshot]\nfull_every_days = 0\n")
    config = write_config(tmp_path / "c.toml", siip, tmp_path / "backups", section)
    code, first = once(config, capsys)
    assert code == 0, first
    (siip / "app" / "later.py").write_text("x = 2\n")
    code, second = once(config, capsys)
    assert code == 0, second
    sid = second["snapshot"]["id"]
    assert sid != first["snapshot"]["id"]
    assert sorted(p.name for p in stored.iterdir()) == [f"{sid}.tar.zst", f"{sid}.tar.zst.sha256"]
