"""The monitor page over plain HTTP (issue 13): a real `siip-watcher start` on 127.0.0.1
answers the page, the status JSON, the metrics and the backup button, with its security
headers, and refuses what it must. The browser side is tests/test_web_browser.py."""

from __future__ import annotations

import json
import re
import socket
import string
import subprocess
import sys
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.monitor import MonitorService, free_port, http, monitor_with_folder
from tests.fakes.service import FakeRun, Running
from tests.helpers import clean_env, make_config, toml_table, wait_until, write_config
from watcher.config.settings import ConfigError
from watcher.state.catalog import Catalog
from watcher.web.texts import WEB_TEXTS

TOKEN = "correct-horse-battery-staple-7f3a9c"


@pytest.fixture(scope="module")
def open_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MonitorService]:
    """The service with the page on loopback and no token, after its first snapshot."""
    with monitor_with_folder(tmp_path_factory.mktemp("web-open")) as svc:
        yield svc


@pytest.fixture(scope="module")
def token_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MonitorService]:
    """The service with an access token (from the environment)."""
    base = tmp_path_factory.mktemp("web-token")
    svc = MonitorService(base, web={"token_env": "MONITOR_TOKEN"},
                         env={"MONITOR_TOKEN": TOKEN})
    svc.wait_ready()
    yield svc
    assert svc.stop() == 0, svc.log()


def _csrf(page: str) -> str:
    found = re.search(r'data-csrf="([0-9a-f]+)"', page)
    assert found, page[:500]
    return found.group(1)


def _runs(svc: MonitorService) -> int:
    return sum(Catalog(svc.local).run_counts().values())


# --- headers and the page -------------------------------------------------------------------


def test_every_answer_has_the_security_headers(open_service: MonitorService) -> None:
    for path in ("/", "/view", "/api/status", "/metrics", "/static/monitor.js", "/nothing"):
        answer = http(open_service.url + path)
        csp = answer.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp, path
        assert "frame-ancestors 'none'" in csp, path
        assert answer.headers["X-Content-Type-Options"] == "nosniff", path
    assert http(open_service.url + "/nothing").status == 404


def test_page_is_spanish_by_default_and_english_on_request(open_service: MonitorService
                                                           ) -> None:
    es = http(open_service.url + "/").text
    assert '<html lang="es">' in es and "Respaldar ahora" in es
    en = http(open_service.url + "/?lang=en").text
    assert '<html lang="en">' in en and "Back up now" in en and "Respaldar" not in en
    newest = Catalog(open_service.local).newest_snapshot()
    assert newest is not None and f'data-id="{newest.id}"' in es
    # the page loads nothing from elsewhere and has no inline script or style
    assert not re.search(r'(src|href)="(https?:)?//', es)
    assert "<script>" not in es and " style=" not in es and "<style" not in es
    assert 'data-destination="folder"' in es


def test_api_status_is_status_json(open_service: MonitorService) -> None:
    def both() -> tuple[str, str]:
        api = http(open_service.url + "/api/status")
        assert api.headers["Content-Type"].startswith("application/json")
        cli = subprocess.run([sys.executable, "-m", "watcher", "-c", str(open_service.config),
                              "status", "--json"], env=clean_env(), capture_output=True,
                             text=True, timeout=60, check=True)
        # the same bytes, but for the time each was read
        ours, theirs = (re.sub(r'"checked_at": "[^"]*"', '"checked_at": ""', text)
                        for text in (api.text, cli.stdout))
        return ours, theirs

    # the service may rewrite its state file between the two reads (it settles after a run)
    ours, theirs = wait_until(lambda: (pair := both())[0] == pair[1] and pair,
                              "the same status from both", detail=lambda: str(both()))
    assert '"checked_at": ""' in ours
    status = json.loads(ours)
    assert status["running"] is True and status["last_snapshot"] is not None


