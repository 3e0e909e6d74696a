"""Apply the retention policy to the local dir and to each destination.

The choice of what to keep is :mod:`watcher.backup.retention` (pure); this module only carries it
out. A snapshot whose copy has not yet reached every enabled destination is never deleted
locally: it may be the only copy there is. A delta snapshot needs its base full to be
restored, so wherever a delta stays (the local dir, a destination, or on its way to one in the
upload queue), its base stays too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from watcher.archive.files import parse_snapshot_id
from watcher.backup.report import Problem
from watcher.backup.retention import RetentionDecision, delta_bases, select
from watcher.backup.uploads import pending_copies, protected_snapshot_ids
from watcher.config.settings import Config
from watcher.destinations.base import Destination, DestinationError
from watcher.destinations.registry import enabled_names
from watcher.state.canary_file import read_hold
from watcher.state.catalog import Catalog
from watcher.state.store import LocalStore

log = logging.getLogger(__name__)


@dataclass
class PruneResult:
    """What was (or, in a dry run, would be) deleted and kept, per place."""

    deleted: dict[str, list[str]] = field(default_factory=dict)
    kept: dict[str, list[str]] = field(default_factory=dict)
    protected: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    #: a data-loss alert held pruning back: nothing was deleted anywhere
    held: bool = False


def local_timezone() -> object:
    """The office's own time zone, for daily/weekly/monthly buckets."""
    return datetime.now().astimezone().tzinfo


def apply_retention(cfg: Config, catalog: Catalog, store: LocalStore,
                    destinations: list[Destination], *, prune_destinations: bool = True,
                    just_taken: str | None = None, dry_run: bool = False) -> PruneResult:
    """Prune as a run and `prune` do: locally, keeping each snapshot still queued at an
    enabled destination, and at each of ``destinations`` unless ``prune_destinations`` is
    false (a run with uploads switched off leaves them alone); see :func:`prune` for
    ``just_taken`` and for a data-loss alert that holds everything back.

    Protection goes by the enabled destinations' names, not by ``destinations``: one that
    could not even be built this time still protects its queued copies. The caller holds
    the run lock (:func:`watcher.backup.run.run_lock`) and has reconciled the catalog with
    the local dir.
    """
    protected = protected_snapshot_ids(catalog, enabled_names(cfg))
    result = prune(cfg, catalog, store, destinations if prune_destinations else [],
                   protected=protected, just_taken=just_taken, dry_run=dry_run)
    # what a destination did otherwise than asked (old copies trashed, not deleted): once
    result.problems.extend(notice_problems(destinations))
    return result


def prune(cfg: Config, catalog: Catalog, store: LocalStore,
          destinations: list[Destination], *, protected: set[str] | None = None,
          just_taken: str | None = None, dry_run: bool = False) -> PruneResult:
    """Delete what the policy does not keep, locally and at every destination.

    ``just_taken`` (the snapshot this run stored) is never deleted anywhere, whatever the
    dates of the others say.
    """
    result = PruneResult()
    now = datetime.now(UTC)
    hold = read_hold(store.dir, now)
    if hold is not None:
        # an accident or an attack may be under way: every old snapshot may be the good one
        result.held = True
        since = f"{hold.raised_at:%Y-%m-%d %H:%M} UTC"
        result.problems.append(Problem(
            f"nothing was pruned: a data-loss alert holds since {since} "
            f"({'; '.join(hold.reasons)})",
            "check the application's data, then run `siip-watcher ack` to prune again",
            key="prune_held", params={"since": since}))
        return result
    rules = _Rules(cfg, now, local_timezone(), [just_taken] if just_taken else [],
                   {s.id: s.base for s in catalog.snapshots() if s.base})
    _prune_local(rules, catalog, store, result, protected=protected or set(), dry_run=dry_run)
    for dest in destinations:
        _prune_destination(rules, catalog, dest, result, dry_run=dry_run)
    return result


