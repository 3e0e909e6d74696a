"""Shared fixtures: a small SIIP-like project on real temporary folders, and its config."""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fakedrive import DriveServer
from watcher.config.settings import Config, from_mapping

REPO = Path(__file__).resolve().parent.parent


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


def make_config(root: Path, local: Path, **sections: dict[str, Any]) -> Config:
    """A validated Config for ``root`` backed up to ``local``, with section overrides."""
    raw: dict[str, Any] = {"source": {"root": str(root), "databases": ["siip_database.db"]},
                           "local": {"dir": str(local)}}
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return from_mapping(raw, environ={})


def write_config(path: Path, root: Path, local: Path, extra: str = "") -> Path:
    """A TOML config file for the CLI tests."""
    path.write_text(
        f'[source]\nroot = "{root}"\ndatabases = ["siip_database.db"]\n'
        f'[local]\ndir = "{local}"\n{extra}', encoding="utf-8")
    return path


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


@pytest.fixture
def siip(tmp_path: Path) -> Path:
    """A fresh SIIP-like project folder."""
    return make_siip_tree(tmp_path / "siip")


@pytest.fixture
def cfg(siip: Path, tmp_path: Path) -> Config:
    """Config backing ``siip`` up to a folder outside it."""
    return make_config(siip, tmp_path / "backups")


@pytest.fixture
def drive_server() -> Iterator[DriveServer]:
    """A fresh Drive API server on 127.0.0.1 (see :mod:`fakedrive`).

    On teardown it fails the test if an injected fault did not fire or the client broke the
    upload protocol, so a fault test cannot quietly stop testing anything.
    """
    with DriveServer() as server:
        yield server


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the real `python -m watcher` in a subprocess, as a user would."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120,
            check: bool = False) -> subprocess.CompletedProcess[str]:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("SIIP_WATCHER_")}
        full_env.update(env or {})
        proc = subprocess.run([sys.executable, "-m", "watcher", *args], capture_output=True,
                              text=True, timeout=timeout, env=full_env, cwd=tmp_path)
        if check and proc.returncode != 0:
            raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    return run


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 8 MiB file system (tmpfs), so the disk really fills up."""
    size = "8m"
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    mount = tmp_path / f"small-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
