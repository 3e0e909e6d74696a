"""Full or delta: the pure decision of what kind of archive a snapshot is written as.

A delta is always against the latest full (never a chain), so a restore reads at most two
archives. Inputs, the clock included, are arguments; watcher/snapshot/base_state.py reads
them from the local dir.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from watcher.archive.files import DELTA, FULL


@dataclass(frozen=True)
class BaseFull:
    """The latest full snapshot in the local dir, as a delta's base."""

    id: str
    created_at: datetime
    size: int                   # bytes of its archive
    #: its manifest and database page digests are kept in the local dir (taken with deltas on)
    ready: bool
    sha256: str | None = None   # of its archive, recorded in each delta's manifest


@dataclass(frozen=True)
class Plan:
    """The kind of archive to write, its base (for a delta) and why, for the log."""

    kind: str
    base: BaseFull | None
    reason: str


def plan_snapshot(*, full_every_days: int, forced: bool, latest_full: BaseFull | None,
                  now: datetime) -> Plan:
    """A full when deltas are off, forced, there is no usable full, or it is too old;
    else a delta against the latest full."""
    if full_every_days == 0:
        return Plan(FULL, None, "snapshot.full_every_days is 0")
    if forced:
        return Plan(FULL, None, "a full was asked for (--full)")
    if latest_full is None:
        return Plan(FULL, None, "no full snapshot in the local dir to build a delta on")
    if not latest_full.ready:
        return Plan(FULL, None, f"the page digests of {latest_full.id} are not in the local "
                                f"dir")
    if now - latest_full.created_at >= timedelta(days=full_every_days):
        return Plan(FULL, None, f"{latest_full.id} is {full_every_days} days old or more")
    return Plan(DELTA, latest_full, f"the changes since {latest_full.id}")


def delta_too_big(delta_bytes: int, base_size: int, max_delta_ratio: float) -> bool:
    """Whether a delta of ``delta_bytes`` (so far) outgrows ``max_delta_ratio`` of its base
    full's archive: a full is then cheaper to keep and to restore."""
    return delta_bytes > base_size * max_delta_ratio