def test_metrics_names_and_values(open_service: MonitorService) -> None:
    answer = http(open_service.url + "/metrics")
    assert answer.headers["Content-Type"].startswith("text/plain")
    text = answer.text
    for name in ("siip_watcher_last_success_timestamp_seconds",
                 "siip_watcher_last_run_duration_seconds", "siip_watcher_last_snapshot_bytes",
                 "siip_watcher_changes_pending"):
        assert re.search(rf"^{name} [0-9.e+]+$", text, re.M), name
    assert re.search(r'^siip_watcher_upload_queue_length\{destination="folder"\} 0\.0$', text,
                     re.M)
    ok = re.search(r'^siip_watcher_runs_total\{result="ok"\} ([0-9.]+)$', text, re.M)
    assert ok and float(ok.group(1)) >= 1
    size = re.search(r"^siip_watcher_last_snapshot_bytes ([0-9.e+]+)$", text, re.M)
    newest = Catalog(open_service.local).newest_snapshot()
    assert size and newest and float(size.group(1)) == newest.size


# --- the button -----------------------------------------------------------------------------


def test_backup_without_the_csrf_token_is_refused_and_nothing_runs(
        open_service: MonitorService) -> None:
    before = _runs(open_service)
    for headers in ({}, {"X-CSRF-Token": "0" * 64}, {"Authorization": f"Bearer {TOKEN}"}):
        answer = http(open_service.url + "/api/backup", method="POST", headers=headers)
        assert answer.status == 403, headers
        assert "CSRF" in answer.json()["error"]
    assert http(open_service.url + "/api/backup").status == 405   # GET never runs anything
    assert _runs(open_service) == before
    assert "backup asked for" not in open_service.log()


def test_backup_with_the_page_token_runs_once(open_service: MonitorService) -> None:
    csrf = _csrf(http(open_service.url + "/").text)
    before = Catalog(open_service.local).snapshot_count()
    answer = http(open_service.url + "/api/backup?lang=en", method="POST",
                  headers={"X-CSRF-Token": csrf})
    assert answer.status == 202, answer.text
    assert answer.json() == {"state": "started", "message": "Backup asked for: it starts now."}
    wait_until(lambda: Catalog(open_service.local).snapshot_count() > before,
               "the asked-for snapshot", detail=open_service.log)
    assert "trigger manual" in open_service.log()


def test_a_foreign_host_name_is_refused(open_service: MonitorService) -> None:
    # DNS rebinding: a site whose name points at 127.0.0.1 must not read the page
    answer = http(open_service.url + "/api/status",
                  headers={"Host": f"attacker.example:{open_service.port}"})
    assert answer.status == 403
    assert http(open_service.url + "/", headers={"Host": "localhost"}).status == 200


def test_a_run_in_progress_is_reported_not_doubled(siip: Path, tmp_path: Path,
                                                   services: Callable[..., Running]) -> None:
    port = free_port()
    cfg = make_config(siip, tmp_path / "backups",
                      web={"enabled": True, "listen": f"127.0.0.1:{port}"},
                      schedule={"interval_hours": 24})
    fake = FakeRun(cfg)
    services(cfg, fake)
    wait_until(lambda: fake.triggers() == ["start"], "the start run")
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: 'data-running="0"' in http(url + "/view").text, "the start run's end")
    csrf = _csrf(http(url + "/").text)
    fake.hold.clear()   # the next run stays open until the test lets it go
    first = http(url + "/api/backup", method="POST", headers={"X-CSRF-Token": csrf})
    assert first.status == 202
    wait_until(lambda: fake.entered.is_set() and len(fake.calls) == 2, "the asked-for run")
    second = http(url + "/api/backup?lang=en", method="POST", headers={"X-CSRF-Token": csrf})
    assert second.status == 409
    assert second.json()["state"] == "running" and second.json()["trigger"] == "manual"
    assert "already in progress" in second.json()["message"]
    assert 'data-running="1"' in http(url + "/view").text
    fake.hold.set()
    wait_until(lambda: 'data-running="0"' in http(url + "/view").text, "the run's end")
    assert fake.triggers() == ["start", "manual"]


# --- the access token -----------------------------------------------------------------------


