"""The real watchdog observer on temporary folders: what counts as a change and what never does.

Negative cases ("this never counts") end with a sentinel file written in the same folder: the
observer delivers one folder's events in order, so once the sentinel is seen every earlier event
has been handled, and the test needs no sleeping.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from watchdog.events import FileClosedEvent, FileCreatedEvent, FileModifiedEvent, FileMovedEvent
from watchdog.observers import Observer

from tests.helpers import make_config
from watcher.config.settings import Config
from watcher.service.watch import ChangeFilter, TreeWatcher, WatchError
from watcher.snapshot.sqlite_copy import copy_database

WAIT = 10.0  # generous upper bound for an event to arrive; normally milliseconds


def make_cfg(tmp_path: Path, *, local: Path | None = None, databases: list[str] | None = None,
             watch: str = "auto", exclude: list[str] | None = None) -> Config:
    root = tmp_path / "app"
    root.mkdir(exist_ok=True)
    return make_config(root, local or root / "backups", databases=databases or ["app.db"],
                       schedule={"watch": watch, "debounce_seconds": 0.5,
                                 "max_delay_seconds": 5},
                       source={} if exclude is None else {"exclude": exclude})


class Seen:
    """Paths reported by the watcher, thread-safe."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self._cond = threading.Condition()

    def __call__(self, path: str) -> None:
        with self._cond:
            self.paths.append(path)
            self._cond.notify_all()

    def wait_for(self, name: str) -> None:
        """Wait until a path ending in ``name`` was reported."""
        deadline = time.monotonic() + WAIT
        with self._cond:
            while not any(p.endswith(name) for p in self.paths):
                left = deadline - time.monotonic()
                assert left > 0, f"{name} never reported; saw {self.paths}"
                self._cond.wait(left)

    def others(self, name: str) -> list[str]:
        with self._cond:
            return [p for p in self.paths if not p.endswith(name)]

    def clear(self) -> None:
        with self._cond:
            self.paths.clear()


@pytest.fixture
def watching(tmp_path: Path) -> Iterator[Any]:
    started: list[TreeWatcher] = []

    def start(cfg: Config, **kw: Any) -> tuple[TreeWatcher, Seen]:
        seen = Seen()
        w = TreeWatcher(cfg, seen, **kw)
        w.start()
        started.append(w)
        return w, seen

    yield start
    for w in started:
        w.stop()


def sentinel(folder: Path, seen: Seen, name: str = "zz-sentinel.txt") -> None:
    (folder / name).write_text("s")
    seen.wait_for(name)


# --- the filter alone -----------------------------------------------------------------------


def test_filter_rules(tmp_path: Path) -> None:
    root = tmp_path / "app"
    f = ChangeFilter(root, exclude=["venv/", "*.pyc", "/cache/"], backup_dir=root / "backups",
                     databases=[root / "data" / "app.db", tmp_path / "outside" / "other.db"])
    r = str(root)
    assert f.path_counts(f"{r}/static/photo.jpg", kind="created")
    assert f.path_counts(f"{r}/static", kind="created", is_directory=True)
    assert not f.path_counts(f"{r}/backups/siip-1.tar.zst.partial", kind="modified")
    assert not f.path_counts(f"{r}/backups", kind="deleted", is_directory=True)
    assert not f.path_counts(f"{r}/backups/catalog.sqlite3-wal", kind="modified")
    assert not f.path_counts(f"{r}/venv/lib/x.py", kind="modified")
    assert not f.path_counts(f"{r}/venv", kind="created", is_directory=True)
    assert not f.path_counts(f"{r}/pkg/mod.pyc", kind="created")
    assert not f.path_counts(f"{r}/cache/a", kind="created")
    assert f.path_counts(f"{r}/sub/cache/a", kind="created")  # anchored pattern
    assert not f.path_counts(r, kind="modified", is_directory=True)
    assert f.path_counts(f"{r}/data/app.db", kind="modified")
    assert f.path_counts(f"{r}/data/app.db", kind="deleted")
    assert not f.path_counts(f"{r}/data/app.db", kind="closed")
    assert f.path_counts(f"{r}/data/app.db-wal", kind="modified")
    assert not f.path_counts(f"{r}/data/app.db-wal", kind="created")
    assert not f.path_counts(f"{r}/data/app.db-wal", kind="deleted")
    assert not f.path_counts(f"{r}/data/app.db-shm", kind="modified")
    assert not f.path_counts(f"{r}/data/app.db-journal", kind="modified")
    o = str(tmp_path / "outside")
    assert f.path_counts(f"{o}/other.db", kind="modified")
    assert f.path_counts(f"{o}/other.db-wal", kind="modified")
    assert not f.path_counts(f"{o}/notes.txt", kind="modified")
    assert not f.path_counts(str(tmp_path / "elsewhere.txt"), kind="created")


