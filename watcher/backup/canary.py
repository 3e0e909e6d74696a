"""Data-loss canaries: does this snapshot look like an accident or ransomware?

To a backup tool, an accident and an attack look the same: the data changes, and then
retention faithfully throws the good copies away. So each run compares its snapshot with the
previous one, and a suspicious change raises a canary. While one is raised (a *hold*), nothing
is pruned anywhere, until an admin acknowledges it (`siip-watcher ack`) or, when configured,
runs without a canary have gone on for ``release_after_days``.

Pure: facts in, decisions out; no I/O, no clock. Reading the manifests and sampling files is
:mod:`watcher.state.canary_file`'s and the run's job.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from watcher.archive.manifest import FILES_PREFIX, REFERENCED_KEY
from watcher.config.settings import CanaryConfig

#: below this many files touched, a share says nothing (a tiny tree changes 30% in one edit)
MIN_FILES = 10
#: a database that lost more than this share of its pages
DATABASE_SHRINK = 0.5
#: of the changed files that used to be text-like, this share turned into random bytes
INCOMPRESSIBLE_SHARE = 0.5


@dataclass(frozen=True)
class SnapshotFacts:
    """What a manifest says, reduced to what the canaries compare."""

    files: dict[str, str] = field(default_factory=dict)      # path under root -> sha256
    databases: dict[str, int] = field(default_factory=dict)  # configured path -> pages

    @classmethod
    def from_manifest(cls, data: dict[str, Any]) -> SnapshotFacts:
        """The facts of a parsed manifest document."""
        # a delta's unchanged files are in "referenced": the snapshot is both lists
        files = {m["path"][len(FILES_PREFIX):]: str(m.get("sha256", ""))
                 for m in [*data.get("members", []), *data.get(REFERENCED_KEY, [])]
                 if m.get("type") == "file" and str(m.get("path", "")).startswith(FILES_PREFIX)}
        databases = {str(d.get("path")): int(d.get("pages", 0))
                     for d in data.get("databases", [])}
        return cls(files=files, databases=databases)


@dataclass(frozen=True)
class TreeChange:
    """Files of the previous snapshot that are gone or whose content changed."""

    gone: list[str]
    changed: list[str]


def compare(previous: SnapshotFacts, current: SnapshotFacts) -> TreeChange:
    """Which of the previous snapshot's files disappeared, and which changed content."""
    gone = sorted(p for p in previous.files if p not in current.files)
    changed = sorted(p for p, sha in previous.files.items()
                     if p in current.files and current.files[p] != sha)
    return TreeChange(gone=gone, changed=changed)


@dataclass(frozen=True)
class Canary:
    """One suspicious change: its kind, what happened, and what to do; ``key`` and
    ``params`` say it in the email's words (watcher.backup.report.PROBLEM_KEYS)."""

    kind: str     # database_empty, database_shrunk, tree_changed, incompressible
    message: str
    hint: str
    key: str = ""
    params: dict[str, str | int] = field(default_factory=dict)


@dataclass(frozen=True)
class Sample:
    """Of the changed files with text-like names, how many were sampled and how many of
    those now hold random-looking (incompressible) bytes."""

    sampled: int = 0
    incompressible: int = 0


def detect(previous: SnapshotFacts | None, current: SnapshotFacts, policy: CanaryConfig,
           sample: Sample = Sample()) -> list[Canary]:
    """Every canary ``current`` raises against ``previous`` (None: the first snapshot)."""
    if not policy.enabled:
        return []
    found: list[Canary] = []
    check = "look at the application and its data now; when all is well, run " \
            "`siip-watcher ack` so old snapshots are pruned again"
    for path, pages in current.databases.items():
        before = previous.databases.get(path, 0) if previous else 0
        # page 1 holds the schema; a database with a single table already has two pages
        if pages <= 1:
            found.append(Canary("database_empty", f"the database {path} is empty"
                                f"{f' (it had {before:,} pages)' if before else ''}", check,
                                key=("data_loss_database_emptied" if before
                                     else "data_loss_database_empty"),
                                params={"path": path, "before": before}))
        elif before and pages < before * (1 - DATABASE_SHRINK):
            found.append(Canary(
                "database_shrunk",
                f"the database {path} lost more than half of its pages ({before:,} -> "
                f"{pages:,})", check, key="data_loss_database_shrunk",
                params={"path": path, "before": before, "pages": pages}))
    if previous is not None and previous.files:
        change = compare(previous, current)
        touched = len(change.gone) + len(change.changed)
        share = touched / len(previous.files)
        if touched >= MIN_FILES and share > policy.changed_share:
            found.append(Canary(
                "tree_changed",
                f"{share:.0%} of the project's files disappeared ({len(change.gone):,}) or "
                f"changed ({len(change.changed):,}) since the previous snapshot (the alert "
                f"level is {policy.changed_share:.0%})", check, key="data_loss_tree_changed",
                params={"share": round(share * 100), "gone": len(change.gone),
                        "changed": len(change.changed),
                        "level": round(policy.changed_share * 100)}))
    if sample.sampled >= MIN_FILES and \
            sample.incompressible > sample.sampled * INCOMPRESSIBLE_SHARE:
        found.append(Canary(
            "incompressible",
            f"{sample.incompressible:,} of {sample.sampled:,} changed text-like files now hold "
            f"random-looking bytes, as files encrypted by ransomware do", check,
            key="data_loss_incompressible",
            params={"incompressible": sample.incompressible, "sampled": sample.sampled}))
    return found


@dataclass(frozen=True)
class Hold:
    """Pruning is paused since ``raised_at`` because of ``reasons``; ``last_raised_at`` is the
    newest run that raised a canary."""

    raised_at: datetime
    last_raised_at: datetime
    snapshot_id: str
    reasons: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"raised_at": self.raised_at.isoformat(),
                "last_raised_at": self.last_raised_at.isoformat(),
                "snapshot_id": self.snapshot_id, "reasons": list(self.reasons)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Hold:
        """The inverse of :meth:`to_dict`; raises KeyError/ValueError on a damaged record."""
        return cls(raised_at=datetime.fromisoformat(data["raised_at"]),
                   last_raised_at=datetime.fromisoformat(data["last_raised_at"]),
                   snapshot_id=str(data["snapshot_id"]),
                   reasons=tuple(str(r) for r in data["reasons"]))


def next_hold(current: Hold | None, canaries: Iterable[Canary], snapshot_id: str,
              now: datetime, policy: CanaryConfig) -> tuple[Hold | None, str]:
    """The hold after a run, and what happened to it: "raised", "raised again", "held",
    "released" or "none"."""
    raised = [c.message for c in canaries]
    if raised:
        if current is None:
            return Hold(now, now, snapshot_id, tuple(raised)), "raised"
        return Hold(current.raised_at, now, current.snapshot_id,
                    tuple(dict.fromkeys([*current.reasons, *raised]))), "raised again"
    if current is None:
        return None, "none"
    if policy.release_after_days > 0 and \
            now - current.last_raised_at >= timedelta(days=policy.release_after_days):
        return None, "released"
    return current, "held"
