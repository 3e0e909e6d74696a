"""Archive files, one set of rules for everyone: names and snapshot ids, the ``.sha256``
sidecar, hashing a file, and private, atomic, durable writes.

Used by the local store, the archive reader and every destination. Pure functions except for
the file helpers at the end, which are the only I/O here.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from watcher.destinations.base import RemoteFile

ARCHIVE_SUFFIX = ".tar.zst"
#: a delta snapshot's archive: only what changed since its base full (README, "Deltas")
DELTA_ARCHIVE_SUFFIX = ".delta" + ARCHIVE_SUFFIX
FULL, DELTA = "full", "delta"
SIDECAR_SUFFIX = ".sha256"
PARTIAL_SUFFIX = ".partial"
#: an age-encrypted copy of an archive is the archive's name plus this (docs/encryption.md)
AGE_SUFFIX = ".age"
_READ_BLOCK = 1 << 20

_ID_RE = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)-(?P<ts>\d{8}T\d{6}Z)$")


def archive_name(snapshot_id: str, kind: str = FULL) -> str:
    """The file name of a snapshot's archive: ``siip-20261127T181500Z.tar.zst`` for a full,
    ``siip-20261127T181500Z.delta.tar.zst`` for a delta."""
    return snapshot_id + (DELTA_ARCHIVE_SUFFIX if kind == DELTA else ARCHIVE_SUFFIX)


def parse_archive_name(name: str) -> tuple[str, str] | None:
    """(snapshot id, kind) of an archive file name, encrypted (``.age``) or not, or None for
    anything else."""
    if is_sealed_name(name):
        name = name[: -len(AGE_SUFFIX)]
    for suffix, kind in ((DELTA_ARCHIVE_SUFFIX, DELTA), (ARCHIVE_SUFFIX, FULL)):
        if name.endswith(suffix):
            return (name[: -len(suffix)], kind) if len(name) > len(suffix) else None
    return None


def sealed_name(snapshot_id: str, kind: str = FULL) -> str:
    """The file name of a snapshot's age-encrypted copy (``siip-...Z.tar.zst.age``, or
    ``siip-...Z.delta.tar.zst.age``)."""
    return archive_name(snapshot_id, kind) + AGE_SUFFIX


def copy_name(snapshot_id: str, kind: str = FULL, *, sealed: bool) -> str:
    """The file name a destination gives a snapshot's copy, encrypted or not."""
    return sealed_name(snapshot_id, kind) if sealed else archive_name(snapshot_id, kind)


def is_sealed_name(name: str) -> bool:
    """Whether an archive file name (full or delta) is an age-encrypted copy's."""
    return name.endswith(ARCHIVE_SUFFIX + AGE_SUFFIX)


def snapshot_id_of(name: str) -> str | None:
    """The snapshot id of an archive file name (full or delta, encrypted or not), or None
    for anything else."""
    parsed = parse_archive_name(name)
    return parsed[0] if parsed else None


def archive_kind_of(name: str) -> str:
    """``"delta"`` for a delta archive's file name (encrypted or not), else ``"full"``."""
    parsed = parse_archive_name(name)
    return parsed[1] if parsed else FULL


def parse_snapshot_id(snapshot_id: str) -> tuple[str, datetime] | None:
    """Split ``name-YYYYMMDDTHHMMSSZ`` into (name, UTC time); None if it is not an id."""
    m = _ID_RE.match(snapshot_id)
    if not m:
        return None
    try:
        ts = datetime.strptime(m.group("ts"), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None
    return m.group("name"), ts


def snapshot_time(snapshot_id: str) -> datetime | None:
    """When the snapshot was taken, read from the UTC stamp at the end of its id."""
    parsed = parse_snapshot_id(snapshot_id)
    return parsed[1] if parsed else None


def newest_first(files: Iterable[RemoteFile]) -> list[RemoteFile]:
    """Sort by creation time, newest first; ties (and unknown times) by snapshot id."""
    oldest = datetime.min.replace(tzinfo=UTC)
    return sorted(files, key=lambda f: (f.created_at or oldest, f.snapshot_id), reverse=True)


def sidecar_line(sha256: str, name: str) -> str:
    """One line in ``sha256sum`` format, so ``sha256sum -c`` checks the archive."""
    return f"{sha256}  {name}\n"


def parse_sidecar(text: str) -> str | None:
    """The hex digest of a ``sha256sum`` line, or None if the text is not one."""
    first = text.strip().split()
    if first and re.fullmatch(r"[0-9a-fA-F]{64}", first[0]):
        return first[0].lower()
    return None


def read_sidecar(path: Path) -> str:
    """The sha256 recorded in a sidecar file; raises ValueError when it is malformed."""
    digest = parse_sidecar(path.read_text(encoding="utf-8"))
    if digest is None:
        raise ValueError(f"{path} is not a sha256sum line")
    return digest


def file_sha256(path: Path, *, start: int = 0, hasher: hashlib._Hash | None = None,
                progress: Callable[[int], None] | None = None) -> str:
    """The sha256 of a file (or feed bytes from ``start`` into ``hasher`` and return it)."""
    h = hasher or hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        f.seek(start)
        while block := f.read(_READ_BLOCK):
            h.update(block)
            if progress:
                progress(len(block))
    return h.hexdigest()


def open_private(path: Path, flags: int) -> int:
    """``os.open`` with mode 0600: backups hold the whole database, keep them private."""
    fd = os.open(path, flags | getattr(os, "O_BINARY", 0), 0o600)
    if os.name == "posix":
        # the mode argument is filtered by the umask and ignored for an existing file
        os.fchmod(fd, 0o600)
    return fd


def private_opener(path: str | os.PathLike[str], flags: int) -> int:
    """``opener`` for :func:`open` that creates the file as :func:`open_private` does: every
    work file in the backup dir holds the database, its pages or the project's file list."""
    return open_private(Path(path), flags)


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """Write all of ``data`` to ``fd`` (``os.write`` may take less than it is given)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_private_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through ``<path>.partial`` + fsync + rename, mode 0600."""
    tmp = path.with_name(path.name + PARTIAL_SUFFIX)
    fd = open_private(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make a rename durable (a no-op where directories cannot be opened, e.g. Windows)."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
