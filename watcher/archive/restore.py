"""Restore an archive into a folder without touching anything outside it.

The restore runs as root on a server, from archives that may have been tampered with, into
folders that may already hold links. So:

- Everything is written into a private staging folder (0700, hidden) inside the target, through
  directory file descriptors opened with ``O_NOFOLLOW``: no link, whether it comes from the
  archive or was already in the target, can redirect a write, a chmod, a chown or a utime.
  Modes and owners are set on the open file descriptor; times with ``follow_symlinks=False``.
- A member name that occurs twice, or a member under a name that is already a file or a link,
  is refused: a folder is never replaced by a link.
- Entries move into place by rename only when every member is written and every hash matches
  the manifest. A full disk, a damaged archive or a ``kill -9`` leaves the target as it was,
  plus a hidden staging folder that the next restore removes. A rename never writes into an
  existing file, so a hard link in the target to a file elsewhere is replaced, not truncated.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import os
import shutil
import stat
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from watcher.archive.files import DELTA, archive_kind_of, file_sha256
from watcher.archive.manifest import DATABASES_PREFIX, FILES_PREFIX, Manifest
from watcher.archive.read import (
    ArchiveError,
    MemberSeen,
    ProgressFn,
    check_sidecar,
    compare_referenced,
    copy_stream,
    hash_member,
    page_deltas,
    rebuild_database,
    scan,
)

STAGING_PREFIX = ".siip-restore-"
_TREE = "tree"
_DBS = "databases"
# Where the platform has them (Linux, macOS, BSD), every step goes through directory file
# descriptors; elsewhere (Windows, where making a link needs a privilege) through paths,
# checking each component.
_AT = os.open in os.supports_dir_fd and hasattr(os, "O_NOFOLLOW") and hasattr(os, "O_DIRECTORY")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRFLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW
_BINARY = getattr(os, "O_BINARY", 0)


class DiskFullError(ArchiveError):
    """The restore's disk filled up: the archive is fine, the target is not changed."""


@dataclass
class RestoreResult:
    """What a restore wrote."""

    target: Path
    files: int
    bytes: int
    databases: list[str]


def target_problem(target: Path, force: bool) -> str | None:
    """Why ``target`` cannot receive a restore, in one line, or None when it can."""
    if target.is_symlink() and not target.is_dir():
        return f"{target} is a link to nothing; choose a folder"
    if target.exists() and not target.is_dir():
        return f"{target} exists and is not a folder; choose a folder"
    if not force and target.is_dir() and any(
            not _is_leftover(e) for e in os.scandir(target)):
        return f"{target} is not empty; choose an empty folder or add --force to restore over it"
    return None


def _is_leftover(entry: os.DirEntry[str]) -> bool:
    return entry.name.startswith(STAGING_PREFIX) and entry.is_dir(follow_symlinks=False)


def selected(rel: str, patterns: Iterable[str]) -> bool:
    """``--only`` matching: a glob on the restored path, or on any of its parent folders."""
    pats = list(patterns)
    if not pats:
        return True
    parts = PurePosixPath(rel).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(fnmatch.fnmatchcase(c, pat.strip("/")) for pat in pats for c in candidates)


def safe_rel(rel: str) -> tuple[str, ...] | None:
    """The parts of a relative path that stays inside the target, or None for a hostile one."""
    p = PurePosixPath(rel)
    if p.is_absolute() or not p.parts or any(part in ("..", "", ".") for part in p.parts):
        return None
    if any("\\" in part or ":" in part[:2] or "\0" in part for part in p.parts):
        return None
    return p.parts


