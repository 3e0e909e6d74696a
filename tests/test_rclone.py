"""The rclone destination's own rules: its settings, rclone's failures in plain words, the
bundled binary, `config check` and `siip-watcher rclone check`, and no secret on a command
line. The contract it shares with the other destinations is tests/test_destinations_contract.py;
crashes and outages are tests/test_rclone_faults.py."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from scripts.rclone_servers import PASSWORD, SECRET_KEY, RcloneServers
from tests.fakes.drive import make_archive
from tests.helpers import write_config
from watcher.cli import main
from watcher.config.settings import ConfigError, RcloneConfig, from_mapping
from watcher.destinations.base import DestinationError
from watcher.destinations.rclone.destination import RcloneDestination
from watcher.destinations.rclone.errors import explain, scrub
from watcher.destinations.rclone.process import bundled_binary, find_binary, parse_log_line
from watcher.destinations.rclone.setup import inspect_settings

SID = "siip-20260101T000000Z"


def settings(tmp_path: Path, **rclone: object) -> dict[str, object]:
    return {"source": {"root": str(tmp_path)}, "local": {"dir": str(tmp_path / "b")},
            "rclone": rclone}


@pytest.mark.parametrize("remote", ["/mnt/nas", "backups", ":s3,access_key_id=AK:bucket",
                                    "onedrive,token=x:path", "C:\\backups"])
def test_a_remote_must_be_a_named_remote_and_a_folder(tmp_path: Path, remote: str) -> None:
    with pytest.raises(ConfigError, match="rclone.remote: expected an rclone remote"):
        from_mapping(settings(tmp_path, enabled=True, remote=remote), environ={},
                     check_paths=False)


def test_enabled_needs_a_remote_and_config_check_an_existing_rclone_conf(
        tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="rclone.remote: expected the rclone remote"):
        from_mapping(settings(tmp_path, enabled=True), environ={}, check_paths=False)
    raw = settings(tmp_path, enabled=True, remote="onedrive:Respaldos/siip",
                   config_file="missing.conf")
    cfg = from_mapping(raw, environ={}, check_paths=False)
    assert cfg.rclone.remote == "onedrive:Respaldos/siip"
    with pytest.raises(ConfigError, match="rclone.config_file: expected an existing"):
        from_mapping(raw, environ={}, check_paths=False, check_reachable=True)
    env = {"SIIP_WATCHER_RCLONE_REMOTE": "nas:siip"}
    assert from_mapping(raw, environ=env, check_paths=False).rclone.remote == "nas:siip"


CAUSES = [
    ('Failed to create file system for "onedriv:Respaldos": didn\'t find section in config '
     'file ("onedriv")', "no_remote", False, "`rclone listremotes`"),
    ("Failed to copy: couldn't list files: InvalidAuthenticationToken: Access token has "
     "expired or is not yet valid.", "token", False, "`rclone config reconnect onedrive:`"),
    ('couldn\'t fetch token: invalid_grant: maybe token expired? - try refreshing with '
     '"rclone config reconnect onedrive:"', "token", False, "reconnect onedrive:"),
    ("Failed to copy: quotaLimitReached: Insufficient Space Available", "quota", False,
     "free space"),
    ("Failed to copy: upload failed: insufficient_space/..", "quota", False, "free space"),
    ('Put "http://nas:8080/b/x.partial": dial tcp 10.0.0.5:8080: connect: connection refused',
     "network", True, "stays queued"),
    ("couldn't connect SSH: ssh: handshake failed: ssh: unable to authenticate, attempted "
     "methods [none password]", "refused", False, "password"),
    ('Failed to create file system for "nas:siip": couldn\'t connect to ssh-agent: SSH agent '
     'requested but SSH_AUTH_SOCK not-specified', "refused", False, "keys"),
    ("something nobody foresaw", "other", True, "tried again later"),
]


@pytest.mark.parametrize(("said", "key", "retryable", "hint"), CAUSES)
def test_rclone_failures_in_plain_words(said: str, key: str, retryable: bool,
                                        hint: str) -> None:
    why = explain(1, ["NOTICE: starting", said], remote="onedrive:Respaldos", doing="upload x")
    assert (why.key, why.retryable) == (key, retryable)
    assert hint in why.message and "\n" not in why.message


def test_what_rclone_said_loses_what_could_be_a_secret() -> None:
    said = ('Get "https://user:hunter2@host/b?X-Amz-Signature=abcd&token=zz": 403 Forbidden '
            '{"access_token":"ya29.secret","expiry":"x"}')
    clean = scrub(said)
    for secret in ("hunter2", "abcd", "zz", "ya29"):
        assert secret not in clean
    assert "403 Forbidden" in clean and "https://" in clean


def test_progress_and_messages_from_rclone_json_log() -> None:
    assert parse_log_line(b'{"level":"notice","msg":"x","stats":{"bytes":1234}}\n') == ("", 1234)
    assert parse_log_line(b'{"level":"error","msg":" Failed: boom "}') == ("Failed: boom", None)
    assert parse_log_line(b"plain text\n") == ("plain text", None)


def test_the_bundled_rclone_is_found_and_a_wrong_binary_is_named(tmp_path: Path) -> None:
    bundled = bundled_binary()
    assert bundled is not None and os.access(bundled, os.X_OK)
    assert find_binary("") == str(bundled)
    with pytest.raises(DestinationError, match="rclone.binary") as err:
        find_binary(str(tmp_path / "no-rclone"))
    assert not err.value.retryable


def test_a_remote_missing_from_rclone_conf_is_named(
        rclone_servers: RcloneServers, tmp_path: Path) -> None:
    rc = RcloneConfig(enabled=True, remote="webdva:siip", config_file=str(rclone_servers.conf))
    [line] = inspect_settings(rc)
    assert "'webdva'" in line and "webdav, sftp, s3" in line
    assert PASSWORD not in line
    assert inspect_settings(RcloneConfig(enabled=True, remote="webdav:siip",
                                         config_file=str(rclone_servers.conf))) == []
    with pytest.raises(DestinationError, match="'webdva' is not in the rclone") as err:
        RcloneDestination(rc).list()
    assert not err.value.retryable and "reconnect" not in str(err.value)


def test_wrong_credentials_are_not_retried(rclone_servers: RcloneServers,
                                           tmp_path: Path) -> None:
    conf = tmp_path / "wrong.conf"
    conf.write_text(rclone_servers.conf.read_text().replace(
        "shell_type", "key_use_agent = false\nshell_type").replace(
        "user = siip", "user = intruder"))
    for remote in ("sftp:siip", "webdav:siip"):
        dest = RcloneDestination(RcloneConfig(remote=remote, config_file=str(conf)))
        with pytest.raises(DestinationError, match="refused the credentials") as err:
            dest.list()
        assert not err.value.retryable


def test_no_secret_is_on_rclone_command_line(rclone_servers: RcloneServers, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """What `ps` shows while an upload runs: every process's command line."""
    monkeypatch.setenv("RCLONE_BWLIMIT", "1M")          # progress comes while it runs
    path, sha = make_archive(tmp_path, SID, 1_500_000)
    seen: list[str] = []

    def look(n: int) -> None:
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                seen.append(proc.joinpath("cmdline").read_bytes().decode(errors="replace"))
            except OSError:
                continue

    dest = RcloneDestination(RcloneConfig(remote=rclone_servers.by_kind["s3"].remote(),
                                          config_file=str(rclone_servers.conf)))
    dest.put(path, snapshot_id=SID, sha256=sha, progress=look)
    assert any("copyto" in line for line in seen)
    assert not [line for line in seen if PASSWORD in line or SECRET_KEY in line]


