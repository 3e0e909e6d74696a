"""`verify`: check snapshots end to end, wherever they are stored."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from watcher.actions import ProgressBars, UsageError, no_progress
from watcher.actions.fetch import fetched, fetched_base, remote_files
from watcher.actions.unseal import Identity
from watcher.archive.read import VerifyResult, verify
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

    Yields each outcome as soon as it is known, so a long ``--all`` shows its progress; a
    remote archive is downloaded for the check and removed after it.
    """
    if every:
        if source != "local":
            idents = [r.snapshot_id for r in remote_files(cfg, source)]
        else:
            idents = [a.id for a in LocalStore(cfg).archives()]
        if not idents:
            raise UsageError(f"no snapshots to verify ({source})")
    else:
        idents = [ident or "latest"]
    work = LocalStore(cfg).scratch_dir()
    for one in idents:
        with fetched(cfg, source, one, bars=bars, identity=identity) as archive, \
                fetched_base(cfg, source, archive, bars=bars, identity=identity) as base, \
                bars(f"verify {archive.snapshot_id}") as (update, total):
            if total:
                total(archive.path.stat().st_size + (base.path.stat().st_size if base else 0))
            result = verify(archive.path, base=base.path if base else None, work_dir=work,
                            progress=update)
        yield Verified(archive.snapshot_id, result)
