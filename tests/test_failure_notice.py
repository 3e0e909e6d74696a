"""Every failure of a run (`once`, the service's runs) or of the service's start reaches the
admin: an email in plain words and a heartbeat ``/fail``, against the real SMTP server of
tests/fakes/smtp.py and the Healthchecks stand-in of tests/fakes/healthchecks.py. A failing
notification never hides the failure it was about."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.healthchecks import CHECK_ID, Recorder
from tests.fakes.smtp import (
    IGNORE_AUTH_WARNING,
    TEST_PASSWORD,
    TEST_USER,
    SmtpTestServer,
    TlsFiles,
)
from tests.helpers import make_config, toml_table, wait_until, write_config
from watcher.backup.run import RunBusy, run_backup, run_lock
from watcher.config.settings import Config
from watcher.service.daemon import serve
from watcher.service.state_file import read_state
from watcher.state.lock import SERVICE_LOCK_FILE, FileLock

pytestmark = pytest.mark.filterwarnings(IGNORE_AUTH_WARNING)

PASSWORD_ENV = "SIIP_TEST_SMTP_PASSWORD"
def block_catalog(local: Path) -> None:
    """A catalog that cannot even be opened (a folder in its place): a damaged one is moved
    aside and rebuilt, so this is what still fails a run before its report exists."""
    (local / "catalog.sqlite3").mkdir()
FAIL = f"/ping/{CHECK_ID}/fail"
OK = f"/ping/{CHECK_ID}"
WAIT = 60.0  # a bound on a hang, not a measurement


@pytest.fixture
def smtp(tls: TlsFiles) -> Iterator[SmtpTestServer]:
    with SmtpTestServer(tls, "starttls") as server:
        yield server


@pytest.fixture(autouse=True)
def password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, TEST_PASSWORD)


def email_section(smtp: SmtpTestServer, tls: TlsFiles, **overrides: Any) -> dict[str, Any]:
    section: dict[str, Any] = {
        "enabled": True, "smtp_host": "127.0.0.1", "smtp_port": smtp.port,
        "security": "starttls", "username": TEST_USER, "password_env": PASSWORD_ENV,
        "ca_file": str(tls.ca_cert), "sender": "watcher@example.test",
        "to": ["admin@example.test"], "language": "en", "on": ["failure"],
        "timeout_seconds": 10}
    section.update(overrides)
    return section


def toml_sections(email: dict[str, Any], heartbeat_url: str) -> str:
    return toml_table("email", email) + toml_table("heartbeat", {"url": heartbeat_url})


def plain(smtp: SmtpTestServer, index: int = 0) -> tuple[str, str]:
    msg = smtp.received[index].message
    return str(msg["Subject"]), msg.get_body(("plain",)).get_content()


# --- `once` ---------------------------------------------------------------------------------


def test_once_on_an_unusable_catalog_mails_and_pings_fail(
        tmp_path: Path, siip: Path, smtp: SmtpTestServer, tls: TlsFiles, hc: Recorder,
        cli: Any) -> None:
    local = tmp_path / "backups"
    local.mkdir()
    block_catalog(local)
    config = write_config(tmp_path / "c.toml", siip, local,
                          toml_sections(email_section(smtp, tls), hc.url))

    once = cli("-c", str(config), "once", env={PASSWORD_ENV: TEST_PASSWORD})

    assert once.returncode == 1, once.stderr
    assert "Backup FAILED: the catalog" in once.stdout and "cannot be used" in once.stdout
    assert "may read and write it" in once.stdout  # what to do, in the run's own output
    assert "Traceback" not in once.stderr
    assert hc.paths == [FAIL]
    assert len(smtp.received) == 1
    subject, body = plain(smtp)
    assert subject.startswith("[SIIP Backup] FAILED siip")
    assert "What failed: the backup program's own record of its backups (the catalog) " \
           "cannot be read" in body
    assert "catalog.sqlite3" in body and "may read and write it" in body
    assert list(local.glob("*.tar.zst")) == []  # a run that failed this early stores nothing


def test_a_failing_notification_never_hides_the_original_error(
        tmp_path: Path, siip: Path, smtp: SmtpTestServer, tls: TlsFiles, hc: Recorder,
        cli: Any) -> None:
    local = tmp_path / "backups"
    local.mkdir()
    block_catalog(local)
    # a refused password and a deleted check: neither is retried, both fail for good
    config = write_config(tmp_path / "c.toml", siip, local,
                          toml_sections(email_section(smtp, tls),
                                        hc.url.replace(CHECK_ID, CHECK_ID + "-gone")))

    once = cli("-c", str(config), "once", "--json", env={PASSWORD_ENV: "Wr0ng-pass"})

    assert once.returncode == 1, once.stderr
    report = json.loads(once.stdout)  # still one JSON document: the run's own report
    assert report["status"] == "failed" and report["exit_code"] == 1
    assert report["errors"][0]["cause"] == "catalog"
    assert "cannot be used" in report["errors"][0]["message"]
    assert smtp.received == [] and hc.paths == [f"/ping/{CHECK_ID}-gone/fail"]
    assert "authentication failed" in once.stderr and "HTTP 404" in once.stderr
    assert "Traceback" not in once.stderr and CHECK_ID not in once.stderr


def test_a_backup_dir_that_cannot_be_created_mails_and_pings_fail(
        tmp_path: Path, siip: Path, smtp: SmtpTestServer, tls: TlsFiles,
        hc: Recorder) -> None:
    in_the_way = tmp_path / "a file, not a folder"
    in_the_way.write_text("x")
    cfg = make_config(siip, in_the_way / "backups", email=email_section(smtp, tls),
                      heartbeat={"url": hc.url})

    report = run_backup(cfg, trigger="interval")

    assert report.status == "failed" and report.errors[0].cause == "backup_dir"
    assert hc.paths == [FAIL]
    subject, body = plain(smtp)
    assert subject.startswith("[SIIP Backup] FAILED")
    assert "What failed: the folder that holds the backups cannot be used." in body


def test_a_run_kept_waiting_by_another_snapshot_mails_and_pings_fail(
        siip: Path, tmp_path: Path, smtp: SmtpTestServer, tls: TlsFiles,
        hc: Recorder) -> None:
    cfg = make_config(siip, tmp_path / "backups", email=email_section(smtp, tls),
                      heartbeat={"url": hc.url})
    cfg.local.dir.mkdir()
    with run_lock(cfg), pytest.raises(RunBusy) as busy:   # a `once` that never ends
        run_backup(cfg, trigger="interval", lock_timeout=0)

    assert "a snapshot is already running" in str(busy.value)  # the error itself is kept
    assert hc.paths == [FAIL]
    _, body = plain(smtp)
    assert "What failed: another backup was still running, so this one could not start." \
           in body


# --- the service ----------------------------------------------------------------------------


def service_config(siip: Path, local: Path, smtp: SmtpTestServer, tls: TlsFiles,
                   hc: Recorder, **schedule: Any) -> Config:
    values = {"interval_hours": 1.0, "debounce_seconds": 0.3, "max_delay_seconds": 5.0,
              "heavy_change_events": 5, "stop_timeout_seconds": 10.0, **schedule}
    return make_config(siip, local, email=email_section(smtp, tls), heartbeat={"url": hc.url},
                       schedule=values)


def test_service_start_on_an_unusable_catalog_mails_and_pings_fail(
        siip: Path, tmp_path: Path, smtp: SmtpTestServer, tls: TlsFiles,
        hc: Recorder) -> None:
    cfg = service_config(siip, tmp_path / "backups", smtp, tls, hc)
    cfg.local.dir.mkdir()
    block_catalog(cfg.local.dir)
    with FileLock(cfg.local.dir / SERVICE_LOCK_FILE):   # a service already running fine
        assert serve(cfg, stop_event=threading.Event()) == 2
    # its refused twin raises no alarm: a /fail would report the running service down
    assert hc.paths == [] and smtp.received == []

    assert serve(cfg, stop_event=threading.Event()) == 2

    assert hc.paths == [FAIL]
    subject, body = plain(smtp)
    assert subject.startswith("[SIIP Backup] FAILED siip")
    assert 'The backup service for "siip" could NOT start' in body
    assert "(the catalog) cannot be read" in body and "may read and write it" in body


def test_service_start_that_cannot_watch_mails_and_pings_fail(
        siip: Path, tmp_path: Path, smtp: SmtpTestServer, tls: TlsFiles,
        hc: Recorder) -> None:
    cfg = service_config(siip, tmp_path / "backups", smtp, tls, hc)
    shutil.rmtree(siip)  # the project folder moved away while the service was down

    assert serve(cfg, stop_event=threading.Event()) == 1

    assert hc.paths == [FAIL]
    _, body = plain(smtp)
    assert 'The backup service for "siip" could NOT start' in body
    assert "What failed: the service cannot watch the project folder for changes." in body
    assert "not an existing folder" in body  # the technical line, for the admin


def test_service_started_with_its_schedule_off_mails_and_pings_fail(
        siip: Path, tmp_path: Path, smtp: SmtpTestServer, tls: TlsFiles,
        hc: Recorder) -> None:
    cfg = service_config(siip, tmp_path / "backups", smtp, tls, hc, enabled=False)

    assert serve(cfg, stop_event=threading.Event()) == 2

    assert hc.paths == [FAIL]
    _, body = plain(smtp)
    assert 'The backup service for "siip" could NOT start' in body
    assert "schedule.enabled = false" in body


def test_a_scheduled_run_that_fails_before_its_report_mails_and_pings_fail(
        siip: Path, tmp_path: Path, smtp: SmtpTestServer, tls: TlsFiles,
        hc: Recorder) -> None:
    cfg = service_config(siip, tmp_path / "backups", smtp, tls, hc)
    stop = threading.Event()
    codes: list[int] = []
    service = threading.Thread(target=lambda: codes.append(serve(cfg, stop_event=stop)),
                               daemon=True)
    service.start()
    try:
        wait_until(lambda: hc.paths == [OK], "the first run's heartbeat", WAIT)
        assert smtp.received == []  # email.on = failure only
        # once the service has settled it leaves the catalog alone until the next change, so
        # the damage is not undone by a write of its own
        wait_until(lambda: (s := read_state(cfg.local.dir)) and s["running_since"] is None
                   and s["next_check_at"] == s["next_interval_at"], "the service to settle",
                   WAIT)
        (cfg.local.dir / "catalog.sqlite3").unlink()
        block_catalog(cfg.local.dir)
        for i in range(10):  # heavy change: the service runs again after the debounce
            (siip / f"nuevo {i}.txt").write_text(str(i))
        wait_until(lambda: smtp.received, "the failure email", WAIT)
        wait_until(lambda: FAIL in hc.paths, "the failure heartbeat", WAIT)
    finally:
        stop.set()
        service.join(WAIT)
    assert not service.is_alive() and codes == [0]
    subject, body = plain(smtp)
    assert subject.startswith("[SIIP Backup] FAILED siip")
    assert 'The backup of "siip" FAILED' in body
    assert "(the catalog) cannot be read" in body
