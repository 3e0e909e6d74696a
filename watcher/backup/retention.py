"""Which snapshots to keep: the grandfather-father-son rule of restic's ``forget --keep-*``.

Pure: given ids with their times and a policy, return what stays and why. No I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo

from watcher.archive.files import DELTA, FULL
from watcher.config.settings import RetentionConfig

#: how far ahead of this machine's clock a snapshot may be dated and still count: clocks of
#: small servers drift, and a snapshot taken once with a wrong clock must not outrank every
#: real one (with keep_last = 1 it would make each run prune the snapshot it just took)
FUTURE_TOLERANCE = timedelta(days=1)


@dataclass(frozen=True)
class RetentionDecision:
    """``keep`` maps each kept id to the rules that keep it; ``delete`` is oldest first;
    ``future`` lists the ids dated beyond ``now`` + FUTURE_TOLERANCE (kept, not counted)."""

    keep: dict[str, list[str]] = field(default_factory=dict)
    delete: list[str] = field(default_factory=list)
    future: list[str] = field(default_factory=list)


def delta_bases(snapshots: Iterable[tuple[str, datetime, str]],
                known: Mapping[str, str]) -> dict[str, str]:
    """Each delta's base full: ``known`` (the catalog's, by delta id) for every delta it
    names, and for a delta among ``(id, created_at, kind)`` that it does not (a destination's
    copy on a machine whose catalog never saw it), the newest full dated before it: a delta is
    always against the latest full, so while its base is there, that is the one."""
    bases = dict(known)
    fulls = sorted((when, sid) for sid, when, kind in snapshots if kind == FULL)
    for sid, when, kind in snapshots:
        if kind == DELTA and sid not in bases:
            older = [full for stamp, full in fulls if stamp < when]
            if older:
                bases[sid] = older[-1]
    return bases


def select(snapshots: Iterable[tuple[str, datetime]], policy: RetentionConfig,  # noqa: PLR0913
           tz: tzinfo = UTC, *, now: datetime | None = None,
           always_keep: Iterable[str] = (), bases: Mapping[str, str] | None = None,
           waiting: Iterable[str] = ()) -> RetentionDecision:
    """Apply ``policy`` to ``(id, created_at)`` pairs.

    keep_last keeps the N newest; keep_daily/weekly/monthly keep the newest snapshot of each
    of the last N days/ISO weeks/months that have one (calendar in ``tz``, the office's own
    time). The newest snapshot is always kept, whatever the policy says, and so is every id in
    ``always_keep`` (the snapshot a run just took). With ``now``, a snapshot dated more than
    FUTURE_TOLERANCE ahead is kept but takes no place in any rule.

    ``bases`` maps each delta to its base full (:func:`delta_bases`): the base of every kept
    delta is kept, and so is that of each delta in ``waiting`` (kept here for another reason,
    or on its way here: a queued upload), since a delta cannot be restored without it.
    """
    pairs = list(snapshots)
    limit = now + FUTURE_TOLERANCE if now is not None else None
    future = sorted(sid for sid, when in pairs if limit is not None and when > limit)
    ordered = sorted((p for p in pairs if p[0] not in future), key=lambda s: (s[1], s[0]),
                     reverse=True)
    keep: dict[str, list[str]] = {sid: ["future"] for sid in future}
    for sid in always_keep:
        if any(sid == p[0] for p in pairs):
            keep.setdefault(sid, []).append("just taken")

    def mark(rule: str, count: int, bucket: Callable[[datetime], object] | None) -> None:
        seen: set[object] = set()
        for sid, when in ordered:
            if len(seen) >= count:
                break
            key = bucket(when.astimezone(tz)) if bucket else sid
            if key in seen:
                continue
            seen.add(key)
            keep.setdefault(sid, []).append(rule)

    mark("last", policy.keep_last, None)
    mark("daily", policy.keep_daily, lambda t: t.date())
    mark("weekly", policy.keep_weekly, lambda t: t.isocalendar()[:2])
    mark("monthly", policy.keep_monthly, lambda t: (t.year, t.month))
    if ordered and ordered[0][0] not in keep:
        keep[ordered[0][0]] = ["newest"]
    present = {sid for sid, _ in pairs}
    for sid in [*keep, *waiting]:
        base = (bases or {}).get(sid)
        if base in present:
            keep.setdefault(base, []).append(f"base of {sid}")
    delete = [sid for sid, _ in reversed(ordered) if sid not in keep]
    return RetentionDecision(keep=keep, delete=delete, future=future)
