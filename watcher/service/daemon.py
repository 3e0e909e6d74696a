"""`siip-watcher start`: the long-running service.

One process per local dir (an OS file lock on ``siip-watcher.service.lock``: a crash releases
it, a second `start` refuses). A :class:`~watcher.service.watch.TreeWatcher` feeds a
:class:`~watcher.service.decide.ChangeTracker`; an APScheduler 3 ``BackgroundScheduler`` in
this process runs the cheap "decide" job when the tracker names a time (or a change may bring a
run forward), the backup itself (one at a time: ``max_instances=1``, ``coalesce``, late jobs
still run), and the queued uploads, on a timer set to when the upload queue says its next copy
is due, under the same file lock as a run. The scheduler runs here, never inside the web app:
APScheduler cannot share a job store between processes, so under several gunicorn workers
every job would run once per worker.

At start the interval is counted from the newest snapshot in the catalog, and the tree is
compared with that snapshot's fingerprint, so neither a restart nor a change made while the
service was stopped is missed.

With ``[web] enabled`` the service also serves the monitor page, ``/api/status`` and
``/metrics`` (:mod:`watcher.web`); the page's button asks for a run through
:meth:`Service.request_backup`, the same decide job as every other trigger, so there is still one
run at a time.

SIGTERM/SIGINT (NSSM sends Ctrl+C on Windows): stop watching, give a running backup
``schedule.stop_timeout_seconds`` to finish, then abort it through its ``stop`` event (the run
removes its partial file), and exit 0. A second signal aborts at once.

A start that fails, and a run that fails however early, reach the admin by email and
heartbeat (:mod:`watcher.backup.failure`); a second `start` refused by the lock does not.

Exit codes: 0 stopped by a signal; 1 the service could not keep watching (the file watcher
failed); 2 configuration or usage problem, including "already running" (systemd's
``RestartPreventExitStatus=2`` keeps such a unit from restarting in a loop).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import os
import signal
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from apscheduler.schedulers.background import BackgroundScheduler

from watcher.backup.failure import failed_report, problem_for, send_notice, unexpected_problem
from watcher.backup.report import EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE, Problem, RunReport
from watcher.backup.run import RunBusy, run_backup
from watcher.backup.uploads import next_due, send_copies
from watcher.config.settings import Config
from watcher.destinations.registry import enabled_destinations
from watcher.retry import NO_JITTER, RetryPolicy
from watcher.service.decide import TRIGGER_MANUAL, ChangeTracker, Decision, Policy
from watcher.service.state_file import write_state
from watcher.service.watch import TreeWatcher, WatchError
from watcher.snapshot.take import tree_fingerprint
from watcher.state.catalog import Catalog, utcnow
from watcher.state.lock import LOCK_FILE, SERVICE_LOCK_FILE, FileLock, LockBusy
from watcher.state.store import LocalStore

if TYPE_CHECKING:
    from watcher.web.server import WebServer

log = logging.getLogger("watcher.service.daemon")

RunFn = Callable[..., RunReport]

#: after aborting a run that outlived the stop timeout, how long to wait for it to clean up
ABORT_GRACE_SECONDS = 15.0
#: how often the watcher's health is checked (a dead observer would silently miss changes)
HEALTH_SECONDS = 60.0
#: an upload pass that could not consult the queue at all (no destination could be opened,
#: the catalog could not be read) learnt no copy's time: look again 30 s later, doubling up
#: to an hour while it keeps failing
PASS_FAILED_RETRY = RetryPolicy(attempts=None, base=30.0, cap=3600.0, jitter=NO_JITTER)
#: while a `once` from the command line holds the run lock, look again this often
BUSY_RECHECK = timedelta(seconds=2)
#: the same for the queued uploads, which `once` sends itself; a snapshot it stores makes the
#: service ask the queue again at once, so this only matters for a `once` that stored none
UPLOADS_BUSY_RECHECK = timedelta(seconds=30)
#: the state file follows the pending changes this closely (one write per period at most)
STATE_REFRESH = timedelta(seconds=1)

_JOB = {"coalesce": True, "misfire_grace_time": None}


def serve(cfg: Config, *, run_fn: RunFn | None = None,
          stop_event: threading.Event | None = None) -> int:
    """Run the service until ``stop_event`` is set or SIGTERM/SIGINT arrives; return the exit
    code (0 after a clean stop, 1 if watching failed, 2 if another service holds the lock or
    the configuration cannot work).

    ``run_fn(cfg, trigger=..., stop=..., next_run=...)`` takes one backup and returns its
    report; it defaults to :func:`watcher.backup.run.run_backup` (tests inject their own).
    """
    if run_fn is None:
        run_fn = run_backup
    token = None
    if cfg.web.enabled:
        # only then: a service without the page never loads the web libraries
        from watcher.web.auth import access_token  # noqa: PLC0415

        token = access_token(cfg)  # a ConfigError here is exit 2, like any other
    if not cfg.schedule.enabled:
        problem = Problem("schedule.enabled is false, so the service has nothing to do",
                          "set it to true (or stop and disable the service and run "
                          "`siip-watcher once` by hand)", cause="schedule_disabled")
        log.error("%s; %s", problem.message, problem.hint)
        start_failed(cfg, problem)
        return EXIT_USAGE
    service = Service(cfg, run_fn, stop_event or threading.Event(), web_token=token)
    with _signals(service):
        return service.run()


@contextlib.contextmanager
def _signals(service: Service) -> Iterator[None]:
    """SIGTERM/SIGINT (and SIGBREAK on Windows) ask the service to stop; only possible from
    the main thread, so tests that call :func:`serve` in a thread stop it by its event."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    names = ["SIGTERM", "SIGINT", "SIGBREAK"]
    previous: dict[int, Any] = {}
    for name in names:
        signum = getattr(signal, name, None)
        if signum is not None:
            previous[signum] = signal.signal(signum, service.on_signal)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class Service:
    """The running service: lock, watcher, tracker, scheduler. Use :func:`serve`."""

    def __init__(self, cfg: Config, run_fn: RunFn, stop_event: threading.Event,
                 clock: Callable[[], datetime] = utcnow, *, web_token: str | None = None) -> None:
        self.cfg = cfg
        self.web_token = web_token
        self.run_fn = run_fn
        self.stop_event = stop_event
        self.clock = clock
        self.local_dir = cfg.local.dir
        self.policy = Policy.from_schedule(cfg.schedule)
        self.lock = FileLock(self.local_dir / SERVICE_LOCK_FILE)
        self._lock = threading.RLock()          # guards the tracker and the fields below
        self._idle = threading.Event()          # set while no backup is running or queued
        self._idle.set()
        self._abort = threading.Event()         # the `stop` handed to run_fn and uploads
        self._work = threading.Lock()           # one backup or upload pass at a time
        self._stopping = False
        self._signals = 0
        self._exit_code = EXIT_OK
        self._decide_at: datetime | None = None
        self._failed_passes = 0
        self._runs = 0
        self._state_refresh_pending = False
        self._started_at = clock()
        self._last_reason = "starting"
        self.tracker: ChangeTracker | None = None
        self.watcher: TreeWatcher | None = None
        self.scheduler: BackgroundScheduler | None = None
        self.web: WebServer | None = None

    # --- life cycle -----------------------------------------------------------------------

    def run(self) -> int:
        """Take the lock, start everything, wait for the stop, stop everything."""
        try:
            self.lock.acquire()
        except LockBusy:
            # no email or heartbeat: the service that holds the lock is running fine, and a
            # /fail ping from its refused twin would report it down
            pid = self.lock.holder_pid()
            who = f" (pid {pid})" if pid else ""
            log.error("siip-watcher is already running as a service for %s%s; stop that one "
                      "first (systemctl stop siip-watcher), or see `siip-watcher status`",
                      self.local_dir, who)
            return EXIT_USAGE
        except OSError as exc:
            problem = Problem(f"cannot create the service lock in {self.local_dir}: "
                              f"{exc.strerror or exc}", "check local.dir and that the service "
                              "user may write it", cause="backup_dir")
            log.error("%s; %s", problem.message, problem.hint)
            start_failed(self.cfg, problem, started_at=self._started_at)
            return EXIT_USAGE
        try:
            try:
                code = self._start()
            # a start that crashed must still reach the admin
            except Exception as exc:  # noqa: BLE001
                code = self._start_crashed(exc)
            if code is not None:
                return code
            self._wait_for_stop()
            self._shutdown()
            return self._exit_code
        finally:
            self.lock.release()

    def _remove_leftovers(self) -> None:
        """Clear what a crashed run left, unless a `once` is running right now (its own
        partial files are not leftovers; it clears the rest itself)."""
        run_lock = FileLock(self.local_dir / LOCK_FILE)
        try:
            run_lock.acquire(timeout=0)
        except LockBusy:
            return
        try:
            LocalStore(self.cfg).remove_leftovers()
        finally:
            run_lock.release()

    def _start(self) -> int | None:
        """Start watching and scheduling; an exit code if that is impossible (the admin is
        told by email and heartbeat)."""
        try:
            catalog = Catalog(self.local_dir)
            newest = catalog.newest_snapshot()
        except (sqlite3.Error, OSError) as exc:
            problem = problem_for(exc, self.local_dir)
            log.error("service not started: %s; %s", problem.message, problem.hint)
            start_failed(self.cfg, problem, started_at=self._started_at)
            return EXIT_USAGE
        self._remove_leftovers()
        code = self._start_web()
        if code is not None:
            return code
        last_success = newest.created_at if newest else None
        self.tracker = ChangeTracker(self.policy, last_success=last_success)
        # watch first, compare the tree after: a change between the two is then never lost
        self.watcher = TreeWatcher(self.cfg, self._on_change)
        try:
            self.watcher.start()
        except WatchError as exc:
            log.error("%s", exc)
            if self.web is not None:
                self.web.stop()
            start_failed(self.cfg, Problem(str(exc), cause="watch"), catalog,
                         started_at=self._started_at)
            return EXIT_RUN_FAILED
        self.scheduler = BackgroundScheduler(timezone="UTC",
                                             job_defaults={"max_instances": 1, **_JOB})
        self.scheduler.start()
        log.info("service started (pid %d): interval %g h, debounce %g s, max delay %g s, "
                 "heavy change %d events; last snapshot %s", os.getpid(),
                 self.cfg.schedule.interval_hours, self.cfg.schedule.debounce_seconds,
                 self.cfg.schedule.max_delay_seconds, self.cfg.schedule.heavy_change_events,
                 _fmt(last_success) if last_success else "none yet")
        if newest is not None:
            self.scheduler.add_job(self._start_check, id="start-check",
                                   args=(newest.fingerprint,))
        else:
            self._schedule_decide(self.clock())
        self.scheduler.add_job(self._health, "interval", seconds=HEALTH_SECONDS, id="health")
        # a pass now sends what is due and learns when the rest is
        self._schedule_uploads(self.clock())
        self._write_state()
        return None

    def _start_web(self) -> int | None:
        """Serve the monitor page (``[web]``); an exit code if its address cannot be used."""
        if not self.cfg.web.enabled:
            return None
        from watcher.web.server import WebError, WebServer  # noqa: PLC0415 - as in serve()

        try:
            self.web = WebServer(self.cfg, self.web_token, request_backup=self.request_backup)
        except WebError as exc:
            problem = Problem(str(exc), "choose another web.listen, or stop the program that "
                              "uses that address (or set web.enabled = false)",
                              cause="web_listen")
            log.error("service not started: %s; %s", problem.message, problem.hint)
            start_failed(self.cfg, problem, started_at=self._started_at)
            return EXIT_USAGE
        self.web.start()
        return None

    def _start_crashed(self, exc: Exception) -> int:
        """A start that failed on something unforeseen: undo what started, tell the admin."""
        log.exception("the service could not start: %s", _one_line(exc))
        if self.web is not None:
            with contextlib.suppress(Exception):
                self.web.stop()
        if self.watcher is not None:
            with contextlib.suppress(Exception):
                self.watcher.stop()
        if self.scheduler is not None:
            with contextlib.suppress(Exception):
                self.scheduler.shutdown(wait=False)
        start_failed(self.cfg, problem_for(exc, self.local_dir), started_at=self._started_at)
        return EXIT_RUN_FAILED

    def _wait_for_stop(self) -> None:
        # a plain wait() is interrupted by signals on POSIX; Windows needs a timeout for Ctrl+C
        slice_ = 1.0 if os.name == "nt" else None
        while not self.stop_event.wait(slice_):
            pass

    def on_signal(self, signum: int, frame: Any) -> None:
        """Signal handler: the first asks for a clean stop, the second aborts a running run."""
        self._signals += 1
        name = signal.Signals(signum).name
        if self._signals == 1:
            log.info("%s received: stopping (a running backup gets %g s to finish; send it "
                     "again to abort now)", name, self.cfg.schedule.stop_timeout_seconds)
            self.stop_event.set()
        else:
            log.warning("%s received again: aborting the running backup", name)
            self._abort.set()

    def _shutdown(self) -> None:
        with self._lock:
            self._stopping = True
        if self.watcher is not None:
            self.watcher.stop()
        assert self.scheduler is not None
        # a run job stays: if it is queued but not started it returns at once, and either
        # way it marks the service idle
        for job_id in ("decide", "uploads", "health", "start-check", "state"):
            with contextlib.suppress(Exception):
                self.scheduler.remove_job(job_id)
        timeout = self.cfg.schedule.stop_timeout_seconds
        if not self._idle.is_set():
            log.info("waiting up to %g s for the running backup to finish", timeout)
            if not self._idle.wait(timeout):
                log.warning("the backup did not finish within schedule.stop_timeout_seconds "
                            "(%g s); aborting it (its partial file is removed)", timeout)
                self._abort.set()
                if not self._idle.wait(ABORT_GRACE_SECONDS):
                    log.error("the backup has not stopped %g s after the abort; waiting for "
                              "it", ABORT_GRACE_SECONDS)
        self._abort.set()  # an upload pass still running stops too
        self.scheduler.shutdown(wait=True)
        if self.web is not None:
            self.web.stop()
        self._write_state(stopped=True)
        log.info("service stopped")

    def request_backup(self) -> dict[str, Any]:
        """A person asks for a run now (the monitor page's button).

        Goes through the decide job like every trigger, so a run in progress, or one already
        asked for, answers the request instead of a second run. Returns ``{"state": ...}``:
        ``started`` (the run starts at once), ``running`` (one is in progress or about to
        start: ``since`` and ``trigger`` say which), ``busy`` (a `siip-watcher once` holds the
        run lock) or ``stopping``.
        """
        with self._lock:
            if self._stopping or self.tracker is None:
                return {"state": "stopping"}
            if self.tracker.running:
                since = self.tracker.running_since
                return {"state": "running", "since": since.isoformat() if since else None,
                        "trigger": self.tracker.running_trigger}
            if self._other_run_active():
                return {"state": "busy"}
            if not self.tracker.request_run():
                return {"state": "running", "since": None, "trigger": TRIGGER_MANUAL}
        log.info("backup asked for on the monitor page")
        self._schedule_decide(self.clock(), force=True)
        return {"state": "started"}

    # --- changes and decisions ------------------------------------------------------------

    def _on_change(self, path: str) -> None:
        """Called on the observer thread for every change that counts."""
        now = self.clock()
        with self._lock:
            if self._stopping or self.tracker is None:
                return
            wake = self.tracker.record_changes(1, now)
            # `status` reads the pending changes from the state file: refresh it a second
            # after the first change of a batch, never more often
            refresh = not self._state_refresh_pending and self.scheduler is not None
            self._state_refresh_pending = self._state_refresh_pending or refresh
        if log.isEnabledFor(logging.DEBUG):
            log.debug("change: %s", path)
        if wake:
            self._schedule_decide(now)
        if refresh:
            assert self.scheduler is not None
            self.scheduler.add_job(self._refresh_state, "date", run_date=now + STATE_REFRESH,
                                   id="state", replace_existing=True, **_JOB)

    def _refresh_state(self) -> None:
        with self._lock:
            self._state_refresh_pending = False
            if not self._stopping:
                self._write_state()

    def _schedule_decide(self, at: datetime, *, force: bool = False) -> None:
        """Make sure the decide job runs at ``at`` or earlier."""
        with self._lock:
            if self._stopping or self.scheduler is None:
                return
            if not force and self._decide_at is not None and self._decide_at <= at:
                return
            self._decide_at = at
            # several instances may overlap for an instant (a change arrives while one runs);
            # they serialise on self._lock, and none may be dropped
            self.scheduler.add_job(self._decide, "date", run_date=at, id="decide",
                                   replace_existing=True, max_instances=4, **_JOB)

    def _decide(self) -> None:
        with self._lock:
            self._decide_at = None
            if self._stopping or self.tracker is None:
                return
            now = self.clock()
            if self.tracker.running:
                return  # the run's end asks again
            self._sync_catalog()
            if self._other_run_active():
                # `siip-watcher once` is taking a snapshot; its result lands in the catalog
                self._last_reason = "a snapshot started from the command line is running"
                self._schedule_decide(now + BUSY_RECHECK)
                self._write_state()
                return
            decision = self.tracker.decide(now)
            self._log_decision(decision)
            self._last_reason = decision.reason
            if decision.trigger is not None:
                self.tracker.run_started(now, decision.trigger)
                self._idle.clear()
                self._abort.clear()
                assert self.scheduler is not None
                # one id per run: APScheduler counts a job's instance until the function has
                # returned, just after it asked for the next decision, so a run due at once
                # would be refused under a shared id. One backup at a time is guaranteed by
                # the tracker (no decision while running) and by self._work.
                self._runs += 1
                self.scheduler.add_job(self._run, args=(decision.trigger, decision.reason),
                                       id=f"run-{self._runs}", max_instances=1, **_JOB)
            elif decision.next_check is not None:
                self._schedule_decide(decision.next_check)
            self._write_state()

    def _log_decision(self, decision: Decision) -> None:
        if decision.skipped_since is not None:
            log.info("no changes since the snapshot of %s: interval backup skipped",
                     _fmt(decision.skipped_since))
        if decision.trigger is None:
            log.debug("no backup now: %s; next look %s", decision.reason,
                      _fmt(decision.next_check) if decision.next_check else "after the run")

    def _sync_catalog(self) -> None:
        """Pick up a snapshot stored by another process (`siip-watcher once`)."""
        assert self.tracker is not None
        try:
            # read-only: deciding takes no write lock, so it never queues behind a run's writes
            catalog = Catalog.read_only(self.local_dir)
            newest = catalog.newest_snapshot() if catalog else None
        except sqlite3.Error as exc:
            log.warning("cannot read the catalog (%s); scheduling from what the service knows",
                        exc)
            return
        if newest is not None:
            known = self.tracker.last_success
            self.tracker.external_snapshot(newest.created_at)
            if self.tracker.last_success != known:
                # its copies may be queued or waiting for a retry the timer does not know of
                self._schedule_uploads(self.clock())

    def _other_run_active(self) -> bool:
        return FileLock(self.local_dir / LOCK_FILE).is_held_elsewhere()

    def _start_check(self, fingerprint: str | None) -> None:
        """Compare the tree with the newest snapshot: changes made while stopped count."""
        try:
            current = tree_fingerprint(self.cfg)
        # a scheduler job: an escaping error would skip the catch-up decision below; assuming
        # a change costs one run at most, and that run says what is wrong with the tree
        except Exception as exc:  # noqa: BLE001
            log.warning("could not compare the tree with the last snapshot (%s); assuming it "
                        "changed", exc)
            current = None
        changed = fingerprint is None or current != fingerprint
        if fingerprint is None:
            log.info("the last snapshot has no tree fingerprint; assuming changes since it")
        elif changed:
            log.info("the tree changed while the service was stopped")
        with self._lock:
            assert self.tracker is not None
            self.tracker.start_check_done(changed, self.clock())
        self._schedule_decide(self.clock(), force=True)

    # --- runs -----------------------------------------------------------------------------

    def _run(self, trigger: str, reason: str) -> None:
        report: RunReport | None = None
        try:
            with self._work:
                if self._stopping:
                    return
                log.info("backup starting: trigger %s (%s)", trigger, reason)
                started = self.clock()
                try:
                    report = self.run_fn(self.cfg, trigger=trigger, stop=self._abort,
                                         next_run=lambda: started + self.policy.interval)
                except RunBusy as exc:
                    # another process kept the run lock too long; run_backup has told the admin
                    log.error("backup could not run: %s", _one_line(exc))
                except Exception as exc:
                    # run_backup never raises for a failed run: this is a bug, which needs
                    # its traceback and must reach the admin too
                    log.exception("backup could not run: %s", _one_line(exc))
                    failed = failed_report(self.cfg, unexpected_problem(exc),
                                           trigger=trigger, started_at=started)
                    send_notice(self.cfg, failed, stop=self._abort)
        finally:
            self._finish_run(report)

    def _finish_run(self, report: RunReport | None) -> None:
        ok = report is not None and report.snapshot is not None and report.status != "failed"
        snapshot_at = report.snapshot.created_at if ok and report and report.snapshot else None
        with self._lock:
            assert self.tracker is not None
            if self.tracker.running:
                self.tracker.run_finished(self.clock(), ok=ok, snapshot_at=snapshot_at)
            stopping = self._stopping
            self._write_state()
        self._idle.set()
        _release_memory()
        if not stopping:
            self._schedule_uploads(self.clock())
            self._schedule_decide(self.clock(), force=True)

    # --- queued uploads -------------------------------------------------------------------

    def _schedule_uploads(self, at: datetime | None) -> None:
        """Run the upload pass at ``at``; None (nothing queued) removes the timer. The queue
        alone decides when a copy is due (:func:`watcher.backup.uploads.next_due`)."""
        with self._lock:
            if self._stopping or self.scheduler is None:
                return
            if at is None:
                with contextlib.suppress(Exception):
                    self.scheduler.remove_job("uploads")
                return
            self.scheduler.add_job(self._uploads, "date", run_date=at, id="uploads",
                                   replace_existing=True, max_instances=1, **_JOB)

    def _uploads(self) -> None:
        """Send the queued copies that are due, then wait for the next one that will be."""
        if self._stopping or not self._work.acquire(blocking=False):
            return  # a backup is running; it sends the queue itself, then reschedules this
        try:
            due = self._upload_pass()
        finally:
            self._work.release()
        self._schedule_uploads(due)

    def _upload_pass(self) -> datetime | None:
        """One pass over the queue; when the next one is due.

        Under the same file lock as a run: a `siip-watcher once` sends the queue too, and two
        processes sending one copy would upload it twice or overwrite each other's resumable
        session in the catalog.
        """
        run_lock = FileLock(self.local_dir / LOCK_FILE)
        try:
            run_lock.acquire(timeout=0)
        except LockBusy:
            # `once` sends the whole queue itself; this round is skipped, not failed
            log.info("queued uploads wait: a snapshot started from the command line (pid "
                     "%s) holds the run lock and sends them itself; trying again later",
                     run_lock.holder_pid() or "?")
            return self.clock() + UPLOADS_BUSY_RECHECK
        except OSError as exc:
            return self._upload_pass_failed(f"cannot take the run lock in {self.local_dir} "
                                            f"({exc.strerror or exc})")
        try:
            due = send_queued_uploads(self.cfg, self._abort, now=self.clock)
        # a scheduler job: whatever escapes would end the retries
        except Exception as exc:  # noqa: BLE001
            return self._upload_pass_failed(_one_line(exc))
        finally:
            run_lock.release()
        self._failed_passes = 0
        return due

    def _upload_pass_failed(self, why: str) -> datetime:
        self._failed_passes += 1
        due = self.clock() + timedelta(seconds=PASS_FAILED_RETRY.delay(self._failed_passes))
        log.warning("queued uploads not retried: %s; trying again at %s", why, _fmt(due))
        return due

    # --- health and state -----------------------------------------------------------------

    def _health(self) -> None:
        if self.watcher is not None and not self.watcher.is_alive() and not self._stopping:
            log.error("the file watcher stopped unexpectedly; exiting so the service manager "
                      "restarts the service")
            self._exit_code = EXIT_RUN_FAILED
            self.stop_event.set()

    def _write_state(self, *, stopped: bool = False) -> None:
        with self._lock:
            t = self.tracker
            state: dict[str, Any] = {
                "pid": os.getpid(),
                "started_at": self._started_at,
                "updated_at": self.clock(),
                "stopped_at": self.clock() if stopped else None,
                "watch": self.watcher.kind if self.watcher else None,
                "watched": [str(f) for f, _ in self.watcher.folders] if self.watcher else [],
                "last_success": t.last_success if t else None,
                "next_interval_at": t.next_interval_at() if t else None,
                "next_check_at": self._decide_at,
                "dirty_since": t.dirty_since if t else None,
                "pending_changes": t.pending_changes if t else 0,
                "running_since": t.running_since if t else None,
                "running_trigger": t.running_trigger if t else None,
                "consecutive_failures": t.consecutive_failures if t else 0,
                "waiting_for": self._last_reason,
            }
        try:
            write_state(self.local_dir, state)
        except OSError as exc:
            log.warning("cannot write the service state file in %s (%s); `status` will show "
                        "less", self.local_dir, exc.strerror or exc)


