"""One backup run, end to end: snapshot, local store, destinations, prune, notify.

Every step's outcome lands in the returned :class:`RunReport`; nothing here prints. A failure
of a later step (an upload, pruning, an email) never undoes an earlier one: the snapshot that
was stored stays stored.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from watcher.backup.canary import Canary, Sample, compare, detect, next_hold
from watcher.backup.failure import failed_report, problem_for, send_notice, unexpected_problem
from watcher.backup.prune import apply_retention, notice_problems
from watcher.backup.report import (
    DestinationResult,
    Problem,
    RunReport,
    describe_kind,
    destination_states,
    human_size,
)
from watcher.backup.sealing import encrypt_local_archives, local_file
from watcher.backup.uploads import queue_copies, send_copies
from watcher.config.settings import Config
from watcher.destinations.base import Destination, DestinationError
from watcher.destinations.registry import enabled_destinations
from watcher.snapshot.take import Aborted, SnapshotError, take_snapshot
from watcher.state.canary_file import (
    keep_as_last,
    load_facts,
    load_last_facts,
    read_hold,
    sample_changed,
    write_hold,
)
from watcher.state.catalog import Catalog, utcnow
from watcher.state.inventory import reconcile
from watcher.state.lock import LOCK_FILE, FileLock, LockBusy
from watcher.state.store import LocalStore, StoreError, free_bytes

log = logging.getLogger("watcher.backup.run")


class RunBusy(Exception):
    """Another process is taking a snapshot of the same local dir."""


def run_lock(cfg: Config) -> FileLock:
    """The lock that keeps two snapshots of one local dir from running at once."""
    return FileLock(cfg.local.dir / LOCK_FILE)


# keyword-only options, each named at every call
def run_backup(  # noqa: PLR0913
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
    full: bool = False,
) -> RunReport:
    """Take one snapshot and carry it through every later step; return the report.

    ``full`` forces a full archive (`once --full`); otherwise the snapshot is a delta when
    watcher/snapshot/plan.py says so.

    Waits up to ``lock_timeout`` seconds for a snapshot already running (the service, or
    another `once`) and raises :class:`RunBusy` after that, once the admin has been told.
    ``stop`` aborts the snapshot cleanly (no partial file kept). Never raises for a failed
    run, whatever failed (a damaged catalog, a bug): the report says so, and it is mailed and
    pinged like any other.
    """
    store = LocalStore(cfg)
    report = RunReport(name=cfg.name, trigger=trigger, started_at=utcnow())
    try:
        store.ensure()
    except StoreError as exc:
        return _failed_early(cfg, report, Problem(str(exc), cause="backup_dir"), email=email,
                             stop=stop)

    lock = run_lock(cfg)
    try:
        if lock.is_held_elsewhere():
            log.info("waiting for the snapshot already running (pid %s) to finish",
                     lock.holder_pid() or "?")
        lock.acquire(timeout=lock_timeout)
    except LockBusy as exc:
        busy = RunBusy(f"{exc}: a snapshot is already running; try again when it ends")
        _failed_early(cfg, report, Problem(
            str(busy), "if no backup is really running, look for a stuck siip-watcher process "
            "(`siip-watcher status`) and end it", cause="busy"), email=email, stop=stop)
        raise busy from None
    except OSError as exc:
        return _failed_early(cfg, report, problem_for(exc, store.dir), email=email, stop=stop)
    try:
        return _run_locked(cfg, store, report, upload=upload, email=email, progress=progress,
                           on_total=on_total, stop=stop, next_run=next_run, full=full)
    finally:
        lock.release()


def _failed_early(cfg: Config, report: RunReport, problem: Problem, *, email: bool,
                  stop: threading.Event | None) -> RunReport:
    """Close, log and notify a run that failed before it could open the catalog."""
    report = failed_report(cfg, problem, trigger=report.trigger, started_at=report.started_at)
    log.error("%s", summary_line(report))
    send_notice(cfg, report, email=email, stop=stop)
    return report


# run_backup's options, passed on by name
def _run_locked(cfg: Config, store: LocalStore, report: RunReport, *, upload: bool,  # noqa: PLR0913
                email: bool, progress: Callable[[int], None] | None,
                on_total: Callable[[int], None] | None, stop: threading.Event | None,
                next_run: Callable[[], datetime | None] | None, full: bool) -> RunReport:
    catalog: Catalog | None = None
    run_id: int | None = None
    try:
        with ExitStack() as opened:
            store.remove_leftovers()
            catalog = Catalog(store.dir)
            if catalog.recovered_from is not None:
                report.warnings.append(Problem(
                    f"the catalog was damaged; it was moved aside to "
                    f"{catalog.recovered_from.name} and rebuilt from the archives",
                    "nothing to do: copies not known to be at a destination are queued "
                    "again; delete the moved file when you no longer need it",
                    key="catalog_rebuilt", params={"file": catalog.recovered_from.name}))
            interrupted = catalog.abandon_unfinished_runs()
            if interrupted:
                log.warning("%d earlier run(s) were interrupted before finishing; their partial "
                            "files were removed", interrupted)
            reconcile(catalog, store)
            previous = catalog.last_run(finished=True)
            report.previous_status = previous.status if previous else None
            run_id = catalog.start_run(report.trigger, report.started_at)
            log.info("run %d started (trigger: %s)", run_id, report.trigger)
            _snapshot(cfg, store, catalog, report, progress=progress, on_total=on_total,
                      stop=stop, full=full)
            # before the copies: they are then sent from the very file kept here
            report.warnings.extend(encrypt_local_archives(cfg, store))
            if report.snapshot is not None:
                # the catalog keeps the plain archive's name; the report names what is there
                report.snapshot.file = str(local_file(Path(report.snapshot.file)))
            destinations = [opened.enter_context(d) for d in _destinations(cfg, report)]
            _after_snapshot(cfg, catalog, store, destinations, report, upload=upload,
                            stop=stop)
    except Exception as exc:  # noqa: BLE001
        # the catalog, a bug, the disk: whatever it was, the run still ends with a report
        # that is recorded, logged and sent to the admin
        _crashed(report, exc, store)

    report.free_bytes = free_bytes(store.dir)
    report.next_run = next_run() if next_run else None
    report.finish(utcnow())
    summary = summary_line(report)
    if catalog is not None and run_id is not None:
        try:
            catalog.finish_run(run_id, report, summary)
        except Exception as exc:  # noqa: BLE001 - recording is best effort: the run's result stands
            log.warning("run %d could not be recorded in the catalog (%s); `status` will not "
                        "show it", run_id, exc)
    (log.error if report.status == "failed" else log.info)("%s", summary)
    send_notice(cfg, report, catalog, run_id, email=email, stop=stop)
    return report


def _snapshot(cfg: Config, store: LocalStore, catalog: Catalog, report: RunReport, *,
              progress: Callable[[int], None] | None, on_total: Callable[[int], None] | None,
              stop: threading.Event | None, full: bool) -> None:
    try:
        result = take_snapshot(cfg, store, now=report.started_at, progress=progress,
                               on_total=on_total, stop=stop, force_full=full)
    except SnapshotError as exc:
        report.errors.append(Problem(str(exc), cause=exc.cause))
        return
    except Aborted:
        report.errors.append(Problem("the run was stopped before the snapshot was complete; "
                                     "nothing partial was kept",
                                     "it runs again at the next start", cause="stopped",
                                     key="stopped"))
        return
    except Exception as exc:  # a bug in the snapshot code: never blamed on the catalog
        log.exception("the snapshot failed on an unexpected error")
        report.errors.append(unexpected_problem(exc))
        return
    report.snapshot = result.info
    report.warnings.extend(result.warnings)
    catalog.add_snapshot(result.info, trigger=report.trigger,
                         duration=(utcnow() - report.started_at).total_seconds(),
                         fingerprint=result.fingerprint)
    log.info("stored %s (%s, %s, %d files, %d databases checked ok)",
             Path(result.info.file).name, describe_kind(result.info),
             human_size(result.info.size), result.info.files, len(result.info.databases))
    _check_canaries(cfg, store, report, result.manifest_file)


def _check_canaries(cfg: Config, store: LocalStore, report: RunReport,
                    manifest: Path | None) -> None:
    """Compare the new snapshot with the previous one; raise, carry or release the hold."""
    assert report.snapshot is not None
    now = utcnow()
    canaries: list[Canary] = []
    try:
        current = load_facts(manifest) if manifest else None
        previous = load_last_facts(store.dir)
        if current is not None:
            change = compare(previous, current) if previous else None
            sample = sample_changed(cfg.source.root, change.changed) if change else Sample()
            canaries = detect(previous, current, cfg.canary, sample)
    finally:
        if manifest is not None and manifest.exists():
            keep_as_last(manifest, store.dir)
    hold, event = next_hold(read_hold(store.dir, now), canaries, report.snapshot.id, now,
                            cfg.canary)
    write_hold(store.dir, hold)
    for canary in canaries:
        log.warning("DATA-LOSS ALERT: %s; nothing is pruned until `siip-watcher ack`",
                    canary.message)
        report.warnings.append(Problem(f"data-loss alert: {canary.message}", canary.hint,
                                       key=canary.key, params=canary.params))
    if event == "released":
        log.info("the data-loss alert is released after %d days without one; pruning resumes",
                 cfg.canary.release_after_days)
    if hold is not None:
        report.alert = {**hold.to_dict(), "event": event,
                        "kinds": list(dict.fromkeys(c.kind for c in canaries))}


def _after_snapshot(cfg: Config, catalog: Catalog, store: LocalStore,
                    destinations: list[Destination], report: RunReport, *, upload: bool,
                    stop: threading.Event | None) -> None:
    """Send, prune, list what is kept: a failure here never loses the snapshot's report."""
    try:
        if destinations:
            report.destinations = _send(cfg, catalog, destinations, report, upload=upload,
                                        stop=stop)
        if report.snapshot is not None:
            pruned = apply_retention(cfg, catalog, store, destinations,
                                     prune_destinations=upload, just_taken=report.snapshot.id)
            report.pruned = [sid for ids in pruned.deleted.values() for sid in ids]
            report.warnings.extend(pruned.problems)
        # what the uploads had to do otherwise (a bad copy trashed rather than deleted)
        report.warnings.extend(notice_problems(destinations))
        report.kept = [a.id for a in store.archives()]
    except Exception as exc:
        log.exception("a step after the snapshot failed")
        report.warnings.append(Problem(f"after the snapshot: {exc}",
                                       "the snapshot itself is stored; see the log",
                                       key="after_snapshot", detail=str(exc)))


