"""The upload queue: every snapshot's copy at every enabled destination, until it is there.

A copy is a row in the catalog (pending, uploaded or failed). :func:`send_copies` makes sure
the rows exist for new snapshots and then sends what is still pending, oldest snapshot
first. A retryable failure (network, 5xx) leaves the copy pending with a growing
``next_try_at``; a non-retryable one (no quota, no folder, revoked sign-in) marks it failed
with the reason and tries again much later, because the admin may fix the cause. The queue
alone owns this schedule: the service sets its upload timer to :func:`next_due` and sends
what is due then; ``siip-watcher once`` (``force=True``) sends everything now.
A destination's resumable state is stored with the copy, so a restart resumes an upload.

A delta snapshot is of no use at a destination without its base full, so the base goes first:
a queued delta queues its base there too (when the base has no copy there yet, say because
the destination was enabled after it was taken), and the delta waits, untried, until the
base's copy there is uploaded.

Local retention asks :func:`protected_snapshot_ids` which snapshots it must keep: those whose
copy has not yet reached every enabled destination.

Encryption happens here, at the one seam every destination's copies pass through: when
``[encryption]`` names recipients, a destination whose kind is off-site (all of them, see
``off_site`` in watcher/destinations/registry.py) is sent the archive's encrypted file
(:mod:`watcher.backup.sealing`) instead of the archive, and that file is removed once no
copy of the snapshot still waits for it.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from watcher.archive.files import AGE_SUFFIX, ARCHIVE_SUFFIX, parse_snapshot_id, snapshot_id_of
from watcher.backup.report import DestinationResult
from watcher.backup.sealing import discard, sealed_archive, sealed_path
from watcher.config.settings import Config
from watcher.destinations.base import Destination, DestinationError, ProgressFn, Sealed
from watcher.destinations.registry import copies_encrypted
from watcher.encryption.keys import KeyFileError, configured_recipients
from watcher.retry import RetryPolicy
from watcher.state.catalog import Catalog, CopyRow, SnapshotRow, utcnow

log = logging.getLogger(__name__)

#: a retryable failure: 5 min, 10, 20, ... up to 6 h, +-10% so copies do not retry in step
RETRY = RetryPolicy(attempts=None, base=timedelta(minutes=5).total_seconds(),
                    cap=timedelta(hours=6).total_seconds(), jitter=(0.9, 1.1))
#: a failure trying again cannot fix: the cause needs the admin, but a full drive or a daily
#: limit may clear on its own
FAILED_RETRY = timedelta(hours=6)

ProgressFactory = Callable[[str, str, int], ProgressFn | None]
"""(destination name, snapshot id, archive size) -> a progress callback, or None."""


def retry_delay(attempts: int, *, retryable: bool,
                rand: Callable[[], float] = random.random,
                at_least: float | None = None) -> timedelta:
    """How long a copy waits after its ``attempts``-th failed attempt: :data:`RETRY` when
    trying again may help, else :data:`FAILED_RETRY`; never less than ``at_least`` seconds,
    the wait the destination's service asked for."""
    if not retryable:
        return max(FAILED_RETRY, timedelta(seconds=at_least or 0.0))
    return timedelta(seconds=RETRY.delay(attempts, rand, at_least=at_least))


def due(copy: CopyRow, now: datetime) -> bool:
    """A queued copy whose backoff has run out (or that never failed)."""
    return copy.state != "uploaded" and (copy.next_try_at is None or copy.next_try_at <= now)


def queue_copies(catalog: Catalog, destinations: Sequence[Destination | str],
                 snapshot_ids: Sequence[str]) -> list[tuple[str, str]]:
    """Make sure each snapshot has a copy row (pending if new) at each destination (given as
    itself or by name); returns the (snapshot id, destination name) pairs queued now."""
    queued: list[tuple[str, str]] = []
    for sid in snapshot_ids:
        for name in _names(destinations):
            if not catalog.copies(sid, destination=name):
                catalog.set_copy(sid, name, "pending")
                queued.append((sid, name))
    return queued


def _names(destinations: Sequence[Destination | str]) -> list[str]:
    return [d if isinstance(d, str) else d.name for d in destinations]


