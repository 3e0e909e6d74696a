"""The monitor page's HTML and chart as pure functions of a View (issue 13): what each part
says in each language, escaping, and the chart's shapes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from watcher.backup.report import Problem
from watcher.state.catalog import RunPoint
from watcher.web.chart import render_chart
from watcher.web.metrics import families
from watcher.web.page import render_main, render_page
from watcher.web.view import DestinationLine, SnapshotLine, View

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
FULL = "siip-20261128T100000Z"
DELTA = "siip-20261128T110000Z"


def _status(**over: Any) -> dict[str, Any]:
    status: dict[str, Any] = {
        "running": True, "pid": 1, "config": None, "local_dir": "/b", "service": {},
        "backup_running": None,
        "last_run": {"started_at": (NOW - timedelta(minutes=20)).isoformat(),
                     "finished_at": None, "result": "warning", "trigger": "interval",
                     "archive": DELTA, "size": 2_500_000, "duration_seconds": 12.5,
                     "kind": "delta", "base": FULL,
                     "summary": ""},
        "last_snapshot": {"id": DELTA, "created_at": (NOW - timedelta(minutes=20)).isoformat(),
                          "size": 2_500_000, "trigger": "interval"},
        "snapshots": 2, "next_interval_run": (NOW + timedelta(hours=23)).isoformat(),
        "only_if_changed": True,
        "changes": {"known": True, "pending_since": None, "events": 0, "as_of": None},
        "uploads": {"pending": 0, "failed": 1, "items": [
            {"snapshot": DELTA, "destination": "drive", "state": "failed", "attempts": 3,
             "last_error": "storageQuotaExceeded <b>", "next_try_at": None}]},
        "notifications": {}, "alert": None, "checked_at": NOW.isoformat()}
    status.update(over)
    return status


def _view(**over: Any) -> View:
    status = _status(**over)
    return View(
        name="siip", status=status,
        snapshots=[SnapshotLine(DELTA, NOW - timedelta(hours=1), "delta", 2_500_000,
                                ["local"]),
                   SnapshotLine(FULL, NOW - timedelta(hours=2), "full", 90_000_000,
                                ["local", "drive", "folder"])],
        snapshot_total=2,
        runs=[RunPoint(NOW - timedelta(hours=2), "ok", 30.0, 90_000_000),
              RunPoint(NOW - timedelta(hours=1), "failed", 2.0, None),
              RunPoint(NOW - timedelta(minutes=20), "warning", 12.5, 2_500_000)],
        destinations=[DestinationLine("drive", status["uploads"]["items"]),
                      DestinationLine("folder")],
        problems=[Problem("x changed", cause="", key="file_changed",
                          params={"path": "app/views.py"})],
        run_counts={"ok": 1, "failed": 1, "warning": 1}, now=NOW)


def test_spanish_page_says_it_in_spanish() -> None:
    html = render_main(_view(), "es")
    assert "El servicio de copias está en marcha" in html
    assert "Con avisos · " in html and "programada (intervalo) · incremental · 2,5 MB" in html
    assert "incremental" in html and "completa" in html
    assert "este servidor, drive, folder" in html
    assert "drive: falló" in html and "con error: 1" in html
    assert "app/views.py cambió mientras se leía" in html
    assert "storageQuotaExceeded &lt;b&gt;" in html and "<b>" not in html   # escaped


def test_english_page_has_no_spanish() -> None:
    view = _view()
    html = render_page(view, "en", csrf="c" * 64, signed_in=False)
    assert "Back up now" in html and "delta" in html and "full" in html
    for word in ("Respaldar", "copia", "falló", "incremental", "servidor"):
        assert word not in html, word


def test_a_running_backup_shows_its_progress() -> None:
    since = (NOW - timedelta(seconds=42)).isoformat()
    html = render_main(_view(backup_running={"since": since, "trigger": "manual"}), "en")
    assert 'data-running="1"' in html and "Backup in progress since" in html
    assert "(42 s)" in html


def test_alert_and_stopped_service_come_first() -> None:
    html = render_main(_view(running=False, alert={"raised_at": NOW.isoformat(),
                                                   "reasons": ["db emptied"]}), "es")
    first = html.index("Posible pérdida de datos")
    assert first < html.index("no está en marcha: no se harán") < html.index("drive: falló")


def test_the_chart_draws_each_run() -> None:
    svg = render_chart(_view().runs, "es")
    assert svg.startswith("<svg") and svg.count("<rect") == 3
    assert 'class="bar failed"' in svg and svg.count("<circle") == 3
    assert "90,0 MB" in svg          # the size scale, in Spanish numbers
    assert render_chart([], "en").startswith("<p")


def test_no_destination_says_where_the_copies_are() -> None:
    view = _view()
    bare = View(**{**view.__dict__, "destinations": []})
    assert "Kept on this server only" in render_main(bare, "en")


def test_metrics_from_a_view() -> None:
    names = {m.name: m for m in families(_view())}
    assert names["siip_watcher_upload_queue_length"].samples[0].labels == {
        "destination": "drive"}
    assert names["siip_watcher_upload_queue_length"].samples[0].value == 1
    assert names["siip_watcher_last_snapshot_bytes"].samples[0].value == 2_500_000
    runs = {s.labels["result"]: s.value for s in names["siip_watcher_runs"].samples}
    assert runs == {"ok": 1, "failed": 1, "warning": 1}


def test_a_long_history_says_how_many_are_not_listed() -> None:
    view = _view()
    long = View(**{**view.__dict__, "snapshot_total": 1000})
    assert "y 998 más antiguas" in render_main(long, "es")
    assert "and 998 older ones" in render_main(long, "en")
