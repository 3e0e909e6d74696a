"""`verify`: check snapshots end to end, wherever they are stored."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from watcher.actions import ProgressBars, UsageError, no_progress
from watcher.actions.fetch import Fetched, base_of, fetched, fetched_base, remote_files
from watcher.actions.unseal import Identity
from watcher.archive.files import FULL, snapshot_id_of
from watcher.archive.read import CheckedFull, VerifyResult, verify
from watcher.backup.retention import delta_bases
from watcher.config.settings import Config
from watcher.state.store import LocalStore


@dataclass(frozen=True)
class Verified:
    """The outcome of verifying one snapshot."""

    snapshot_id: str
    result: VerifyResult


def verify_snapshots(cfg: Config, source: str, ident: str | None, *, every: bool = False,
                     bars: ProgressBars = no_progress,
                     identity: Identity | None = None) -> Iterator[Verified]:
    """Verify ``ident`` (default ``latest``), or with ``every`` each snapshot at ``source``.

    A delta is verified with its base full (fetched from wherever it is,
    :func:`watcher.actions.fetch.fetched_base`). With ``every`` each full is read once: the
    snapshots go full by full, newest first, each full followed by the deltas taken against
    it, which use what verifying the full learnt instead of reading it again. Yields each
    outcome as soon as it is known, so a long ``--all`` shows its progress; a remote archive
    is downloaded for the check and removed after it.
    """
    work = LocalStore(cfg).scratch_dir()
    if not every:
        with fetched(cfg, source, ident or "latest", bars=bars, identity=identity) as archive:
            yield _verified(cfg, source, archive, None, None, bars=bars, identity=identity)
        return
    if source != "local":
        listed = [(r.snapshot_id, r.created_at or datetime.min, r.kind)
                  for r in remote_files(cfg, source)]
    else:
        listed = [(a.id, a.created_at, a.kind) for a in LocalStore(cfg).archives()]
    if not listed:
        raise UsageError(f"no snapshots to verify ({source})")
    with tempfile.TemporaryDirectory(prefix=".verify-fulls-", dir=work) as kept:
        last: CheckedFull | None = None
        for one in full_by_full(listed):
            with fetched(cfg, source, one, bars=bars, identity=identity) as archive:
                keep = Path(kept) / archive.snapshot_id
                if base_of(archive) is None:
                    # the previous full's deltas are done: its database copies can go. The
                    # folder itself stays, 0700 as made: it may be in the system's /tmp
                    for old in Path(kept).iterdir():
                        shutil.rmtree(old, ignore_errors=True)
                    keep.mkdir(mode=0o700)
                outcome = _verified(cfg, source, archive, last, keep, bars=bars,
                                    identity=identity)
            last = outcome.result.checked or last
            yield outcome


def full_by_full(listed: list[tuple[str, datetime, str]]) -> list[str]:
    """The order `verify --all` takes ``(id, created_at, kind)``: each full, newest first,
    then the deltas taken against it (a delta is against the newest full before it), newest
    first; deltas with no full before them last."""
    bases = delta_bases(listed, {})
    newest_first = sorted(listed, key=lambda s: (s[1], s[0]), reverse=True)
    order: list[str] = []
    for sid, _, kind in newest_first:
        if kind == FULL:
            order.append(sid)
            order += [d for d, _, k in newest_first if k != FULL and bases.get(d) == sid]
    return order + [sid for sid, _, _ in newest_first if sid not in order]


def _verified(cfg: Config, source: str, archive: Fetched,  # noqa: PLR0913 - options, named
              last: CheckedFull | None, keep: Path | None, *, bars: ProgressBars,
              identity: Identity | None) -> Verified:
    """Verify ``archive``: a full (kept in ``keep`` for its deltas when given); a delta with
    ``last`` when that is its base, else with its base fetched."""
    work = LocalStore(cfg).scratch_dir()
    base_id = base_of(archive)
    if base_id is None or (last is not None and snapshot_id_of(last.name) == base_id):
        with bars(f"verify {archive.snapshot_id}") as (update, total):
            if total:
                total(archive.path.stat().st_size)
            result = verify(archive.path, checked_base=last if base_id else None,
                            keep=None if base_id else keep, work_dir=work, progress=update)
        return Verified(archive.snapshot_id, result)
    with fetched_base(cfg, source, archive, bars=bars, identity=identity) as base, \
            bars(f"verify {archive.snapshot_id}") as (update, total):
        if total:
            total(archive.path.stat().st_size + (base.path.stat().st_size if base else 0))
        result = verify(archive.path, base=base.path if base else None, work_dir=work,
                        progress=update)
    return Verified(archive.snapshot_id, result)
