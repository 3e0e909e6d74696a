"""The service: real observer, real APScheduler, real files; intervals of seconds.

The first part drives :func:`watcher.service.daemon.serve` in a thread with a recording
``run_fn`` (fast, and it lets a test hold a run open); the second part runs the real
`siip-watcher start` as a subprocess with the real backup, for the issue's end-to-end cases.
"""

from __future__ import annotations

import gc
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from scripts.fakedrive import DriveServer
from tests.fakes.drive import drive_config
from tests.fakes.service import FakeRun, ServiceProcess
from tests.helpers import (
    WAIT,
    clean_env,
    make_config,
    make_siip_tree,
    toml_table,
    wait_until,
    write_config,
)
from watcher.backup.report import RunReport, SnapshotInfo
from watcher.backup.run import RunBusy, run_backup
from watcher.config.settings import Config
from watcher.service import daemon
from watcher.service.daemon import ABORT_GRACE_SECONDS, serve
from watcher.service.state_file import read_state
from watcher.service.status import collect_status, format_status
from watcher.snapshot import tarstream
from watcher.snapshot.take import tree_fingerprint
from watcher.state.catalog import Catalog, utcnow
from watcher.state.lock import LOCK_FILE, SERVICE_LOCK_FILE, FileLock


def svc_config(root: Path, local: Path, **schedule: Any) -> Config:
    base = {"interval_hours": 1.0, "debounce_seconds": 0.3, "max_delay_seconds": 5.0,
            "heavy_change_events": 50, "stop_timeout_seconds": 5.0}
    base.update(schedule)
    return make_config(root, local, schedule=base)


def write_files(folder: Path, n: int, prefix: str = "f") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"{prefix}{i}.txt").write_text(f"content {i}")


# --- in process, with a recording run_fn ----------------------------------------------------


def test_first_start_without_a_snapshot_runs_promptly(siip: Path, tmp_path: Path,
                                                      services: Any) -> None:
    cfg = svc_config(siip, tmp_path / "backups")
    fake = FakeRun(cfg)
    svc = services(cfg, fake)
    wait_until(lambda: fake.triggers() == ["start"], "the start run")
    wait_until(lambda: svc.state().get("last_success"), "the state file to show the snapshot")
    assert svc.stop() == 0
    # the report (and its email) names the next interval run, counted from this one's start
    [call] = fake.calls
    assert call.next_run is not None
    assert abs(call.next_run - call.started - timedelta(hours=1)) < timedelta(seconds=5)


def test_burst_gives_exactly_one_debounced_run(siip: Path, tmp_path: Path,
                                               services: Any) -> None:
    cfg = svc_config(siip, tmp_path / "backups")
    fake = FakeRun(cfg)
    svc = services(cfg, fake)
    wait_until(lambda: fake.triggers() == ["start"], "the start run")
    wait_until(lambda: not svc.state().get("running_since"), "the start run to end")
    write_files(siip / "static" / "burst", 300)
    wait_until(lambda: len(fake.calls) == 2, "the change run")
    assert fake.triggers() == ["start", "change"]
    # after it, nothing is pending and the next look is the interval: no second run is coming
    wait_until(lambda: (s := svc.state()) and s["running_since"] is None
               and s["dirty_since"] is None and s["pending_changes"] == 0
               and s["next_check_at"] == s["next_interval_at"],
               "the service to settle with nothing pending")
    assert svc.stop() == 0
    assert fake.triggers() == ["start", "change"]


def test_changes_during_a_run_get_a_run_of_their_own(siip: Path, tmp_path: Path,
                                                     services: Any) -> None:
    cfg = svc_config(siip, tmp_path / "backups", debounce_seconds=0.0)
    fake = FakeRun(cfg)
    fake.hold.clear()
    svc = services(cfg, fake)
    assert fake.entered.wait(WAIT)
    write_files(siip / "static" / "during", 100)  # heavy, and quiet long before the run ends
    wait_until(lambda: svc.state().get("pending_changes", 0) >= 50, "the changes to be seen")
    fake.hold.set()  # the next run is due the moment this one ends
    wait_until(lambda: len(fake.calls) == 2, "a run for the changes made during the first")
    assert fake.triggers() == ["start", "change"]


