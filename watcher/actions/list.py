"""`list`: the snapshots, newest first, with where each is stored."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from watcher.actions.fetch import remote_files
from watcher.config.settings import Config
from watcher.state.catalog import Catalog
from watcher.state.inventory import reconcile
from watcher.state.store import LocalStore


@dataclass(frozen=True)
class LocalSnapshot:
    """A snapshot the catalog knows: in the local dir, at destinations, or both."""

    id: str
    created_at: datetime
    size: int
    files: int
    sha256: str
    trigger: str | None
    #: ``local`` first when the local dir holds it, then each destination with a copy
    stored_at: list[str]
    #: the local archive's path; None once it is only at destinations
    file: str | None

    def to_dict(self) -> dict[str, Any]:
        """The `list --json` form."""
        return {"id": self.id, "created_at": self.created_at.isoformat(), "size": self.size,
                "files": self.files, "sha256": self.sha256, "trigger": self.trigger,
                "stored_at": self.stored_at, "file": self.file}


@dataclass(frozen=True)
class RemoteSnapshot:
    """An archive as a destination lists it."""

    id: str
    created_at: datetime | None
    size: int
    sha256: str | None
    stored_at: list[str]
    link: str | None

    def to_dict(self) -> dict[str, Any]:
        """The `list --from NAME --json` form."""
        return {"id": self.id,
                "created_at": self.created_at.isoformat() if self.created_at else None,
                "size": self.size, "sha256": self.sha256, "stored_at": self.stored_at,
                "link": self.link}


Listed = LocalSnapshot | RemoteSnapshot


def list_snapshots(cfg: Config, source: str) -> list[Listed]:
    """The snapshots at ``source`` (``local``: the catalog, brought in step with the local
    dir first; else the destination of that name), newest first."""
    if source != "local":
        return [RemoteSnapshot(id=r.snapshot_id, created_at=r.created_at, size=r.size,
                               sha256=r.sha256, stored_at=[source], link=r.link)
                for r in remote_files(cfg, source)]
    if not cfg.local.dir.is_dir():
        return []  # nothing stored yet, and listing never creates the local dir
    catalog = Catalog(cfg.local.dir)
    reconcile(catalog, LocalStore(cfg))
    copies: dict[str, list[str]] = {}
    for c in catalog.copies(state="uploaded"):
        copies.setdefault(c.snapshot_id, []).append(c.destination)
    return [LocalSnapshot(id=s.id, created_at=s.created_at, size=s.size, files=s.files,
                          sha256=s.sha256, trigger=s.trigger,
                          stored_at=(["local"] if s.local else []) + copies.get(s.id, []),
                          file=s.file if s.local else None)
            for s in catalog.snapshots()]
