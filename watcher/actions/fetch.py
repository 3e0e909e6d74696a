"""An archive to read, by snapshot id or ``latest``: from the local dir, or downloaded from a
destination (`verify`, `restore`)."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from watcher.actions import ProgressBars, UsageError, no_progress
from watcher.actions.unseal import Identity, decrypt_copy, require_identity
from watcher.archive.files import (
    DELTA,
    archive_kind_of,
    archive_name,
    copy_name,
    is_sealed_name,
    parse_snapshot_id,
    sidecar_line,
)
from watcher.archive.read import ArchiveError, read_manifest
from watcher.config.settings import Config, ConfigError
from watcher.destinations.base import DestinationError, RemoteFile
from watcher.destinations.registry import NAMES, enabled_names, open_destination
from watcher.encryption.record import read_record
from watcher.state.store import LocalStore

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Fetched:
    """An archive on this machine, ready to read."""

    snapshot_id: str
    path: Path
    #: the checksum the destination recorded; None for a local archive (its sidecar counts)
    sha256: str | None


def local_archive(cfg: Config, ident: str) -> tuple[str, Path]:
    """(snapshot id, path) of the local archive ``ident`` (an id, a file name or ``latest``)."""
    archives = LocalStore(cfg).archives()
    if not archives:
        raise UsageError(f"no snapshots in {cfg.local.dir}; run `siip-watcher once` first, or "
                         f"use {' or '.join('--from ' + n for n in NAMES)}")
    if ident == "latest":
        return archives[0].id, archives[0].path
    for a in archives:
        if ident in (a.id, a.path.name):
            return a.id, a.path
    raise UsageError(f"no snapshot {ident!r} in {cfg.local.dir}; `siip-watcher list` shows them")


def remote_files(cfg: Config, source: str) -> list[RemoteFile]:
    """Every archive the destination ``source`` holds, newest first."""
    with open_destination(cfg, source) as dest:
        return dest.list()


@contextmanager
def fetched(cfg: Config, source: str, ident: str, *, bars: ProgressBars = no_progress,
            identity: Identity | None = None) -> Iterator[Fetched]:
    """The archive ``ident`` from ``source`` (``local`` or a destination's name).

    A remote archive is downloaded into a temporary folder (in the local dir when it exists,
    else the system's) with its sidecar, and removed afterwards. Both are named after the
    snapshot id, checked against the archive name pattern, and never after the remote file's
    name: whoever can rename a file at the destination could otherwise pick the path written.
    An encrypted copy needs ``identity`` (checked before the download): it is downloaded as
    it is stored, then decrypted, streaming, into the archive file the caller reads; the
    encrypted download is removed at once.
    """
    if source == "local":
        sid, path = local_archive(cfg, ident)
        if not is_sealed_name(path.name):
            yield Fetched(sid, path, None)
            return
        # [encryption] local = true: decrypted into the scratch folder like a download
        sealed, archive_sha = read_record(path)
        here = RemoteFile(snapshot_id=sid, name=path.name, size=path.stat().st_size,
                          remote_id=str(path), sha256=archive_sha,
                          kind=archive_kind_of(path.name), sealed=sealed)
        opener = require_identity(here, identity, "local")
        with _opened(cfg, here, "local", opener, lambda _: path) as archive:
            yield archive
        return
    with open_destination(cfg, source) as dest:
        remote = dest.list()
        if not remote:
            raise UsageError(f"no snapshots at {source}")
        chosen = remote[0] if ident == "latest" else next(
            (r for r in remote if ident in (r.snapshot_id, r.name)), None)
        if chosen is None:
            raise UsageError(f"no snapshot {ident!r} at {source}; "
                             f"`siip-watcher list --from {source}` shows them")
        sid = chosen.snapshot_id
        if parse_snapshot_id(sid) is None:
            raise UsageError(f"{source} holds a file whose snapshot id {sid!r} is not like "
                             f"NAME-YYYYMMDDTHHMMSSZ; it is not downloaded, pick another with "
                             f"`siip-watcher list --from {source}`")
        opener = require_identity(chosen, identity, source) if chosen.sealed else None

        def download(stored: Path) -> Path:
            with bars(f"download {sid}") as (update, total):
                if total:
                    total(chosen.size)
                return dest.get(chosen, stored, progress=update)

        with _opened(cfg, chosen, source, opener, download) as archive:
            yield archive


@contextmanager
def _opened(cfg: Config, chosen: RemoteFile, source: str, opener: Identity | None,
            get: Callable[[Path], Path]) -> Iterator[Fetched]:
    """The archive of ``chosen`` in a temporary folder, with its sidecar: ``get(path)``
    returns the stored file (downloaded to ``path``, or where it already lies), which is
    decrypted with ``opener`` when encrypted (a download then removed at once)."""
    sid = chosen.snapshot_id
    work = LocalStore(cfg).scratch_dir()
    with tempfile.TemporaryDirectory(prefix=".download-", dir=work) as tmp:
        target = Path(tmp) / archive_name(sid, chosen.kind)
        wanted = Path(tmp) / copy_name(sid, chosen.kind, sealed=opener is not None)
        stored = get(wanted)
        expected = chosen.sha256
        if opener is not None:
            try:
                decrypted = decrypt_copy(stored, target, opener, chosen, source)
            finally:
                if stored == wanted:
                    stored.unlink(missing_ok=True)
            # a copy that decrypts is the file that was encrypted (age authenticates it), so
            # one encrypted by hand without a recorded sha256 is still checked
            expected = expected or decrypted
        if expected:
            target.with_name(target.name + ".sha256").write_text(
                sidecar_line(expected, target.name))
        yield Fetched(sid, target, expected)


@contextmanager
def fetched_base(cfg: Config, source: str, archive: Fetched, *,
                 bars: ProgressBars = no_progress,
                 identity: Identity | None = None) -> Iterator[Fetched | None]:
    """The base full that the delta ``archive`` needs: from ``source`` when it holds it, else
    from the local dir, else from the first enabled destination that does (a delta kept only
    locally whose base went to Drive, a new machine restoring from a folder that lost the
    base). None for a full, or when no place has the base: verify and restore then name it."""
    base_id = base_of(archive)
    place = None if base_id is None else where_is(cfg, base_id, first=source)
    if base_id is None or place is None:
        yield None
        return
    if place != source:
        log.info("the base full %s of %s is not %s: it is read from %s", base_id,
                 archive.snapshot_id, _at(source), _at(place))
    with fetched(cfg, place, base_id, bars=bars, identity=identity) as base:
        yield base


def base_of(archive: Fetched) -> str | None:
    """The base full's snapshot id of a delta archive; None for a full, or for a delta whose
    manifest cannot be read (verify and restore say what is wrong with it)."""
    if archive_kind_of(archive.path.name) != DELTA:
        return None
    try:
        return read_manifest(archive.path).base
    except ArchiveError:
        return None


def where_is(cfg: Config, snapshot_id: str, *, first: str) -> str | None:
    """The first place holding ``snapshot_id``: ``first``, then ``local``, then each enabled
    destination; one that cannot be read now is passed over (and logged)."""
    for place in dict.fromkeys([first, "local", *enabled_names(cfg)]):
        if place == "local":
            if LocalStore(cfg).find(snapshot_id) is not None:
                return place
            continue
        try:
            if any(r.snapshot_id == snapshot_id for r in remote_files(cfg, place)):
                return place
        except (ConfigError, DestinationError) as exc:
            log.info("looking for %s: %s cannot be read now (%s)", snapshot_id, place, exc)
    return None


def _at(place: str) -> str:
    return "in the local dir" if place == "local" else f"at {place}"
