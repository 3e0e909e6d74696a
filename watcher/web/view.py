"""What the monitor page and the metrics show, read from the same places `status` reads.

:func:`collect_view` is the only I/O of the page: `status`'s own data
(:func:`watcher.service.status.collect_status`), plus the snapshots with where each is stored,
the last runs for the chart, the enabled destinations and the last report's problems, all
from the catalog, read-only. The page and the metrics are then pure functions of a
:class:`View`.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from watcher.backup.report import Problem
from watcher.config.settings import Config
from watcher.destinations.registry import enabled_names
from watcher.service.status import collect_status
from watcher.state.catalog import Catalog, RunPoint, utcnow
from watcher.web.chart import CHART_SLOTS

#: the page lists this many snapshots, newest first (`siip-watcher list` shows every one)
TABLE_SNAPSHOTS = 100


@dataclass(frozen=True)
class SnapshotLine:
    """One snapshot in the page's table."""

    id: str
    created_at: datetime
    kind: str                    # full | delta
    size: int
    where: list[str]             # "local" and the destinations holding a copy


@dataclass(frozen=True)
class DestinationLine:
    """One enabled destination and its upload queue (the status's items for it)."""

    name: str
    items: list[dict[str, Any]] = field(default_factory=list)

    @property
    def pending(self) -> int:
        """Copies waiting for their next try."""
        return sum(1 for i in self.items if i["state"] == "pending")

    @property
    def failed(self) -> int:
        """Copies that failed and wait for someone to fix the cause."""
        return sum(1 for i in self.items if i["state"] == "failed")


@dataclass(frozen=True)
class View:
    """Everything the page shows, as plain data."""

    name: str
    status: dict[str, Any]                 # exactly what `status --json` prints
    snapshots: list[SnapshotLine]
    snapshot_total: int
    runs: list[RunPoint]
    destinations: list[DestinationLine]
    problems: list[Problem]                # the last finished run's errors, then warnings
    run_counts: dict[str, int]
    now: datetime


def collect_view(cfg: Config, *, now: datetime | None = None) -> View:
    """Read the page's data (raises :class:`watcher.service.status.StatusError` as `status`
    does when the catalog cannot be read)."""
    now = now or utcnow()
    status = collect_status(cfg, now=now)
    snapshots: list[SnapshotLine] = []
    total = 0
    runs: list[RunPoint] = []
    problems: list[Problem] = []
    counts: dict[str, int] = {}
    try:
        catalog = Catalog.read_only(cfg.local.dir)
        if catalog is not None:
            snapshots = _snapshot_lines(catalog)
            total = catalog.snapshot_count()
            runs = catalog.run_history(CHART_SLOTS)
            counts = catalog.run_counts()
            problems = _last_problems(catalog)
    except sqlite3.Error:
        pass  # collect_status has just read the same catalog; a race with a rebuild shows less
    items = status["uploads"]["items"]
    destinations = [DestinationLine(name, [i for i in items if i["destination"] == name])
                    for name in enabled_names(cfg)]
    return View(name=cfg.name, status=status, snapshots=snapshots, snapshot_total=total,
                runs=runs, destinations=destinations,
                problems=problems, run_counts=counts, now=now)


def _snapshot_lines(catalog: Catalog) -> list[SnapshotLine]:
    stored: dict[str, list[str]] = {}
    for copy in catalog.copies(state="uploaded"):
        stored.setdefault(copy.snapshot_id, []).append(copy.destination)
    return [SnapshotLine(id=row.id, created_at=row.created_at, kind=row.kind, size=row.size,
                         where=(["local"] if row.local else []) + sorted(stored.get(row.id, [])))
            for row in catalog.snapshots(TABLE_SNAPSHOTS)]


def _last_problems(catalog: Catalog) -> list[Problem]:
    run = catalog.last_run(finished=True)
    report = catalog.run_report(run.id) if run else None
    if not report:
        return []
    return [Problem(p.get("message", ""), p.get("hint", ""), cause=p.get("cause", ""),
                    key=p.get("key", ""), params=p.get("params") or {},
                    detail=p.get("detail", ""))
            for p in [*report.get("errors", []), *report.get("warnings", [])]]
