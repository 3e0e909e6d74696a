"""The heartbeat against a small real HTTP server on 127.0.0.1 that records what it was asked.

The URL's path stands for a Healthchecks check id: a secret that must never reach a log line.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.smtp import SilentServer, closed_port
from tests.helpers import make_config
from watcher.backup.report import Problem, RunReport, SnapshotInfo
from watcher.config.settings import Config
from watcher.notify import notify
from watcher.notify.heartbeat import ping, ping_url
from watcher.retry import NO_JITTER, RetryPolicy
from watcher.state.catalog import Catalog

CHECK_ID = "5f1c2a9e-0b7d-4c1e-9a55-secretcheck"
FAST = RetryPolicy(attempts=3, base=0.05, cap=0.05, jitter=NO_JITTER)
STARTED = datetime(2026, 11, 27, 18, 15, tzinfo=UTC)


class Recorder:
    """A tiny Healthchecks stand-in: 200 for /ping/<id> and /ping/<id>/fail, else 404."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                recorder.paths.append(self.path)
                known = self.path.split("?")[0] in (f"/ping/{CHECK_ID}",
                                                    f"/ping/{CHECK_ID}/fail")
                body = b"OK" if known else b"not found"
                self.send_response(200 if known else 404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep the test output clean

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/ping/{CHECK_ID}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)

    def __enter__(self) -> Recorder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hc() -> Iterator[Recorder]:
    with Recorder() as recorder:
        yield recorder


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