def test_light_changes_wait_for_the_interval(siip: Path, tmp_path: Path,
                                             services: Any) -> None:
    cfg = svc_config(siip, tmp_path / "backups", interval_hours=2 / 3600)
    fake = FakeRun(cfg)
    services(cfg, fake)
    wait_until(lambda: fake.triggers() == ["start"], "the start run")
    (siip / "one.txt").write_text("light")
    wait_until(lambda: len(fake.calls) == 2, "the interval run")
    assert fake.triggers() == ["start", "interval"]


def test_idle_tree_gives_no_run_over_several_intervals(siip: Path, tmp_path: Path,
                                                       services: Any,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    cfg = svc_config(siip, tmp_path / "backups", interval_hours=1 / 3600)
    fake = FakeRun(cfg)
    with caplog.at_level("INFO", logger="watcher.service.daemon"):
        svc = services(cfg, fake)
        wait_until(lambda: fake.triggers() == ["start"], "the start run")
        wait_until(lambda: caplog.text.count("interval backup skipped") >= 4,
                   "four skipped intervals")
        assert svc.stop() == 0
    assert fake.triggers() == ["start"]


def test_trickle_that_is_never_quiet_runs_by_max_delay(siip: Path, tmp_path: Path,
                                                       services: Any) -> None:
    cfg = svc_config(siip, tmp_path / "backups", heavy_change_events=5,
                     debounce_seconds=1.0, max_delay_seconds=2.0)
    fake = FakeRun(cfg)
    services(cfg, fake)
    wait_until(lambda: fake.triggers() == ["start"], "the start run")
    writes = itertools.count()

    def write_then_look() -> bool:
        (siip / "trickle.txt").write_text(str(next(writes)))
        return len(fake.calls) >= 2

    # one write every 0.1 s, never 1 s quiet; stop as soon as the change run began
    wait_until(write_then_look, "a run while changes kept coming", interval=0.1)
    assert fake.triggers() == ["start", "change"]


def test_own_writes_into_a_backup_dir_inside_the_tree_never_trigger(
        siip: Path, services: Any, caplog: pytest.LogCaptureFixture) -> None:
    # one counted event would be enough for a run, within 0.1 s or at the next interval
    cfg = svc_config(siip, siip / "backups", heavy_change_events=1, debounce_seconds=0.1,
                     interval_hours=1 / 3600)
    fake = FakeRun(cfg)
    with caplog.at_level("INFO", logger="watcher.service.daemon"):
        svc = services(cfg, fake)
        wait_until(lambda: fake.triggers() == ["start"], "the start run")
        # the run wrote an archive, renamed it and wrote the catalog inside the tree; the
        # service rewrites its state file there at every decision
        wait_until(lambda: caplog.text.count("interval backup skipped") >= 3,
                   "three intervals with nothing to do")
        assert not svc.state()["dirty_since"]
    assert fake.triggers() == ["start"]


def test_change_made_while_stopped_is_backed_up_after_start(siip: Path, tmp_path: Path,
                                                            services: Any) -> None:
    local = tmp_path / "backups"
    cfg = svc_config(siip, local, interval_hours=1 / 3600)
    local.mkdir()
    # a snapshot taken "two seconds ago" that matches today's tree
    catalog = Catalog(local)
    past = utcnow().replace(microsecond=0)
    info = SnapshotInfo(id="siip-old", file=str(local / "siip-old.tar.zst"),
                        created_at=past, size=1, sha256="0" * 64, files=1, bytes_in=1)
    catalog.add_snapshot(info, trigger="manual", duration=1.0,
                         fingerprint=tree_fingerprint(cfg))
    newest = catalog.newest_snapshot()
    assert newest is not None
    assert (newest.created_at, newest.fingerprint) == (past, tree_fingerprint(cfg))

    # unchanged tree: the start check finds nothing, no run at start
    fake = FakeRun(cfg)
    svc = services(cfg, fake)
    wait_until(lambda: "no changes since" in svc.state().get("waiting_for", ""),
               "the start check to find no change")
    assert svc.stop() == 0 and fake.triggers() == []

    # changed while stopped: backed up after the next start
    (siip / "edited while stopped.txt").write_text("new")
    fake2 = FakeRun(cfg)
    services(cfg, fake2)
    wait_until(lambda: fake2.triggers() == ["start"], "the start run")


def test_stop_lets_a_short_run_finish(siip: Path, tmp_path: Path, services: Any) -> None:
    cfg = svc_config(siip, tmp_path / "backups", stop_timeout_seconds=20)
    fake = FakeRun(cfg)
    fake.hold.clear()
    svc = services(cfg, fake)
    assert fake.entered.wait(WAIT)
    threading.Timer(0.3, fake.hold.set).start()
    assert svc.stop() == 0
    assert fake.calls[0].stopped is False
    assert [p.name for p in cfg.local.dir.glob("fake-*")] == ["fake-1.tar.zst"]


def test_stop_aborts_a_run_that_outlives_the_timeout(siip: Path, tmp_path: Path,
                                                     services: Any) -> None:
    cfg = svc_config(siip, tmp_path / "backups", stop_timeout_seconds=0.2)
    fake = FakeRun(cfg)
    fake.hold.clear()
    svc = services(cfg, fake)
    assert fake.entered.wait(WAIT)
    assert svc.stop() == 0
    assert fake.calls[0].stopped is True
    assert list(cfg.local.dir.glob("fake-*")) == []
    assert read_state(cfg.local.dir)["stopped_at"]


def test_failed_run_is_retried_after_a_backoff(siip: Path, tmp_path: Path,
                                               services: Any) -> None:
    cfg = svc_config(siip, tmp_path / "backups", debounce_seconds=0.2, max_delay_seconds=0.5)
    fake = FakeRun(cfg)
    fake.fail = True
    svc = services(cfg, fake)
    wait_until(lambda: len(fake.calls) >= 2, "a retry")
    assert svc.state()["consecutive_failures"] >= 1
    fake.fail = False
    wait_until(lambda: svc.state().get("last_success"), "a successful retry")
    assert fake.triggers()[:2] == ["start", "interval"]


def test_second_instance_refuses(siip: Path, tmp_path: Path, services: Any,
                                 caplog: pytest.LogCaptureFixture) -> None:
    cfg = svc_config(siip, tmp_path / "backups")
    services(cfg, FakeRun(cfg))
    with caplog.at_level("ERROR", logger="watcher.service.daemon"):
        assert serve(cfg, run_fn=FakeRun(cfg), stop_event=threading.Event()) == 2
    assert "already running" in caplog.text
    assert f"pid {os.getpid()}" in caplog.text


def test_disabled_schedule_refuses(siip: Path, tmp_path: Path) -> None:
    cfg = make_config(siip, tmp_path / "backups", schedule={"enabled": False})
    assert serve(cfg, run_fn=FakeRun(cfg)) == 2


def test_status_running_and_stopped(siip: Path, tmp_path: Path, services: Any) -> None:
    cfg = svc_config(siip, tmp_path / "backups")
    before = collect_status(cfg)
    assert before["running"] is False and before["last_run"] is None
    assert not (tmp_path / "backups").exists()  # status never creates the local dir

    fake = FakeRun(cfg)
    fake.hold.clear()
    svc = services(cfg, fake)
    assert fake.entered.wait(WAIT)
    wait_until(lambda: svc.state().get("running_since"), "the run to show in the state")
    live = collect_status(cfg)
    assert live["running"] is True and live["pid"] == os.getpid()
    assert live["backup_running"]["trigger"] == "start"
    assert live["service"]["watch"] == "native"
    text = format_status(live)
    assert "running (pid" in text and "in progress" in text
    fake.hold.set()
    assert svc.stop() == 0

    after = collect_status(cfg)
    assert after["running"] is False and after["pid"] is None
    assert after["last_snapshot"]["trigger"] == "start"
    assert after["next_interval_run"] is not None
    assert after["changes"]["known"] is False
    assert "not running" in format_status(after)
    json.dumps(after)  # JSON-ready as it is


def test_status_shows_changes_pending_since(siip: Path, tmp_path: Path,
                                           services: Any) -> None:
    cfg = svc_config(siip, tmp_path / "backups")
    fake = FakeRun(cfg)
    services(cfg, fake)
    wait_until(lambda: fake.triggers() == ["start"], "the start run")
    wait_until(lambda: collect_status(cfg)["last_snapshot"], "the start run in the catalog")
    assert collect_status(cfg)["changes"]["pending_since"] is None
    (siip / "one edit.txt").write_text("light: waits for the interval")
    status = wait_until(lambda: (s := collect_status(cfg))["changes"]["pending_since"] and s,
                        "status to show the pending change")
    assert status["changes"]["known"] is True and status["changes"]["events"] >= 1
    assert "pending since" in format_status(status)


def test_status_reports_pending_uploads(siip: Path, tmp_path: Path) -> None:
    cfg = svc_config(siip, tmp_path / "backups")
    cfg.local.dir.mkdir()
    catalog = Catalog(cfg.local.dir)
    info = SnapshotInfo(id="siip-1", file="x", created_at=utcnow(), size=10, sha256="0" * 64,
                        files=1, bytes_in=10)
    catalog.add_snapshot(info, trigger="interval", duration=1.0)
    catalog.set_copy("siip-1", "drive", "pending", error="quota exceeded", count_attempt=True)
    status = collect_status(cfg)
    assert status["uploads"]["pending"] == 1
    assert status["uploads"]["items"][0]["last_error"] == "quota exceeded"
    assert "1 pending" in format_status(status)


# --- the real command, end to end -----------------------------------------------------------


def _cli(config: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "watcher", "-c", str(config), *args],
                          cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=120,
                          check=False)


