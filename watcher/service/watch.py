"""Watch the project tree and the databases; report each change that matters.

A watchdog observer (inotify, FSEvents, ReadDirectoryChangesW) watches ``source.root``
recursively and, for each database outside the root, its folder. Only events that mean change
are requested (created, modified, deleted, moved, closed after a write): watchdog otherwise also
reports opens and reads, and the service's own pass over the tree during a snapshot would flood
it (31,806 events for a 15,000-file tree, measured on a SIIP-like dataset).

:class:`ChangeFilter` decides which events count. It never counts the backup dir (archives,
partials, catalog, locks, the service's state file), excluded paths, the root folder's own
metadata, or what SQLite does when the backup merely *reads* a database: opening a WAL database
creates ``-wal``/``-shm`` files and closing it deletes them and fires close-after-write on the
database. Writes that carry data do count: the database file itself, and writes to its ``-wal``.
The same holds for the databases a snapshot finds in the tree (``source.discover_databases``),
which no path in the configuration names: there the filter reads a file's first bytes, as the
snapshot's walk does, to know that it is one; otherwise each snapshot's reads would be a
change, and the service would back up again and again.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from pathspec import GitIgnoreSpec
from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from watcher.config.settings import Config
from watcher.snapshot.tree import SQLITE_SIDE_SUFFIXES, is_sqlite, sqlite_candidate

log = logging.getLogger(__name__)

#: what we ask the observer for; DirModifiedEvent is left out on purpose: it only echoes the
#: created/deleted/moved event of a child, which is already counted (or deliberately ignored,
#: as for files in the backup dir)
EVENT_FILTER: list[type[FileSystemEvent]] = [
    FileCreatedEvent, FileModifiedEvent, FileDeletedEvent, FileMovedEvent, FileClosedEvent,
    DirCreatedEvent, DirDeletedEvent, DirMovedEvent,
]

#: file systems where native notifications miss changes made by other machines
NETWORK_FS = {"nfs", "nfs4", "cifs", "smb3", "smbfs", "fuse.sshfs", "9p", "afs", "ceph",
              "glusterfs", "fuse.glusterfs", "davfs", "fuse.rclone"}

WATCH_MODES = ("auto", "native", "polling")
#: a mounts line starts "device mount-point type"; only those are read
_MOUNT_FIELDS = 3


class WatchError(Exception):
    """The tree cannot be watched; the message says what to do."""


def _key(path: str | os.PathLike[str]) -> str:
    """A comparable form of a path (case-folded where the file system is, e.g. Windows)."""
    return os.path.normcase(os.path.normpath(os.fspath(path)))


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


class ChangeFilter:
    """Which file system events are changes worth a backup. It looks at paths, and with
    ``discover`` at the first bytes of a file an event may be SQLite's doing (see above)."""

    def __init__(self, root: Path, *, exclude: list[str], backup_dir: Path,
                 databases: list[Path], discover: bool = False) -> None:
        self.root = _key(root)
        self.discover = discover
        self.backup_dir = _key(backup_dir)
        self.spec = GitIgnoreSpec.from_lines(exclude)
        self.databases = {_key(db) for db in databases}
        self.wal_files = {db + "-wal" for db in self.databases}
        # SQLite's shared-memory index and rollback journal carry no data of their own: a real
        # commit also writes the database or its -wal, which count
        self.silent_files = {db + suffix for db in self.databases
                             for suffix in ("-shm", "-journal")}

    @classmethod
    def from_config(cls, cfg: Config) -> ChangeFilter:
        """The filter for ``cfg``'s tree, excludes, backup dir and databases."""
        root = _resolve(cfg.source.root)
        return cls(root, exclude=cfg.source.exclude, backup_dir=_resolve(cfg.local.dir),
                   databases=[_resolve(db) for db in cfg.source.database_paths()],
                   discover=cfg.source.discover_databases)

    def counts(self, event: FileSystemEvent) -> bool:
        """True if ``event`` is a change that a backup should pick up."""
        kind = event.event_type
        paths = [event.src_path]
        if kind == "moved" and event.dest_path:
            paths.append(event.dest_path)
        return any(self.path_counts(_decode(p), kind=kind, is_directory=event.is_directory)
                   for p in paths)

    # one return per kind of path the service ignores
    def path_counts(self, path: str, *, kind: str, is_directory: bool = False) -> bool:  # noqa: PLR0911
        """True if a ``kind`` event ("created", "modified", "closed", ...) on ``path`` counts."""
        p = _key(path)
        if _inside(p, self.backup_dir):
            return False
        if p in self.databases:
            # close-after-write fires when the backup's own connection closes the file
            return kind != "closed"
        if p in self.wal_files:
            # opening a database creates an empty -wal and closing it deletes it: only a
            # write to the -wal is new data
            return kind == "modified"
        if p in self.silent_files:
            return False
        if not _inside(p, self.root) or p == self.root:
            return False  # another file next to a database outside the root, or the root
        rel = os.path.relpath(p, self.root).replace(os.sep, "/")
        if self.spec.match_file(rel + "/" if is_directory else rel):
            return False
        return not (self.discover and not is_directory and _found_database_noise(p, kind))