def test_a_token_guards_everything_and_never_shows(token_service: MonitorService) -> None:
    url = token_service.url
    page = http(url + "/")
    assert page.status == 200 and 'name="token"' in page.text and "Respaldar" not in page.text
    for path in ("/api/status", "/metrics", "/view"):
        assert http(url + path).status == 401, path
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    before = _runs(token_service)
    assert http(url + "/api/backup", method="POST").status == 403
    assert http(url + "/api/backup", method="POST",
                headers={"Authorization": "Bearer wrong"}).status == 403
    assert _runs(token_service) == before
    for path in ("/api/status", "/metrics"):
        answer = http(url + path, headers=bearer)
        assert answer.status == 200, path
        assert TOKEN not in answer.text
    assert http(url + "/api/backup", method="POST", headers=bearer).status in (202, 409)
    assert TOKEN not in token_service.log()


def test_sign_in_keeps_a_strict_session_cookie(token_service: MonitorService) -> None:
    url = token_service.url
    wrong = http(url + "/login", method="POST", data=b"token=nope")
    assert wrong.status == 403 and "Token incorrecto" in wrong.text
    right = http(url + "/login?lang=en", method="POST",
                 data=urllib.parse.urlencode({"token": TOKEN}).encode())
    assert right.status == 303
    cookie = right.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
    session = {"Cookie": cookie.split(";")[0]}
    page = http(url + "/", headers=session)
    assert "Respaldar ahora" in page.text and TOKEN not in page.text
    # the cookie alone does not start a run: the page's CSRF token must come with it
    assert http(url + "/api/backup", method="POST", headers=session).status == 403
    csrf = _csrf(page.text)
    ok = http(url + "/api/backup", method="POST", headers={**session, "X-CSRF-Token": csrf})
    assert ok.status in (202, 409)
    # another session's CSRF token is not this one's
    assert csrf != _csrf(_page_for_new_session(url))
    out = http(url + "/logout", method="POST", headers=session,
               data=urllib.parse.urlencode({"csrf": csrf}).encode())
    assert out.status == 303
    assert http(url + "/api/status", headers=session).status == 401


def _page_for_new_session(url: str) -> str:
    login = http(url + "/login", method="POST",
                 data=urllib.parse.urlencode({"token": TOKEN}).encode())
    return http(url + "/", headers={"Cookie": login.headers["Set-Cookie"].split(";")[0]}).text


def test_listening_beyond_loopback_needs_a_token(
        siip: Path, tmp_path: Path, cli: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    config = write_config(tmp_path / "c.toml", siip, tmp_path / "backups",
                          toml_table("web", {"listen": f"0.0.0.0:{free_port()}"}))
    proc = cli("-c", str(config), "start", timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "web.listen" in proc.stderr and "SIIP_WATCHER_WEB_TOKEN" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "backups").exists()


# --- configuration and words ----------------------------------------------------------------


@pytest.mark.parametrize(("web", "key"), [
    ({"listen": "8765"}, "web.listen"),
    ({"listen": "127.0.0.1:99999"}, "web.listen"),
    ({"language": "fr"}, "web.language"),
])
def test_bad_web_settings_are_refused(siip: Path, tmp_path: Path, web: dict[str, Any],
                                      key: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(key)):
        make_config(siip, tmp_path / "b", web=web)


def test_page_language_follows_the_email_unless_set(siip: Path, tmp_path: Path) -> None:
    cfg = make_config(siip, tmp_path / "b", email={"language": "en"})
    assert cfg.web.page_language(cfg.email.language) == "en"
    cfg = make_config(siip, tmp_path / "b", email={"language": "en"}, web={"language": "es"})
    assert cfg.web.page_language(cfg.email.language) == "es"


def test_every_page_text_exists_in_both_languages_with_the_same_placeholders() -> None:
    def fields(s: str) -> set[str]:
        return {f for _, f, _, _ in string.Formatter().parse(s) if f}

    assert WEB_TEXTS["es"].keys() == WEB_TEXTS["en"].keys()
    for key, es in WEB_TEXTS["es"].items():
        assert fields(es) == fields(WEB_TEXTS["en"][key]), key


def test_a_busy_address_stops_the_start(
        siip: Path, tmp_path: Path, cli: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(tmp_path / "c.toml", siip, tmp_path / "backups",
                              toml_table("web", {"listen": f"127.0.0.1:{port}"}))
        proc = cli("-c", str(config), "start", timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert f"web.listen = 127.0.0.1:{port}" in proc.stderr
    assert "choose another web.listen" in proc.stderr