def _schedule_toml(**values: Any) -> str:
    base = {"interval_hours": 1.0, "debounce_seconds": 0.5, "max_delay_seconds": 10.0,
            "heavy_change_events": 50, "stop_timeout_seconds": 10.0}
    base.update(values)
    return toml_table("schedule", base)


@pytest.fixture
def real(tmp_path: Path) -> Iterator[Callable[..., tuple[ServiceProcess, Path, Path]]]:
    """Start the real service on a fresh SIIP tree; backup dir inside the tree by default."""
    started: list[ServiceProcess] = []

    def start(*, inside: bool = True, extra: str = "", tree: Path | None = None,
              **schedule: Any) -> tuple[ServiceProcess, Path, Path]:
        root = tree or make_siip_tree(tmp_path / "siip")
        local = root / "backups" if inside else tmp_path / "backups"
        config = write_config(tmp_path / "siip-watcher.toml", root, local,
                              _schedule_toml(**schedule) + extra)
        svc = ServiceProcess(config, tmp_path)
        started.append(svc)
        return svc, root, local

    yield start
    for svc in started:
        if svc.proc.poll() is None:
            svc.proc.kill()
            svc.proc.wait()


def _archives(local: Path) -> list[str]:
    return sorted(p.name for p in local.glob("*.tar.zst"))


