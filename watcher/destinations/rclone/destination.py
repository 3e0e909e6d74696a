"""The rclone destination: verified, exactly-once copies in one folder of an rclone remote.

- Each copy is ``<folder>/<archive name>`` with its ``.sha256`` sidecar beside it, and an
  encrypted one ``<name>.age`` with its ``.recipients`` too, as in the folder destination: a
  new machine with only the configuration and the rclone.conf finds the copies by name
  (full or delta, plain or encrypted: watcher/archive/files.py) and checks them by the
  sidecar (``list``/``restore --from rclone``).
- ``put`` uploads to ``<name>.partial`` and moves it to its name only after it is checked
  and its sidecar is written, so a copy under its final name is always complete. rclone
  cannot resume an upload: an interrupted one starts over, and the next ``put`` removes
  the ``.partial`` leftovers (rclone's own ``*.partial`` names included).
- The check: rclone's hash of the uploaded file when the backend has one (``lsjson
  --hash-type``; SFTP and S3 give md5, OneDrive quickxor, Dropbox its own) against the same
  hash of the local archive (sha256 needs no second read: it is the snapshot's); the size
  alone when the backend has none (WebDAV), and then the sidecar's sha256 on download. A
  mismatch deletes the upload and sends it again, once.
- ``get`` streams ``rclone cat`` into a private ``.partial`` while hashing it, and keeps it
  only if the sha256 matches the sidecar.

Building it touches neither the disk nor the network; the binary is looked for on first use.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import tempfile
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from watcher.archive.files import (
    DELTA,
    FULL,
    PARTIAL_SUFFIX,
    SIDECAR_SUFFIX,
    archive_kind_of,
    copy_name,
    fsync_dir,
    is_sealed_name,
    newest_first,
    open_private,
    parse_sidecar,
    parse_snapshot_id,
    sidecar_line,
    snapshot_id_of,
    snapshot_time,
    write_all,
)
from watcher.config.settings import RcloneConfig
from watcher.destinations.base import (
    Destination,
    DestinationError,
    ProgressFn,
    RemoteFile,
    Sealed,
    archive_size,
    put_hashes,
)
from watcher.destinations.rclone.errors import DIR_NOT_FOUND, FILE_NOT_FOUND, explain
from watcher.destinations.rclone.process import Rclone, RcloneFailed, find_binary
from watcher.encryption.record import RECIPIENTS_SUFFIX, read_record, recipients_text
from watcher.retry import Stopped

log = logging.getLogger(__name__)

#: uploads of one copy that may fail their check before the copy goes back to the queue
MAX_MISMATCHES = 2
#: the hash compared after an upload, first that the backend has: sha256 is the snapshot's
#: own (no second read), the others rclone computes from the local file
HASH_PREFERENCE = ("sha256", "md5", "sha1", "quickxor", "dropbox", "crc32", "sha512")
#: listing flags: the names and sizes only (a modification time costs S3 a request a file)
LIST_FLAGS = ("--files-only", "--no-mimetype", "--no-modtime")
#: uploads: straight into our own temporary name (no second rename by rclone), checked
#: by our own hash comparison (not twice), always sent (a leftover of the same size is
#: never taken for the copy)
UPLOAD_FLAGS = ("--inplace", "--ignore-checksum", "--no-check-dest")
PROBE_PREFIX = ".siip-watcher-probe-"
PROBE_BYTES = 4096


class RcloneDestination(Destination):
    """Copies of archives in ``rclone.remote`` (see the module docstring)."""

    def __init__(self, cfg: RcloneConfig, *, name: str = "rclone",
                 stop: threading.Event | None = None, rclone: Rclone | None = None) -> None:
        self.cfg = cfg
        self.name = name
        self.stop = stop
        self.folder = cfg.remote
        self._rclone = rclone
        self._hash_type: str | None = None
        self._leftovers_checked = False

    # --- plumbing -------------------------------------------------------------------------

    def _path(self, name: str) -> str:
        """The rclone path of ``name`` in the folder."""
        return f"{self.folder}{name}" if self.folder.endswith((":", "/")) else \
            f"{self.folder}/{name}"

    def _run(self, args: Iterable[str], *, doing: str, missing_ok: bool = False,
             data: bytes | None = None, progress: ProgressFn | None = None,
             sink: Callable[[bytes], None] | None = None) -> str | None:
        """rclone's output, or None when ``missing_ok`` and what it read is not there;
        a failure in plain words as :class:`DestinationError`."""
        if self._rclone is None:
            self._rclone = Rclone(find_binary(self.cfg.binary), self.cfg.config_file,
                                  stop=self.stop)
        try:
            return self._rclone.run(list(args), data=data, progress=progress, sink=sink)
        except RcloneFailed as exc:
            if missing_ok and exc.code in (DIR_NOT_FOUND, FILE_NOT_FOUND):
                return None
            why = explain(exc.code, exc.lines, remote=self.folder, doing=doing)
            raise DestinationError(why.message, retryable=why.retryable) from None
        except Stopped:
            raise DestinationError("stopped before rclone finished; the copy is tried again "
                                   "next time") from None

    def _listing(self) -> dict[str, int]:
        """Name -> size of every file in the folder; empty when the folder is not there yet
        (rclone creates it with the first copy)."""
        out = self._run(["lsjson", *LIST_FLAGS, self.folder], doing="list the folder",
                        missing_ok=True)
        return {str(e["Name"]): int(e.get("Size", 0)) for e in json.loads(out or "[]")}

    def _with_sidecars(self, listing: dict[str, int], names: Iterable[str]) -> list[RemoteFile]:
        """The copies ``names`` (sizes from ``listing``) with what their sidecars say.

        The ``.sha256`` and ``.recipients`` files of all of them come down in one rclone call
        into a private temporary folder, where they are read as the folder destination reads
        its own (watcher/encryption/record.py)."""
        names = list(names)
        wanted = [f"{n}{suffix}" for n in names for suffix in (SIDECAR_SUFFIX, RECIPIENTS_SUFFIX)
                  if f"{n}{suffix}" in listing]
        with tempfile.TemporaryDirectory(prefix="siip-rclone-") as tmp:
            side = Path(tmp)
            if wanted:
                filters = [arg for n in wanted for arg in ("--include", f"/{n}")]
                self._run(["copy", self.folder, str(side), "--max-depth", "1", *filters],
                          doing="read the .sha256 files", missing_ok=True)
            return [self._remote(n, listing[n], side / n) for n in names]

    def _remote(self, name: str, size: int, local: Path | None = None) -> RemoteFile:
        """The copy ``name``; ``local`` is where its sidecars were fetched to, if they were."""
        sid = snapshot_id_of(name) or name
        sealed: Sealed | None = None
        sha256: str | None = None
        if local is not None and is_sealed_name(name):
            sealed, sha256 = read_record(local)
        elif local is not None:
            sidecar = local.with_name(name + SIDECAR_SUFFIX)
            with contextlib.suppress(OSError, UnicodeDecodeError):
                sha256 = parse_sidecar(sidecar.read_text(encoding="utf-8"))
        return RemoteFile(snapshot_id=sid, name=name, size=size, remote_id=self._path(name),
                          sha256=sha256, created_at=snapshot_time(sid), link=self._path(name),
                          kind=archive_kind_of(name), sealed=sealed)

    def _delete_names(self, names: Iterable[str], *, doing: str) -> None:
        """Delete these files of the folder; those already gone are fine."""
        filters = [arg for name in names for arg in ("--include", f"/{name}")]
        if filters:
            self._run(["delete", self.folder, "--max-depth", "1", *filters], doing=doing,
                      missing_ok=True)

    # --- find and list --------------------------------------------------------------------

    def find(self, snapshot_id: str) -> RemoteFile | None:
        """The copy of ``snapshot_id`` in the folder (full or delta, plain or encrypted)."""
        listing = self._listing()
        name = next((n for kind in (FULL, DELTA) for sealed in (False, True)
                     if (n := copy_name(snapshot_id, kind, sealed=sealed)) in listing), None)
        return self._with_sidecars(listing, [name])[0] if name else None

    def list(self) -> list[RemoteFile]:
        """Every archive in the folder, plain or encrypted, newest first (temporary names
        are left out)."""
        listing = self._listing()
        names = [n for n in listing if (sid := snapshot_id_of(n)) and parse_snapshot_id(sid)]
        return newest_first(self._with_sidecars(listing, names))

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
        """Upload ``archive`` once, check it, and only then give it its name (an encrypted
        copy with its ``.recipients`` beside it, as the folder destination keeps it)."""
        sha256, content_sha = put_hashes(sha256, sealed)
        size = archive_size(archive)
        name = copy_name(snapshot_id, archive_kind_of(archive.name), sealed=sealed is not None)
        listing = self._listing()
        if name in listing:
            [existing] = self._with_sidecars(listing, [name])
            if existing.stored_sha256 == content_sha and self._problem(
                    name, size, self._expected_hash(archive, content_sha)) is None:
                return existing
            log.warning("%s: the copy of %s in %s does not match the local archive; "
                        "replacing it", self.name, snapshot_id, self.folder)
            self._delete_names([name], doing=f"replace {name}")
        self._remove_leftovers(listing)

        partial = name + PARTIAL_SUFFIX
        sidecars = [(name + SIDECAR_SUFFIX, sidecar_line(content_sha, name))]
        if sealed is not None:
            sidecars.append((name + RECIPIENTS_SUFFIX,
                             recipients_text(name, sealed.recipients, sha256)))
        problem: str | None = None
        # each rclone call costs a process start and a round trip: what does not need the
        # upload's result runs beside it. The sidecars may land first, because only a name
        # listed as an archive counts (and the next put writes them again).
        with ThreadPoolExecutor(max_workers=1 + len(sidecars)) as beside:
            written = [beside.submit(self._run, ["rcat", self._path(n)], data=text.encode(),
                                     doing=f"write {n}") for n, text in sidecars]
            expected = beside.submit(self._expected_hash, archive, content_sha)
            for _attempt in range(MAX_MISMATCHES):
                self._upload(archive, partial, size, progress)
                problem = self._problem(partial, size, expected.result())
                if problem is None:
                    break
                log.warning("%s: the upload of %s %s; sending it again", self.name,
                            snapshot_id, problem)
                self._delete_names([partial], doing=f"delete the bad upload of {name}")
            else:
                raise DestinationError(f"the copy of {snapshot_id} in {self.folder} did not "
                                       f"match the local archive {MAX_MISMATCHES} times (last: "
                                       f"it {problem}); it stays queued")
            for future in written:
                future.result()
        self._run(["moveto", self._path(partial), self._path(name)],
                  doing=f"rename {partial} to {name}")
        if save_state:
            save_state({})
        return RemoteFile(snapshot_id=snapshot_id, name=name, size=size,
                          remote_id=self._path(name), sha256=sha256,
                          created_at=snapshot_time(snapshot_id), link=self._path(name),
                          kind=archive_kind_of(name), sealed=sealed)

    def _upload(self, archive: Path, partial: str, size: int,
                progress: ProgressFn | None) -> None:
        """``rclone copyto`` to the temporary name; ``progress`` adds up to ``size``."""
        sent = 0

        def moved(n: int) -> None:
            nonlocal sent
            sent += n
            if progress:
                progress(n)

        self._run(["copyto", *UPLOAD_FLAGS, str(archive), self._path(partial)],
                  doing=f"upload {archive.name}", progress=moved)
        if progress and sent < size:
            progress(size - sent)

    def _remove_leftovers(self, listing: dict[str, int]) -> None:
        """Remove what interrupted uploads left (once per destination: the names are ours)."""
        if self._leftovers_checked:
            return
        leftovers = [n for n in listing if n.endswith(PARTIAL_SUFFIX)]
        if leftovers:
            log.info("%s: removing %d interrupted upload(s) from %s: %s", self.name,
                     len(leftovers), self.folder, ", ".join(leftovers))
            self._delete_names(leftovers, doing="remove interrupted uploads")
        self._leftovers_checked = True

    def _problem(self, name: str, size: int, expected: tuple[str, str]) -> str | None:
        """How the file ``name`` in the folder differs from the local file of ``size`` bytes
        whose hash of kind ``expected[0]`` is ``expected[1]``, or None."""
        kind, local = expected
        args = ["lsjson", *LIST_FLAGS, *(("--hash-type", kind) if kind else ()),
                self._path(name)]
        entries = json.loads(self._run(args, doing=f"check {name}", missing_ok=True) or "[]")
        if not entries:
            return "is missing after the upload"
        if int(entries[0].get("Size", -1)) != size:
            return f"has {entries[0].get('Size')} bytes instead of {size}"
        remote = str((entries[0].get("Hashes") or {}).get(kind, "")).lower()
        # a backend may not know a file's hash (an S3 object uploaded in parts by another
        # tool): the size then, and the sidecar's sha256 on download
        if kind and remote and remote != local:
            return f"has a different {kind} hash"
        return None

    def hash_type(self) -> str:
        """The hash this backend reports that the check compares ("" for none), asked once."""
        if self._hash_type is None:
            out = self._run(["backend", "features", self.folder],
                            doing="ask which hashes the remote has") or "{}"
            offered = [str(h).lower() for h in json.loads(out).get("Hashes") or []]
            self._hash_type = next((h for h in HASH_PREFERENCE if h in offered),
                                   offered[0] if offered else "")
        return self._hash_type

    def _expected_hash(self, archive: Path, sha256: str) -> tuple[str, str]:
        """(the hash the backend reports, that hash of ``archive``); ("", "") when it has
        none. sha256 is the snapshot's own; rclone computes the others from the file."""
        kind = self.hash_type()
        if kind in ("", "sha256"):
            return kind, sha256 if kind else ""
        out = self._run(["hashsum", kind, str(archive)],
                        doing=f"compute the {kind} hash of {archive.name}") or ""
        return kind, out.split()[0].lower() if out.split() else ""

    # --- get and delete -------------------------------------------------------------------

    def get(self, remote: RemoteFile, target: Path, *, progress: ProgressFn | None = None) -> Path:
        """Download ``remote`` to ``target`` through a private ``<target>.partial``, hashing
        it on the way, and keep it only if its size and sha256 match."""
        partial = target.with_name(target.name + PARTIAL_SUFFIX)
        hasher = hashlib.sha256()
        got = 0
        fd = open_private(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            def write(block: bytes) -> None:
                nonlocal got
                write_all(fd, block)
                hasher.update(block)
                got += len(block)
                if progress:
                    progress(len(block))

            self._run(["cat", remote.remote_id], sink=write, doing=f"download {remote.name}")
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            partial.unlink(missing_ok=True)
            raise
        os.close(fd)
        why = None
        if got != remote.size:
            why = f"has {got} bytes instead of {remote.size}"
        elif remote.stored_sha256 and hasher.hexdigest() != remote.stored_sha256:
            why = "does not match its sha256; it is damaged, restore another snapshot"
        if why:
            partial.unlink(missing_ok=True)
            raise DestinationError(f"the copy of {remote.snapshot_id} in {self.folder} {why}",
                                   retryable=False)
        os.replace(partial, target)
        fsync_dir(target.parent)
        return target

    def delete(self, remote: RemoteFile) -> None:
        """Remove the archive and its sidecars (already gone is fine)."""
        self._delete_names([remote.name, *(remote.name + suffix for suffix in
                                           (SIDECAR_SUFFIX, RECIPIENTS_SUFFIX))],
                           doing=f"delete {remote.name}")

    # --- `siip-watcher rclone check` ------------------------------------------------------

    def probe(self) -> None:
        """Write a small file into the folder, read it back and delete it: the remote takes
        writes, not only reads. Raises :class:`DestinationError` saying what failed."""
        name = f"{PROBE_PREFIX}{secrets.token_hex(8)}"
        data = secrets.token_bytes(PROBE_BYTES)
        self._run(["rcat", self._path(name)], data=data, doing="write a probe file")
        try:
            read: list[bytes] = []
            self._run(["cat", self._path(name)], sink=read.append,
                      doing="read the probe file back")
            if b"".join(read) != data:
                raise DestinationError(f"the probe file written to {self.folder} came back "
                                       f"different; the remote does not keep files intact",
                                       retryable=False)
        finally:
            self._delete_names([name], doing="delete the probe file")
