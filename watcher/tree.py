"""Walk the project tree the way a snapshot sees it: excludes, built-in skips, no link following.

The walk yields entries in a stable order (sorted names per folder) and never follows symlinks.
It is used both to estimate a snapshot (total size, fingerprint) and to stream it.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pathspec import GitIgnoreSpec

from watcher.config import Config

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


def walk(root: Path, tree_filter: TreeFilter) -> Iterator[Entry]:
    """Every entry under ``root`` that the filter keeps, folders before their contents.

    Unreadable folders are yielded as kind "error" entries so the caller can warn about them
    instead of silently backing up less than it claims.
    """
    root_s = os.path.abspath(root)
    stack: list[tuple[str, str]] = [(root_s, "")]
    while stack:
        folder, rel_folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                children = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            yield Entry(rel_folder or ".", folder, "error", _error_stat(exc))
            continue
        subdirs: list[tuple[str, str]] = []
        for child in children:
            rel = f"{rel_folder}/{child.name}" if rel_folder else child.name
            try:
                st = child.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # vanished between listing and stat: it is simply not in this snapshot
            except OSError as exc:
                yield Entry(rel, child.path, "error", _error_stat(exc))
                continue
            mode = st.st_mode
            is_dir = stat.S_ISDIR(mode)
            if tree_filter.excluded(rel, child.path, is_dir):
                continue
            if is_dir:
                yield Entry(rel, child.path, "dir", st)
                subdirs.append((child.path, rel))
            elif stat.S_ISREG(mode):
                yield Entry(rel, child.path, "file", st)
            elif stat.S_ISLNK(mode):
                yield Entry(rel, child.path, "symlink", st)
            else:
                yield Entry(rel, child.path, "other", st)
        # reversed so the stack pops them in sorted order
        stack.extend(reversed(subdirs))


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