def test_filter_moves_count_when_either_end_counts(tmp_path: Path) -> None:
    root = tmp_path / "app"
    f = ChangeFilter(root, exclude=["tmp/"], backup_dir=root / "backups", databases=[])
    r = str(root)
    assert f.counts(FileMovedEvent(f"{r}/tmp/upload", f"{r}/static/photo.jpg"))
    assert f.counts(FileMovedEvent(f"{r}/static/photo.jpg", f"{r}/tmp/trash"))
    assert not f.counts(FileMovedEvent(f"{r}/backups/a.partial", f"{r}/backups/a.tar.zst"))
    assert f.counts(FileCreatedEvent(f"{r}/x"))
    assert not f.counts(FileClosedEvent(f"{r}/backups/x"))
    assert f.counts(FileModifiedEvent(f"{r}/x".encode()))


# --- the real observer ----------------------------------------------------------------------


def test_created_modified_moved_deleted_files_and_folders_count(tmp_path: Path,
                                                                 watching: Any) -> None:
    cfg = make_cfg(tmp_path)
    root = cfg.source.root
    (root / "old.txt").write_text("a")
    w, seen = watching(cfg)
    assert w.kind == "native"
    (root / "photos").mkdir()
    seen.wait_for("photos")
    (root / "photos" / "p1.jpg").write_bytes(b"x" * 100)
    seen.wait_for("p1.jpg")
    (root / "old.txt").rename(root / "new.txt")
    seen.wait_for("new.txt")
    (root / "new.txt").unlink()
    seen.clear()
    sentinel(root, seen)  # the deletion was reported before the sentinel, or it would be here
    (root / "photos" / "p1.jpg").unlink()
    seen.wait_for("p1.jpg")


def test_reading_the_whole_tree_counts_nothing(tmp_path: Path, watching: Any) -> None:
    cfg = make_cfg(tmp_path)
    root = cfg.source.root
    for i in range(50):
        d = root / f"d{i % 5}"
        d.mkdir(exist_ok=True)
        (d / f"f{i}.txt").write_text("data" * i)
    _, seen = watching(cfg)
    for path in sorted(root.rglob("*")):
        if path.is_file():
            path.read_bytes()
            os.stat(path)
    sentinel(root, seen)
    assert seen.others("zz-sentinel.txt") == []


def test_backup_dir_inside_the_tree_never_counts(tmp_path: Path, watching: Any) -> None:
    cfg = make_cfg(tmp_path)
    root = cfg.source.root
    backups = cfg.local.dir
    backups.mkdir()
    _, seen = watching(cfg)
    partial = backups / "siip-20261127T120000Z.tar.zst.partial"
    with open(partial, "wb") as fh:
        for _ in range(20):
            fh.write(os.urandom(64 * 1024))
        fh.flush()
        os.fsync(fh.fileno())
    partial.rename(backups / "siip-20261127T120000Z.tar.zst")
    (backups / "siip-20261127T120000Z.tar.zst.sha256").write_text("x  y\n")
    db = sqlite3.connect(backups / "catalog.sqlite3")
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    (backups / "siip-watcher.state.lock").write_text("1\n")
    (backups / "sub").mkdir()
    (backups / "sub").rmdir()
    sentinel(root, seen)
    assert seen.others("zz-sentinel.txt") == []


def test_excluded_paths_never_count(tmp_path: Path, watching: Any) -> None:
    cfg = make_cfg(tmp_path, exclude=["__pycache__/", "*.pyc", "venv/", "logs/*.log"])
    root = cfg.source.root
    (root / "venv" / "lib").mkdir(parents=True)
    _, seen = watching(cfg)
    (root / "venv" / "lib" / "site.py").write_text("x")
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"x")
    (root / "mod.pyc").write_bytes(b"x")
    (root / "logs").mkdir()
    seen.wait_for("logs")  # the folder itself is not excluded, only the .log files in it
    (root / "logs" / "app.log").write_text("line\n")
    seen.clear()
    sentinel(root, seen)
    assert seen.others("zz-sentinel.txt") == []


