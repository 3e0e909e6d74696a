"""Plain helpers the tests share (fixtures are in conftest.py): a SIIP-like project, its
configuration as a Config or as a TOML file, the environment a subprocess runs in, and
waiting for something that happens on another thread or in another process."""

from __future__ import annotations

import contextlib
import json
import os
import random
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from watcher.config.settings import Config, SnapshotConfig, from_mapping

REPO = Path(__file__).resolve().parent.parent
#: upper bound for things that normally take well under a second
WAIT = 30.0
DATABASE = "siip_database.db"
#: the tests' services serve no monitor page unless a test asks for one: every service would
#: otherwise listen on the default port, and tests running side by side would collide there
NO_WEB = {"enabled": False}


def make_siip_tree(root: Path, *, seed: int = 1, photos: int = 6, photo_size: int = 50_000,
                   db_rows: int = 3000) -> Path:
    """A project folder like the real one: WAL database, code, photos with Spanish names,
    an empty file, a symlink, and junk that the default excludes leave out."""
    rnd = random.Random(seed)
    (root / "app" / "__pycache__").mkdir(parents=True)
    (root / "SIIP CON FOTO").mkdir()
    (root / "static" / "uploads").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / "venv" / "lib").mkdir(parents=True)
    (root / "app" / "views.py").write_text("def index():\n    return 'hola'\n" * 50)
    (root / "app" / "__pycache__" / "views.cpython-311.pyc").write_bytes(b"junk")
    (root / "app" / "models.pyc").write_bytes(b"junk")
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / "venv" / "lib" / "site.py").write_text("junk\n")
    (root / "SIIP CON FOTO" / "fotografía ñandú.jpg").write_bytes(rnd.randbytes(photo_size))
    for i in range(photos):
        (root / "static" / "uploads" / f"foto {i}.jpg").write_bytes(rnd.randbytes(photo_size))
    (root / "vacío.txt").write_bytes(b"")
    os.symlink("SIIP CON FOTO/fotografía ñandú.jpg", root / "enlace.jpg")
    (root / "static" / "empty dir").mkdir()
    db = sqlite3.connect(root / "siip_database.db")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE personas (id INTEGER PRIMARY KEY, nombre TEXT, datos BLOB)")
    with db:
        db.executemany("INSERT INTO personas (nombre, datos) VALUES (?, ?)",
                       [(f"persona {i}", rnd.randbytes(64)) for i in range(db_rows)])
    db.close()
    return root


def assert_restored(target: Path, siip: Path) -> None:
    """``target`` holds what a restore of ``siip`` must: its photos byte for byte and a
    database that passes the full integrity_check."""
    for original in siip.rglob("*.jpg"):
        assert (target / original.relative_to(siip)).read_bytes() == original.read_bytes()
    db = sqlite3.connect(target / "siip_database.db")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        db.close()


def make_config(root: Path, local: Path, *, databases: Sequence[str] = (DATABASE,),
                check_paths: bool = True, **sections: dict[str, Any]) -> Config:
    """A validated Config for ``root`` backed up to ``local``, with section overrides (a
    ``source`` section is merged into the one made here); the environment is ignored."""
    raw: dict[str, Any] = {"source": {"root": str(root), "databases": list(databases)},
                           "local": {"dir": str(local)}, "web": dict(NO_WEB)}
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return from_mapping(raw, environ={}, check_paths=check_paths)


#: every snapshot a full archive, as before deltas: for tests of what happens to fulls
#: (retention counting archives, a damaged archive); deltas have tests/test_delta.py
FULLS_ONLY = SnapshotConfig(full_every_days=0)


def toml_table(name: str, values: dict[str, Any]) -> str:
    """``[name]`` and its keys, for a configuration file (JSON's strings, lists, numbers and
    booleans are written as TOML writes them)."""
    return f"[{name}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())


def write_config(path: Path, root: Path, local: Path, extra: str = "") -> Path:
    """A TOML config file for ``root`` backed up to ``local``; ``extra`` is appended (more
    sections, e.g. from :func:`toml_table`). The monitor page is off unless ``extra`` has a
    [web] section (see :data:`NO_WEB`)."""
    if "[web]" not in extra:
        # before the caller's sections: a test may append keys to the last one it wrote
        extra = toml_table("web", NO_WEB) + extra
    path.write_text(
        f'[source]\nroot = "{root}"\ndatabases = ["{DATABASE}"]\n'
        f'[local]\ndir = "{local}"\n{extra}', encoding="utf-8")
    return path


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a `python -m watcher` subprocess: this checkout's code, and
    nothing from the caller's environment that would change what it does (configuration
    overrides, systemd's journal)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SIIP_WATCHER_") and k != "JOURNAL_STREAM"}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


def writer_script(commit: str, setup: str = "") -> str:
    """A script for :func:`committing_writer`: it opens the database named by its argument in
    WAL mode, runs ``setup``, prints "ready", then commits ``commit`` (a statement on
    ``con`` that may use the loop's count ``i``) in a loop."""
    return (f"import sqlite3, sys\n"
            f"con = sqlite3.connect(sys.argv[1], timeout=30)\n"
            f"con.execute('PRAGMA journal_mode=WAL')\n"
            f"{setup}"
            f"print('ready', flush=True)\n"
            f"i = 0\n"
            f"while True:\n"
            f"    i += 1\n"
            f"    with con:\n"
            f"        {commit}\n")


#: the start of a script that kills itself with SIGKILL once its ``progress(n)`` has counted
#: ``limit`` bytes (the script sets ``limit`` and hands ``progress`` to what it runs)
KILL_AFTER = """
import os, signal, sys
from pathlib import Path
done = 0
def progress(n):
    global done
    done += n
    if done >= limit:
        os.kill(os.getpid(), signal.SIGKILL)
"""


def not_private(modes: dict[str, int]) -> dict[str, str]:
    """Of ``modes`` (name -> st_mode), those that are not 0700 for a folder or 0600 for
    anything else, as octal strings."""
    return {name: oct(stat.S_IMODE(mode)) for name, mode in modes.items()
            if stat.S_IMODE(mode) != (0o700 if stat.S_ISDIR(mode) else 0o600)}


@contextlib.contextmanager
def committing_writer(script: str, db: Path) -> Iterator[None]:
    """A separate process running ``script`` (which prints "ready", then commits to the
    database named by its argument in a loop) for as long as the block lasts."""
    writer = subprocess.Popen([sys.executable, "-c", script, str(db)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
        time.sleep(0.3)  # a few hundred commits before the block starts
        yield
    finally:
        writer.kill()
        writer.wait()


def wait_until(predicate: Callable[[], Any], what: str, timeout: float = WAIT, *,
               interval: float = 0.02, detail: Callable[[], str] | None = None) -> Any:
    """Call ``predicate`` every ``interval`` seconds until it returns something true, and
    return that; fail naming ``what`` (and ``detail()``, e.g. a log) after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what}"
                                 + (f"\n{detail()}" if detail else ""))
        time.sleep(interval)