def send_copies(
    cfg: Config,
    catalog: Catalog,
    destinations: Sequence[Destination],
    snapshot_ids: Sequence[str] | None = None,
    *,
    stop: threading.Event | None = None,
    force: bool | None = None,
    now: Callable[[], datetime] = utcnow,
    progress: ProgressFactory | None = None,
) -> list[DestinationResult]:
    """Send the copies of ``snapshot_ids`` and every other copy still queued.

    ``snapshot_ids`` are always tried. Other queued copies: all of them when ``force``; only
    those whose ``next_try_at`` has passed when not. ``force=None`` (the default) means: after
    a run (``snapshot_ids`` given) send everything queued, as the issue asks of `once` and of
    the service after each run; on a retry timer (no ids) only what is due. After a retryable
    failure the destination's remaining copies wait for the next pass (reported pending)
    instead of each spending a full retry budget on a service that is down. Returns one
    result per copy tried or held back.
    """
    wanted = list(dict.fromkeys(snapshot_ids or []))
    if force is None:
        force = bool(wanted)
    queue_copies(catalog, destinations, wanted)
    queue_bases(catalog, destinations)

    snapshots: dict[str, SnapshotRow | None] = {}
    work: list[tuple[Destination, CopyRow]] = []
    moment = now()
    for dest in destinations:
        for copy in catalog.copies(destination=dest.name):
            if copy.state == "uploaded":
                continue
            if force or copy.snapshot_id in wanted or due(copy, moment):
                work.append((dest, copy))
                snapshots.setdefault(copy.snapshot_id, catalog.snapshot(copy.snapshot_id))

    oldest = datetime.min.replace(tzinfo=UTC)

    def age(item: tuple[Destination, CopyRow]) -> tuple[datetime, str]:
        snap = snapshots.get(item[1].snapshot_id)
        return (snap.created_at if snap else oldest, item[1].snapshot_id)

    work.sort(key=age)
    recipients = _recipients(cfg)
    results: list[DestinationResult] = []
    down: dict[str, tuple[str, datetime | None]] = {}
    for dest, copy in work:
        if stop is not None and stop.is_set():
            results.append(_held_back(dest, copy, "not tried: the service is stopping",
                                      "stopping"))
            continue
        if dest.name in down:
            error, retry_at = down[dest.name]
            _wait_with_the_failed_copy(catalog, copy, retry_at)
            results.append(_held_back(dest, copy, f"not tried: {dest.name} failed earlier in "
                                      f"this pass ({error})", "failed_earlier"))
            continue
        waiting = _waits_for_base(catalog, dest, copy, snapshots.get(copy.snapshot_id), now=now)
        if waiting is not None:
            results.append(waiting)
            continue
        result = _send_one(cfg, catalog, dest, copy, snapshots.get(copy.snapshot_id),
                           recipients=recipients if copies_encrypted(dest.name) else [],
                           now=now, progress=progress)
        if result is None:
            continue
        if result.state == "pending":
            failed = catalog.copies(copy.snapshot_id, destination=dest.name)
            down[dest.name] = (result.error or "error",
                               failed[0].next_try_at if failed else None)
        results.append(result)
    _discard_sent(cfg, catalog, destinations)
    return results


def _recipients(cfg: Config) -> list[str] | KeyFileError:
    """The public keys off-site copies are encrypted for (empty: none), or why they cannot
    be read now (a recipients_file gone since the configuration was loaded): then no
    off-site copy is sent, rather than one in plaintext."""
    try:
        return configured_recipients(cfg.encryption)
    except KeyFileError as exc:
        return exc


def _discard_sent(cfg: Config, catalog: Catalog, destinations: Sequence[Destination]) -> None:
    """Remove each encrypted file beside its archive once no copy at an enabled destination
    waits for it (one at a destination enabled again later is encrypted anew), whichever
    pass sent the last copy. An encrypted file without its archive is the archive itself
    (``[encryption] local = true``) and stays."""
    names = set(_names(destinations))
    for path in cfg.local.dir.glob(f"*{ARCHIVE_SUFFIX}{AGE_SUFFIX}"):
        archive = path.with_name(path.name[: -len(AGE_SUFFIX)])
        sid = snapshot_id_of(path.name)
        parsed = parse_snapshot_id(sid) if sid else None
        if sid is None or parsed is None or parsed[0] != cfg.name or not archive.is_file():
            continue
        if all(c.state == "uploaded" for c in catalog.copies(sid) if c.destination in names):
            discard(archive)