def test_real_burst_gives_one_run_and_own_writes_never_trigger(real: Any,
                                                               tmp_path: Path) -> None:
    svc, root, local = real()
    svc.wait_for("backup starting: trigger start")
    svc.wait_for("backup OK")
    write_files(root / "static" / "burst", 300)
    svc.wait_for("backup starting: trigger change")
    svc.wait_for("backup OK", 2)
    status = json.loads(_cli(svc.config, tmp_path, "status", "--json").stdout)
    assert status["running"] is True and status["pid"] == svc.proc.pid
    assert status["last_run"]["trigger"] == "change" and status["last_run"]["result"] == "ok"
    # the two runs wrote archives, sidecars and the catalog inside the tree: no third run
    wait_until(lambda: (s := read_state(local)) and s["running_since"] is None
               and s["dirty_since"] is None and s["next_check_at"] == s["next_interval_at"],
               "the service to settle with nothing pending")
    assert svc.stop() == 0
    assert svc.count("backup starting") == 2
    assert len(_archives(local)) == 2
    stopped = json.loads(_cli(svc.config, tmp_path, "status", "--json").stdout)
    assert stopped["running"] is False and stopped["pid"] is None


def test_real_idle_tree_gives_no_run_over_several_intervals(real: Any) -> None:
    svc, _, _ = real(interval_hours=1 / 3600)
    svc.wait_for("backup OK")
    svc.wait_for("interval backup skipped", 4)
    assert svc.stop() == 0
    assert svc.count("backup starting") == 1


