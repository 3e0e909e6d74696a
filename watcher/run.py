"""One backup run, end to end: snapshot, local store, destinations, prune, notify.

Every step's outcome lands in the returned :class:`RunReport`; nothing here prints. A failure
of a later step (an upload, pruning, an email) never undoes an earlier one: the snapshot that
was stored stays stored.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from watcher.catalog import Catalog, utcnow
from watcher.config import Config
from watcher.destinations.base import Destination
from watcher.inventory import reconcile
from watcher.lock import LOCK_FILE, FileLock, LockBusy
from watcher.prune import prune
from watcher.report import DestinationResult, Problem, RunReport, human_size
from watcher.snapshot import Aborted, SnapshotError, take_snapshot
from watcher.store import LocalStore, StoreError

log = logging.getLogger("watcher.run")


class RunBusy(Exception):
    """Another process is taking a snapshot of the same local dir."""


def run_lock(cfg: Config) -> FileLock:
    """The lock that keeps two snapshots of one local dir from running at once."""
    return FileLock(cfg.local.dir / LOCK_FILE)


def run_backup(
    cfg: Config,
    *,
    trigger: str,
    upload: bool = True,
    email: bool = True,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
    stop: threading.Event | None = None,
    lock_timeout: float = 3600.0,
    next_run: Callable[[], datetime | None] | None = None,
) -> RunReport:
    """Take one snapshot and carry it through every later step; return the report.

    Waits up to ``lock_timeout`` seconds for a snapshot already running (the service, or
    another `once`) and raises :class:`RunBusy` after that. ``stop`` aborts the snapshot
    cleanly (no partial file kept). Never raises for a failed run: the report says so.
    """
    store = LocalStore(cfg)
    report = RunReport(name=cfg.name, trigger=trigger, started_at=utcnow())
    try:
        store.ensure()
    except StoreError as exc:
        report.errors.append(Problem(str(exc), cause="backup_dir"))
        report.finish(utcnow())
        return report

    lock = run_lock(cfg)
    if lock.is_held_elsewhere():
        log.info("waiting for the snapshot already running (pid %s) to finish",
                 lock.holder_pid() or "?")
    try:
        lock.acquire(timeout=lock_timeout)
    except LockBusy as exc:
        raise RunBusy(f"{exc}: a snapshot is already running; try again when it ends") from None
    try:
        return _run_locked(cfg, store, report, upload=upload, email=email, progress=progress,
                           on_total=on_total, stop=stop, next_run=next_run)
    finally:
        lock.release()


def _run_locked(cfg: Config, store: LocalStore, report: RunReport, *, upload: bool,
                email: bool, progress: Callable[[int], None] | None,
                on_total: Callable[[int], None] | None, stop: threading.Event | None,
                next_run: Callable[[], datetime | None] | None) -> RunReport:
    store.remove_leftovers()
    catalog = Catalog(store.dir)
    interrupted = catalog.abandon_unfinished_runs()
    if interrupted:
        log.warning("%d earlier run(s) were interrupted before finishing; their partial files "
                    "were removed", interrupted)
    reconcile(catalog, store)
    previous = catalog.last_finished_run()
    report.previous_status = previous.status if previous else None
    run_id = catalog.start_run(report.trigger, report.started_at)
    log.info("run %d started (trigger: %s)", run_id, report.trigger)

    try:
        result = take_snapshot(cfg, store, now=report.started_at, progress=progress,
                               on_total=on_total, stop=stop)
    except SnapshotError as exc:
        report.errors.append(Problem(str(exc), cause=exc.cause))
    except Aborted:
        report.errors.append(Problem("the run was stopped before the snapshot was complete; "
                                     "nothing partial was kept",
                                     "it runs again at the next start", cause="stopped"))
    else:
        report.snapshot = result.info
        report.warnings.extend(result.warnings)
        catalog.add_snapshot(result.info, trigger=report.trigger,
                             duration=(utcnow() - report.started_at).total_seconds(),
                             fingerprint=result.fingerprint)
        log.info("stored %s (%s, %d files, %d databases checked ok)", Path(result.info.file).name,
                 human_size(result.info.size), result.info.files, len(result.info.databases))

    destinations = _destinations(cfg, report)
    try:
        if destinations:
            report.destinations = _send(cfg, catalog, destinations, report, upload=upload,
                                        stop=stop)
        protected = _protected(catalog, destinations)
        if report.snapshot is not None:
            pruned = prune(cfg, catalog, store, destinations if upload else [],
                           protected=protected)
            report.pruned = [sid for ids in pruned.deleted.values() for sid in ids]
            report.warnings.extend(pruned.problems)
        report.kept = [a.id for a in store.archives()]
    except Exception as exc:  # a later step must never lose the stored snapshot's report
        log.exception("a step after the snapshot failed")
        report.warnings.append(Problem(f"after the snapshot: {exc}",
                                       "the snapshot itself is stored; see the log"))
    finally:
        for dest in destinations:
            dest.close()

    try:
        report.free_bytes = shutil.disk_usage(store.dir).free
    except OSError:
        report.free_bytes = None
    report.next_run = next_run() if next_run else None
    report.finish(utcnow())
    summary = summary_line(report)
    catalog.finish_run(run_id, report, summary)
    (log.error if report.status == "failed" else log.info)("%s", summary)

    from watcher.notify import notify

    notify(cfg, report, catalog, run_id, email=email, stop=stop)
    return report


def _destinations(cfg: Config, report: RunReport) -> list[Destination]:
    if not cfg.drive.enabled:
        return []
    from watcher.destinations.base import DestinationError
    from watcher.destinations.factory import enabled_destinations

    try:
        return enabled_destinations(cfg)
    except DestinationError as exc:
        report.destinations.append(DestinationResult(name="drive", state="pending",
                                                     error=str(exc)))
        return []


def _send(cfg: Config, catalog: Catalog, destinations: list[Destination], report: RunReport,
          *, upload: bool, stop: threading.Event | None) -> list[DestinationResult]:
    """Queue the new snapshot at each destination and, unless --no-upload, send the queue."""
    from watcher.uploads import queue_copies, send_copies

    new = [report.snapshot.id] if report.snapshot else []
    if not upload:
        queue_copies(catalog, destinations, new)
        return [DestinationResult(name=d.name, state="skipped", snapshot_id=sid,
                                  hint="upload skipped (--no-upload); it stays queued")
                for d in destinations for sid in new]
    return send_copies(cfg, catalog, destinations, new, stop=stop)


def _protected(catalog: Catalog, destinations: list[Destination]) -> set[str]:
    if not destinations:
        return set()
    from watcher.uploads import protected_snapshot_ids

    return protected_snapshot_ids(catalog, destinations)


def summary_line(report: RunReport) -> str:
    """The one line per run an admin reads in the journal."""
    if report.snapshot is None:
        first = report.errors[0].message if report.errors else "no snapshot was stored"
        return f"backup FAILED after {seconds(report.duration)}: {first}"
    s = report.snapshot
    parts = [f"backup {report.status.upper()}: {Path(s.file).name}", human_size(s.size),
             f"{s.files} files", f"ratio {s.ratio:.2f}", seconds(report.duration)]
    for d in report.destinations:
        parts.append(f"{d.name} {d.state}")
    if report.warnings:
        parts.append(f"{len(report.warnings)} warning(s)")
    if report.pruned:
        parts.append(f"pruned {len(report.pruned)}")
    return ", ".join(parts)


def seconds(value: float) -> str:
    """A duration for a log line: small runs keep their hundredths, not "0.0s"."""
    return f"{value:.2f}s" if value < 10 else f"{value:.1f}s"