def test_rclone_check_lists_and_writes_a_probe(
        rclone_servers: RcloneServers, siip: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    server = rclone_servers.by_kind["webdav"]
    remote = server.remote()
    config = write_config(tmp_path / "c.toml", siip, tmp_path / "backups",
                          f'[rclone]\nenabled = true\nremote = "{remote}"\n'
                          f'config_file = "{rclone_servers.conf}"\n')
    assert main(["-c", str(config), "rclone", "check"]) == 0
    out = capsys.readouterr().out
    assert "holds 0 snapshot(s)" in out and "probe file" in out and "by its size" in out
    assert list(server.folder(remote.split(":", 1)[1]).iterdir()) == []   # probe removed

    assert main(["-c", str(config), "config", "check"]) == 0
    assert "rclone.remote" not in capsys.readouterr().err                 # the remote is there
    bad = config.read_text().replace(f'remote = "{remote}"', 'remote = "nas:siip"')
    config.write_text(bad)
    assert main(["-c", str(config), "rclone", "check"]) == 1
    err = capsys.readouterr().err
    assert "'nas'" in err and "rclone config" in err
    assert main(["-c", str(config), "config", "check"]) == 0
    assert "rclone: rclone.remote names the remote 'nas'" in capsys.readouterr().err


def test_a_stop_request_ends_rclone(rclone_servers: RcloneServers, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RCLONE_BWLIMIT", "1M")          # slow enough to be stopped mid-way
    path, sha = make_archive(tmp_path, SID, 4_000_000)
    stop = threading.Event()
    remote = rclone_servers.by_kind["webdav"].remote()
    dest = RcloneDestination(RcloneConfig(remote=remote, config_file=str(rclone_servers.conf)),
                             stop=stop)
    with pytest.raises(DestinationError, match="stopped") as err:
        dest.put(path, snapshot_id=SID, sha256=sha, progress=lambda n: stop.set())
    assert err.value.retryable
    stop.clear()
    assert dest.find(SID) is None


class Damaging(RcloneDestination):
    """Damages the stored upload behind rclone's back after the first ``times`` uploads,
    as a flaky disk would, keeping its size: only the hash can show it."""

    def __init__(self, cfg: RcloneConfig, stored: Path, times: int) -> None:
        super().__init__(cfg)
        self.stored, self.times = stored, times

    def _upload(self, archive: Path, partial: str, size: int, progress: Any) -> None:
        super()._upload(archive, partial, size, progress)
        if self.times:
            self.times -= 1
            with open(self.stored / partial, "r+b") as f:
                f.seek(1000)
                f.write(b"\x00rot\x00")


@pytest.mark.parametrize("kind", ["sftp", "s3"])
def test_a_bad_upload_is_deleted_and_sent_again_once(
        rclone_servers: RcloneServers, tmp_path: Path, kind: str) -> None:
    server = rclone_servers.by_kind[kind]
    path, sha = make_archive(tmp_path, SID, 300_000)
    for times, succeeds in ((1, True), (2, False)):
        remote = server.remote()
        stored = server.folder(remote.split(":", 1)[1])
        dest = Damaging(RcloneConfig(remote=remote, config_file=str(rclone_servers.conf)),
                        stored, times)
        sent: list[int] = []
        if succeeds:
            copy = dest.put(path, snapshot_id=SID, sha256=sha, progress=sent.append)
            assert sum(sent) == 2 * path.stat().st_size
            assert (stored / copy.name).read_bytes() == path.read_bytes()
        else:
            with pytest.raises(DestinationError, match="did not match the local archive 2 "
                                                       "times") as err:
                dest.put(path, snapshot_id=SID, sha256=sha)
            assert err.value.retryable
            assert dest.find(SID) is None
            assert not list(stored.glob("*.partial"))
