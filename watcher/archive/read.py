"""Read and verify archives, streaming: one pass, memory independent of size.

Every check that matters for a restore is made: the file's sha256 against its sidecar, the zstd
frame checksums, every member's sha256 and size against the manifest, no member missing,
unexpected or present twice, and ``PRAGMA integrity_check`` on each database copy. Writing an
archive back to disk is ``watcher.archive.restore``'s job.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import zstandard

from watcher.archive.files import (
    DELTA,
    archive_kind_of,
    file_sha256,
    read_sidecar,
    write_all,
)
from watcher.archive.manifest import DATABASES_PREFIX, MANIFEST_MEMBER, Manifest
from watcher.archive.rebuild import apply_pages

READ_CHUNK = 1 << 20
ProgressFn = Callable[[int], None]


class ArchiveError(Exception):
    """The archive cannot be read or does not match what it claims; one line, actionable."""


class _HashingReader:
    """A raw file wrapper that hashes every byte read through it."""

    def __init__(self, fh: IO[bytes], progress: ProgressFn | None) -> None:
        self.fh = fh
        self.hash = hashlib.sha256()
        self.progress = progress

    def read(self, n: int = -1) -> bytes:
        data = self.fh.read(n)
        self.hash.update(data)
        if self.progress and data:
            self.progress(len(data))
        return data

    def drain(self) -> None:
        while self.read(READ_CHUNK):
            pass


def check_sidecar(archive: Path, progress: ProgressFn | None = None) -> str:
    """Compare the archive with its ``.sha256`` sidecar; return the digest or raise."""
    sidecar = archive.with_name(archive.name + ".sha256")
    try:
        expected = read_sidecar(sidecar)
    except FileNotFoundError:
        raise ArchiveError(f"{sidecar.name} is missing: {archive.name} cannot be trusted; "
                           f"use another snapshot") from None
    except (OSError, ValueError) as exc:
        raise ArchiveError(f"{sidecar.name} is unreadable ({exc}); use another snapshot") \
            from None
    actual = file_sha256(archive, progress=progress)
    if actual != expected:
        raise ArchiveError(f"{archive.name} does not match its sha256 (the file is damaged or "
                           f"incomplete); use another snapshot")
    return actual


@dataclass
class MemberSeen:
    """What reading one member found."""

    kind: str
    size: int
    sha256: str | None = None
    target: str | None = None


@dataclass
class ScanResult:
    """Everything a pass over an archive learnt."""

    manifest: Manifest
    members: dict[str, MemberSeen]
    sha256: str
    problems: list[str] = field(default_factory=list)


MemberHandler = Callable[[tarfile.TarInfo, IO[bytes] | None], tuple[MemberSeen, bool]]


def scan(path: Path, handler: MemberHandler | None = None,
         progress: ProgressFn | None = None) -> ScanResult:
    """Stream through ``path`` once, hashing every member and the whole file.

    ``handler(info, stream)`` may consume a member itself (e.g. write it to disk while
    hashing) and returns (what it saw, whether it consumed the stream).
    """
    seen: dict[str, MemberSeen] = {}
    manifest_raw: bytes | None = None
    try:
        fh = open(path, "rb", buffering=0)  # noqa: SIM115 - closed below
    except OSError as exc:
        raise ArchiveError(f"cannot open {path}: {exc.strerror or exc}") from None
    with fh:
        raw = _HashingReader(fh, progress)
        try:
            dctx = zstandard.ZstdDecompressor()
            with dctx.stream_reader(raw, read_size=READ_CHUNK, read_across_frames=True,
                                    closefd=False) as stream, \
                    tarfile.open(fileobj=stream, mode="r|") as tar:
                for info in tar:
                    name = info.name
                    if manifest_raw is not None:
                        raise ArchiveError(f"{path.name}: member {name!r} after the manifest")
                    data = tar.extractfile(info) if info.isreg() else None
                    if name == MANIFEST_MEMBER and data is not None:
                        manifest_raw = data.read()
                        continue
                    key = name.rstrip("/")
                    if key in seen:
                        # tar lets a later member replace an earlier one (a folder by a
                        # link, say); a snapshot never has two, so it is damage or an attack
                        raise ArchiveError(f"{path.name}: member {key!r} appears twice (a "
                                           f"damaged or hostile archive); use another "
                                           f"snapshot")
                    if handler is not None:
                        member, _ = handler(info, data)
                    else:
                        member = hash_member(info, data)
                    seen[key] = member
                # read what follows the tar end so the whole file is hashed
                while stream.read(READ_CHUNK):
                    pass
            raw.drain()
        except ArchiveError:
            raise
        except (zstandard.ZstdError, tarfile.TarError, EOFError, OSError) as exc:
            raise ArchiveError(f"{path.name} is damaged and cannot be read past a point "
                               f"({exc}); use another snapshot") from None
    if manifest_raw is None:
        raise ArchiveError(f"{path.name} has no manifest.json: it is incomplete or not a "
                           f"siip-watcher archive")
    try:
        manifest = Manifest.parse(manifest_raw)
    except (ValueError, KeyError, TypeError) as exc:
        raise ArchiveError(f"{path.name}: the manifest is unreadable ({exc})") from None
    result = ScanResult(manifest=manifest, members=seen, sha256=raw.hash.hexdigest())
    result.problems = compare_with_manifest(manifest, seen)
    return result


def hash_member(info: tarfile.TarInfo, data: IO[bytes] | None) -> MemberSeen:
    """What a member is, reading and hashing its content when it has some."""
    if info.issym():
        return MemberSeen("symlink", 0, target=info.linkname)
    if info.isdir():
        return MemberSeen("dir", 0)
    if data is None:
        return MemberSeen("other", info.size)
    digest = hashlib.sha256()
    size = 0
    while chunk := data.read(READ_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return MemberSeen("file", size, digest.hexdigest())


def compare_with_manifest(manifest: Manifest, seen: dict[str, MemberSeen]) -> list[str]:
    """Every difference between the members read and the manifest, as readable lines."""
    problems: list[str] = []
    for path, expected in manifest.members.items():
        got = seen.get(path.rstrip("/"))
        if got is None:
            problems.append(f"{path}: listed in the manifest but missing from the archive")
            continue
        if got.kind != expected.get("type"):
            problems.append(f"{path}: is a {got.kind}, the manifest says {expected.get('type')}")
        elif got.kind == "file":
            if got.size != expected.get("size") or got.sha256 != expected.get("sha256"):
                problems.append(f"{path}: content does not match its sha256 in the manifest")
        elif got.kind == "symlink" and got.target != expected.get("target"):
            problems.append(f"{path}: link target differs from the manifest")
    listed = {p.rstrip("/") for p in manifest.members}
    for path in seen:
        if path not in listed:
            problems.append(f"{path}: in the archive but not in the manifest")
    return problems


def compare_referenced(manifest: Manifest, base_seen: dict[str, MemberSeen]) -> list[str]:
    """What a delta takes from its base but the base does not hold as recorded."""
    problems: list[str] = []
    for path, entry in manifest.referenced.items():
        got = base_seen.get(path)
        if got is None or got.kind != "file" or got.sha256 != entry.get("sha256"):
            problems.append(f"{path}: not in the base as the delta recorded it")
    return problems


def page_deltas(manifest: Manifest) -> list[dict[str, Any]]:
    """The databases a delta stores as changed pages (the others it holds whole)."""
    return [db for db in manifest.databases if db.get("pages_member")]


def rebuild_database(db: dict[str, Any], base_copy: Path, pages: Path) -> str | None:
    """Apply a delta's pages to ``base_copy`` (a copy of the base's database, changed in
    place) and check the result: None when it is the snapshot's copy byte for byte and
    passes integrity_check, else what is wrong."""
    member = db.get("member", "")
    fd = os.open(base_copy, os.O_RDWR | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOFOLLOW", 0))
    try:
        with open(pages, "rb") as fh:
            apply_pages(fd, fh, page_size=int(db["page_size"]), page_count=int(db["pages"]))
        os.fsync(fd)
    except ValueError as exc:
        return f"{member}: {exc}"
    finally:
        os.close(fd)
    if file_sha256(base_copy) != db.get("sha256"):
        return (f"{member}: the database rebuilt from the base and the delta does not match "
                f"the sha256 of the snapshot's copy")
    check = integrity_check(base_copy)
    return None if check == "ok" else f"{member}: integrity_check failed: {check}"


def read_manifest(path: Path) -> Manifest:
    """The manifest of an archive (reads the whole archive: the manifest is its last member)."""
    return scan(path).manifest


# --- verify ---------------------------------------------------------------------------------


@dataclass
class CheckedFull:
    """What verifying a full learnt that the deltas taken against it need, so that
    `verify --all` reads each full once: its sha256 as read (None when it could not be read
    through), its problems, its members as seen, and its database copies, kept in a folder
    the caller owns (a delta's pages are applied to a copy of them, never to them)."""

    name: str
    sha256: str | None
    problems: list[str]
    members: dict[str, MemberSeen] = field(default_factory=dict)
    databases: dict[str, Path] = field(default_factory=dict)


@dataclass
class VerifyResult:
    """The outcome of verifying one archive."""

    archive: Path
    ok: bool
    problems: list[str]
    members: int = 0
    databases: list[dict[str, Any]] = field(default_factory=list)
    #: with ``verify(..., keep=FOLDER)``, a full as its deltas need it
    checked: CheckedFull | None = None


def verify(archive: Path, *, base: Path | None = None,  # noqa: PLR0913 - options, named
           checked_base: CheckedFull | None = None, keep: Path | None = None,
           work_dir: Path | None = None, progress: ProgressFn | None = None) -> VerifyResult:
    """Check sidecar, sha256, decompression, every manifest hash and each database copy.

    A delta is checked with its ``base`` full (None when it is not at hand, which is a
    problem naming it): the base's own checks, every file the delta takes from it, and each
    database rebuilt from the base's copy and the delta's pages (sha256 and integrity_check).
    ``checked_base`` stands for a base this process verified already (not read again);
    ``keep`` (a folder) makes the result carry a full's :class:`CheckedFull`, its database
    copies kept there.
    """
    problems: list[str] = []
    sidecar = archive.with_name(archive.name + ".sha256")
    try:
        expected = read_sidecar(sidecar)
    except (OSError, ValueError):
        expected = None
        problems.append(f"{sidecar.name} is missing or unreadable")

    with tempfile.TemporaryDirectory(prefix=".verify-", dir=work_dir) as tmp:
        db_files: dict[str, Path] = {}

        def handler(info: tarfile.TarInfo, data: IO[bytes] | None) -> tuple[MemberSeen, bool]:
            if info.name.startswith(DATABASES_PREFIX) and data is not None:
                target = (keep or Path(tmp)) / f"db{len(db_files)}.sqlite3"
                seen = _copy_member(data, target)
                db_files[info.name] = target
                return seen, True
            return hash_member(info, data), True

        try:
            result = scan(archive, handler, progress)
        except ArchiveError as exc:
            problems.append(str(exc))
            if expected is not None and file_sha256(archive) != expected:
                problems.append(f"{archive.name} does not match the sha256 in {sidecar.name}")
            unread = CheckedFull(archive.name, None, problems) if keep else None
            return VerifyResult(archive, False, problems, checked=unread)
        if expected is not None and result.sha256 != expected:
            problems.append(f"{archive.name} does not match the sha256 in {sidecar.name}")
        problems.extend(result.problems)
        dbs: list[dict[str, Any]] = []
        deltas = page_deltas(result.manifest)
        for db in result.manifest.databases:
            if db in deltas:
                continue
            member = db.get("member", "")
            copy = db_files.get(member)
            if copy is None:
                problems.append(f"{member}: database copy missing from the archive")
                continue
            check = integrity_check(copy)
            dbs.append({"path": db.get("path"), "member": member, "check": check})
            if check != "ok":
                problems.append(f"{member}: integrity_check failed: {check}")
        checked = None
        if result.manifest.kind == DELTA or archive_kind_of(archive.name) == DELTA:
            problems.extend(_verify_with_base(result.manifest, base, checked_base, db_files,
                                              Path(tmp), dbs, progress))
        elif keep is not None:
            checked = CheckedFull(archive.name, result.sha256, list(problems), result.members,
                                  dict(db_files))
    return VerifyResult(archive, not problems, problems, len(result.members), dbs, checked)


def _read_base(base: Path, needed: set[str], tmp: Path,
               progress: ProgressFn | None) -> CheckedFull:
    """Read a delta's base full for it: its members, and the database copies it needs."""
    base_files: dict[str, Path] = {}

    def handler(info: tarfile.TarInfo, data: IO[bytes] | None) -> tuple[MemberSeen, bool]:
        if info.name in needed and data is not None:
            target = tmp / f"base{len(base_files)}.sqlite3"
            base_files[info.name] = target
            return _copy_member(data, target), True
        return hash_member(info, data), True

    base_sha = check_sidecar(base)
    result = scan(base, handler, progress)
    return CheckedFull(base.name, base_sha, result.problems, result.members, base_files)


# internal, called once with all it needs
def _verify_with_base(manifest: Manifest, base: Path | None,  # noqa: PLR0913,PLR0917
                      checked: CheckedFull | None, db_files: dict[str, Path], tmp: Path,
                      dbs: list[dict[str, Any]], progress: ProgressFn | None) -> list[str]:
    """The problems of a delta that only its base shows, each naming the base."""
    base_id = manifest.base or "(unnamed)"
    if checked is None:
        if base is None or not base.is_file():
            return [f"its base full {base_id} is missing, so this delta cannot be restored; "
                    f"restore another snapshot, or get {base_id} back from a destination"]
        try:
            checked = _read_base(base, {db.get("base_member", "") for db in
                                        page_deltas(manifest)}, tmp, progress)
        except ArchiveError as exc:
            return [f"its base full {base_id} is damaged: {exc}"]
        owned = True
    else:
        owned = False                  # another delta may need these copies: work on copies
        if checked.problems:           # its own verification failed: said once, in short
            return [f"its base full {base_id} is damaged: {checked.problems[0]}"]
    recorded = manifest.data.get("base_sha256")
    if recorded and checked.sha256 != recorded:
        return [f"its base full {base_id} is not the archive this delta was taken against "
                f"(another sha256); restore another snapshot"]
    problems = [f"its base full {base_id}: {p}" for p in checked.problems]
    problems += [f"{p} (base {base_id})" for p in compare_referenced(manifest, checked.members)]
    for db in page_deltas(manifest):
        member = db.get("member", "")
        base_copy, pages = checked.databases.get(db.get("base_member", "")), \
            db_files.get(db.get("pages_member", ""))
        if base_copy is None or pages is None:
            problems.append(f"{member}: its pages or its copy in the base full {base_id} are "
                            f"missing")
            continue
        if not owned:
            base_copy = Path(shutil.copyfile(base_copy, tmp / f"base-{base_copy.name}"))
        problem = rebuild_database(db, base_copy, pages)
        dbs.append({"path": db.get("path"), "member": member,
                    "check": "ok" if problem is None else problem})
        if problem is not None:
            problems.append(f"{problem} (base {base_id})")
    return problems


def integrity_check(db_path: Path) -> str:
    """'ok', or what SQLite's integrity_check (or opening the file) reported."""
    try:
        con = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            rows = con.execute("PRAGMA integrity_check").fetchall()
        finally:
            con.close()
    except sqlite3.Error as exc:
        return f"cannot open: {exc}"
    return "ok" if rows == [("ok",)] else "; ".join(str(r[0]) for r in rows[:5])


def _copy_member(data: IO[bytes], target: Path, mode: int = 0o600) -> MemberSeen:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0),
                 mode)
    try:
        return copy_stream(data, fd)
    finally:
        os.close(fd)


def copy_stream(data: IO[bytes], fd: int) -> MemberSeen:
    """Copy a member's content to the open file ``fd``, hashing it on the way."""
    digest = hashlib.sha256()
    size = 0
    while chunk := data.read(READ_CHUNK):
        digest.update(chunk)
        write_all(fd, chunk)
        size += len(chunk)
    return MemberSeen("file", size, digest.hexdigest())