def queue_bases(catalog: Catalog, destinations: Sequence[Destination | str]) -> None:
    """Queue the base full of each delta queued at a destination there too, unless the base
    has a copy row there already or is no longer in the local dir to be sent."""
    for name in _names(destinations):
        for copy in catalog.copies(destination=name):
            snap = catalog.snapshot(copy.snapshot_id) if copy.state != "uploaded" else None
            if snap is None or not snap.base or catalog.copies(snap.base, destination=name):
                continue
            base = catalog.snapshot(snap.base)
            if base is not None and base.local:
                catalog.set_copy(snap.base, name, "pending")
                log.info("queued %s for %s: the delta %s needs it there", snap.base, name,
                         snap.id)


def _waits_for_base(catalog: Catalog, dest: Destination, copy: CopyRow,
                    snap: SnapshotRow | None, *,
                    now: Callable[[], datetime]) -> DestinationResult | None:
    """None when ``copy`` may be sent now: a full, or a delta whose base is uploaded at
    ``dest``. Otherwise the delta stays queued, untried, and this says why: its base's copy
    there is still pending or failed (the delta is next due when the base is), or the base
    is gone from the local dir without reaching ``dest`` (then no later pass can help)."""
    if snap is None or not snap.base:
        return None
    base_copies = catalog.copies(snap.base, destination=dest.name)
    if base_copies and base_copies[0].state == "uploaded":
        return None
    sid, base = snap.id, snap.base
    if not base_copies:
        message = (f"its base full {base} is no longer in the local dir and never reached "
                   f"{dest.name}, so {sid} could not be restored from there")
        catalog.set_copy(sid, dest.name, "failed", error=message,
                         next_try_at=now() + FAILED_RETRY)
        log.warning("%s: copy of %s failed: %s", dest.name, sid, message)
        return DestinationResult(name=dest.name, state="failed", error=message,
                                 hint="the next run takes a full snapshot, since its base "
                                      "is gone", snapshot_id=sid, key="base_gone",
                                 params={"sid": sid, "base": base, "dest": dest.name})
    _wait_with_the_failed_copy(catalog, copy, base_copies[0].next_try_at)
    return _held_back(dest, copy, f"not tried: its base full {base} is not on {dest.name} yet",
                      "waits_for_base", base=base)


def _wait_with_the_failed_copy(catalog: Catalog, copy: CopyRow,
                               retry_at: datetime | None) -> None:
    """A copy held back because its destination just failed is next due when the failed
    copy is, never sooner: otherwise it would count as due at once and the next pass would
    spend a full retry budget on a service that is down."""
    if retry_at is None or (copy.next_try_at is not None and copy.next_try_at >= retry_at):
        return
    catalog.set_copy(copy.snapshot_id, copy.destination, copy.state, error=copy.last_error,
                     next_try_at=retry_at)


def _held_back(dest: Destination, copy: CopyRow, why: str, key: str,
               **params: str) -> DestinationResult:
    return DestinationResult(name=dest.name, state="pending" if copy.state != "failed"
                             else "failed", error=copy.last_error or why,
                             hint=f"{why}; it stays queued", snapshot_id=copy.snapshot_id,
                             key=key, params={"dest": dest.name, **params})


def archive_path(cfg: Config, snap: SnapshotRow) -> Path | None:
    """The local archive of ``snap``: as recorded, else by name in the local dir (the
    dir may have been moved and the catalog rebuilt). None when it is not on disk."""
    recorded = Path(snap.file)
    for candidate in (recorded, cfg.local.dir / recorded.name):
        # encrypted in place ([encryption] local = true): its copies are sent from that
        if candidate.is_file() or sealed_path(candidate).is_file():
            return candidate
    return None