def restore(archive: Path, target: Path, *, only: Iterable[str] = (), force: bool = False,  # noqa: PLR0913
            progress: ProgressFn | None = None, expected_sha256: str | None = None,
            base: Path | None = None, base_sha256: str | None = None) -> RestoreResult:
    """Extract ``archive`` into ``target`` as a runnable project folder.

    Checks the archive's sha256 first (against ``expected_sha256`` or the sidecar), then
    extracts in one pass into a staging folder, checking every member against the manifest,
    and moves the result into place only when all of it is written and checked. Databases go
    back to their relative paths (absolute ones under ``databases/``). A new target folder is
    created 0700; the project inside keeps the archive's modes (and owners, as root).

    A delta needs its ``base`` full (checked against ``base_sha256`` or its sidecar): the
    files it did not store come from the base in a second pass into the same staging folder,
    and each database is the base's copy with the delta's pages written over it, checked
    against the snapshot's sha256 and with integrity_check, before anything is moved.
    """
    patterns = list(only)
    problem = target_problem(target, force)
    if problem:
        raise ArchiveError(problem)
    _check_archive(archive, expected_sha256)
    if archive_kind_of(archive.name) == DELTA:
        if base is None:
            raise ArchiveError(f"{archive.name} is a delta and its base full is missing; "
                               f"restore another snapshot (`siip-watcher list` shows each "
                               f"one's base)")
        _check_archive(base, base_sha256, what="its base full ")
    try:
        _make_target(target)
        root = _Dir.open_root(target)
    except OSError as exc:
        raise _write_error(exc, target, target) from None
    try:
        _remove_leftovers(root)
        return _restore_into(archive, base, target, root, patterns, progress)
    finally:
        root.close()


def _check_archive(archive: Path, expected: str | None, what: str = "") -> None:
    try:
        if expected is None:
            check_sidecar(archive)
            return
        actual = file_sha256(archive)
    except ArchiveError as exc:
        raise ArchiveError(f"{what}{exc}") from None
    except OSError as exc:
        raise ArchiveError(f"{what}{archive.name} cannot be read: {exc.strerror or exc}") \
            from None
    if actual != expected:
        raise ArchiveError(f"{what}{archive.name} does not match its recorded sha256; it is "
                           f"damaged: use another snapshot")


def _make_target(target: Path) -> None:
    missing = []
    for folder in [target, *target.parents]:
        if folder.exists() or folder.is_symlink():
            break
        missing.append(folder)
    for folder in reversed(missing):
        # 0700 whatever the umask: the folder holds the whole database until it is moved
        os.mkdir(folder, 0o700)
        os.chmod(folder, 0o700)


def _remove_leftovers(root: _Dir) -> None:
    """Staging folders of a restore that was killed: never the user's, they carry our prefix."""
    for name in root.listdir():
        if name.startswith(STAGING_PREFIX) and root.is_real_dir(name):
            root.rmtree(name)


def _restore_into(archive: Path, base: Path | None, target: Path, root: _Dir,  # noqa: PLR0917
                  patterns: list[str], progress: ProgressFn | None) -> RestoreResult:
    staging_name = STAGING_PREFIX + os.urandom(6).hex()
    try:
        root.mkdir(staging_name)
        staging = root.child(staging_name)
    except OSError as exc:
        raise _write_error(exc, target, target) from None
    try:
        try:
            staging.mkdir(_TREE)
            staging.mkdir(_DBS)
            tree, dbs = staging.child(_TREE), staging.child(_DBS)
        except OSError as exc:
            raise _write_error(exc, target, target) from None
        try:
            return _extract_and_place(archive, base, target, root, tree, dbs, patterns,
                                      progress)
        finally:
            tree.close()
            dbs.close()
    finally:
        staging.close()
        with contextlib.suppress(OSError):
            root.rmtree(staging_name)


@dataclass
class _Meta:
    """What to give back to a restored entry once it is in place."""

    parts: tuple[str, ...]
    mode: int
    owner: tuple[int, int] | None
    mtime_ns: int | None = None


