"""Walk the project tree the way a snapshot sees it: excludes, built-in skips, no link following.

The walk yields entries in a stable order (sorted names per folder) and never follows symlinks.
It is used both to estimate a snapshot (total size, fingerprint) and to stream it.

The tree belongs to the app, which keeps changing it while a snapshot reads it; whoever can
write there can also swap a file or a folder for a link to something outside the root, or
for a FIFO, between the walk and the read. Every member is therefore opened through
:func:`open_member`, which accepts only what the walk saw.

A SQLite database the configuration does not list (apps grow a second one: chat, sessions, a
queue) must not be archived as raw files: the main file and its -wal, read at different
instants, do not make a database. With ``source.discover_databases`` the walk recognises such
files by their header and yields them as kind "database", with their -wal/-shm/-journal files
attached instead of listed; the snapshot copies them as it copies the listed ones. Only files
that could be a database are opened to look (:func:`sqlite_candidate`): reading the first
bytes of each of 15,000 photos at every walk is a cost with nothing to find.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Container, Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pathspec import GitIgnoreSpec

from watcher.config.settings import Config
from watcher.snapshot.member import O_DIRECTORY, O_NOFOLLOW, open_member

#: folders are listed through a descriptor where the platform can (not on Windows)
_LIST_BY_FD = os.scandir in os.supports_fd and bool(O_DIRECTORY and O_NOFOLLOW)

#: files SQLite keeps beside a database; never archived as files (the database is copied
#: consistently instead, and copying these could corrupt the copy)
SQLITE_SIDE_SUFFIXES = ("", "-wal", "-shm", "-journal")
#: the first 16 bytes of every SQLite 3 database file (https://sqlite.org/fileformat.html)
SQLITE_HEADER = b"SQLite format 3\0"
#: file names SQLite databases are given (compared in lower case); a file without one of
#: these is still looked at when it has a -wal or -journal beside it
DATABASE_SUFFIXES = (".db", ".sqlite", ".sqlite3", ".db3", ".s3db", ".sl3")


@dataclass(frozen=True, slots=True)
class Entry:
    """One thing in the tree: ``rel`` is the POSIX path relative to the root."""

    rel: str
    path: str
    kind: str          # "file", "dir", "symlink", "other", or "database" (discovered)
    st: os.stat_result
    #: of a "database": its -wal/-shm/-journal files as the walk saw them (kind "file"),
    #: which the walk does not yield on their own
    sides: tuple[Entry, ...] = ()


class TreeFilter:
    """Decides what of the tree belongs in a snapshot."""

    def __init__(self, root: Path, excludes: Iterable[str], skip_paths: Iterable[Path], *,
                 discover: bool = False,
                 skip_ids: Iterable[tuple[int, int]] = ()) -> None:
        """``discover`` makes the walk look for SQLite databases; ``skip_ids`` are the
        (device, inode) of databases already copied, found under another path (a root
        reached through a link) and left out with their side files."""
        self.root = root
        self.spec = GitIgnoreSpec.from_lines(list(excludes))
        # absolute paths never archived: the backup dir, the databases and their side files
        self.skip = {os.path.normcase(os.path.abspath(p)) for p in skip_paths}
        self.discover = discover
        self.skip_ids = set(skip_ids)

    @classmethod
    def for_config(cls, cfg: Config, known: Iterable[Path] = ()) -> TreeFilter:
        """The filter a snapshot of ``cfg`` uses; ``known`` are databases found by an
        earlier walk, left out with their side files like the configured ones."""
        skip: list[Path] = [cfg.local.dir]
        ids: list[tuple[int, int]] = []
        for db in [*cfg.source.database_paths(), *known]:
            skip.extend(Path(str(db) + suffix) for suffix in SQLITE_SIDE_SUFFIXES)
            if cfg.source.discover_databases:
                try:
                    st = os.stat(db)
                except OSError:
                    continue
                ids.append((st.st_dev, st.st_ino))
        return cls(cfg.source.root, cfg.source.exclude, skip,
                   discover=cfg.source.discover_databases, skip_ids=ids)

    def excluded(self, rel: str, path: str, is_dir: bool) -> bool:
        """True when ``rel`` (POSIX, relative to the root) is left out of the snapshot."""
        if os.path.normcase(path) in self.skip:
            return True
        return self.spec.match_file(rel + "/" if is_dir else rel)


def sqlite_candidate(name: str, beside: Container[str]) -> bool:
    """True when a file called ``name`` could be a SQLite database worth opening to check.

    ``beside`` holds the names in its folder. A database is named like one, or has a -wal or
    -journal beside it: SQLite names those after the database, whatever its name, and a
    database with such a file is the one a raw copy tears. A database with another name and
    neither file (in rollback mode, no write under way when its folder was listed) is
    archived as a file, like any other; a write that starts while it is read makes the
    snapshot warn that the file changed while being read.
    """
    return (name.lower().endswith(DATABASE_SUFFIXES) or name + "-wal" in beside
            or name + "-journal" in beside)


def is_sqlite(path: str, walked: os.stat_result) -> bool:
    """True when the regular file ``walked`` (its ``lstat``) at ``path`` starts with SQLite's
    header. Read through :func:`open_member`, so nothing swapped in since is looked at; a file
    that cannot be read is not a database here (the snapshot reports it as a file)."""
    if not stat.S_ISREG(walked.st_mode) or walked.st_size < len(SQLITE_HEADER):
        return False
    try:
        fd, _ = open_member(path, walked)
    except OSError:
        return False
    try:
        return os.read(fd, len(SQLITE_HEADER)) == SQLITE_HEADER
    except OSError:
        return False
    finally:
        os.close(fd)


def walk(root: Path, tree_filter: TreeFilter) -> Iterator[Entry]:
    """Every entry under ``root`` that the filter keeps, folders before their contents.

    Unreadable folders are yielded as kind "error" entries so the caller can warn about them
    instead of silently backing up less than it claims; a folder that changed since its
    parent was listed (say, into a link) is such an entry too, its error a
    :class:`MemberChanged`, and is not entered. With the filter's ``discover``, a SQLite
    database is yielded as kind "database" carrying its side files (see :class:`Entry`).
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
        return os.open(folder, os.O_RDONLY | O_DIRECTORY)
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
    by_name = {child.name: child for child in children} if tree_filter.discover else {}
    #: side files of a database found in this folder: they go with it, not on their own
    taken: set[str] = set()
    for child in children:
        if child.name in taken:
            continue
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
            # a database sorts before its side files (its name is their prefix), so they
            # are taken here before the loop reaches them
            if by_name and sqlite_candidate(child.name, by_name) and is_sqlite(path, st):
                sides = _side_entries(by_name, child.name, folder, rel_folder)
                taken.update(child.name + suffix for suffix in SQLITE_SIDE_SUFFIXES[1:])
                if (st.st_dev, st.st_ino) not in tree_filter.skip_ids:
                    yield Entry(rel, path, "database", st, sides)
                continue
            yield Entry(rel, path, "file", st)
        elif stat.S_ISLNK(mode):
            yield Entry(rel, path, "symlink", st)
        else:
            yield Entry(rel, path, "other", st)
    return subdirs


