"""`list`: the snapshots, newest first, with where each is stored."""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from watcher.actions.fetch import remote_files
from watcher.actions.unseal import Identity
from watcher.config.settings import Config
from watcher.state.catalog import Catalog
from watcher.state.inventory import reconcile
from watcher.state.store import LocalStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalSnapshot:
    """A snapshot the catalog knows: in the local dir, at destinations, or both."""

    id: str
    created_at: datetime
    size: int
    #: None when only a read-only listing saw it (counting would read the whole archive)
    files: int | None
    sha256: str
    trigger: str | None
    #: ``local`` first when the local dir holds it, then each destination with a copy
    stored_at: list[str]
    #: the local archive's path; None once it is only at destinations
    file: str | None
    #: "full" or "delta"; a delta's ``base`` is the full it needs (None for a full)
    kind: str = "full"
    base: str | None = None
    #: the local archive is encrypted ([encryption] local = true): reading it needs --identity
    encrypted: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The `list --json` form."""
        return {"id": self.id, "created_at": self.created_at.isoformat(), "size": self.size,
                "files": self.files, "sha256": self.sha256, "trigger": self.trigger,
                "stored_at": self.stored_at, "file": self.file, "kind": self.kind,
                "base": self.base, "encrypted": self.encrypted}


@dataclass(frozen=True)
class RemoteSnapshot:
    """An archive as a destination lists it."""

    id: str
    created_at: datetime | None
    size: int
    sha256: str | None
    stored_at: list[str]
    link: str | None
    #: from the file's name; ``base`` from the catalog when it knows the snapshot
    kind: str = "full"
    base: str | None = None
    #: None for a plain copy; else the public keys it was made for (empty: not recorded)
    encrypted_for: list[str] | None = None
    #: whether the identity given opens it; None without an identity or for a plain copy
    opens: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        """The `list --from NAME --json` form."""
        return {"id": self.id,
                "created_at": self.created_at.isoformat() if self.created_at else None,
                "size": self.size, "sha256": self.sha256, "stored_at": self.stored_at,
                "link": self.link, "kind": self.kind, "base": self.base,
                "encrypted_for": self.encrypted_for, "opens": self.opens}


Listed = LocalSnapshot | RemoteSnapshot


def list_snapshots(cfg: Config, source: str, *,
                   identity: Identity | None = None) -> list[Listed]:
    """The snapshots at ``source`` (``local``: the catalog, brought in step with the local
    dir first; else the destination of that name), newest first. A copy's encryption is
    shown, and with ``identity`` whether it opens each encrypted copy."""
    if source != "local":
        bases = _known_bases(cfg)
        return [RemoteSnapshot(id=r.snapshot_id, created_at=r.created_at, size=r.size,
                               sha256=r.sha256, stored_at=[source], link=r.link, kind=r.kind,
                               base=bases.get(r.snapshot_id) if r.kind == "delta" else None,
                               encrypted_for=list(r.sealed.recipients) if r.sealed else None,
                               opens=identity.opens(r) if identity else None)
                for r in remote_files(cfg, source)]
    store = LocalStore(cfg)
    store.check_folder()
    if not cfg.local.dir.is_dir():
        return []  # nothing stored yet, and listing never creates the local dir
    if not store.writable():
        return _list_read_only(store)
    catalog = Catalog(cfg.local.dir)
    reconcile(catalog, store)
    return _marked_encrypted(_rows(catalog, {}), store)


def _marked_encrypted(rows: list[LocalSnapshot], store: LocalStore) -> list[LocalSnapshot]:
    """The rows whose local archive is encrypted in place, marked so and named by the file
    that is there (the catalog keeps the plain archive's name)."""
    sealed = {a.id: str(a.path) for a in store.archives() if a.sealed}
    return [replace(r, encrypted=True, file=sealed[r.id]) if r.id in sealed and r.file else r
            for r in rows]


def _known_bases(cfg: Config) -> dict[str, str]:
    """Each delta's base as the catalog knows it (read only; empty on a new machine, where
    only the delta's own manifest says)."""
    try:
        catalog = Catalog.read_only(cfg.local.dir) if cfg.local.dir.is_dir() else None
        rows = catalog.snapshots() if catalog else []
    except sqlite3.Error:
        rows = []
    return {s.id: s.base for s in rows if s.base}


def _rows(catalog: Catalog | None, extra: dict[str, LocalSnapshot]) -> list[LocalSnapshot]:
    copies: dict[str, list[str]] = {}
    rows: dict[str, LocalSnapshot] = dict(extra)
    if catalog is not None:
        for c in catalog.copies(state="uploaded"):
            copies.setdefault(c.snapshot_id, []).append(c.destination)
        for s in catalog.snapshots():
            if s.id in extra and not s.local:
                continue
            rows[s.id] = LocalSnapshot(
                id=s.id, created_at=s.created_at, size=s.size, files=s.files,
                sha256=s.sha256, trigger=s.trigger,
                stored_at=(["local"] if s.local or s.id in extra else []) + copies.get(s.id, []),
                file=s.file if s.local else extra[s.id].file if s.id in extra else None,
                kind=s.kind, base=s.base)
    return sorted(rows.values(), key=lambda r: (r.created_at, r.id), reverse=True)


def _list_read_only(store: LocalStore) -> list[LocalSnapshot]:
    """A backup folder this user cannot write (a read-only mount, an auditor's copy): the
    catalog is only read, and an archive it does not know is listed from its name, size and
    sidecar (its file count would need reading the whole archive)."""
    log.info("the backup folder %s is read-only: listing without updating the catalog",
             store.dir)
    try:
        catalog = Catalog.read_only(store.dir)
    except sqlite3.Error as exc:
        log.warning("cannot read the catalog in %s (%s); listing the archives alone",
                    store.dir, exc)
        catalog = None
    present = {a.id: LocalSnapshot(id=a.id, created_at=a.created_at, size=a.size, files=None,
                                   sha256=a.sha256 or "", trigger=None, stored_at=["local"],
                                   file=str(a.path), kind=a.kind)
               for a in store.archives()}
    return _marked_encrypted(_rows(catalog, present), store)