def test_real_trickle_that_is_never_quiet_runs_by_max_delay(real: Any) -> None:
    # debounce well above the write period, so a loaded machine that stalls the writer for a
    # moment still never gives the tree a quiet debounce
    svc, root, _ = real(heavy_change_events=5, debounce_seconds=2.5, max_delay_seconds=4.0)
    svc.wait_for("backup OK")
    writes = itertools.count()

    def write_then_look() -> int:
        (root / "static" / "trickle.txt").write_text(str(next(writes)))
        return svc.count("backup starting: trigger change")

    # a write every 0.1 s is never 2.5 s quiet: only max_delay_seconds can start the run
    wait_until(write_then_look, "the change run", 60, interval=0.1, detail=svc.log)
    assert "changes still coming" in svc.log()
    assert svc.stop() == 0


def test_real_change_while_stopped_is_backed_up_after_start(real: Any) -> None:
    svc, root, local = real()
    svc.wait_for("backup OK")
    assert svc.stop() == 0
    first = _archives(local)
    (root / "SIIP CON FOTO" / "nueva foto.jpg").write_bytes(os.urandom(1000))
    svc2, _, _ = real(tree=root, interval_hours=1 / 3600)
    svc2.wait_for("the tree changed while the service was stopped")
    svc2.wait_for("backup OK")
    assert svc2.stop() == 0
    assert len(_archives(local)) == len(first) + 1


def test_real_unchanged_tree_is_not_backed_up_again_after_a_restart(real: Any) -> None:
    svc, root, _ = real()
    svc.wait_for("backup OK")
    assert svc.stop() == 0
    svc2, _, _ = real(tree=root, interval_hours=1 / 3600)
    svc2.wait_for("interval backup skipped")
    assert svc2.stop() == 0
    assert svc2.count("backup starting") == 0, svc2.log()


def test_real_sigterm_during_a_snapshot_exits_0_without_partial(real: Any,
                                                                tmp_path: Path) -> None:
    root = make_siip_tree(tmp_path / "siip")
    big = root / "static" / "big"
    big.mkdir()
    for i in range(8):  # hex text: compressible, so level 19 really works on it (seconds);
        # random bytes would be spotted as incompressible and stored at the fastest level
        (big / f"dump{i}.txt").write_bytes(os.urandom(2_000_000).hex().encode())
    svc, _, local = real(tree=root, stop_timeout_seconds=0.5,
                         extra="[compression]\nlevel = 19\nthreads = 1\n")
    svc.wait_for("backup starting: trigger start")
    svc.proc.send_signal(signal.SIGTERM)
    # exactly one SIGTERM (svc.stop() would send a second one, which means "abort now"); the
    # stop timeout, then the abort's own grace, bound the wait: not a measurement
    assert svc.proc.wait(0.5 + ABORT_GRACE_SECONDS + 10) == 0
    svc.stop()
    log = svc.log()
    assert "aborting it" in log and "service stopped" in log
    assert list(local.glob("*.partial")) == [] and list(local.glob(".*.partial")) == []
    assert _archives(local) == [], "the run was to be aborted, yet it stored a snapshot"
    assert "the run was stopped before the snapshot was complete" in log