def _side_entries(by_name: dict[str, os.DirEntry[str]], name: str, folder: str,
                  rel_folder: str) -> tuple[Entry, ...]:
    """The -wal/-shm/-journal regular files beside the database ``name`` in one folder."""
    sides: list[Entry] = []
    for suffix in SQLITE_SIDE_SUFFIXES[1:]:
        child = by_name.get(name + suffix)
        if child is None:
            continue
        try:
            st = child.stat(follow_symlinks=False)
        except OSError:
            continue  # gone, or unreadable: SQLite will say so when it opens the database
        if stat.S_ISREG(st.st_mode):
            rel = f"{rel_folder}/{child.name}" if rel_folder else child.name
            sides.append(Entry(rel, os.path.join(folder, child.name), "file", st))
    return tuple(sides)


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
    """What a walk of the tree found, by stat alone (only databases' headers are read): by
    :func:`summarize`, or by a snapshot's own walk (:class:`Fingerprint`)."""

    files: int
    bytes: int
    fingerprint: str
    #: databases found in the tree that the configuration does not list, in walk order
    databases: tuple[Entry, ...] = ()


class Fingerprint:
    """Counts and fingerprints walked entries one by one (see :func:`summarize`), so that a
    snapshot's own walk yields the same summary as a stat-only pass would."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()
        self.files = self.bytes = 0
        self.databases: list[Entry] = []

    def add(self, entry: Entry) -> None:
        """Count one walked entry."""
        st = entry.st
        self._digest.update(f"{entry.kind}\0{entry.rel}\0{st.st_size}\0{st.st_mode}\0"
                            f"{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
        if entry.kind == "file":
            self.files += 1
            self.bytes += st.st_size
        elif entry.kind == "database":
            self.databases.append(entry)
            self.bytes += st.st_size
            for side in entry.sides:
                if side.path.endswith("-wal") and side.st.st_size:
                    self._digest.update(_db_line(side.path, side.st))
                    self.bytes += side.st.st_size

    def through(self, entries: Iterable[Entry]) -> Iterator[Entry]:
        """``entries`` unchanged, each counted on its way."""
        for entry in entries:
            self.add(entry)
            yield entry

    def finish(self, cfg: Config) -> TreeSummary:
        """The summary: the entries counted plus the configured databases as they are now."""
        digest = self._digest.copy()
        total = self.bytes
        for path, st in database_files(cfg):
            digest.update(_db_line(path, st))
            total += st.st_size
        return TreeSummary(files=self.files, bytes=total, fingerprint=digest.hexdigest(),
                           databases=tuple(self.databases))


def database_files(cfg: Config) -> Iterator[tuple[str, os.stat_result]]:
    """Each configured database file and its -wal, as (path, stat), where they exist; an
    empty -wal (left by any reader) is the same as none."""
    for db in cfg.source.database_paths():
        for suffix in ("", "-wal"):
            try:
                st = os.stat(str(db) + suffix)
            except OSError:
                continue
            if not suffix or st.st_size:
                yield str(db) + suffix, st


def summarize(cfg: Config) -> TreeSummary:
    """Count and fingerprint the tree and databases without reading file contents.

    The fingerprint changes when any kept path, size, mode or mtime changes, or when a database
    (or its -wal) is written: the service compares it with the last snapshot's to notice
    changes made while it was stopped.
    """
    counted = Fingerprint()
    for entry in walk(cfg.source.root, TreeFilter.for_config(cfg)):
        counted.add(entry)
    return counted.finish(cfg)


def _db_line(path: str, st: os.stat_result) -> bytes:
    """A database file or its -wal in the fingerprint. Only a -wal with data is given: an
    empty one is left by any reader, the backup's own included; the -shm and -journal never
    are, reading rewrites them."""
    return f"db\0{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape")


def tree_fingerprint(cfg: Config) -> str:
    """See :func:`summarize`; the service's "changed while stopped?" check."""
    return summarize(cfg).fingerprint
