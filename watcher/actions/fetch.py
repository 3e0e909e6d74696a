"""An archive to read, by snapshot id or ``latest``: from the local dir, or downloaded from a
destination (`verify`, `restore`)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from watcher.actions import ProgressBars, UsageError, no_progress
from watcher.actions.unseal import Identity, decrypt_copy, require_identity
from watcher.archive.files import archive_name, copy_name, parse_snapshot_id, sidecar_line
from watcher.config.settings import Config
from watcher.destinations.base import RemoteFile
from watcher.destinations.registry import NAMES, open_destination
from watcher.state.store import LocalStore


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
        yield Fetched(sid, path, None)
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
        work = LocalStore(cfg).scratch_dir()
        with tempfile.TemporaryDirectory(prefix=".download-", dir=work) as tmp:
            target = Path(tmp) / archive_name(sid, chosen.kind)
            stored = Path(tmp) / copy_name(sid, chosen.kind, sealed=opener is not None)
            with bars(f"download {sid}") as (update, total):
                if total:
                    total(chosen.size)
                dest.get(chosen, stored, progress=update)
            expected = chosen.sha256
            if opener is not None:
                try:
                    decrypted = decrypt_copy(stored, target, opener, chosen, source)
                finally:
                    stored.unlink(missing_ok=True)
                # a copy that decrypts is the file that was encrypted (age authenticates
                # it), so one encrypted by hand without a recorded sha256 is still checked
                expected = expected or decrypted
            if expected:
                target.with_name(target.name + ".sha256").write_text(
                    sidecar_line(expected, target.name))
            yield Fetched(sid, target, expected)