def test_real_second_instance_refuses(real: Any, tmp_path: Path) -> None:
    svc, root, local = real(inside=False)
    svc.wait_for("service started")
    second = _cli(svc.config, tmp_path, "start")
    assert second.returncode == 2
    assert "already running" in second.stderr and str(svc.proc.pid) in second.stderr
    assert svc.stop() == 0
    assert (local / SERVICE_LOCK_FILE).exists()


@pytest.fixture
def queued(siip: Path, tmp_path: Path,
           drive_server: DriveServer) -> tuple[Config, DriveServer, Catalog, str]:
    """A service configuration with Drive on (a local server), and one snapshot stored while
    uploads were off, so its Drive copy is queued: (config, server, catalog, snapshot id)."""
    drive = asdict(drive_config(drive_server, tmp_path))
    cfg = make_config(siip, tmp_path / "backups", drive=drive, schedule={"interval_hours": 1.0})
    report = run_backup(cfg, trigger="manual", upload=False, email=False)
    assert report.snapshot is not None
    catalog = Catalog(cfg.local.dir)
    assert [c.state for c in catalog.copies()] == ["pending"]
    return cfg, drive_server, catalog, report.snapshot.id


def test_queued_uploads_are_retried_on_a_timer(queued: tuple[Config, Any, Catalog, str],
                                               services: Any) -> None:
    cfg, server, catalog, sid = queued
    svc = services(cfg, FakeRun(cfg))          # the copy never failed: it is due at once
    wait_until(lambda: [c.state for c in catalog.copies()] == ["uploaded"],
               "the queued copy to be uploaded by the service")
    assert [f.name for f in server.state.live_files()] == [f"{sid}.tar.zst"]
    assert svc.stop() == 0


def test_the_upload_timer_is_the_queues_next_try(queued: tuple[Config, Any, Catalog, str],
                                                 services: Any) -> None:
    cfg, server, catalog, sid = queued
    # as if an earlier attempt had failed: the queue says "not before 3 s from now"
    retry_at = utcnow() + timedelta(seconds=3)
    catalog.set_copy(sid, "drive", "pending", error="earlier failure", count_attempt=True,
                     next_try_at=retry_at)
    svc = services(cfg, FakeRun(cfg))
    while utcnow() < retry_at - timedelta(seconds=0.3):
        assert server.state.records == [], "the service sent the copy before it was due"
        time.sleep(0.05)
    wait_until(lambda: [c.state for c in catalog.copies()] == ["uploaded"],
               "the queued copy to be uploaded at its retry time")
    assert svc.stop() == 0


def test_waits_while_once_runs_and_counts_its_snapshot(siip: Path, tmp_path: Path,
                                                       services: Any) -> None:
    cfg = svc_config(siip, tmp_path / "backups")
    cfg.local.dir.mkdir()
    once_lock = FileLock(cfg.local.dir / LOCK_FILE)  # what `siip-watcher once` holds
    once_lock.acquire()
    fake = FakeRun(cfg)
    try:
        svc = services(cfg, fake)
        wait_until(lambda: "command line" in svc.state().get("waiting_for", ""),
                   "the service to wait for the other snapshot")
        info = SnapshotInfo(id="siip-once", file=str(cfg.local.dir / "siip-once.tar.zst"),
                            created_at=utcnow(), size=1, sha256="0" * 64, files=1, bytes_in=1)
        Catalog(cfg.local.dir).add_snapshot(info, trigger="manual", duration=1.0)
    finally:
        once_lock.release()
    wait_until(lambda: svc.state().get("last_success"), "the service to see that snapshot")
    assert svc.stop() == 0
    assert fake.calls == []  # no second snapshot right after the one `once` took


