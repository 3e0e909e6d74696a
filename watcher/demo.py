"""`siip-watcher demo`: a small SIIP-like project, backed up to a local folder, no setup needed.

It shows the whole loop on a machine with nothing configured: a WAL-mode SQLite database that
is written to while the snapshot runs, code, uploaded photos, junk that is excluded; then
where the archive is and how to verify and restore it.
"""

from __future__ import annotations

import random
import shutil
import sqlite3
import sys
import threading
import tomllib
from pathlib import Path

from watcher.backup.report import EXIT_OK, DatabaseResult
from watcher.backup.run import run_backup
from watcher.config.settings import from_mapping

DEMO_CONFIG = """\
# Demo configuration written by `siip-watcher demo`.
name = "siip-demo"

[source]
root = "siip"
databases = ["siip_database.db"]
exclude = ["__pycache__/", "*.pyc", ".git/", "venv/", ".venv/"]

[local]
dir = "backups"

[retention]
keep_last = 5
"""


def make_demo_tree(root: Path, *, seed: int = 7, photos: int = 24) -> None:
    """Create (or add to) a small SIIP-like project folder under ``root``."""
    rnd = random.Random(seed)
    (root / "app" / "templates").mkdir(parents=True, exist_ok=True)
    (root / "app" / "__pycache__").mkdir(exist_ok=True)
    (root / "SIIP CON FOTO").mkdir(exist_ok=True)
    (root / "static" / "uploads").mkdir(parents=True, exist_ok=True)
    (root / "app" / "__init__.py").write_text(
        "from flask import Flask\n\napp = Flask(__name__)\n", encoding="utf-8")
    (root / "app" / "views.py").write_text(
        "".join(f"def vista_{i}():\n    return 'registro {i}'\n\n" for i in range(60)),
        encoding="utf-8")
    (root / "app" / "templates" / "index.html").write_text(
        "<html><body><h1>SIIP</h1>{% block content %}{% endblock %}</body></html>\n",
        encoding="utf-8")
    (root / "app" / "__pycache__" / "views.cpython-311.pyc").write_bytes(b"\x00junk" * 100)
    (root / "config.py").write_text(
        "import os\nBASE_DIR = os.path.abspath(os.path.dirname(__file__))\n"
        "SQLALCHEMY_DATABASE_URI = 'sqlite:///' + os.path.join(BASE_DIR, 'siip_database.db')\n",
        encoding="utf-8")
    for i in range(photos):
        folder = root / ("SIIP CON FOTO" if i % 2 else "static/uploads")
        name = "fotografía ñandú.jpg" if i == 1 else f"foto_{i:03d}.jpg"
        path = folder / name
        if not path.exists():
            path.write_bytes(rnd.randbytes(rnd.randint(20_000, 120_000)))

    db = sqlite3.connect(root / "siip_database.db")
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE IF NOT EXISTS personas (id INTEGER PRIMARY KEY, nombre TEXT, "
                   "foto TEXT, creado TEXT DEFAULT CURRENT_TIMESTAMP)")
        with db:
            db.executemany("INSERT INTO personas (nombre, foto) VALUES (?, ?)",
                           [(f"Persona {rnd.randint(1, 10**6)}", f"foto_{i % photos:03d}.jpg")
                            for i in range(2000)])
    finally:
        db.close()


def _writer(db_path: Path, stop: threading.Event) -> None:
    """The app, still writing while the snapshot is taken."""
    con = sqlite3.connect(db_path, timeout=30)
    try:
        while not stop.is_set():
            with con:
                con.execute("INSERT INTO personas (nombre, foto) VALUES ('nuevo', '')")
            stop.wait(0.005)
    finally:
        con.close()


def run_demo(base: Path) -> int:
    """Build the demo under ``base``, back it up once, and tell the user what to try next."""
    base = base.resolve()
    base.mkdir(parents=True, exist_ok=True)
    config_path = base / "siip-watcher.toml"
    if not config_path.exists():
        config_path.write_text(DEMO_CONFIG, encoding="utf-8")
    make_demo_tree(base / "siip")

    cfg = from_mapping(tomllib.loads(config_path.read_text(encoding="utf-8")),
                       source=config_path)
    stop = threading.Event()
    writer = threading.Thread(target=_writer, args=(cfg.source.database_paths()[0], stop),
                              daemon=True)
    writer.start()
    try:
        report = run_backup(cfg, trigger="manual", upload=False, email=False)
    finally:
        stop.set()
        writer.join()
    out = sys.stdout
    if report.snapshot is None:
        out.write(f"demo backup FAILED: {report.errors[0].message}\n")
        return report.exit_code
    s = report.snapshot
    c = f"{_command()} -c {config_path}"
    out.write(
        f"\nDemo project : {cfg.source.root}\n"
        f"Archive      : {s.file}\n"
        f"               {s.size:,} bytes from {s.bytes_in:,}, {s.files} files, database "
        f"{_check_line(s.databases)}\n"
        f"Checksum     : {s.file}.sha256 (sha256sum -c works on it)\n\n"
        f"Try next:\n"
        f"  {c} list\n"
        f"  {c} verify latest\n"
        f"  {c} restore latest --to {base / 'restored'}\n"
        f"  tar --zstd -tf {s.file} | head\n")
    return EXIT_OK if report.exit_code == EXIT_OK else report.exit_code


def _check_line(databases: list[DatabaseResult]) -> str:
    return ", ".join(f"{d.check_pragma} {d.check}" for d in databases) or "-"


def _command() -> str:
    """How to call siip-watcher from the user's shell: plain when it is on PATH, else the
    venv's script (scripts/demo does not activate the venv)."""
    if shutil.which("siip-watcher"):
        return "siip-watcher"
    script = Path(sys.executable).parent / "siip-watcher"
    return str(script) if script.exists() else f"{sys.executable} -m watcher"