class _Extractor:
    """Writes the members of one or two archives (a delta, then its base) into the staging
    folder, remembering what to give back to each entry once all are checked."""

    def __init__(self, target: Path, tree: _Dir, dbs: _Dir, patterns: list[str]) -> None:
        self.target, self.dbs, self.patterns = target, dbs, patterns
        self.as_root = hasattr(os, "geteuid") and os.geteuid() == 0
        self.files: list[_Meta] = []
        self.links: list[_Meta] = []
        self.dirs: list[_Meta] = []
        #: database members (and a delta's pages) staged aside: member -> (name, owner)
        self.staged: dict[str, tuple[str, tuple[int, int] | None]] = {}
        self.counters = {"files": 0, "bytes": 0}
        self.cache = _DirCache(tree)

    def owner(self, info: tarfile.TarInfo) -> tuple[int, int] | None:
        return _owner_ids(info) if self.as_root else None

    def stage_database(self, name: str, info: tarfile.TarInfo, data: IO[bytes]) -> MemberSeen:
        # where it goes is in the manifest, which comes last: stage it aside
        staged = f"db{len(self.staged)}"
        seen = self.dbs.write_file(staged, data, 0o600, None)
        self.staged[name] = (staged, self.owner(info))
        return seen

    def member(self, info: tarfile.TarInfo, data: IO[bytes] | None,
               wanted: Callable[[str], bool] | None = None) -> tuple[MemberSeen, bool]:
        """Stage one member; ``wanted`` (the base pass) limits it to what the delta needs."""
        name = info.name.rstrip("/") if info.isdir() else info.name
        try:
            if wanted is not None and not wanted(name):
                return hash_member(info, data), True
            if name.startswith(DATABASES_PREFIX) and data is not None:
                return self.stage_database(name, info, data), True
            return self._tree_member(name, info, data), True
        except OSError as exc:
            raise _write_error(exc, self.target, Path(*name.split("/"))) from None

    def _tree_member(self, name: str, info: tarfile.TarInfo,
                     data: IO[bytes] | None) -> MemberSeen:
        parts = safe_rel(name[len(FILES_PREFIX):]) if name.startswith(FILES_PREFIX) else None
        if parts is None or not selected("/".join(parts), self.patterns):
            return hash_member(info, data)
        if info.isdir():
            self.cache.get(parts)
            self.dirs.append(_Meta(parts, info.mode & 0o7777, self.owner(info)))
            return MemberSeen("dir", 0)
        if info.issym():
            self.cache.get(parts[:-1]).symlink(parts[-1], info.linkname, self.owner(info))
            self.links.append(_Meta(parts, 0, None))
            return MemberSeen("symlink", 0, target=info.linkname)
        if data is None:
            return hash_member(info, data)
        seen = self.cache.get(parts[:-1]).write_file(parts[-1], data, info.mode & 0o7777,
                                                     self.owner(info))
        self.files.append(_Meta(parts, info.mode & 0o7777, None))
        self.counters["files"] += 1
        self.counters["bytes"] += seen.size
        return seen

    def close(self) -> None:
        self.cache.close()


def _mismatch(archive: Path, problems: list[str], what: str = "") -> ArchiveError:
    more = len(problems) - 1
    return ArchiveError(f"{what}{archive.name} does not match its manifest ({problems[0]}"
                        f"{f' and {more} more' if more else ''}); nothing was restored: "
                        f"`siip-watcher verify` lists the problems")


# internal, called once with all it needs
def _extract_and_place(archive: Path, base: Path | None, target: Path, root: _Dir,  # noqa: PLR0917
                       tree: _Dir, dbs: _Dir, patterns: list[str],
                       progress: ProgressFn | None) -> RestoreResult:
    out = _Extractor(target, tree, dbs, patterns)
    try:
        result = scan(archive, out.member, progress)
        if result.problems:
            raise _mismatch(archive, result.problems)
        manifest = result.manifest
        if manifest.kind == DELTA:
            if base is None:
                raise ArchiveError(f"{archive.name} holds a delta and its base full is "
                                   f"missing; nothing was restored")
            _add_from_base(manifest, base, out, progress)
    finally:
        out.close()
    try:
        databases = _place_databases(manifest, out.staged, dbs, tree, patterns, out.counters,
                                     out.files)
        for meta in [*out.files, *out.links]:
            meta.mtime_ns = _mtime(manifest, FILES_PREFIX + "/".join(meta.parts))
        _set_times(tree, [*out.files, *out.links])
        _move_into_place(tree, root)
        for meta in out.dirs:
            meta.mtime_ns = _mtime(manifest, FILES_PREFIX + "/".join(meta.parts))
        # deepest first, and after the moves: entries moved into a folder change its time,
        # and a read-only folder could not have received them
        _set_dir_meta(root, sorted(out.dirs, key=lambda m: len(m.parts), reverse=True))
    except OSError as exc:
        raise _write_error(exc, target, target) from None
    return RestoreResult(target=target.resolve(), files=out.counters["files"],
                         bytes=out.counters["bytes"], databases=list(databases.values()))


