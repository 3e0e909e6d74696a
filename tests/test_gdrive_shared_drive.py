"""Shared drives as Google runs them (issue 10): the member's role decides what it may do, and
a folder inside a shared drive is found to be one.

fakedrive enforces the roles of the Drive v3 reference: only a Manager ("organizer") may
delete for good; a Content manager ("fileOrganizer") may only move files to the trash; a
Contributor ("writer") may add files but neither. Everything goes through the real
google-api-python-client.
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from scripts.fakedrive import DriveServer
from tests.fakes.drive import (
    CLIENT_ID,
    SA_EMAIL,
    drive_config,
    drive_settings,
    make_archive,
    make_drive,
    shared_drive_config,
)
from tests.helpers import FULLS_ONLY, make_config, toml_table, write_config
from watcher.backup.run import run_backup
from watcher.config.settings import Config, RetentionConfig
from watcher.destinations.base import DestinationError
from watcher.destinations.gdrive.auth import load_user_token
from watcher.destinations.gdrive.destination import KEY_SNAPSHOT
from watcher.destinations.gdrive.setup import drive_login
from watcher.notify.message import build_report_message
from watcher.retry import RetryPolicy

SID = "siip-20261127T181500Z"
KEEP_ONE = RetentionConfig(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0)
#: the Spanish email's words for the notice (watcher/notify/texts.py)
TRASHED_ES = "no deja a esta cuenta borrar copias definitivamente"


def stored(server: DriveServer, n: int, tmp_path: Path, role: str) -> tuple:
    """A destination for a shared drive whose member has ``role``, holding ``n`` copies."""
    dest = make_drive(shared_drive_config(server, tmp_path, role=role))
    remotes = []
    for i in range(n):
        sid = f"siip-2026112{i}T181500Z"
        path, sha = make_archive(tmp_path, sid, 1000 + i)
        remotes.append(dest.put(path, snapshot_id=sid, sha256=sha))
    return dest, remotes


def test_a_content_manager_moves_old_copies_to_the_trash_and_says_so_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with DriveServer() as server:
        dest, remotes = stored(server, 3, tmp_path, "fileOrganizer")
        with caplog.at_level(logging.WARNING):
            for remote in remotes:
                dest.delete(remote)
        assert all(server.state.files[r.remote_id].trashed for r in remotes)
        assert dest.list() == []
        # refused once, then straight to the trash
        assert [r.status for r in server.state.ops("delete")] == [403]
        assert [r.status for r in server.state.ops("update")] == [200, 200, 200]
        [notice] = dest.take_notices()
        assert notice.key == "trashed_instead" and "Manager" in notice.detail
        assert dest.take_notices() == []
        said = [r for r in caplog.records if "moved to the trash" in r.getMessage()]
        assert len(said) == 1 and "Manager" in said[0].getMessage()


def test_a_manager_still_deletes_for_good(tmp_path: Path) -> None:
    with DriveServer() as server:
        dest, remotes = stored(server, 2, tmp_path, "organizer")
        for remote in remotes:
            dest.delete(remote)
        assert server.state.files.keys().isdisjoint(r.remote_id for r in remotes)
        assert [r.status for r in server.state.ops("delete")] == [204, 204]
        assert server.state.ops("update") == [] and dest.take_notices() == []


def test_a_contributor_may_neither_delete_nor_trash(tmp_path: Path) -> None:
    with DriveServer() as server:
        dest, [remote] = stored(server, 1, tmp_path, "writer")
        with pytest.raises(DestinationError, match="neither delete nor trash.*Manager") as err:
            dest.delete(remote)
        assert not err.value.retryable
        assert not server.state.files[remote.remote_id].trashed


def test_a_viewer_may_not_add_files(tmp_path: Path) -> None:
    with DriveServer() as server:
        dest = make_drive(shared_drive_config(server, tmp_path, role="reader"))
        path, sha = make_archive(tmp_path, SID, 1000)
        with pytest.raises(DestinationError, match="insufficientFilePermissions"):
            dest.put(path, snapshot_id=SID, sha256=sha)
        assert server.state.live_files() == []


def test_a_content_manager_trashes_a_bad_copy_and_uploads_again(tmp_path: Path) -> None:
    """The md5-mismatch clean-up deletes too: the same 403, the same way out."""
    with DriveServer() as server:
        dest = make_drive(shared_drive_config(server, tmp_path, role="fileOrganizer"))
        path, sha = make_archive(tmp_path, SID, 3 * 256 * 1024)
        server.state.inject("chunk", "corrupt", skip=1)
        remote = dest.put(path, snapshot_id=SID, sha256=sha)
        [good] = server.state.live_files()
        assert good.id == remote.remote_id and good.content == path.read_bytes()
        assert sum(f.trashed for f in server.state.files.values()) == 1
        assert [n.key for n in dest.take_notices()] == ["trashed_instead"]


def test_a_run_pruning_as_content_manager_warns_once_in_the_report_and_the_email(
        cfg: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    quick = RetryPolicy(attempts=3, base=0.01, cap=0.05)
    monkeypatch.setattr("watcher.destinations.gdrive.destination.DEFAULT_RETRY", quick)
    creds = tmp_path / "creds"
    creds.mkdir()
    with DriveServer() as server:
        drive = shared_drive_config(server, creds, role="fileOrganizer")
        keep_all = replace(cfg, drive=drive, snapshot=FULLS_ONLY)  # two fulls to prune
        for _ in range(2):
            assert run_backup(keep_all, trigger="manual", email=False).status == "ok"
        report = run_backup(replace(keep_all, retention=KEEP_ONE), trigger="manual",
                            email=False)
        assert len(report.pruned) == 4              # two old ones, locally and on Drive
        [warning] = report.warnings
        assert warning.key == "trashed_instead" and warning.params == {"dest": "drive"}
        trashed = [f for f in server.state.files.values() if f.trashed]
        assert len(trashed) == 2 and len(server.state.live_files()) == 1
        body = build_report_message(cfg, report, "warning").get_body(("plain",))
        assert body is not None
        text = body.get_content()
        # one warning among the warnings (the email also opens with it, as its only concern)
        assert text.count(f"  - drive {TRASHED_ES}") == 1
        assert text.count("make the account a Manager") == 1
        assert SA_EMAIL in server.state.shared_drives["0AshareD"]


# --- a folder inside a shared drive, with drive.shared_drive_id unset ------------------------


def folder_in_a_shared_drive(server: DriveServer) -> str:
    """A folder in the shared drive 0AshareD that the signed-in user (admin@example.com,
    a Manager there) may fill with the drive.file scope."""
    server.state.add_shared_drive("0AshareD", {"admin@example.com": "organizer"})
    return server.state.add_folder("backups", drive_id="0AshareD", visible_to={CLIENT_ID})


def test_a_shared_drive_folder_without_shared_drive_id_is_listed_and_pruned(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with DriveServer() as server:
        dest = make_drive(drive_config(server, tmp_path,
                                       folder_id=folder_in_a_shared_drive(server)))
        old, sha = make_archive(tmp_path, "siip-20261126T181500Z", 1000)
        new, sha_new = make_archive(tmp_path, SID, 2000)
        with caplog.at_level(logging.WARNING):
            dest.put(old, snapshot_id="siip-20261126T181500Z", sha256=sha)
            dest.put(new, snapshot_id=SID, sha256=sha_new)
            dest.put(new, snapshot_id=SID, sha256=sha_new)        # a retry: no second copy
        assert [r.snapshot_id for r in dest.list()] == [SID, "siip-20261126T181500Z"]
        assert len(server.state.live_files()) == 2
        dest.delete(dest.list()[1])
        assert [f.app_properties[KEY_SNAPSHOT] for f in server.state.live_files()] == [SID]
        said = [r.getMessage() for r in caplog.records if "shared_drive_id" in r.getMessage()]
        assert len(said) == 1 and 'set shared_drive_id = "0AshareD"' in said[0]


def test_config_check_says_exactly_what_to_set(tmp_path: Path, siip: Path,
                                               cli: Callable[..., Any]) -> None:
    with DriveServer() as server:
        creds = tmp_path / "creds"
        creds.mkdir()
        drive = drive_config(server, creds, folder_id=folder_in_a_shared_drive(server))
        config = write_config(tmp_path / "c.toml", siip, tmp_path / "b",
                              toml_table("drive", drive_settings(drive)))
        check = cli("-c", str(config), "config", "check")
        assert check.returncode == 0, check.stderr
        assert 'set shared_drive_id = "0AshareD" under [drive]' in check.stderr
        tomllib.loads(check.stdout)                     # stdout is still the TOML alone

        # once it is set, nothing more to say
        config.write_text(config.read_text() + 'shared_drive_id = "0AshareD"\n')
        check = cli("-c", str(config), "config", "check")
        assert check.returncode == 0 and "shared_drive_id" not in check.stderr, check.stderr


def test_config_check_says_when_drive_cannot_be_asked(tmp_path: Path, siip: Path,
                                                      cli: Callable[..., Any]) -> None:
    with DriveServer() as server:
        creds = tmp_path / "creds"
        creds.mkdir()
        drive = drive_config(server, creds, folder_id="1NoSuchFolder")
        config = write_config(tmp_path / "c.toml", siip, tmp_path / "b",
                              toml_table("drive", drive_settings(drive)))
        check = cli("-c", str(config), "config", "check")
        assert check.returncode == 0
        assert "drive: could not check drive.folder_id" in check.stderr
        assert "'1NoSuchFolder' was not found" in check.stderr


def test_drive_login_says_exactly_what_to_set(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    with DriveServer() as server:
        folder = folder_in_a_shared_drive(server)
        creds = tmp_path / "creds"
        creds.mkdir()
        drive = drive_config(server, creds, folder_id=folder)
        cfg = make_config(tmp_path, tmp_path / "b", check_paths=False,
                          drive=drive_settings(drive))
        said: list[str] = []
        # the stored sign-in stands in for the browser (tests/test_gdrive_login.py has it):
        # what is under test is the folder check after it
        monkeypatch.setattr("watcher.destinations.gdrive.setup.login",
                            lambda *a, **kw: load_user_token(Path(drive.token_file)))
        assert drive_login(cfg, say=said.append) == folder
        assert any('set shared_drive_id = "0AshareD" under [drive]' in line for line in said)