def _found_database_noise(path: str, kind: str) -> bool:
    """True when a ``kind`` event on ``path`` is what reading a database in the tree does,
    by the rules applied to the configured ones: its -shm and -journal never count, its -wal
    only when written, the database itself not on close."""
    for suffix in SQLITE_SIDE_SUFFIXES[1:]:
        if path.endswith(suffix):
            if suffix == "-wal" and kind == "modified":
                return False
            return _is_database(path[:-len(suffix)])
    if kind != "closed":
        return False
    folder, name = os.path.split(path)
    return sqlite_candidate(name, _Beside(folder)) and _is_database(path)


class _Beside:
    """The names in a folder, asked one at a time (:func:`sqlite_candidate` asks two)."""

    def __init__(self, parent: str) -> None:
        self.parent = parent

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and os.path.lexists(os.path.join(self.parent, name))


def _is_database(path: str) -> bool:
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return is_sqlite(path, st)


def _decode(path: str | bytes) -> str:
    return os.fsdecode(path)


def _resolve(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:
        return path.absolute()


class _Handler(FileSystemEventHandler):
    def __init__(self, change_filter: ChangeFilter, on_change: Callable[[str], None]) -> None:
        self.filter = change_filter
        self.on_change = on_change

    def on_any_event(self, event: FileSystemEvent) -> None:
        try:
            if self.filter.counts(event):
                self.on_change(_decode(event.dest_path or event.src_path))
        except Exception:  # never let one odd path kill the observer thread
            log.exception("could not handle the file system event %r", event)


def network_fs_type(path: Path) -> str | None:
    """The file system type of ``path`` if it is a network one (Linux only; else None)."""
    try:
        mounts = Path("/proc/self/mounts").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    target = str(_resolve(path))
    best, best_type = "", ""
    for line in mounts.splitlines():
        parts = line.split()
        if len(parts) < _MOUNT_FIELDS:
            continue
        mount_point = parts[1].replace("\\040", " ")
        if _inside(target, mount_point) and len(mount_point) >= len(best):
            best, best_type = mount_point, parts[2]
    return best_type if best_type in NETWORK_FS else None


def _limit_hint(exc: OSError) -> str:
    if exc.errno == errno.EMFILE:
        setting = "fs.inotify.max_user_instances"
        value = "512"
    else:
        setting = "fs.inotify.max_user_watches"
        value = "524288"
    current = ""
    with contextlib.suppress(OSError):
        current = Path("/proc/sys/" + setting.replace(".", "/")).read_text().strip()
    now = f" (now {current})" if current else ""
    return (f"raise {setting}{now}: echo {setting}={value} | sudo tee "
            f"/etc/sysctl.d/60-siip-watcher.conf && sudo sysctl --system, then restart "
            f"the service")


class TreeWatcher:
    """Watch the tree and the databases, calling ``on_change(path)`` once per change that counts.

    ``on_change`` runs on the observer's thread; it must be quick and thread-safe.
    """

    def __init__(self, cfg: Config, on_change: Callable[[str], None], *,
                 mode: str | None = None, poll_interval: float | None = None,
                 native_factory: Callable[[], BaseObserver] = Observer) -> None:
        """``mode`` overrides ``schedule.watch``; ``poll_interval`` the polling period
        (default: half the debounce, between 1 and 60 seconds); ``native_factory`` builds the
        native observer (tests pass one that fails like an exhausted inotify)."""
        self.cfg = cfg
        self.mode = mode or cfg.schedule.watch
        if self.mode not in WATCH_MODES:
            raise WatchError(f"schedule.watch: expected one of {', '.join(WATCH_MODES)}, "
                             f"got {self.mode!r}")
        self.poll_interval = poll_interval if poll_interval is not None else \
            min(60.0, max(1.0, cfg.schedule.debounce_seconds / 2))
        self.filter = ChangeFilter.from_config(cfg)
        self._handler = _Handler(self.filter, on_change)
        self._native_factory = native_factory
        self._observer: BaseObserver | None = None
        self._lock = threading.Lock()
        #: "native" or "polling" once started
        self.kind: str | None = None
        self.folders = self._folders()

    def _folders(self) -> list[tuple[Path, bool]]:
        """(folder, recursive) pairs: the root, plus each outside database's folder."""
        root = _resolve(self.cfg.source.root)
        folders: list[tuple[Path, bool]] = [(root, True)]
        seen = {_key(root)}
        for db in self.cfg.source.database_paths():
            folder = _resolve(db).parent
            if _inside(_key(folder), _key(root)) or _key(folder) in seen:
                continue
            seen.add(_key(folder))
            folders.append((folder, False))
        return folders

    def start(self) -> None:
        """Start watching; fall back to polling where native notifications cannot work."""
        with self._lock:
            for folder, _ in self.folders:
                if not folder.is_dir():
                    raise WatchError(f"cannot watch {folder}: it is not an existing folder; "
                                     f"check source.root and source.databases")
            use_native = self.mode != "polling"
            if self.mode == "auto":
                for folder, _ in self.folders:
                    fstype = network_fs_type(folder)
                    if fstype:
                        log.warning("%s is on a network file system (%s), where change "
                                    "notifications miss other machines' writes; polling every "
                                    "%g s instead (set schedule.watch = \"native\" to force)",
                                    folder, fstype, self.poll_interval)
                        use_native = False
                        break
            if use_native:
                try:
                    self._observer = self._start(self._native_factory())
                    self.kind = "native"
                except OSError as exc:
                    if self.mode == "native":
                        raise WatchError(self._native_failure(exc)) from None
                    log.warning("%s; falling back to polling every %g s, which costs CPU on "
                                "a large tree", self._native_failure(exc), self.poll_interval)
            if self._observer is None:
                self._observer = self._start(PollingObserver(timeout=self.poll_interval))
                self.kind = "polling"
            log.info("watching %s (%s)", ", ".join(str(f) for f, _ in self.folders), self.kind)

    def _native_failure(self, exc: OSError) -> str:
        if exc.errno in (errno.ENOSPC, errno.EMFILE):
            return (f"native change notifications could not start ({exc.strerror or exc}); "
                    f"{_limit_hint(exc)}")
        return f"native change notifications could not start: {exc}"

    def _start(self, observer: BaseObserver) -> BaseObserver:
        for folder, recursive in self.folders:
            observer.schedule(self._handler, str(folder), recursive=recursive,
                              event_filter=EVENT_FILTER)
        try:
            observer.start()
        except BaseException:
            observer.unschedule_all()
            raise
        return observer

    def is_alive(self) -> bool:
        """True while the observer and every emitter run.

        An emitter dies alone when, say, a new folder hits the inotify watch limit; the
        service then restarts (and falls back to polling) rather than miss changes quietly.
        """
        observer = self._observer
        return observer is not None and observer.is_alive() and \
            all(emitter.is_alive() for emitter in observer.emitters)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop watching (idempotent)."""
        with self._lock:
            observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            observer.join(timeout)