def test_each_run_releases_its_compressor(cfg: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    sinks: list[weakref.ref[Any]] = []
    original = tarstream.CompressedSink.__init__

    def tracking_init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        sinks.append(weakref.ref(self))

    monkeypatch.setattr(tarstream.CompressedSink, "__init__", tracking_init)
    for _ in range(2):
        assert run_backup(cfg, trigger="change", email=False).status == "ok"
    gc.collect()
    assert len(sinks) == 2
    assert [ref() for ref in sinks] == [None, None], "a finished run's archive writer lives on"


@pytest.mark.parametrize("error,traceback", [
    (RunBusy("the run lock is held: a snapshot is already running"), False),
    (RuntimeError("a bug"), True),
])
def test_a_run_that_cannot_start_is_logged_and_the_service_goes_on(
        siip: Path, tmp_path: Path, services: Any, caplog: pytest.LogCaptureFixture,
        error: Exception, traceback: bool) -> None:
    cfg = svc_config(siip, tmp_path / "backups")
    tried = threading.Event()

    def run_fn(cfg: Config, *, trigger: str, stop: threading.Event | None = None,
               next_run: Callable[[], datetime | None] | None = None) -> RunReport:
        tried.set()
        raise error

    with caplog.at_level("ERROR", logger="watcher.service.daemon"):
        svc = services(cfg, run_fn)
        assert tried.wait(WAIT)
        wait_until(lambda: svc.state().get("consecutive_failures"), "the failure to count")
        assert svc.stop() == 0
    logged = [r for r in caplog.records if "backup could not run" in r.getMessage()]
    assert logged       # one per try: a retry after the backoff may have come before the stop
    for record in logged:
        assert str(error) in record.getMessage()
        # another process holding the lock is an answer, not a bug: one line, no traceback
        assert (record.exc_info is not None) is traceback


def test_service_exits_1_when_the_watched_folder_disappears(
        tmp_path: Path, services: Any, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(daemon, "HEALTH_SECONDS", 0.2)
    root = make_siip_tree(tmp_path / "siip")
    cfg = svc_config(root, tmp_path / "backups")
    fake = FakeRun(cfg)
    with caplog.at_level("ERROR", logger="watcher.service.daemon"):
        svc = services(cfg, fake)
        wait_until(lambda: fake.triggers() == ["start"], "the start run")
        shutil.rmtree(root)  # e.g. a project folder removed by mistake: nothing is watched
        svc.thread.join(WAIT)
    assert not svc.thread.is_alive() and svc.code == 1
    assert "file watcher stopped" in caplog.text


def test_start_removes_leftovers_of_a_crashed_run(real: Any, tmp_path: Path) -> None:
    root = make_siip_tree(tmp_path / "siip")
    local = tmp_path / "backups"
    svc, _, _ = real(tree=root, interval_hours=24, inside=False)
    svc.wait_for("backup OK")
    assert svc.stop() == 0
    first = _archives(local)
    stale = [local / "siip-20260101T000000Z.tar.zst.partial", local / ".siip-x.db0.partial",
             local / "siip-20260101T000000Z.tar.zst.sha256"]  # a sidecar with no archive
    for p in stale:
        p.write_bytes(b"left by kill -9")
    # nothing changed and the interval is far away: no run, yet the leftovers go at start
    svc2, _, _ = real(tree=root, interval_hours=24, inside=False)
    svc2.wait_for("service started")
    wait_until(lambda: not any(p.exists() for p in stale), "the leftovers to be removed")
    assert svc2.stop() == 0
    assert _archives(local) == first