@dataclass(frozen=True)
class _Rules:
    """What every place is pruned by in one pass: the policy, the clock, the snapshot just
    taken and each delta's base as the catalog knows it."""

    cfg: Config
    now: datetime
    tz: object
    always: list[str]
    known_bases: dict[str, str]

    def select(self, listed: list[tuple[str, datetime, str]],
               waiting: Iterable[str]) -> RetentionDecision:
        """The decision for one place's ``(id, created_at, kind)`` list."""
        return select([(sid, when) for sid, when, _ in listed], self.cfg.retention,
                      self.tz, now=self.now,  # type: ignore[arg-type]
                      always_keep=self.always, bases=delta_bases(listed, self.known_bases),
                      waiting=waiting)


def _prune_local(rules: _Rules, catalog: Catalog, store: LocalStore, result: PruneResult, *,
                 protected: set[str], dry_run: bool) -> None:
    # a delta kept locally for its queued upload keeps its base: the queue sends that first
    decision = rules.select([(a.id, a.created_at, a.kind) for a in store.archives()],
                            waiting=protected)
    clock = f"{rules.now:%Y-%m-%d %H:%M} UTC"
    for sid in decision.future:
        result.problems.append(Problem(
            f"{sid} is dated more than a day ahead of this machine's clock "
            f"({clock}); it is kept but no longer counts as the newest snapshot",
            "check the clock; if that snapshot's date is wrong, verify it and delete it by "
            "hand", key="future_snapshot", params={"sid": sid, "now": clock}))
    result.kept["local"] = list(decision.keep)
    result.deleted["local"] = []
    for sid in decision.delete:
        if sid in protected:
            result.protected.append(sid)
            result.kept["local"].append(sid)
            log.info("keeping %s locally: its upload has not reached every destination yet", sid)
            continue
        if not dry_run:
            store.delete(sid)
            catalog.mark_local_deleted(sid)
            log.info("pruned %s from %s", sid, store.dir)
        result.deleted["local"].append(sid)


def _prune_destination(rules: _Rules, catalog: Catalog, dest: Destination,
                       result: PruneResult, *, dry_run: bool) -> None:
    try:
        remote = dest.list()
    except DestinationError as exc:
        result.problems.append(Problem(f"could not list {dest.name} to prune it: {exc}",
                                       "it is pruned on the next run that reaches it",
                                       key="prune_list_failed",
                                       params={"dest": dest.name}, detail=str(exc)))
        return
    listed = []
    by_id = {}
    for r in remote:
        parsed = parse_snapshot_id(r.snapshot_id)
        if parsed and parsed[0] == rules.cfg.name:
            listed.append((r.snapshot_id, parsed[1], r.kind))
            by_id[r.snapshot_id] = r
    # a delta still on its way here keeps its base here
    decision = rules.select(listed, waiting=[c.snapshot_id for c in
                                             pending_copies(catalog, [dest.name])])
    result.kept[dest.name] = list(decision.keep)
    result.deleted[dest.name] = []
    for sid in decision.delete:
        if not dry_run:
            try:
                dest.delete(by_id[sid])
            except DestinationError as exc:
                result.problems.append(Problem(
                    f"could not delete {sid} from {dest.name}: {exc}",
                    "it is pruned on the next run", key="prune_delete_failed",
                    params={"sid": sid, "dest": dest.name}, detail=str(exc)))
                continue
            catalog.delete_copy(sid, dest.name)
            log.info("pruned %s from %s", sid, dest.name)
        result.deleted[dest.name].append(sid)


def notice_problems(destinations: Iterable[Destination]) -> list[Problem]:
    """What the destinations have to tell the admin (each notice once), as report problems:
    old copies moved to a trash instead of deleted, say."""
    return [Problem(n.message, n.hint, key=n.key, params=n.params, detail=n.detail)
            for dest in destinations for n in dest.take_notices()]