def _crashed(report: RunReport, exc: Exception, store: LocalStore) -> None:
    problem = problem_for(exc, store.dir)
    if problem.cause == "unexpected":
        log.exception("the run failed on an unexpected error")
    if report.snapshot is not None:
        # stored, and the next run's reconcile puts it back in the catalog if need be
        report.warnings.append(replace(problem, message=f"after the snapshot: "
                                                        f"{problem.message}"))
    else:
        report.errors.append(problem)


def _destinations(cfg: Config, report: RunReport) -> list[Destination]:
    """The enabled destinations; one that cannot even be built is reported pending."""

    def unavailable(name: str, exc: DestinationError) -> None:
        report.destinations.append(DestinationResult(name=name, state="pending",
                                                     error=str(exc), key="unavailable",
                                                     params={"dest": name}))

    return enabled_destinations(cfg, unavailable=unavailable)


def _send(cfg: Config, catalog: Catalog, destinations: list[Destination], report: RunReport,
          *, upload: bool, stop: threading.Event | None) -> list[DestinationResult]:
    """Queue the new snapshot at each destination and, unless --no-upload, send the queue."""
    new = [report.snapshot.id] if report.snapshot else []
    if not upload:
        queue_copies(catalog, destinations, new)
        return [DestinationResult(name=d.name, state="skipped", snapshot_id=sid,
                                  hint="upload skipped (--no-upload); it stays queued",
                                  key="no_upload")
                for d in destinations for sid in new]
    return send_copies(cfg, catalog, destinations, new, stop=stop)


def summary_line(report: RunReport) -> str:
    """The one line per run an admin reads in the journal."""
    if report.snapshot is None:
        first = report.errors[0].message if report.errors else "no snapshot was stored"
        return f"backup FAILED after {seconds(report.duration)}: {first}"
    s = report.snapshot
    # a delta's size against the whole tree is no compression ratio: say what it is instead
    packed = describe_kind(s) if s.is_delta else f"ratio {s.ratio:.2f}"
    parts = [f"backup {report.status.upper()}: {Path(s.file).name}", human_size(s.size),
             f"{s.files} files", packed, seconds(report.duration)]
    parts.extend(destination_states(report.destinations))
    if report.warnings:
        parts.append(f"{len(report.warnings)} warning(s)")
    if report.pruned:
        parts.append(f"pruned {len(report.pruned)}")
    return ", ".join(parts)


_HUNDREDTHS_BELOW = 10.0  # seconds


def seconds(value: float) -> str:
    """A duration for a log line: small runs keep their hundredths, not "0.0s"."""
    return f"{value:.2f}s" if value < _HUNDREDTHS_BELOW else f"{value:.1f}s"

