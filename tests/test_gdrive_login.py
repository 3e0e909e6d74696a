"""`drive login`: the installed-app sign-in (google-auth-oauthlib) against the local server's
token endpoint, headless (address pasted back) and through the loopback redirect."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from scripts.fakedrive import DriveServer
from tests.fakes.drive import CLIENT_ID, client_file, drive_settings, make_archive, make_drive
from tests.helpers import make_config
from watcher.config.settings import Config, DriveConfig
from watcher.destinations.gdrive.auth import LoginError, load_user_token, login, parse_pasted
from watcher.destinations.gdrive.setup import drive_login


@pytest.fixture
def server(drive_server: DriveServer) -> DriveServer:
    """The Drive server, by the short name these tests use throughout."""
    return drive_server


def oauth_config(server: DriveServer, tmp: Path, **kw: str) -> DriveConfig:
    return DriveConfig(enabled=False, auth="oauth",
                       credentials_file=str(client_file(server, tmp / "client.json")),
                       token_file=str(tmp / "private" / "token.json"), api_root=server.url,
                       **kw)


class Browser:
    """The person at a browser: reads the printed address, consents, and comes back."""

    def __init__(self, server: DriveServer) -> None:
        self.server = server
        self.said: list[str] = []

    def say(self, line: str) -> None:
        self.said.append(line)

    def consent(self) -> str:
        """The address the browser ends on after the consent screen."""
        url = next(line.strip() for line in self.said if "client_id=" in line)
        q = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        assert q["scope"].endswith("/auth/drive.file") and q["access_type"] == "offline"
        assert q["redirect_uri"].startswith("http://127.0.0.1:")
        code = self.server.state.authorize(q["client_id"], q["redirect_uri"],
                                           q.get("code_challenge", ""))
        return f"{q['redirect_uri']}?state={q['state']}&code={code}&scope={q['scope']}"

    def pasting(self, transform: Callable[[str], str] = lambda s: s) -> Callable[[str], str]:
        return lambda prompt: transform(self.consent())


def test_headless_login_with_the_pasted_address(server: DriveServer, tmp_path: Path) -> None:
    cfg = oauth_config(server, tmp_path)
    browser = Browser(server)
    login(cfg, ask=browser.pasting(), say=browser.say)

    token = Path(cfg.token_file)
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert stat.S_IMODE(token.parent.stat().st_mode) == 0o700
    saved = json.loads(token.read_text())
    assert saved["refresh_token"].startswith("1//") and "token" not in saved
    assert saved["token_uri"] == server.token_uri

    # the stored sign-in works for uploads (drive.file sees the folder the app creates)
    dest = make_drive(cfg)
    folder = dest.create_folder("siip-watcher backups")
    dest = make_drive(replace(cfg, folder_id=folder))
    path, sha = make_archive(tmp_path, "siip-20260101T000000Z", 1000)
    dest.put(path, snapshot_id="siip-20260101T000000Z", sha256=sha)
    assert load_user_token(token).refresh_token == saved["refresh_token"]


def test_login_through_the_loopback_redirect(server: DriveServer, tmp_path: Path) -> None:
    cfg = oauth_config(server, tmp_path)
    browser = Browser(server)
    no_terminal = threading.Event()

    def redirect_then_no_paste(prompt: str) -> str:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(browser.consent(), timeout=5) as resp:
            assert b"sign-in received" in resp.read()
        no_terminal.wait(5)
        raise EOFError

    try:
        login(cfg, ask=redirect_then_no_paste, say=browser.say)
    finally:
        no_terminal.set()
    assert load_user_token(Path(cfg.token_file)).client_id == CLIENT_ID


def test_address_from_another_attempt_is_refused(server: DriveServer, tmp_path: Path) -> None:
    cfg = oauth_config(server, tmp_path)
    browser = Browser(server)
    with pytest.raises(LoginError, match="another sign-in attempt"):
        login(cfg, ask=browser.pasting(lambda u: u.replace("state=", "state=x")),
              say=browser.say)
    assert not Path(cfg.token_file).exists()


def test_code_the_token_endpoint_rejects(server: DriveServer, tmp_path: Path) -> None:
    cfg = oauth_config(server, tmp_path)
    browser = Browser(server)
    with pytest.raises(LoginError, match="did not accept the sign-in"):
        login(cfg, ask=browser.pasting(lambda u: u.replace("code=", "code=forged")),
              say=browser.say)


def test_parse_pasted() -> None:
    assert parse_pasted("4/abc", "s1") == "4/abc"
    assert parse_pasted("http://127.0.0.1:5/?state=s1&code=4/abc&scope=x", "s1") == "4/abc"
    assert parse_pasted("/?code=4/abc&state=s1", "s1") == "4/abc"
    with pytest.raises(LoginError, match="not completed"):
        parse_pasted("http://127.0.0.1:5/?error=access_denied&state=s1", "s1")
    with pytest.raises(LoginError, match="nothing was pasted"):
        parse_pasted("  ", "s1")


def test_login_refuses_service_accounts_and_web_clients(server: DriveServer,
                                                        tmp_path: Path) -> None:
    cfg = oauth_config(server, tmp_path)
    with pytest.raises(LoginError, match="only for drive.auth"):
        login(replace(cfg, auth="service_account"))
    web = tmp_path / "web.json"
    web.write_text(json.dumps({"web": {"client_id": "x"}}))
    with pytest.raises(LoginError, match="Desktop app"):
        login(replace(cfg, credentials_file=str(web)))


def full_config(server: DriveServer, tmp: Path, folder_id: str = "") -> Config:
    d = oauth_config(server, tmp)
    return make_config(tmp, tmp / "b", check_paths=False,
                       drive={**drive_settings(d), "folder_id": folder_id})


def test_drive_login_creates_the_folder_and_prints_the_line(server: DriveServer,
                                                            tmp_path: Path) -> None:
    cfg = full_config(server, tmp_path)
    browser = Browser(server)
    folder = drive_login(cfg, ask=browser.pasting(), say=browser.say)
    assert server.state.files[folder].name == "siip-watcher backups (siip)"
    assert f'folder_id = "{folder}"' in "\n".join(browser.said)


def test_drive_login_explains_a_folder_made_by_hand(server: DriveServer,
                                                    tmp_path: Path) -> None:
    by_hand = server.state.add_folder("made in the web UI")
    cfg = full_config(server, tmp_path, folder_id=by_hand)
    browser = Browser(server)
    with pytest.raises(Exception, match="only sees folders it created"):
        drive_login(cfg, ask=browser.pasting(), say=browser.say)
    assert os.path.exists(cfg.drive.token_file)      # the sign-in itself is kept


def test_cli_drive_login_in_a_real_process(server: DriveServer, tmp_path: Path) -> None:
    """`siip-watcher drive login` as the admin runs it on a headless server: the address on
    stdout, the browser's final address pasted on stdin, the folder line printed."""
    client = client_file(server, tmp_path / "client.json")
    config = tmp_path / "siip-watcher.toml"
    config.write_text(f"""
[source]
root = "{tmp_path / 'srv'}"
[local]
dir = "{tmp_path / 'backups'}"
[drive]
enabled = true
credentials_file = "{client}"
token_file = "{tmp_path / 'token.json'}"
api_root = "{server.url}"
""")
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    proc = subprocess.Popen([sys.executable, "-m", "watcher", "-c", str(config), "drive",
                             "login"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env,
                            cwd=Path(__file__).resolve().parent.parent)
    assert proc.stdout is not None and proc.stdin is not None
    browser = Browser(server)
    for line in proc.stdout:
        browser.say(line)
        if "client_id=" in line:
            break
    proc.stdin.write(browser.consent() + "\n")
    proc.stdin.flush()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    folder = out.split('folder_id = "')[1].split('"')[0]
    assert server.state.files[folder].mime_type == "application/vnd.google-apps.folder"
    assert stat.S_IMODE((tmp_path / "token.json").stat().st_mode) == 0o600
    assert "refresh_token" not in out + err and "1//" not in out + err
