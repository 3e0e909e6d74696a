"""`restore`: a snapshot, from wherever it is stored, into a folder."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from watcher.actions import ProgressBars, UsageError, no_progress
from watcher.actions.fetch import fetched, fetched_base
from watcher.actions.unseal import Identity
from watcher.archive.restore import RestoreResult, restore, target_problem
from watcher.config.settings import Config


@dataclass(frozen=True)
class Restored:
    """What the restore of one snapshot wrote."""

    snapshot_id: str
    result: RestoreResult


def restore_snapshot(cfg: Config, source: str, ident: str, target: Path, *,
                     only: Sequence[str] = (), force: bool = False,
                     bars: ProgressBars = no_progress,
                     identity: Identity | None = None) -> Restored:
    """Restore ``ident`` from ``source`` into ``target`` (see
    :func:`watcher.archive.restore.restore`); a target that cannot take it is refused with
    :class:`UsageError` before anything is downloaded."""
    problem = target_problem(target, force)
    if problem:
        raise UsageError(problem)
    with fetched(cfg, source, ident, bars=bars, identity=identity) as archive, \
            fetched_base(cfg, source, archive, bars=bars, identity=identity) as base, \
            bars(f"restore {archive.snapshot_id}") as (update, total):
        if total:
            total(archive.path.stat().st_size + (base.path.stat().st_size if base else 0))
        result = restore(archive.path, target, only=only, force=force, progress=update,
                         expected_sha256=archive.sha256,
                         base=base.path if base else None,
                         base_sha256=base.sha256 if base else None)
    return Restored(archive.snapshot_id, result)
