"""The local dir: where archives, their sidecars and the catalog live.

Names: ``<name>-<YYYYMMDDTHHMMSSZ>.tar.zst`` (UTC) for a full,
``<name>-<YYYYMMDDTHHMMSSZ>.delta.tar.zst`` for a delta, and ``<archive>.sha256``. The sidecar is
renamed into place before the archive, so an archive under its final name always has its
checksum beside it and is complete; anything ending in ``.partial`` is a leftover.

``<archive>.age`` (with its own ``.sha256`` and ``.recipients``, watcher/encryption/record.py)
is the archive encrypted: beside the archive while its off-site copies are sent
(watcher/backup/sealing.py), or alone, in its place, with ``[encryption] local = true``. An
encrypted file alone is therefore an archive, never a leftover.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from watcher.archive.files import (
    AGE_SUFFIX,
    ARCHIVE_SUFFIX,
    DELTA,
    FULL,
    PARTIAL_SUFFIX,
    SIDECAR_SUFFIX,
    archive_name,
    fsync_dir,
    is_sealed_name,
    parse_archive_name,
    parse_snapshot_id,
    read_sidecar,
    sidecar_line,
    write_private_atomic,
)
from watcher.config.settings import Config
from watcher.encryption.record import RECIPIENTS_SUFFIX, read_record

log = logging.getLogger(__name__)


class StoreError(Exception):
    """The local dir cannot be used; the message says how to fix it."""


@dataclass(frozen=True)
class LocalArchive:
    """An archive found in the local dir."""

    id: str
    path: Path
    created_at: datetime
    size: int
    sha256: str | None
    kind: str = FULL
    #: ``path`` is the archive encrypted (``.age``): reading it needs the identity
    sealed: bool = False



def free_bytes(folder: Path) -> int | None:
    """Free space on the disk of ``folder`` for a report, or None when it cannot be read."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None