def _add_from_base(manifest: Manifest, base: Path, out: _Extractor,
                   progress: ProgressFn | None) -> None:
    """The base pass of a delta: the files it references, then each database rebuilt from
    the base's copy and the delta's pages, all checked before anything moves."""
    base_id = manifest.base or base.name
    deltas = page_deltas(manifest)
    needed = {str(db.get("base_member")) for db in deltas}
    pages = {str(db.get("pages_member")): out.staged.pop(str(db.get("pages_member")), None)
             for db in deltas}
    for_base: dict[str, str] = {}

    def wanted(name: str) -> bool:
        return name in manifest.referenced or name in needed

    def member(info: tarfile.TarInfo, data: IO[bytes] | None) -> tuple[MemberSeen, bool]:
        if info.name in needed and data is not None:
            staged = f"base{len(for_base)}"
            for_base[info.name] = staged
            return out.dbs.write_file(staged, data, 0o600, None), True
        return out.member(info, data, wanted)

    base_result = scan(base, member, progress)
    recorded = manifest.data.get("base_sha256")
    if recorded and base_result.sha256 != recorded:
        raise ArchiveError(f"its base full {base.name} is not the archive this delta was "
                           f"taken against (another sha256); nothing was restored")
    problems = base_result.problems + compare_referenced(manifest, base_result.members)
    if problems:
        raise _mismatch(base, problems, f"its base full {base_id}: ")
    for db in deltas:
        member_name = str(db.get("member"))
        staged_pages = pages.get(str(db.get("pages_member")))
        base_copy = for_base.get(str(db.get("base_member")))
        if staged_pages is None or base_copy is None:
            raise ArchiveError(f"{member_name}: its pages or its copy in the base full "
                               f"{base_id} are missing; nothing was restored")
        problem = rebuild_database(db, Path(out.dbs.path) / base_copy,
                                   Path(out.dbs.path) / staged_pages[0])
        out.dbs.remove(staged_pages[0])
        if problem is not None:
            raise ArchiveError(f"{problem} (base {base_id}); nothing was restored")
        out.staged[member_name] = (base_copy, staged_pages[1])


def _mtime(manifest: Manifest, member: str) -> int | None:
    entry = manifest.entry(member)
    return int(entry["mtime_ns"]) if entry and entry.get("mtime_ns") is not None else None


# internal, called once with all it needs
def _place_databases(manifest: Manifest, staged: dict[str, tuple[str, tuple[int, int] | None]],  # noqa: PLR0917
                     dbs: _Dir, tree: _Dir, patterns: list[str], counters: dict[str, int],
                     files: list[_Meta]) -> dict[str, str]:
    """Move each staged database to its place in the tree; returns member -> relative path."""
    placed: dict[str, str] = {}
    cache = _DirCache(tree)
    try:
        for member, (staged_name, owner) in staged.items():
            parts = safe_rel(manifest.restore_path(member) or member) or safe_rel(member)
            if parts is None or not selected("/".join(parts), patterns):
                continue
            folder = cache.get(parts[:-1])
            for suffix in ("-wal", "-shm", "-journal"):
                # a side file beside a restored database would be replayed into it
                folder.remove(parts[-1] + suffix)
            if folder.is_real_dir(parts[-1]):
                raise ArchiveError(f"{'/'.join(parts)}: the archive has a folder where its "
                                   f"database goes; it is damaged: use another snapshot")
            entry = manifest.entry(member) or {}
            mode = int(entry.get("mode", 0o600)) & 0o7777
            dbs.set_file_meta(staged_name, mode, owner)
            dbs.move(staged_name, folder, parts[-1])
            files.append(_Meta(parts, mode, owner, _mtime(manifest, member)))
            counters["files"] += 1
            counters["bytes"] += folder.size(parts[-1])
            placed[member] = "/".join(parts)
    finally:
        cache.close()
    return placed


def _set_times(tree: _Dir, entries: list[_Meta]) -> None:
    cache = _DirCache(tree)
    try:
        for meta in entries:
            if meta.mtime_ns is not None:
                cache.get(meta.parts[:-1]).set_time(meta.parts[-1], meta.mtime_ns)
    finally:
        cache.close()