def _wal_db(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS t (x)")
    db.execute("INSERT INTO t VALUES (1)")
    db.commit()
    db.close()


def _online_backup(source: str, copy: Path) -> None:
    """What a snapshot does to ``source`` (a path, or a file: URI): an online backup from a
    connection of its own."""
    src = sqlite3.connect(source, uri=source.startswith("file:"))
    dst = sqlite3.connect(copy)
    src.backup(dst)
    dst.close()
    src.close()


def test_backup_reads_of_a_wal_database_count_nothing_but_app_writes_do(
        tmp_path: Path, watching: Any) -> None:
    cfg = make_cfg(tmp_path, databases=["data/app.db"])
    root = cfg.source.root
    (root / "data").mkdir()
    db_path = root / "data" / "app.db"
    _wal_db(db_path)
    _, seen = watching(cfg)
    # what a snapshot does: an online backup from a separate connection, idle app
    for uri in (str(db_path), f"file:{db_path}?mode=ro"):
        _online_backup(uri, tmp_path / "copy.db")
    # ... and while the app holds a connection open
    app = sqlite3.connect(db_path)
    app.execute("SELECT count(*) FROM t").fetchone()
    _online_backup(str(db_path), tmp_path / "copy2.db")
    sentinel(root / "data", seen)
    assert seen.others("zz-sentinel.txt") == []
    # a commit by the app is a change
    app.execute("INSERT INTO t VALUES (2)")
    app.commit()
    seen.wait_for("app.db-wal")
    app.close()


def test_backup_reads_of_a_found_database_count_nothing_but_app_writes_do(
        tmp_path: Path, watching: Any) -> None:
    """A database nobody listed, which the snapshot finds and copies (issue 14, item 2): the
    copy's own -wal/-shm and closes must not start the next backup."""
    cfg = make_cfg(tmp_path)
    root = cfg.source.root
    (root / "data").mkdir()
    chat, queue = root / "data" / "chat.db", root / "data" / "cola"
    _wal_db(chat)
    _wal_db(queue)
    app = sqlite3.connect(queue)     # a name SQLite alone knows: found by its -wal
    app.execute("SELECT count(*) FROM t").fetchone()
    _, seen = watching(cfg)
    for db in (chat, queue, chat):   # the second copy finds the first one's -wal and -shm
        copy_database(db, tmp_path / "copy.db")
    # a read-write connection, as the copy falls back to, closes the database after a write
    _online_backup(str(chat), tmp_path / "copy2.db")
    sentinel(root / "data", seen)
    assert seen.others("zz-sentinel.txt") == []
    app.execute("INSERT INTO t VALUES (2)")
    app.commit()
    seen.wait_for("cola-wal")
    app.close()


def test_database_outside_the_root_is_watched(tmp_path: Path, watching: Any) -> None:
    outside = tmp_path / "var"
    outside.mkdir()
    db_path = outside / "main.db"
    _wal_db(db_path)
    cfg = make_cfg(tmp_path, databases=[str(db_path)])
    w, seen = watching(cfg)
    assert [str(f) for f, _ in w.folders] == [str(cfg.source.root.resolve()),
                                              str(outside.resolve())]
    (outside / "unrelated.log").write_text("x")
    db = sqlite3.connect(db_path)
    db.execute("INSERT INTO t VALUES (3)")
    db.commit()
    db.close()
    seen.wait_for("main.db-wal")
    assert not [p for p in seen.paths if p.endswith("unrelated.log")]


def test_polling_can_be_forced(tmp_path: Path, watching: Any) -> None:
    cfg = make_cfg(tmp_path, watch="polling")
    root = cfg.source.root
    w, seen = watching(cfg, poll_interval=0.1)
    assert w.kind == "polling"
    (root / "a.txt").write_text("x")
    seen.wait_for("a.txt")
    assert w.is_alive()


class _ExhaustedInotify(Observer):  # type: ignore[misc,valid-type]
    """The native observer as it fails when fs.inotify.max_user_watches is reached."""

    def start(self) -> None:
        raise OSError(errno.ENOSPC, "inotify watch limit reached")


def test_auto_falls_back_to_polling_with_a_hint(tmp_path: Path, watching: Any,
                                                caplog: pytest.LogCaptureFixture) -> None:
    cfg = make_cfg(tmp_path)
    with caplog.at_level(logging.WARNING, logger="watcher.service.watch"):
        w, seen = watching(cfg, poll_interval=0.1, native_factory=_ExhaustedInotify)
    assert w.kind == "polling"
    assert "fs.inotify.max_user_watches" in caplog.text
    assert "sysctl" in caplog.text
    (cfg.source.root / "b.txt").write_text("x")
    seen.wait_for("b.txt")


def test_native_forced_fails_clearly(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path, watch="native")
    w = TreeWatcher(cfg, lambda path: None, native_factory=_ExhaustedInotify)
    with pytest.raises(WatchError, match="max_user_watches"):
        w.start()
    assert not w.is_alive()


def test_missing_database_folder_is_a_clear_error(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path, databases=[str(tmp_path / "gone" / "x.db")])
    with pytest.raises(WatchError, match="not an existing folder"):
        TreeWatcher(cfg, lambda path: None).start()
