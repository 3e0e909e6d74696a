"""The encrypted file an archive's off-site copies are sent from: ``<archive>.age`` in the
local dir, beside the archive, with its sidecars (:mod:`watcher.encryption.record`).

age output is different each time (a fresh file key), so a copy resumed after a restart must
send the very bytes it started with: the archive is encrypted once, streaming, into
``<archive>.age.partial``, which is renamed (after its sidecars) when complete, and the file
is kept until every destination that receives it has confirmed its copy. The queue then
removes it (:func:`discard`). No plaintext is written: the archive already is on disk.

With ``[encryption] local = true`` the encrypted file replaces the archive in the local dir
for good (:func:`encrypt_local_archives`), and the copies are sent from it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from watcher.archive.files import (
    AGE_SUFFIX,
    PARTIAL_SUFFIX,
    SIDECAR_SUFFIX,
    fsync_dir,
    sidecar_line,
    write_private_atomic,
)
from watcher.backup.report import Problem
from watcher.config.settings import Config
from watcher.destinations.base import DestinationError, Sealed
from watcher.encryption.keys import KeyFileError, configured_recipients, parse_recipient
from watcher.encryption.record import read_record, recipients_path, recipients_text
from watcher.encryption.stream import encrypt_file
from watcher.state.store import LocalStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SealedArchive:
    """An archive's encrypted file, ready to send."""

    path: Path
    sealed: Sealed


def sealed_path(archive: Path) -> Path:
    """Where the encrypted file of ``archive`` lives while its copies are sent."""
    return archive.with_name(archive.name + AGE_SUFFIX)


def local_file(archive: Path) -> Path:
    """The file that holds ``archive`` in the local dir: the archive, or its encrypted file
    once ``[encryption] local = true`` replaced it (what a report names, as `list` does)."""
    sealed = sealed_path(archive)
    return sealed if not archive.exists() and sealed.is_file() else archive


def sealed_archive(archive: Path, sha256: str, recipients: list[str]) -> SealedArchive:
    """The encrypted file of ``archive`` (whose sha256 is ``sha256``): the one already made,
    else a new one for ``recipients``.

    An existing file keeps the recipients it was made for, so a copy resumed after a change
    of ``[encryption]`` still sends the bytes it started with; the next snapshot uses the
    new keys. Raises :class:`DestinationError`: not retryable when the archive does not
    match its sha256 (damaged), retryable when the disk cannot take the file.
    """
    path = sealed_path(archive)
    if path.is_file():
        sealed, recorded = read_record(path)
        if sealed.sha256 and recorded == sha256.lower():
            return SealedArchive(path, sealed)
        if not archive.is_file():
            # the archive itself ([encryption] local = true): never thrown away
            raise DestinationError(f"the encrypted archive {path.name} lacks its .sha256 or "
                                   f".recipients sidecar, so its copies cannot be checked; "
                                   f"restore them from another copy or remove the snapshot",
                                   retryable=False)
        log.warning("the encrypted file %s lacks its sidecars; encrypting again", path.name)
        discard(archive)
    partial = path.with_name(path.name + PARTIAL_SUFFIX)
    try:
        plain, stored = encrypt_file(archive, partial,
                                     [parse_recipient(k, "encryption") for k in recipients])
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise DestinationError(f"cannot encrypt {archive.name} into {archive.parent}: "
                               f"{exc.strerror or exc}") from None
    if plain != sha256.lower():
        partial.unlink(missing_ok=True)
        raise DestinationError(f"the local archive {archive.name} does not match its sha256; "
                               f"it may be damaged: run `siip-watcher verify "
                               f"{archive.name}`", retryable=False)
    sealed = Sealed(recipients=tuple(recipients), sha256=stored)
    try:
        # the sidecars first: an encrypted file under its final name always has them
        write_private_atomic(recipients_path(path),
                             recipients_text(path.name, sealed.recipients, plain).encode())
        write_private_atomic(path.with_name(path.name + SIDECAR_SUFFIX),
                             sidecar_line(stored, path.name).encode())
        os.replace(partial, path)
        fsync_dir(path.parent)
    except OSError as exc:
        raise DestinationError(f"cannot finish the encrypted file {path}: "
                               f"{exc.strerror or exc}") from None
    log.info("encrypted %s for %d public key(s)", archive.name, len(recipients))
    return SealedArchive(path, sealed)


def discard(archive: Path) -> None:
    """Remove the encrypted file of ``archive`` and its sidecars (the file first: a sidecar
    left alone is a leftover the next run removes)."""
    path = sealed_path(archive)
    for one in (path, path.with_name(path.name + SIDECAR_SUFFIX), recipients_path(path)):
        one.unlink(missing_ok=True)


def encrypt_local_archives(cfg: Config, store: LocalStore) -> list[Problem]:
    """With ``[encryption] local = true``, every plain archive in the local dir is encrypted into
    its ``.age`` (or the one already made for its copies is taken) and the plain archive and
    its sidecar are removed; returns what could not be done (the archive then stays plain and
    is tried again at the next run).

    The plain archive existed for the run's length: the snapshot is written and checked
    plain, as the database and the project it holds lie plain on the same disk anyway.
    """
    if not cfg.encryption.local:
        return []
    keys: list[str] | KeyFileError
    try:
        keys = configured_recipients(cfg.encryption)
    except KeyFileError as exc:   # a recipients_file gone since the configuration was read
        keys = exc
    problems: list[Problem] = []
    for archive in store.archives():
        if archive.sealed:
            continue
        try:
            if isinstance(keys, KeyFileError):
                raise DestinationError(str(keys))
            if archive.sha256 is None:
                raise DestinationError("its .sha256 sidecar is missing or unreadable")
            sealed_archive(archive.path, archive.sha256, keys)
            for path in (archive.path, store.sidecar_path(archive.path)):
                path.unlink()
            fsync_dir(store.dir)
        except (DestinationError, OSError) as exc:
            why = str(exc) if isinstance(exc, DestinationError) else exc.strerror or str(exc)
            log.warning("%s stays unencrypted in %s: %s", archive.path.name, store.dir, why)
            problems.append(Problem(
                f"{archive.path.name} stays unencrypted although [encryption] local = true: "
                f"{why}", "it is tried again at the next run", key="local_not_encrypted",
                params={"file": archive.path.name}, detail=why))
        else:
            log.info("%s is encrypted in %s ([encryption] local = true)", archive.path.name,
                     store.dir)
    return problems