def _set_dir_meta(root: _Dir, dirs: list[_Meta]) -> None:
    cache = _DirCache(root)
    try:
        for meta in dirs:
            # the owner keeps rwx so a later restore over this folder can still write into it
            cache.get(meta.parts[:-1]).set_dir_meta(meta.parts[-1], meta.mode | stat.S_IRWXU,
                                                    meta.owner, meta.mtime_ns)
    finally:
        cache.close()


def _move_into_place(src: _Dir, dst: _Dir) -> None:
    """Rename every staged entry into ``dst``, merging into folders that already exist there.

    An existing file or link is replaced by rename (never opened, so a hard link to a file
    elsewhere is not truncated); an existing folder where the snapshot has a file is removed.
    """
    for name in src.listdir():
        if not dst.exists(name):
            src.move(name, dst, name)
        elif src.is_real_dir(name) and dst.is_real_dir(name):
            inner_src, inner_dst = src.child(name), dst.child(name)
            try:
                _move_into_place(inner_src, inner_dst)
            finally:
                inner_src.close()
                inner_dst.close()
        else:
            if dst.is_real_dir(name) or src.is_real_dir(name):
                dst.rmtree(name) if dst.is_real_dir(name) else dst.remove(name)
            src.move(name, dst, name)


def _write_error(exc: OSError, target: Path, what: Path) -> ArchiveError:
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return DiskFullError(f"the disk holding {target} is full; nothing was restored: free "
                             f"space there, or restore to a folder on another disk")
    if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EEXIST):
        return ArchiveError(f"{what}: the archive puts an entry under or over a link or file "
                            f"of the same name (a damaged or hostile archive); nothing was "
                            f"restored: use another snapshot")
    return ArchiveError(f"cannot write {what} in {target}: {exc.strerror or exc}; nothing was "
                        f"restored")


def _owner_ids(info: tarfile.TarInfo) -> tuple[int, int]:
    """Owner to give back as root, as tar does: by name when this machine knows it (a new
    machine has other numeric ids), else by number. Without it a project restored by root
    belongs to root, and the app's own user could not write its database."""
    return _lookup_id("u", info.uname, info.uid), _lookup_id("g", info.gname, info.gid)


def _lookup_id(kind: str, name: str, number: int) -> int:
    if name:
        try:
            if kind == "u":
                import pwd  # noqa: PLC0415 - POSIX only: Windows has no pwd

                return pwd.getpwnam(name).pw_uid
            import grp  # noqa: PLC0415 - POSIX only: Windows has no grp

            return grp.getgrnam(name).gr_gid
        except (ImportError, KeyError):
            pass
    return number


