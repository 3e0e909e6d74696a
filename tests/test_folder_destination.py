"""The [folder] destination (a mounted NAS share or a USB disk), end to end in real processes:
`once` stores the copy in the folder, `list`/`restore --from folder` read it back, and a
folder that goes missing after `config check` leaves the copy queued (exit 3, in `status` and
in the email) until the next run sends it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest

from tests.fakes.smtp import (
    IGNORE_AUTH_WARNING,
    TEST_PASSWORD,
    TEST_USER,
    SmtpTestServer,
    make_tls_files,
)
from tests.helpers import assert_restored, write_config
from watcher.config.settings import ConfigError, from_mapping

Cli = Callable[..., CompletedProcess[str]]

PASSWORD_ENV = "SIIP_TEST_SMTP_PASSWORD"


def folder_section(path: Path | str) -> str:
    return f'[folder]\nenabled = true\npath = "{path}"\n'


def run_json(cli: Cli, config: Path, *args: str, env: dict[str, str] | None = None
             ) -> tuple[int, Any]:
    proc = cli("-c", str(config), *args, "--json", env=env)
    assert proc.stdout, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def test_once_copies_into_the_folder_and_another_machine_restores_from_it(
        siip: Path, tmp_path: Path, cli: Cli) -> None:
    nas = tmp_path / "nas"
    nas.mkdir()
    config = write_config(tmp_path / "server.toml", siip, tmp_path / "backups",
                          folder_section(nas))
    assert cli("-c", str(config), "config", "check").returncode == 0

    code, report = run_json(cli, config, "once", "--no-email")
    assert code == 0, report
    [dest] = report["destinations"]
    assert (dest["name"], dest["state"]) == ("folder", "uploaded")
    sid = report["snapshot"]["id"]
    copy = nas / f"{sid}.tar.zst"
    assert copy.read_bytes() == Path(report["snapshot"]["file"]).read_bytes()
    assert (nas / f"{sid}.tar.zst.sha256").read_text() == \
        f"{report['snapshot']['sha256']}  {copy.name}\n"

    code, local = run_json(cli, config, "list")
    assert code == 0 and [r["stored_at"] for r in local] == [["local", "folder"]]

    # another machine mounts the same share: its own local dir is empty
    fresh = tmp_path / "new-machine"
    (fresh / "siip").mkdir(parents=True)
    config_b = write_config(tmp_path / "new.toml", fresh / "siip", fresh / "backups",
                            folder_section(nas))
    code, listed = run_json(cli, config_b, "list", "--from", "folder")
    assert code == 0 and [(r["id"], r["stored_at"]) for r in listed] == [(sid, ["folder"])]
    verified = cli("-c", str(config_b), "verify", "latest", "--from", "folder")
    assert verified.returncode == 0 and f"{sid}: OK" in verified.stdout, verified.stderr
    target = tmp_path / "restored"
    restored = cli("-c", str(config_b), "restore", "latest", "--from", "folder", "--to",
                   str(target))
    assert restored.returncode == 0, restored.stderr
    assert sid in restored.stdout
    assert_restored(target, siip)
    assert sorted(p.name for p in nas.iterdir()) == [copy.name, copy.name + ".sha256"]


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[tuple[SmtpTestServer, str]]:
    (tmp_path / "tls").mkdir()
    tls = make_tls_files(tmp_path / "tls")
    with SmtpTestServer(tls, "starttls") as server:
        yield server, (f'[email]\nenabled = true\nsmtp_host = "127.0.0.1"\n'
                       f'smtp_port = {server.port}\nusername = "{TEST_USER}"\n'
                       f'password_env = "{PASSWORD_ENV}"\nsender = "watcher@example.test"\n'
                       f'to = ["admin@example.test"]\nlanguage = "en"\n'
                       f'ca_file = "{tls.ca_cert}"\n')


@pytest.mark.filterwarnings(IGNORE_AUTH_WARNING)
def test_a_folder_missing_at_run_time_queues_the_copy_and_the_next_run_sends_it(
        siip: Path, tmp_path: Path, cli: Cli, smtp: tuple[SmtpTestServer, str]) -> None:
    server, email = smtp
    env = {PASSWORD_ENV: TEST_PASSWORD}
    nas = tmp_path / "mnt" / "nas"
    nas.mkdir(parents=True)
    config = write_config(tmp_path / "c.toml", siip, tmp_path / "backups",
                          folder_section(nas) + email)
    assert cli("-c", str(config), "config", "check", env=env).returncode == 0

    nas.rmdir()                                   # the share is unmounted after the check
    code, first = run_json(cli, config, "once", env=env)
    assert code == 3, first
    [dest] = first["destinations"]
    assert (dest["name"], dest["state"]) == ("folder", "pending")
    assert str(nas) in dest["error"] and "mounted" in dest["error"]
    assert not nas.exists()                       # never created on the local disk
    queued = first["snapshot"]["id"]
    print("PEEK", json.dumps(first["destinations"]), json.dumps(first["warnings"]))

    code, status = run_json(cli, config, "status")
    assert code == 0
    assert [(i["snapshot"], i["destination"], i["state"]) for i in status["uploads"]["items"]] \
        == [(queued, "folder", "pending")]
    [mail] = server.received
    body = mail.message.get_body(("plain",))
    assert body is not None and "folder: " in body.get_content()
    assert "WARNING" in mail.message["Subject"]
    print("PEEK", body.get_content())

    # now `config check` says what is wrong, in one line
    check = cli("-c", str(config), "config", "check", env=env)
    lines = [line for line in check.stderr.splitlines() if line.strip()]
    assert check.returncode == 2 and len(lines) == 1
    assert "folder.path" in lines[0] and "mounted" in lines[0]

    nas.mkdir()                                    # mounted again
    code, second = run_json(cli, config, "once", "--no-email", env=env)
    assert code == 0, second
    sent = {(d["snapshot_id"], d["state"]) for d in second["destinations"]}
    assert sent == {(queued, "uploaded"), (second["snapshot"]["id"], "uploaded")}
    assert (nas / f"{queued}.tar.zst").is_file()
    code, status = run_json(cli, config, "status")
    assert status["uploads"]["items"] == []


@pytest.mark.parametrize(("folder", "expected"), [
    ({"enabled": True}, "folder.path: expected the folder to copy each snapshot into"),
    ({"enabled": True, "path": "backups"}, "folder.path: expected a folder outside local.dir"),
    ({"enabled": True, "path": "backups/../backups/copies"}, "outside local.dir"),
    ({"enabled": True, "path": "nowhere"}, "folder.path: expected an existing folder"),
])
def test_folder_settings_are_checked_in_one_line(tmp_path: Path, folder: dict[str, Any],
                                                 expected: str) -> None:
    (tmp_path / "siip").mkdir()
    path = tmp_path / "c.toml"
    raw = {"source": {"root": "siip"}, "local": {"dir": "backups"}, "folder": folder}
    with pytest.raises(ConfigError) as err:
        from_mapping(raw, source=path, environ={}, check_reachable=True)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path}: ") and expected in message


def test_folder_path_is_relative_to_the_file_and_may_come_from_the_environment(
        tmp_path: Path) -> None:
    (tmp_path / "siip").mkdir()
    (tmp_path / "usb").mkdir()
    raw = {"source": {"root": "siip"}, "local": {"dir": "backups"},
           "folder": {"enabled": True, "path": "usb"}}
    cfg = from_mapping(raw, source=tmp_path / "c.toml", environ={}, check_reachable=True)
    assert cfg.folder.path == str(tmp_path / "usb")
    env = {"SIIP_WATCHER_FOLDER_ENABLED": "false", "SIIP_WATCHER_FOLDER_PATH": "/mnt/x"}
    cfg = from_mapping(raw, source=tmp_path / "c.toml", environ=env, check_reachable=True)
    assert (cfg.folder.enabled, cfg.folder.path) == (False, "/mnt/x")


def test_from_folder_needs_a_path(tmp_path: Path, siip: Path, cli: Cli) -> None:
    config = write_config(tmp_path / "c.toml", siip, tmp_path / "backups")
    proc = cli("-c", str(config), "list", "--from", "folder")
    assert proc.returncode == 2 and "folder.path is not set" in proc.stderr