def _send_one(cfg: Config, catalog: Catalog, dest: Destination, copy: CopyRow,  # noqa: PLR0913
              snap: SnapshotRow | None, *, recipients: list[str] | KeyFileError,
              now: Callable[[], datetime],
              progress: ProgressFactory | None) -> DestinationResult | None:
    sid = copy.snapshot_id
    if snap is None:
        # the snapshot was forgotten (retention, catalog rebuild): nothing left to send
        catalog.delete_copy(sid, dest.name)
        return None
    path = archive_path(cfg, snap) if snap.local else None
    if path is None:
        message = (f"the local archive of {sid} is missing, so it cannot be copied to "
                   f"{dest.name}")
        catalog.set_copy(sid, dest.name, "failed", error=message,
                         next_try_at=now() + FAILED_RETRY)
        return DestinationResult(name=dest.name, state="failed", error=message,
                                 hint="run `siip-watcher verify --all` to see what the local "
                                      "dir holds", snapshot_id=sid, key="archive_missing",
                                 params={"sid": sid, "dest": dest.name})

    def save_state(state: dict[str, Any]) -> None:
        catalog.save_resume(sid, dest.name, state)

    attempts = copy.attempts + 1
    log.info("sending %s to %s (attempt %d)", sid, dest.name, attempts)
    sealed: Sealed | None = None
    try:
        if isinstance(recipients, KeyFileError):
            raise DestinationError(f"not sent, since it would leave unencrypted: {recipients}",
                                   retryable=False)
        if recipients or not path.is_file():
            # with no plain archive left, the encrypted one is all there is to send
            encrypted = sealed_archive(path, snap.sha256, recipients)
            path, sealed = encrypted.path, encrypted.sealed
        size = path.stat().st_size
        remote = dest.put(path, snapshot_id=sid, sha256=snap.sha256, state=copy.resume,
                          save_state=save_state, sealed=sealed,
                          progress=progress(dest.name, sid, size) if progress else None)
    except DestinationError as exc:
        return _record_failure(catalog, dest, sid, str(exc), retryable=exc.retryable,
                               attempts=attempts, now=now, at_least=exc.retry_after)
    except Exception as exc:  # a bug, not an answer from the service: keep the copy queued
        log.exception("unexpected error while sending %s to %s", sid, dest.name)
        return _record_failure(catalog, dest, sid, f"unexpected {type(exc).__name__} (see the "
                               f"log)", retryable=True, attempts=attempts, now=now)
    catalog.set_copy(sid, dest.name, "uploaded", remote_id=remote.remote_id, link=remote.link,
                     count_attempt=True, clear_resume=True)
    log.info("%s is on %s (%s)", sid, dest.name, remote.link or remote.remote_id)
    return DestinationResult(name=dest.name, state="uploaded", link=remote.link,
                             snapshot_id=sid)


def _record_failure(catalog: Catalog, dest: Destination, sid: str, message: str, *,
                    retryable: bool, attempts: int, now: Callable[[], datetime],
                    at_least: float | None = None) -> DestinationResult:
    next_try = now() + retry_delay(attempts, retryable=retryable, at_least=at_least)
    state = "pending" if retryable else "failed"
    catalog.set_copy(sid, dest.name, state, error=message, count_attempt=True,
                     next_try_at=next_try)
    when = next_try.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    if retryable:
        hint = (f"the local snapshot is kept and the copy stays queued; next try at {when} "
                f"(or run `siip-watcher once`)")
    else:
        hint = (f"fix the cause, then run `siip-watcher once`; the local snapshot is kept "
                f"(next automatic try at {when})")
    log.warning("%s: copy of %s %s: %s", dest.name, sid, state, message)
    return DestinationResult(name=dest.name, state=state, error=message, hint=hint,
                             snapshot_id=sid, key="retry_at" if retryable else "fix_cause",
                             params={"when": when})


def next_due(catalog: Catalog, destinations: Sequence[Destination | str],
             now: datetime) -> datetime | None:
    """When the next queued copy at one of ``destinations`` (given as themselves or by name)
    is due: its ``next_try_at``, or ``now`` if that has passed or it never failed. None when
    nothing is queued there.

    The service sets its upload timer to this; the queue alone decides when a copy is tried.
    """
    times = [c.next_try_at or now for c in pending_copies(catalog, destinations)]
    return max(now, min(times)) if times else None


def protected_snapshot_ids(catalog: Catalog,
                           destinations: Sequence[Destination | str]) -> set[str]:
    """Snapshots local retention must keep: a copy at an enabled destination is queued.

    Snapshots taken before a destination was enabled have no copy row there and are not
    protected (otherwise enabling Drive would freeze local retention). A catalog rebuilt
    from the archives queues every archive it adds (:func:`watcher.state.inventory.reconcile`), so
    an upload that was waiting when the catalog was lost stays protected.
    """
    return {c.snapshot_id for c in pending_copies(catalog, destinations)}


def pending_copies(catalog: Catalog,
                   destinations: Sequence[Destination | str]) -> list[CopyRow]:
    """Copies at enabled destinations that are not uploaded yet (pending or failed)."""
    names = set(_names(destinations))
    return [c for c in catalog.copies() if c.destination in names and c.state != "uploaded"]