class _Dir:
    """A folder reached without following links: a file descriptor where the platform has
    ``dir_fd``, else a path checked component by component."""

    def __init__(self, path: str, fd: int | None) -> None:
        self.path = path
        self.fd = fd

    @classmethod
    def open_root(cls, target: Path) -> _Dir:
        path = str(target.resolve())
        return cls(path, os.open(path, _DIRFLAGS) if _AT else None)

    def _at(self, name: str) -> tuple[str, int | None]:
        if _AT:
            return name, self.fd
        full = os.path.join(self.path, name)
        if os.path.islink(self.path):
            raise OSError(errno.ELOOP, "a link where a folder was expected", self.path)
        return full, None

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def child(self, name: str) -> _Dir:
        """The existing sub-folder ``name``; a link there raises ELOOP/ENOTDIR."""
        path, dir_fd = self._at(name)
        full = os.path.join(self.path, name)
        if _AT:
            return _Dir(full, os.open(path, _DIRFLAGS, dir_fd=dir_fd))
        if os.path.islink(full) or not os.path.isdir(full):
            raise OSError(errno.ENOTDIR, "not a folder", full)
        return _Dir(full, None)

    def mkdir(self, name: str) -> None:
        path, dir_fd = self._at(name)
        os.mkdir(path, 0o700, dir_fd=dir_fd)

    def listdir(self) -> list[str]:
        return os.listdir(self.fd if self.fd is not None else self.path)

    def _lstat(self, name: str) -> os.stat_result | None:
        path, dir_fd = self._at(name)
        try:
            return os.stat(path, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def exists(self, name: str) -> bool:
        return self._lstat(name) is not None

    def is_real_dir(self, name: str) -> bool:
        st = self._lstat(name)
        return st is not None and stat.S_ISDIR(st.st_mode)

    def size(self, name: str) -> int:
        st = self._lstat(name)
        return st.st_size if st else 0

    def remove(self, name: str) -> None:
        path, dir_fd = self._at(name)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path, dir_fd=dir_fd)

    def rmtree(self, name: str) -> None:
        if self.fd is not None:
            shutil.rmtree(name, dir_fd=self.fd)
        else:
            shutil.rmtree(os.path.join(self.path, name))

    def move(self, name: str, dest: _Dir, new_name: str) -> None:
        src, src_fd = self._at(name)
        dst, dst_fd = dest._at(new_name)
        os.replace(src, dst, src_dir_fd=src_fd, dst_dir_fd=dst_fd)

    def write_file(self, name: str, data: IO[bytes], mode: int,
                   owner: tuple[int, int] | None) -> MemberSeen:
        """Create ``name`` (never an existing one), copy ``data`` in while hashing it, then
        give it its owner and mode through the open descriptor."""
        path, dir_fd = self._at(name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _BINARY, 0o600,
                     dir_fd=dir_fd)
        try:
            seen = copy_stream(data, fd)
            _fd_meta(fd, path, mode, owner)
        finally:
            os.close(fd)
        return seen

    def set_file_meta(self, name: str, mode: int, owner: tuple[int, int] | None) -> None:
        path, dir_fd = self._at(name)
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0),
                     dir_fd=dir_fd)
        try:
            _fd_meta(fd, path, mode, owner)
        finally:
            os.close(fd)

    def symlink(self, name: str, link_target: str, owner: tuple[int, int] | None) -> None:
        path, dir_fd = self._at(name)
        os.symlink(link_target, path, dir_fd=dir_fd)
        if owner is not None and hasattr(os, "lchown"):
            with contextlib.suppress(OSError):
                os.chown(path, *owner, dir_fd=dir_fd, follow_symlinks=False)

    def set_time(self, name: str, mtime_ns: int) -> None:
        path, dir_fd = self._at(name)
        if _AT or not os.path.islink(path):
            with contextlib.suppress(NotImplementedError):
                os.utime(path, ns=(mtime_ns, mtime_ns), dir_fd=dir_fd,
                         follow_symlinks=not _AT)

    def set_dir_meta(self, name: str, mode: int, owner: tuple[int, int] | None,
                     mtime_ns: int | None) -> None:
        folder = self.child(name)
        try:
            if folder.fd is not None:
                _fd_meta(folder.fd, folder.path, mode, owner)
                if mtime_ns is not None:
                    os.utime(folder.fd, ns=(mtime_ns, mtime_ns))
            else:
                os.chmod(folder.path, mode)
                if mtime_ns is not None:
                    os.utime(folder.path, ns=(mtime_ns, mtime_ns))
        finally:
            folder.close()


def _fd_meta(fd: int, path: str, mode: int, owner: tuple[int, int] | None) -> None:
    """Owner, then mode (a chown clears set-id bits), on the open file: no link is followed."""
    if owner is not None and hasattr(os, "fchown"):
        with contextlib.suppress(OSError):
            os.fchown(fd, *owner)
    if hasattr(os, "fchmod") and os.chmod in os.supports_fd:
        os.fchmod(fd, mode)
    else:
        os.chmod(path, mode)


class _DirCache:
    """Sub-folders of a base folder, created 0700 on first use and reached without following
    links; keeps the last one open, since members arrive folder by folder."""

    def __init__(self, base: _Dir) -> None:
        self.base = base
        self._parts: tuple[str, ...] | None = None
        self._dir: _Dir | None = None

    def get(self, parts: tuple[str, ...]) -> _Dir:
        if parts == self._parts and self._dir is not None:
            return self._dir
        self._drop()
        if not parts:
            return self.base
        current = self.base
        opened: list[_Dir] = []
        try:
            for part in parts:
                with contextlib.suppress(FileExistsError):
                    current.mkdir(part)
                current = current.child(part)
                opened.append(current)
        except BaseException:
            for d in opened:
                d.close()
            raise
        for d in opened[:-1]:
            d.close()
        self._parts, self._dir = parts, current
        return current

    def _drop(self) -> None:
        if self._dir is not None:
            self._dir.close()
        self._parts, self._dir = None, None

    def close(self) -> None:
        self._drop()