def start_failed(cfg: Config, problem: Problem, catalog: Catalog | None = None, *,
                 started_at: datetime | None = None) -> None:
    """Tell the admin by email and heartbeat that the service could not start; never raises
    (the caller still exits with the start's own code)."""
    report = failed_report(cfg, problem, trigger="start", phase="start",
                           started_at=started_at)
    send_notice(cfg, report, catalog)


def send_queued_uploads(cfg: Config, stop: threading.Event, *,
                        now: Callable[[], datetime] = utcnow) -> datetime | None:
    """Send the queued copies that are due; return when the next one is due (None: nothing
    is queued at an enabled destination).

    The destinations come from :mod:`watcher.destinations.registry`, the queue logic from
    :mod:`watcher.backup.uploads`. Raises whatever kept the pass from opening or closing the
    destinations or reading the queue: the job that calls this sets the retry timer then.
    """
    destinations = enabled_destinations(cfg, stop=stop)
    if not destinations:
        return None
    catalog = Catalog(cfg.local.dir)
    with contextlib.ExitStack() as opened:
        for dest in destinations:
            opened.enter_context(dest)
        results = send_copies(cfg, catalog, destinations, [], stop=stop, now=now)
    for r in results:
        if r.state == "uploaded":
            log.info("queued upload sent: %s to %s", r.snapshot_id, r.name)
        else:
            log.warning("queued upload of %s to %s still %s: %s", r.snapshot_id, r.name,
                        r.state, r.error or "")
    return next_due(catalog, destinations, now())


def _release_memory() -> None:
    """Give the memory a snapshot used back to the OS between runs.

    The run frees its buffers (zstd workers, the tar queue), but glibc keeps freed heap pages
    in its arenas, so an idle service would sit at the run's high-water mark for days.
    """
    gc.collect()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _fmt(dt: datetime | None) -> str:
    return dt.strftime("%Y-%m-%d %H:%M:%S UTC") if dt else "-"