class LocalStore:
    """Paths and atomic writes in the local dir for one configured ``name``."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.dir = cfg.local.dir

    def ensure(self) -> None:
        """Create the local dir (0700: archives hold the whole database)."""
        self.check_folder()
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise StoreError(f"cannot create the backup dir {self.dir}: "
                             f"{exc.strerror or exc}; create it for the service user or change "
                             f"local.dir") from None
        if not os.access(self.dir, os.W_OK):
            raise StoreError(f"the backup dir {self.dir} is not writable by this user; fix "
                             f"its owner or permissions, or change local.dir")

    def writable(self) -> bool:
        """Whether this user may write the local dir (False on a read-only mount, or a copy
        kept for an auditor): readers then leave the catalog alone and work elsewhere."""
        return self.dir.is_dir() and os.access(self.dir, os.W_OK)

    def scratch_dir(self) -> Path | None:
        """Where a reader puts temporary files: the local dir (same disk as the archives)
        when it is writable, else None for the system's temporary folder."""
        return self.dir if self.writable() else None

    def check_folder(self) -> None:
        """Raise :class:`StoreError` when local.dir exists but is not a folder."""
        if self.dir.exists() and not self.dir.is_dir():
            raise StoreError(f"local.dir {self.dir} is a file, not a folder; point local.dir "
                             f"at the backup folder")

    def new_snapshot_id(self, now: datetime) -> str:
        """A fresh id for a snapshot taken at ``now``, never one already in use."""
        ts = now.astimezone(UTC).replace(microsecond=0)
        while True:
            snapshot_id = f"{self.name}-{ts:%Y%m%dT%H%M%SZ}"
            if not any(p.exists() or self.sidecar_path(p).exists()
                       or p.with_name(p.name + AGE_SUFFIX).exists()
                       for p in self._both_paths(snapshot_id)):
                return snapshot_id
            ts += timedelta(seconds=1)

    def archive_path(self, snapshot_id: str, kind: str = FULL) -> Path:
        """Where the archive of ``snapshot_id`` of ``kind`` ("full" or "delta") lies."""
        return self.dir / archive_name(snapshot_id, kind)

    def _both_paths(self, snapshot_id: str) -> tuple[Path, Path]:
        return self.archive_path(snapshot_id, FULL), self.archive_path(snapshot_id, DELTA)

    def find(self, snapshot_id: str) -> LocalArchive | None:
        """The complete archive of ``snapshot_id`` in the local dir, full or delta."""
        return next((a for a in self.archives() if a.id == snapshot_id), None)

    @staticmethod
    def sidecar_path(archive: Path) -> Path:
        return archive.with_name(archive.name + SIDECAR_SUFFIX)

    @staticmethod
    def partial_path(path: Path) -> Path:
        return path.with_name(path.name + PARTIAL_SUFFIX)

    def commit(self, partial: Path, archive: Path, sha256: str) -> None:
        """Publish a fsynced partial archive: sidecar first, then the archive, then the dir."""
        sidecar = sidecar_line(sha256, archive.name).encode()
        write_private_atomic(self.sidecar_path(archive), sidecar)
        os.replace(partial, archive)
        fsync_dir(self.dir)

    def archives(self) -> list[LocalArchive]:
        """Complete archives of this ``name`` in the local dir, newest first: plain, or
        encrypted when no plain one of the snapshot is there."""
        found: list[LocalArchive] = []
        if not self.dir.is_dir():
            return found
        for path in [*self.dir.glob(f"*{ARCHIVE_SUFFIX}"),
                     *self.dir.glob(f"*{ARCHIVE_SUFFIX}{AGE_SUFFIX}")]:
            snapshot_id, kind = parse_archive_name(path.name) or ("", FULL)
            parsed = parse_snapshot_id(snapshot_id)
            sealed = is_sealed_name(path.name)
            if not parsed or parsed[0] != self.name or (
                    sealed and path.with_name(path.name[: -len(AGE_SUFFIX)]).exists()):
                continue
            if sealed:
                sha = read_record(path)[1]
            else:
                try:
                    sha = read_sidecar(self.sidecar_path(path))
                except (OSError, ValueError):
                    sha = None
            found.append(LocalArchive(snapshot_id, path, parsed[1], path.stat().st_size, sha,
                                      kind, sealed))
        found.sort(key=lambda a: (a.created_at, a.id), reverse=True)
        return found

    def delete(self, snapshot_id: str) -> None:
        """Remove an archive (full or delta), plain or encrypted, and its sidecars. The
        encrypted file goes first, the plain archive last: a crash in between leaves the
        plain archive (kept) or a lone sidecar (a leftover), never a lone encrypted file,
        which would count as an archive."""
        for archive in self._both_paths(snapshot_id):
            sealed = archive.with_name(archive.name + AGE_SUFFIX)
            for path in (sealed, self.sidecar_path(sealed),
                         sealed.with_name(sealed.name + RECIPIENTS_SUFFIX), archive,
                         self.sidecar_path(archive)):
                path.unlink(missing_ok=True)
        fsync_dir(self.dir)

    def remove_leftovers(self) -> list[Path]:
        """Delete what a crashed or killed run left: partial files and lone sidecars."""
        removed: list[Path] = []
        if not self.dir.is_dir():
            return removed
        for path in self.dir.iterdir():
            name = path.name
            if name.endswith(PARTIAL_SUFFIX) or _is_lone(path):
                try:
                    path.unlink()
                    removed.append(path)
                except OSError as exc:
                    log.warning("could not remove the leftover %s: %s", path, exc)
        for path in removed:
            log.info("removed %s, left by an interrupted run", path.name)
        return removed


#: what belongs to another file of the local dir: (its suffix, that file's suffix); a delta's
#: names end the same way (``X.delta.tar.zst.age.sha256`` belongs to ``X.delta.tar.zst.age``)
_BELONGS = ((ARCHIVE_SUFFIX + SIDECAR_SUFFIX, ARCHIVE_SUFFIX),
            (ARCHIVE_SUFFIX + AGE_SUFFIX + SIDECAR_SUFFIX, ARCHIVE_SUFFIX + AGE_SUFFIX),
            (ARCHIVE_SUFFIX + AGE_SUFFIX + RECIPIENTS_SUFFIX, ARCHIVE_SUFFIX + AGE_SUFFIX))


def _is_lone(path: Path) -> bool:
    """A sidecar whose file is no longer there."""
    for suffix, owner in _BELONGS:
        if path.name.endswith(suffix):
            return not path.with_name(path.name[: -len(suffix)] + owner).exists()
    return False
