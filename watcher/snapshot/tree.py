"""Walk the project tree the way a snapshot sees it: excludes, built-in skips, no link following.

The walk yields entries in a stable order (sorted names per folder) and never follows symlinks.
It is used both to estimate a snapshot (total size, fingerprint) and to stream it.

The tree belongs to the app, which keeps changing it while a snapshot reads it; whoever can
write there can also swap a file or a folder for a link to something outside the root, or
for a FIFO, between the walk and the read. Every member is therefore opened through
:func:`open_member`, which accepts only what the walk saw.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pathspec import GitIgnoreSpec

from watcher.config.settings import Config

#: files SQLite keeps beside a database; never archived as files (the database is copied
#: consistently instead, and copying these could corrupt the copy)
SQLITE_SIDE_SUFFIXES = ("", "-wal", "-shm", "-journal")


@dataclass(frozen=True, slots=True)
class Entry:
    """One thing in the tree: ``rel`` is the POSIX path relative to the root."""

    rel: str
    path: str
    kind: str          # "file", "dir", "symlink" or "other"
    st: os.stat_result


class TreeFilter:
    """Decides what of the tree belongs in a snapshot."""

    def __init__(self, root: Path, excludes: Iterable[str], skip_paths: Iterable[Path]) -> None:
        self.root = root
        self.spec = GitIgnoreSpec.from_lines(list(excludes))
        # absolute paths never archived: the backup dir, the databases and their side files
        self.skip = {os.path.normcase(os.path.abspath(p)) for p in skip_paths}

    @classmethod
    def for_config(cls, cfg: Config) -> TreeFilter:
        """The filter a snapshot of ``cfg`` uses."""
        skip: list[Path] = [cfg.local.dir]
        for db in cfg.source.database_paths():
            skip.extend(Path(str(db) + suffix) for suffix in SQLITE_SIDE_SUFFIXES)
        return cls(cfg.source.root, cfg.source.exclude, skip)

    def excluded(self, rel: str, path: str, is_dir: bool) -> bool:
        """True when ``rel`` (POSIX, relative to the root) is left out of the snapshot."""
        if os.path.normcase(path) in self.skip:
            return True
        return self.spec.match_file(rel + "/" if is_dir else rel)


class MemberChanged(OSError):
    """A tree member is no longer what the walk saw: now a link, a FIFO, another file..."""

    def __init__(self, path: str, now: str) -> None:
        super().__init__(f"{path} became {now} after the tree was listed")
        self.path = path
        self.path = path
        self.now = now


_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_READ_FLAGS = (os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOCTTY", 0)
               | _O_NOFOLLOW | _O_NONBLOCK)
#: what open() says when O_NOFOLLOW met a link (ELOOP; EMLINK on FreeBSD), a socket (ENXIO),
#: or O_DIRECTORY met something else (ENOTDIR): in the tree, each means "swapped since the walk"
_SWAPPED_ERRNOS = {errno.ELOOP, errno.EMLINK, errno.ENXIO, errno.ENOTDIR}
#: folders are listed through a descriptor where the platform can (not on Windows)
_LIST_BY_FD = os.scandir in os.supports_fd and bool(_O_DIRECTORY and _O_NOFOLLOW)

_KIND_NAMES = {stat.S_IFREG: "file", stat.S_IFDIR: "folder", stat.S_IFLNK: "link",
               stat.S_IFIFO: "FIFO", stat.S_IFSOCK: "socket", stat.S_IFCHR: "device",
               stat.S_IFBLK: "device"}


def open_member(path: str, walked: os.stat_result) -> tuple[int, os.stat_result]:
    """Open the tree member at ``path`` for reading, only if it is still what the walk saw.

    ``walked`` is the walk's ``lstat`` of it. The open never follows a link in place of the
    member (O_NOFOLLOW) and never waits on a FIFO or device swapped in (O_NONBLOCK); the
    opened file must then have the walked type and be the walked file (device and inode),
    which also catches a folder on the way there that became a link to somewhere else.
    Returns the descriptor (blocking again, for plain reads) and its ``fstat``. Raises
    :class:`MemberChanged` when the member changed, ``FileNotFoundError`` when it vanished,
    and ``OSError`` when it cannot be read.
    """
    want = stat.S_IFMT(walked.st_mode)
    flags = _READ_FLAGS | (_O_DIRECTORY if want == stat.S_IFDIR else 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno in _SWAPPED_ERRNOS:
            raise _changed(path, want, None) from None
        raise
    try:
        st = os.fstat(fd)
        # Windows' walk reports no inode (0); there the type check is what is left
        same = walked.st_ino == 0 or (st.st_dev, st.st_ino) == (walked.st_dev,
                                                                 walked.st_ino)
        if stat.S_IFMT(st.st_mode) != want or not same:
            raise _changed(path, want, st)
        if _O_NONBLOCK and want == stat.S_IFREG:
            # a regular file ignores O_NONBLOCK, except on the odd filesystem (FUSE) that
            # would then answer a read with "try again"
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def _changed(path: str, want: int, opened: os.stat_result | None) -> MemberChanged:
    """The error for a member that is no longer the walked one, saying what it is now."""
    now = opened
    if now is None or stat.S_IFMT(now.st_mode) == want:
        try:
            now = os.lstat(path)
        except OSError:
            now = None
    if now is None:
        return MemberChanged(path, "something else")
    kind = stat.S_IFMT(now.st_mode)
    if kind == want:
        return MemberChanged(path, f"another {_KIND_NAMES.get(kind, 'file')}")
    return MemberChanged(path, f"a {_KIND_NAMES[kind]}" if kind in _KIND_NAMES
                         else "something else")


def walk(root: Path, tree_filter: TreeFilter) -> Iterator[Entry]:
    """Every entry under ``root`` that the filter keeps, folders before their contents.

    Unreadable folders are yielded as kind "error" entries so the caller can warn about them
    instead of silently backing up less than it claims; a folder that changed since its
    parent was listed (say, into a link) is such an entry too, its error a
    :class:`MemberChanged`, and is not entered.
    """
    root_s = os.path.abspath(root)
    # the root is entered as configured (it may be a link the admin chose); below it, each
    # folder must still be the one its parent's listing showed
    stack: list[tuple[str, str, os.stat_result | None]] = [(root_s, "", None)]
    while stack:
        folder, rel_folder, walked = stack.pop()
        try:
            fd = _open_folder(folder, walked)
        except OSError as exc:
            yield Entry(rel_folder or ".", folder, "error", _error_stat(exc))
            continue
        try:
            subdirs = yield from _walk_folder(folder, rel_folder, fd, tree_filter)
        finally:
            if fd is not None:
                os.close(fd)
        # reversed so the stack pops them in sorted order
        stack.extend(reversed(subdirs))


def _open_folder(folder: str, walked: os.stat_result | None) -> int | None:
    """A descriptor to list ``folder`` through, or None where folders are listed by path."""
    if not _LIST_BY_FD:
        return None
    if walked is None:
        return os.open(folder, os.O_RDONLY | _O_DIRECTORY)
    return open_member(folder, walked)[0]


def _walk_folder(folder: str, rel_folder: str, fd: int | None, tree_filter: TreeFilter
                 ) -> Generator[Entry, None, list[tuple[str, str, os.stat_result]]]:
    """The kept entries of one folder; returns its subfolders as (path, rel, stat).

    With ``fd``, the listing and every stat go through that descriptor, so they describe the
    folder that was checked even if its path now leads elsewhere.
    """
    subdirs: list[tuple[str, str, os.stat_result]] = []
    try:
        with os.scandir(folder if fd is None else fd) as it:
            children = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        yield Entry(rel_folder or ".", folder, "error", _error_stat(exc))
        return subdirs
    for child in children:
        rel = f"{rel_folder}/{child.name}" if rel_folder else child.name
        path = os.path.join(folder, child.name)
        try:
            st = child.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue  # vanished between listing and stat: it is simply not in this snapshot
        except OSError as exc:
            yield Entry(rel, path, "error", _error_stat(exc))
            continue
        mode = st.st_mode
        is_dir = stat.S_ISDIR(mode)
        if tree_filter.excluded(rel, path, is_dir):
            continue
        if is_dir:
            yield Entry(rel, path, "dir", st)
            subdirs.append((path, rel, st))
        elif stat.S_ISREG(mode):
            yield Entry(rel, path, "file", st)
        elif stat.S_ISLNK(mode):
            yield Entry(rel, path, "symlink", st)
        else:
            yield Entry(rel, path, "other", st)
    return subdirs


class _ErrorStat:
    def __init__(self, exc: OSError) -> None:
        self.error = exc
        self.st_size = 0
        self.st_mode = 0
        self.st_mtime_ns = 0


def _error_stat(exc: OSError) -> os.stat_result:
    return _ErrorStat(exc)  # type: ignore[return-value]


@dataclass(frozen=True)
class TreeSummary:
    """What a stat-only pass over the tree found."""

    files: int
    bytes: int
    fingerprint: str


def summarize(cfg: Config) -> TreeSummary:
    """Count and fingerprint the tree and databases without reading file contents.

    The fingerprint changes when any kept path, size, mode or mtime changes, or when a database
    (or its -wal) is written: the service compares it with the last snapshot's to notice
    changes made while it was stopped.
    """
    digest = hashlib.sha256()
    files = total = 0
    for entry in walk(cfg.source.root, TreeFilter.for_config(cfg)):
        st = entry.st
        digest.update(f"{entry.kind}\0{entry.rel}\0{st.st_size}\0{st.st_mode}\0"
                      f"{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
        if entry.kind == "file":
            files += 1
            total += st.st_size
    for db in cfg.source.database_paths():
        for suffix in ("", "-wal"):
            try:
                st = os.stat(str(db) + suffix)
            except OSError:
                continue
            if suffix and st.st_size == 0:
                continue  # an empty -wal (left by any reader) is the same as none
            digest.update(f"db\0{db}{suffix}\0{st.st_size}\0{st.st_mtime_ns}\n"
                          .encode("utf-8", "surrogateescape"))
            total += st.st_size
    return TreeSummary(files=files, bytes=total, fingerprint=digest.hexdigest())


def tree_fingerprint(cfg: Config) -> str:
    """See :func:`summarize`; the service's "changed while stopped?" check."""
    return summarize(cfg).fingerprint
