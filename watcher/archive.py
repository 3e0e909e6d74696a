"""Read, verify and extract archives, streaming: one pass, memory independent of size.

Every check that matters for a restore is made: the file's sha256 against its sidecar, the zstd
frame checksums, every member's sha256 and size against the manifest, no member missing or
unexpected, and ``PRAGMA integrity_check`` on each database copy.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import os
import shutil
import sqlite3
import stat
import tarfile
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

import zstandard

from watcher.archive_files import file_sha256, read_sidecar
from watcher.manifest import DATABASES_PREFIX, FILES_PREFIX, MANIFEST_MEMBER, Manifest

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
                    if handler is not None:
                        member, _ = handler(info, data)
                    else:
                        member = _hash_member(info, data)
                    seen[name.rstrip("/") if info.isdir() else name] = member
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


def _hash_member(info: tarfile.TarInfo, data: IO[bytes] | None) -> MemberSeen:
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


def read_manifest(path: Path) -> Manifest:
    """The manifest of an archive (reads the whole archive: the manifest is its last member)."""
    return scan(path).manifest


# --- verify ---------------------------------------------------------------------------------


@dataclass
class VerifyResult:
    """The outcome of verifying one archive."""

    archive: Path
    ok: bool
    problems: list[str]
    members: int = 0
    databases: list[dict[str, Any]] = field(default_factory=list)


def verify(archive: Path, *, work_dir: Path | None = None,
           progress: ProgressFn | None = None) -> VerifyResult:
    """Check sidecar, sha256, decompression, every manifest hash and each database copy."""
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
                target = Path(tmp) / f"db{len(db_files)}.sqlite3"
                seen = _copy_member(data, target)
                db_files[info.name] = target
                return seen, True
            return _hash_member(info, data), True

        try:
            result = scan(archive, handler, progress)
        except ArchiveError as exc:
            problems.append(str(exc))
            if expected is not None and file_sha256(archive) != expected:
                problems.append(f"{archive.name} does not match the sha256 in {sidecar.name}")
            return VerifyResult(archive, False, problems)
        if expected is not None and result.sha256 != expected:
            problems.append(f"{archive.name} does not match the sha256 in {sidecar.name}")
        problems.extend(result.problems)
        dbs: list[dict[str, Any]] = []
        for db in result.manifest.databases:
            member = db.get("member", "")
            copy = db_files.get(member)
            if copy is None:
                problems.append(f"{member}: database copy missing from the archive")
                continue
            check = integrity_check(copy)
            dbs.append({"path": db.get("path"), "member": member, "check": check})
            if check != "ok":
                problems.append(f"{member}: integrity_check failed: {check}")
    return VerifyResult(archive, not problems, problems, len(result.members), dbs)


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
    digest = hashlib.sha256()
    size = 0
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0),
                 mode)
    try:
        while chunk := data.read(READ_CHUNK):
            digest.update(chunk)
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view):]
            size += len(chunk)
    finally:
        os.close(fd)
    return MemberSeen("file", size, digest.hexdigest())


# --- restore --------------------------------------------------------------------------------


@dataclass
class RestoreResult:
    """What a restore wrote."""

    target: Path
    files: int
    bytes: int
    databases: list[str]
    problems: list[str]


def _safe_rel(rel: str) -> PurePosixPath | None:
    """A relative path that stays inside the target, or None for a hostile one."""
    p = PurePosixPath(rel)
    if p.is_absolute() or not p.parts or any(part in ("..", "") for part in p.parts):
        return None
    if any("\\" in part or ":" in part[:2] for part in p.parts):
        return None
    return p


def selected(rel: str, patterns: Iterable[str]) -> bool:
    """``--only`` matching: a glob on the restored path, or on any of its parent folders."""
    pats = list(patterns)
    if not pats:
        return True
    parts = PurePosixPath(rel).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(fnmatch.fnmatchcase(c, pat.strip("/")) for pat in pats for c in candidates)


def restore(archive: Path, target: Path, *, only: Iterable[str] = (), force: bool = False,
            progress: ProgressFn | None = None,
            expected_sha256: str | None = None) -> RestoreResult:
    """Extract ``archive`` into ``target`` as a runnable project folder.

    Checks the archive's sha256 first (against ``expected_sha256`` or the sidecar), then
    extracts in one pass, checking every member against the manifest. Databases go back to
    their relative paths (absolute ones under ``databases/``). Links are made last and never
    followed while extracting, so a hostile archive cannot write outside ``target``.
    """
    patterns = list(only)
    if target.exists() and any(target.iterdir()) and not force:
        raise ArchiveError(f"{target} is not empty; choose an empty folder or add --force to "
                           f"restore over it")
    if expected_sha256 is None:
        check_sidecar(archive)
    elif file_sha256(archive) != expected_sha256:
        raise ArchiveError(f"{archive.name} does not match its recorded sha256; it is "
                           f"damaged: use another snapshot")
    target.mkdir(parents=True, exist_ok=True)
    root = target.resolve()
    staging = Path(tempfile.mkdtemp(prefix=".restore-", dir=root))
    links: list[tuple[Path, str]] = []
    dirs: list[tuple[Path, tarfile.TarInfo]] = []
    written: dict[str, Path] = {}
    staged_dbs: dict[str, Path] = {}
    counters = {"files": 0, "bytes": 0}
    owners = _Owners()

    def handler(info: tarfile.TarInfo, data: IO[bytes] | None) -> tuple[MemberSeen, bool]:
        name = info.name.rstrip("/") if info.isdir() else info.name
        if name.startswith(DATABASES_PREFIX) and data is not None:
            # where it goes is in the manifest, which comes last: stage it
            staged = staging / f"db{len(staged_dbs)}"
            seen = _copy_member(data, staged)
            staged_dbs[name] = staged
            owners.note(name, info)
            return seen, True
        if not name.startswith(FILES_PREFIX):
            return _hash_member(info, data), True
        rel = _safe_rel(name[len(FILES_PREFIX):])
        if rel is None or not selected(str(rel), patterns):
            return _hash_member(info, data), True
        dest = root.joinpath(*rel.parts)
        owners.note(dest, info)
        if info.isdir():
            _mkdir_inside(root, dest)
            dirs.append((dest, info))
            return MemberSeen("dir", 0), True
        if info.issym():
            links.append((dest, info.linkname))
            written[name] = dest
            return MemberSeen("symlink", 0, target=info.linkname), True
        if data is None:
            return _hash_member(info, data), True
        _mkdir_inside(root, dest.parent)
        if dest.is_symlink() or dest.is_dir():
            _remove(dest)
        seen = _copy_member(data, dest, 0o600)
        os.chmod(dest, info.mode & 0o7777)
        written[name] = dest
        counters["files"] += 1
        counters["bytes"] += seen.size
        return seen, True

    try:
        result = scan(archive, handler, progress)
        databases = _place_databases(result.manifest, staged_dbs, root, patterns, counters)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for dest, link_target in links:
        _mkdir_inside(root, dest.parent)
        if dest.is_symlink() or dest.exists():
            _remove(dest)
        os.symlink(link_target, dest)
    for member, rel_path in databases.items():
        owners.rename(member, root.joinpath(*PurePosixPath(rel_path).parts))
    owners.apply()
    _apply_times(result.manifest, written, dirs)
    return RestoreResult(target=root, files=counters["files"], bytes=counters["bytes"],
                         databases=list(databases.values()), problems=result.problems)


def _place_databases(manifest: Manifest, staged: dict[str, Path], root: Path,
                     patterns: list[str], counters: dict[str, int]) -> dict[str, str]:
    """Move each staged database to its place; returns member -> restored relative path."""
    placed: dict[str, str] = {}
    for member, path in staged.items():
        rel_text = manifest.restore_path(member) or member
        rel = _safe_rel(rel_text) or _safe_rel(member)
        if rel is None or not selected(str(rel), patterns):
            continue
        dest = root.joinpath(*rel.parts)
        _mkdir_inside(root, dest.parent)
        for suffix in ("-wal", "-shm", "-journal"):
            # stale side files beside a restored database would be replayed into it
            Path(str(dest) + suffix).unlink(missing_ok=True)
        if dest.is_symlink() or dest.is_dir():
            _remove(dest)
        os.replace(path, dest)
        entry = manifest.members.get(member, {})
        if "mode" in entry:
            os.chmod(dest, int(entry["mode"]))
        if "mtime_ns" in entry:
            os.utime(dest, ns=(int(entry["mtime_ns"]), int(entry["mtime_ns"])))
        counters["files"] += 1
        counters["bytes"] += dest.stat().st_size
        placed[member] = str(rel)
    return placed


class _Owners:
    """Owners to give back when restoring as root, as tar does: by user and group name when
    this machine knows the name (a new machine has other numeric ids), else by number.

    Without it a project restored by root belongs to root, and the app's own user could not
    write its database. Not root: files belong to whoever restores, and nothing is noted.
    """

    def __init__(self) -> None:
        self.enabled = hasattr(os, "geteuid") and os.geteuid() == 0
        self._wanted: dict[Path | str, tuple[int, int]] = {}

    def note(self, where: Path | str, info: tarfile.TarInfo) -> None:
        if self.enabled:
            self._wanted[where] = (_lookup_id("u", info.uname, info.uid),
                                   _lookup_id("g", info.gname, info.gid))

    def rename(self, old: str, new: Path) -> None:
        if old in self._wanted:
            self._wanted[new] = self._wanted.pop(old)

    def apply(self) -> None:
        for path, (uid, gid) in self._wanted.items():
            if isinstance(path, Path):
                with contextlib.suppress(OSError):
                    os.lchown(path, uid, gid)


def _lookup_id(kind: str, name: str, number: int) -> int:
    if name:
        try:
            if kind == "u":
                import pwd

                return pwd.getpwnam(name).pw_uid
            import grp

            return grp.getgrnam(name).gr_gid
        except (ImportError, KeyError):
            pass
    return number


def _apply_times(manifest: Manifest, written: dict[str, Path],
                 dirs: list[tuple[Path, tarfile.TarInfo]]) -> None:
    for name, dest in written.items():
        entry = manifest.members.get(name)
        if entry and "mtime_ns" in entry and not dest.is_symlink():
            os.utime(dest, ns=(int(entry["mtime_ns"]), int(entry["mtime_ns"])))
    for dest, info in reversed(dirs):  # deepest last-created first: children don't touch it
        entry = manifest.members.get(info.name.rstrip("/")) or manifest.members.get(info.name)
        try:
            os.chmod(dest, info.mode & 0o7777 | stat.S_IRWXU)
            if entry and "mtime_ns" in entry:
                os.utime(dest, ns=(int(entry["mtime_ns"]), int(entry["mtime_ns"])))
        except OSError:
            pass


def _mkdir_inside(root: Path, folder: Path) -> None:
    """Create ``folder`` refusing any existing symlink on the way (no writes outside root)."""
    rel = folder.relative_to(root)
    current = root
    for part in rel.parts:
        current = current / part
        if current.is_symlink():
            raise ArchiveError(f"refusing to write through the symlink {current}")
        if not current.is_dir():
            if current.exists():
                current.unlink()
            current.mkdir(mode=0o700)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
