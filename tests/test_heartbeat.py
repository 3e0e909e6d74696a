"""The heartbeat against a small real HTTP server on 127.0.0.1 that records what it was asked.

The URL's path stands for a Healthchecks check id: a secret that must never reach a log line.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.fakes.healthchecks import CHECK_ID, Recorder
from tests.fakes.smtp import SilentServer, closed_port
from tests.helpers import make_config
from watcher.backup.report import Problem, RunReport, SnapshotInfo
from watcher.config.settings import Config
from watcher.notify import notify
from watcher.notify.heartbeat import ping, ping_url
from watcher.retry import NO_JITTER, RetryPolicy
from watcher.state.catalog import Catalog

FAST = RetryPolicy(attempts=3, base=0.05, cap=0.05, jitter=NO_JITTER)
STARTED = datetime(2026, 11, 27, 18, 15, tzinfo=UTC)


def make_cfg(tmp_path: Path, url: str) -> Config:
    (tmp_path / "backups").mkdir(exist_ok=True)
    return make_config(tmp_path, tmp_path / "backups", check_paths=False,
                       heartbeat={"url": url})


def report(ok: bool) -> RunReport:
    r = RunReport(name="siip", trigger="interval", started_at=STARTED)
    if ok:
        r.snapshot = SnapshotInfo("siip-20261127T181500Z", "/b/siip-20261127T181500Z.tar.zst",
                                  STARTED, 10, "0" * 64, 1, 20)
    else:
        r.errors.append(Problem("disk full", "free some space"))
    r.finish(STARTED + timedelta(seconds=2))
    return r


def test_good_run_pings_the_url_and_failed_run_pings_fail(
        tmp_path: Path, hc: Recorder, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="watcher")
    cfg = make_cfg(tmp_path, hc.url)
    catalog = Catalog(cfg.local.dir)

    notify(cfg, report(True), catalog, 1, retry=FAST)
    assert catalog.last_notifications()["heartbeat"].state == "sent"
    notify(cfg, report(False), catalog, 2, email=False, retry=FAST)

    assert hc.paths == [f"/ping/{CHECK_ID}", f"/ping/{CHECK_ID}/fail"]
    row = catalog.last_notifications().get("heartbeat")
    assert row is not None and row.run_id == 2 and row.state == "sent"
    assert "heartbeat (success) sent to http://127.0.0.1/…(redacted)" in caplog.text
    assert "heartbeat (failure) sent" in caplog.text
    assert CHECK_ID not in caplog.text


def test_a_wrong_url_is_logged_without_the_check_id_and_not_retried(
        tmp_path: Path, hc: Recorder, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    wrong = hc.url.replace(CHECK_ID, CHECK_ID + "-typo")
    cfg = make_cfg(tmp_path, wrong)
    catalog = Catalog(cfg.local.dir)
    r = report(True)

    notify(cfg, r, catalog, 5, retry=FAST)

    assert r.status == "ok" and r.exit_code == 0
    assert hc.paths == [f"/ping/{CHECK_ID}-typo"]   # a 404 is not worth a second try
    row = catalog.last_notifications().get("heartbeat")
    assert row is not None and row.state == "failed"
    assert "HTTP 404" in row.error and "heartbeat.url" in row.error
    out, err = capsys.readouterr()
    for text in (caplog.text, out, err, str(row)):
        assert CHECK_ID not in text


def test_unreachable_heartbeat_is_retried_then_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    url = f"http://127.0.0.1:{closed_port()}/ping/{CHECK_ID}"
    reason = ping(url, ok=True, retry=FAST)
    assert reason == "connection refused by the heartbeat server"
    tries = [r for r in caplog.records if "not sent" in r.getMessage()]
    assert len(tries) == 3 and "gave up after 3 tries" in tries[-1].getMessage()
    assert CHECK_ID not in caplog.text


def test_a_silent_heartbeat_server_times_out(caplog: pytest.LogCaptureFixture) -> None:
    with SilentServer() as silent:
        reason = ping(f"http://127.0.0.1:{silent.port}/ping/{CHECK_ID}", ok=False,
                      timeout=0.3, retry=RetryPolicy(attempts=1))
    assert reason is not None and reason.startswith("timeout")
    assert CHECK_ID not in caplog.text


def test_fail_url_keeps_the_query_and_tolerates_a_trailing_slash() -> None:
    assert ping_url("https://hc-ping.com/abc/", False) == "https://hc-ping.com/abc/fail"
    assert ping_url("https://hc.example/ping/abc?rid=1", False) == \
        "https://hc.example/ping/abc/fail?rid=1"
    assert ping_url("https://hc-ping.com/abc", True) == "https://hc-ping.com/abc"
