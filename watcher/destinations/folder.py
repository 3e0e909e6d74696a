"""A destination that keeps copies in another folder: a mounted NAS share or a USB disk.

Each copy is ``<dir>/<snapshot id>.tar.zst`` plus its ``.sha256`` sidecar, so the folder is
usable without siip-watcher (``sha256sum -c``). An encrypted copy is ``<snapshot id>.tar.zst.age``
with a ``.sha256`` sidecar of its own bytes (``sha256sum -c`` still checks the share) and a
``.recipients`` file: the public keys it was made for, as ``age -R`` reads them, and the
archive's own sha256 in a comment. A copy is written as ``<name>.partial``, fsynced, checked
against the expected sha256 and only then renamed (the sidecars first): a copy that looks
complete always is. An interrupted copy resumes from its ``.partial``.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from watcher.archive.files import (
    AGE_SUFFIX,
    ARCHIVE_SUFFIX,
    PARTIAL_SUFFIX,
    SIDECAR_SUFFIX,
    archive_kind_of,
    copy_name,
    file_sha256,
    fsync_dir,
    is_sealed_name,
    newest_first,
    open_private,
    parse_sidecar,
    sidecar_line,
    snapshot_id_of,
    snapshot_time,
    write_all,
    write_private_atomic,
)
from watcher.destinations.base import (
    Destination,
    DestinationError,
    ProgressFn,
    RemoteFile,
    Sealed,
    archive_size,
    put_hashes,
)
from watcher.encryption.record import (
    RECIPIENTS_SUFFIX,
    read_record,
    recipients_path,
    recipients_text,
)

log = logging.getLogger(__name__)

DEFAULT_CHUNK = 4 << 20


class LocalFolderDestination(Destination):
    """Copies archives into ``directory``.

    With ``create`` a missing folder is created (mode 0700). Without it (the folder named by
    the configuration) a missing folder is a retryable error: the share or the disk is not
    mounted, and creating the folder would put the "second" copy on the local disk.
    """

    def __init__(self, directory: Path, *, name: str = "folder",
                 chunk_size: int = DEFAULT_CHUNK, create: bool = True) -> None:
        self.dir = Path(directory)
        self.name = name
        self.chunk_size = chunk_size
        self.create = create

    # --- put ------------------------------------------------------------------------------

    def put(
        self,
        archive: Path,
        *,
        snapshot_id: str,
        sha256: str,
        state: dict[str, Any] | None = None,
        save_state: Callable[[dict[str, Any]], None] | None = None,
        progress: ProgressFn | None = None,
        sealed: Sealed | None = None,
    ) -> RemoteFile:
        """Copy ``archive`` here (resuming a ``.partial`` left by an interrupted copy)."""
        sha256, content_sha = put_hashes(sha256, sealed)
        self._ensure_dir()
        final = self.dir / copy_name(snapshot_id, archive_kind_of(archive.name),
                                     sealed=sealed is not None)
        if final.is_file() and self._is_verified_copy(final, content_sha):
            return self._remote(final)

        size = archive_size(archive)
        partial = final.with_name(final.name + PARTIAL_SUFFIX)
        self._copy_verified(archive, partial, size, content_sha, save_state=save_state,
                            progress=progress,
                            mismatch=f"the local archive {archive.name} does not match its "
                                     f"sha256; it may be damaged: run `siip-watcher verify "
                                     f"{snapshot_id}`")

        sidecar = final.with_name(final.name + SIDECAR_SUFFIX)
        try:
            # the sidecars first: an archive visible under its final name always has them
            if sealed is not None:
                write_private_atomic(recipients_path(final), recipients_text(
                    final.name, sealed.recipients, sha256).encode())
            write_private_atomic(sidecar, sidecar_line(content_sha, final.name).encode())
            os.replace(partial, final)
            fsync_dir(self.dir)
        except OSError as exc:
            raise DestinationError(f"cannot finish the copy in {self.dir}: "
                                   f"{exc.strerror or exc}") from None
        if save_state:
            save_state({})
        return self._remote(final)

    def _copy_verified(self, source: Path, partial: Path, size: int, expected: str | None, *,
                       save_state: Callable[[dict[str, Any]], None] | None,
                       progress: ProgressFn | None, mismatch: str) -> None:
        """Copy ``source`` to ``partial`` (resuming it) until its sha256 is ``expected``.

        A resumed ``.partial`` may hold bytes of an older attempt: on a mismatch it starts
        over once from scratch, and a second mismatch means the source itself is damaged.
        """
        for fresh in (False, True):
            digest = self._copy(source, partial, size, fresh=fresh, save_state=save_state,
                                progress=progress)
            if expected is None or digest == expected:
                return
            partial.unlink(missing_ok=True)
            if fresh:
                raise DestinationError(mismatch, retryable=False)
            log.info("%s: copy of %s did not verify after resuming; copying again",
                     self.name, source.name)

    def _copy(self, archive: Path, partial: Path, size: int, *, fresh: bool,
              save_state: Callable[[dict[str, Any]], None] | None,
              progress: ProgressFn | None) -> str:
        """Append the rest of ``archive`` to ``partial``; return the sha256 of the result."""
        start = 0
        if not fresh and partial.exists():
            start = partial.stat().st_size
            if start > size:
                partial.unlink()
                start = 0
        hasher = hashlib.sha256()
        try:
            if start:
                file_sha256(partial, hasher=hasher)
            fd = open_private(partial, os.O_WRONLY | os.O_CREAT | (0 if start else os.O_TRUNC))
            try:
                os.lseek(fd, start, os.SEEK_SET)
                with open(archive, "rb") as src:
                    src.seek(start)
                    done = start
                    while block := src.read(self.chunk_size):
                        write_all(fd, block)
                        hasher.update(block)
                        done += len(block)
                        if save_state:
                            save_state({"partial": partial.name, "offset": done})
                        if progress:
                            progress(len(block))
                os.ftruncate(fd, done)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise DestinationError(f"cannot copy {archive.name} into {self.dir}: "
                                   f"{exc.strerror or exc}") from None
        return hasher.hexdigest()

    def _is_verified_copy(self, final: Path, sha256: str) -> bool:
        """A copy is already here and its bytes hash to ``sha256`` (sidecar and content)."""
        sidecar = final.with_name(final.name + SIDECAR_SUFFIX)
        try:
            recorded = parse_sidecar(sidecar.read_text(encoding="utf-8"))
            return recorded == sha256 and file_sha256(final) == sha256
        except OSError:
            return False

    def _ensure_dir(self) -> None:
        if not self.create:
            self._require_dir()
            return
        try:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise DestinationError(f"cannot create the folder {self.dir}: "
                                   f"{exc.strerror or exc}; is the disk mounted?") from None

    def _require_dir(self) -> None:
        if not self.dir.is_dir():
            raise DestinationError(f"the folder {self.dir} is not there; is the share or the "
                                   f"disk mounted?")

    # --- find, list, get, delete ----------------------------------------------------------

    def find(self, snapshot_id: str) -> RemoteFile | None:
        """The copy of ``snapshot_id`` in the folder, if its archive (full or delta, plain or
        encrypted) is there."""
        for kind in ("full", "delta"):
            for sealed in (False, True):
                path = self.dir / copy_name(snapshot_id, kind, sealed=sealed)
                if path.is_file():
                    return self._remote(path)
        return None

    def list(self) -> list[RemoteFile]:
        """Every archive in the folder, plain or encrypted, newest first (``.partial``
        leftovers are not)."""
        if not self.create:
            self._require_dir()
        elif not self.dir.is_dir():
            return []
        found = [p for pattern in ("*" + ARCHIVE_SUFFIX, "*" + ARCHIVE_SUFFIX + AGE_SUFFIX)
                 for p in self.dir.glob(pattern) if p.is_file()]
        return newest_first(self._remote(p) for p in found)

    def get(self, remote: RemoteFile, target: Path, *, progress: ProgressFn | None = None) -> Path:
        """Copy ``remote`` to ``target`` through ``<target>.partial``, checking its sha256."""
        source = Path(remote.remote_id)
        partial = target.with_name(target.name + PARTIAL_SUFFIX)
        try:
            size = source.stat().st_size
        except OSError as exc:
            raise DestinationError(f"the copy {source} is not readable: "
                                   f"{exc.strerror or exc}", retryable=False) from None
        self._copy_verified(source, partial, size, remote.stored_sha256, save_state=None,
                            progress=progress,
                            mismatch=f"the copy {source} does not match its sha256; it is "
                                     f"damaged, restore another snapshot")
        os.replace(partial, target)
        fsync_dir(target.parent)
        return target

    def delete(self, remote: RemoteFile) -> None:
        """Remove the archive and its sidecars (already gone is fine)."""
        path = Path(remote.remote_id)
        try:
            path.unlink(missing_ok=True)
            for suffix in (SIDECAR_SUFFIX, RECIPIENTS_SUFFIX):
                path.with_name(path.name + suffix).unlink(missing_ok=True)
            fsync_dir(path.parent)
        except OSError as exc:
            raise DestinationError(f"cannot delete {path}: {exc.strerror or exc}") from None

    def _remote(self, path: Path) -> RemoteFile:
        snapshot_id = snapshot_id_of(path.name) or path.name
        sealed: Sealed | None = None
        if is_sealed_name(path.name):
            sealed, sha256 = read_record(path)
        else:
            try:
                sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
                sha256 = parse_sidecar(sidecar.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError):
                sha256 = None
        st = path.stat()
        created = snapshot_time(snapshot_id) or datetime.fromtimestamp(st.st_mtime, UTC)
        return RemoteFile(snapshot_id=snapshot_id, name=path.name, size=st.st_size,
                          remote_id=str(path), sha256=sha256, created_at=created,
                          link=path.as_uri(), kind=archive_kind_of(path.name), sealed=sealed)
