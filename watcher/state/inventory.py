"""Keep the catalog in step with the archives actually in the local dir.

The archives are the truth: one found on disk but unknown to the catalog (a lost or older
catalog) is read back from its own manifest; a catalog row whose file is gone is marked so.

Whether such an archive reached its destinations was in the lost catalog, so it is queued
again at every enabled destination: that keeps it from local pruning until it is known to be
there, and the next upload pass finds a copy already there instead of sending it twice
(:meth:`watcher.destinations.base.Destination.put`).
"""

from __future__ import annotations

import logging

from watcher.archive.read import ArchiveError, read_manifest
from watcher.backup.report import DatabaseResult, SnapshotInfo
from watcher.backup.uploads import queue_copies
from watcher.destinations.registry import enabled_names
from watcher.state.catalog import Catalog
from watcher.state.store import LocalArchive, LocalStore

log = logging.getLogger(__name__)


def reconcile(catalog: Catalog, store: LocalStore) -> int:
    """Add archives missing from the catalog (queued at every enabled destination) and mark
    vanished ones; returns the number of snapshots changed."""
    destinations = enabled_names(store.cfg)
    on_disk = {a.id: a for a in store.archives()}
    known = {s.id: s for s in catalog.snapshots()}
    changed = 0
    for sid, row in known.items():
        if row.local and sid not in on_disk:
            catalog.mark_local_deleted(sid)
            changed += 1
    for sid, archive in on_disk.items():
        if sid in known and known[sid].local:
            continue
        if archive.sha256 is None:
            log.warning("%s has no readable .sha256 sidecar; it is ignored until `siip-watcher "
                        "verify` is run on it by hand", archive.path.name)
            continue
        info = _sealed_info(store, archive) if archive.sealed else _info(archive)
        if info is None:
            continue
        catalog.add_snapshot(info, trigger=None, duration=None)
        queued = [name for _, name in queue_copies(catalog, destinations, [sid])]
        if queued:
            log.info("catalog: added %s from the archive itself; queued for %s (a copy "
                     "already there is found, not sent again)", sid, ", ".join(queued))
        else:
            log.info("catalog: added %s from the archive itself", sid)
        changed += 1
    return changed


def _info(archive: LocalArchive) -> SnapshotInfo | None:
    """What the archive's own manifest says of it; None (with a warning) when unreadable."""
    assert archive.sha256 is not None
    try:
        manifest = read_manifest(archive.path)
    except ArchiveError as exc:
        log.warning("%s is not added to the catalog: %s", archive.path.name, exc)
        return None
    totals = manifest.data.get("totals", {})
    dbs = [DatabaseResult(path=d.get("path", ""), member=d.get("member", ""),
                          pages=int(d.get("pages", 0)), page_size=int(d.get("page_size", 0)),
                          size=int(d.get("size", 0)), check=str(d.get("check", "")),
                          check_pragma=str(d.get("check_pragma", "integrity_check")),
                          discovered=bool(d.get("discovered", False)))
           for d in manifest.databases]
    return SnapshotInfo(id=archive.id, file=str(archive.path), created_at=archive.created_at,
                        size=archive.size, sha256=archive.sha256,
                        files=int(totals.get("files", 0)), bytes_in=int(totals.get("bytes", 0)),
                        databases=dbs, kind=manifest.kind, base=manifest.base)


def _sealed_info(store: LocalStore, archive: LocalArchive) -> SnapshotInfo:
    """An encrypted archive ([encryption] local = true): its manifest needs the identity the
    server never has, so only what its name and sidecars say is known (no file counts)."""
    assert archive.sha256 is not None
    log.info("%s is encrypted: its file and database counts stay unknown in the catalog",
             archive.path.name)
    return SnapshotInfo(id=archive.id, file=str(store.archive_path(archive.id, archive.kind)),
                        created_at=archive.created_at, size=archive.size,
                        sha256=archive.sha256, files=0, bytes_in=0, kind=archive.kind)
