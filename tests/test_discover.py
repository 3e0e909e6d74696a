"""SQLite databases under source.root that the configuration does not list (issue 14, item 2).

Such a database (a chat, sessions, a queue the app grew later) used to be archived as raw
files: the main file and its -wal, read at different instants. These tests put real WAL
databases in a real tree, some with a writer process committing during the run, and check
what the archive, the restore, the report, the email and the watcher make of them.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tarfile
from pathlib import Path
from typing import Any

import pytest
import zstandard
from watchdog.events import FileClosedEvent, FileCreatedEvent, FileModifiedEvent

from tests.helpers import (
    committing_writer,
    make_config,
    make_siip_tree,
    write_config,
    writer_script,
)
from watcher.archive.read import verify
from watcher.archive.restore import restore
from watcher.backup.report import RunReport
from watcher.backup.run import run_backup
from watcher.config.settings import Config
from watcher.notify.message import build_report_message
from watcher.service.watch import ChangeFilter
from watcher.snapshot import take as take_module
from watcher.snapshot.sqlite_copy import copy_database
from watcher.snapshot.tree import tree_fingerprint

CHAT = "app/chat/chat.db"

# never checkpoint into the main file: every commit of the run stays in the -wal, the part a
# raw copy of the main file misses
WRITER = writer_script('con.execute("INSERT INTO mensajes (texto) VALUES (?)", '
                       '(f"mensaje {i}" * 20,))',
                       setup="con.execute('PRAGMA wal_autocheckpoint=0')\n")


def make_db(path: Path, rows: int = 200, *, wal: bool = True) -> None:
    """A database with a ``mensajes`` table, left with its -wal in place when ``wal``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path)
    if wal:
        con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE mensajes (id INTEGER PRIMARY KEY, texto TEXT)")
    with con:
        con.executemany("INSERT INTO mensajes (texto) VALUES (?)",
                        [(f"hola {i}",) for i in range(rows)])
    con.close()


def members(archive: Path) -> dict[str, bytes]:
    """Every regular member of a .tar.zst and its content."""
    out: dict[str, bytes] = {}
    with open(archive, "rb") as fh, zstandard.ZstdDecompressor().stream_reader(fh) as zr, \
            tarfile.open(fileobj=zr, mode="r|") as tar:
        for m in tar:
            f = tar.extractfile(m) if m.isfile() else None
            out[m.name] = f.read() if f is not None else b""
    return out


def manifest_of(archive: Path) -> dict[str, Any]:
    return json.loads(members(archive)["manifest.json"])


def rows(db: Path) -> tuple[str, set[int]]:
    """(integrity_check, ids) of a restored database."""
    con = sqlite3.connect(db)
    try:
        check = con.execute("PRAGMA integrity_check").fetchone()[0]
        return check, {r[0] for r in con.execute("SELECT id FROM mensajes")}
    finally:
        con.close()


def backup(cfg: Config) -> RunReport:
    report = run_backup(cfg, trigger="manual", email=False)
    assert report.snapshot is not None, report.errors
    return report


def test_a_found_database_is_copied_consistently_while_a_writer_commits(
        tmp_path: Path) -> None:
    root = make_siip_tree(tmp_path / "siip", photos=20, photo_size=200_000)
    chat = root / CHAT
    make_db(chat, rows=2000)
    cfg = make_config(root, tmp_path / "backups")       # lists siip_database.db only
    with committing_writer(WRITER, chat):
        probe = sqlite3.connect(chat, timeout=30)
        committed_before = probe.execute("SELECT max(id) FROM mensajes").fetchone()[0]
        assert (root / (CHAT + "-wal")).stat().st_size > 0, "the commits must be in the -wal"
        report = backup(cfg)
        committed_after = probe.execute("SELECT max(id) FROM mensajes").fetchone()[0]
        probe.close()
    assert committed_after > committed_before, "the writer must have kept committing"
    assert report.status == "ok", report.warnings

    # in the archive: one checked copy, named in the manifest; no raw main file, no side file
    archive = Path(report.snapshot.file)
    names = members(archive)
    assert "databases/chat.db" in names
    assert not [n for n in names if "chat.db" in n and n != "databases/chat.db"], names
    manifest = json.loads(names["manifest.json"])
    found = [d for d in manifest["databases"] if d["path"] == CHAT]
    assert found == [{**found[0], "member": "databases/chat.db", "discovered": True,
                      "check": "ok", "check_pragma": "quick_check"}]
    listed = [d for d in manifest["databases"] if d["path"] == "siip_database.db"]
    assert listed[0]["discovered"] is False
    db = {d.path: d for d in report.snapshot.databases}[CHAT]
    assert db.discovered and db.check == "ok"

    # restored at its place in the tree, whole, with every row committed before the run
    out = tmp_path / "restored"
    result = restore(archive, out)
    assert CHAT in result.databases
    check, ids = rows(out / CHAT)
    assert check == "ok"
    assert set(range(1, committed_before + 1)) <= ids, "a row committed before the run is missing"
    assert not [p.name for p in (out / "app" / "chat").iterdir() if p.name != "chat.db"]
    assert verify(archive).ok


def test_the_switch_off_archives_the_files_as_before(siip: Path, tmp_path: Path) -> None:
    make_db(siip / CHAT)
    app = sqlite3.connect(siip / CHAT)     # the app holds it open: its -wal stays
    app.execute("SELECT count(*) FROM mensajes").fetchone()
    try:
        cfg = make_config(siip, tmp_path / "backups", source={"discover_databases": False})
        report = backup(cfg)
    finally:
        app.close()
    names = members(Path(report.snapshot.file))
    assert "files/" + CHAT in names and "files/" + CHAT + "-wal" in names
    assert not [n for n in names if n.startswith("databases/chat")]
    assert [d.path for d in report.snapshot.databases] == ["siip_database.db"]
    assert not any(d.discovered for d in report.snapshot.databases)


def test_excluded_and_plain_db_files_are_not_taken_for_databases(siip: Path,
                                                                   tmp_path: Path) -> None:
    make_db(siip / CHAT)
    make_db(siip / "cache" / "sesiones.db")
    (siip / "notas.db").write_text("no soy una base de datos\n" * 10)
    (siip / "vieja.sqlite").write_bytes(b"** This file contains an SQLite 2.1 database **")
    cfg = make_config(siip, tmp_path / "backups",
                      source={"exclude": ["__pycache__/", "*.pyc", ".git/", "venv/", "cache/"]})
    report = backup(cfg)
    names = members(Path(report.snapshot.file))
    assert "databases/chat.db" in names
    # excluded: neither copied nor archived, and nothing of it opened (no -shm left behind)
    assert not [n for n in names if "sesiones" in n]
    assert not (siip / "cache" / "sesiones.db-shm").exists()
    # named like a database but not one: a plain file, byte for byte
    assert names["files/notas.db"] == (siip / "notas.db").read_bytes()
    assert names["files/vieja.sqlite"] == (siip / "vieja.sqlite").read_bytes()
    assert sorted(d.path for d in report.snapshot.databases) == [CHAT, "siip_database.db"]


def test_a_found_database_without_a_database_name_is_found_by_its_wal(siip: Path,
                                                                      tmp_path: Path) -> None:
    queue = siip / "var" / "cola"
    make_db(queue)
    app = sqlite3.connect(queue)            # the app holds it open: its -wal stays
    app.execute("INSERT INTO mensajes (texto) VALUES ('en el wal')")
    app.commit()
    try:
        assert (siip / "var" / "cola-wal").stat().st_size > 0
        report = backup(make_config(siip, tmp_path / "backups"))
    finally:
        app.close()
    names = members(Path(report.snapshot.file))
    assert "databases/cola" in names
    assert not [n for n in names if n.startswith("files/var/cola")]
    out = tmp_path / "restored"
    restore(Path(report.snapshot.file), out)
    check, ids = rows(out / "var" / "cola")
    assert check == "ok" and len(ids) == 201


def test_names_that_collide_get_their_own_member_and_go_back_to_their_place(
        siip: Path, tmp_path: Path) -> None:
    make_db(siip / "old" / "siip_database.db", rows=7)
    make_db(siip / "app" / "chat" / "siip_database.db", rows=9)
    report = backup(make_config(siip, tmp_path / "backups"))
    by_path = {d.path: d.member for d in report.snapshot.databases}
    assert by_path["siip_database.db"] == "databases/siip_database.db"
    assert len(set(by_path.values())) == 3
    out = tmp_path / "restored"
    restore(Path(report.snapshot.file), out)
    assert len(rows(out / "app" / "chat" / "siip_database.db")[1]) == 9
    assert len(rows(out / "old" / "siip_database.db")[1]) == 7
    con = sqlite3.connect(out / "siip_database.db")
    assert con.execute("SELECT count(*) FROM personas").fetchone()[0] == 3000
    con.close()


def test_a_damaged_found_database_is_kept_as_files_with_a_warning(siip: Path,
                                                                  tmp_path: Path) -> None:
    """Nobody listed it: it must not stop every backup, and its bytes are still kept."""
    bad = siip / "roto.db"
    bad.write_bytes(b"SQLite format 3\0" + os.urandom(8192))
    report = backup(make_config(siip, tmp_path / "backups"))
    assert report.status == "warning"
    assert "roto.db" in report.warnings[0].message
    assert "not listed in source.databases" in report.warnings[0].message
    names = members(Path(report.snapshot.file))
    assert names["files/roto.db"] == bad.read_bytes()
    assert [d.path for d in report.snapshot.databases] == ["siip_database.db"]


def test_a_database_that_appears_after_the_run_started_is_copied_too(
        siip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The walk itself finds databases (there is no pass before it): one created after the
    configured copies started, before the walk reached its folder, is copied like them."""
    real = take_module._check_free_space
    calls: list[int] = []

    def check_then_create(folder: Path, needed: int) -> None:
        real(folder, needed)
        if not calls:  # the up-front check, before the walk
            make_db(siip / "nueva.db", rows=5)
        calls.append(needed)

    monkeypatch.setattr(take_module, "_check_free_space", check_then_create)
    report = backup(make_config(siip, tmp_path / "backups"))
    assert len(calls) == 2, "free space is checked up front and again after the walk"
    names = members(Path(report.snapshot.file))
    assert "databases/nueva.db" in names
    assert not [n for n in names if n.startswith("files/nueva.db")]
    assert [d.path for d in report.snapshot.databases if d.discovered] == ["nueva.db"]


def test_report_email_and_cli_say_it_was_found(siip: Path, tmp_path: Path, cli: Any) -> None:
    make_db(siip / CHAT)
    cfg = make_config(siip, tmp_path / "backups", email={"to": ["a@example.test"],
                                                          "sender": "w@example.test"})
    report = backup(cfg)
    for lang, words in (("es", "encontrada automáticamente"), ("en", "found automatically")):
        lang_cfg = make_config(siip, tmp_path / "backups",
                               email={"to": ["a@example.test"], "sender": "w@example.test",
                                      "language": lang})
        msg = build_report_message(lang_cfg, report, "success", host="servidor")
        plain = msg.get_body(("plain",)).get_content()
        line = next(x for x in plain.splitlines() if CHAT in x)
        assert words in line and "source.databases" in line
        assert not [x for x in plain.splitlines() if "siip_database.db:" in x and words in x]
        assert words in msg.get_body(("html",)).get_content()

    config = write_config(tmp_path / "c.toml", siip, tmp_path / "backups2")
    proc = cli("-c", str(config), "once", "--no-upload", "--no-email")
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if CHAT in x)
    assert "found automatically" in line
    proc = cli("-c", str(config), "once", "--no-upload", "--no-email", "--json")
    dbs = json.loads(proc.stdout)["snapshot"]["databases"]
    assert {d["path"]: d["discovered"] for d in dbs} == {"siip_database.db": False, CHAT: True}


def test_reading_a_found_database_changes_no_fingerprint_and_counts_no_change(
        tmp_path: Path) -> None:
    """The backup's own reads must not look like the app's writes, or the service would back
    up again after each backup; the app's writes still count."""
    root = (tmp_path / "app").resolve()
    make_db(root / "chat.db")               # closed: no -wal, no -shm
    make_db(root / "cola")
    app = sqlite3.connect(root / "cola")    # the app holds it open: cola-wal stays
    app.execute("SELECT count(*) FROM mensajes").fetchone()
    cfg = make_config(root, tmp_path / "backups", source={"databases": []})
    f = ChangeFilter.from_config(cfg)
    before = tree_fingerprint(cfg)
    for name in ("chat.db", "cola"):
        copy_database(root / name, tmp_path / f"{name}.copy")
        # the events such a read makes (test_watch.py records them from the real observer)
        for suffix in ("-wal", "-shm"):
            path = str(root / (name + suffix))
            for event in (FileCreatedEvent(path), FileClosedEvent(path)):
                assert not f.counts(event), event
        assert not f.counts(FileClosedEvent(str(root / name)))
    assert (root / "chat.db-shm").exists(), "the read should have left its -shm"
    assert tree_fingerprint(cfg) == before
    app.execute("INSERT INTO mensajes (texto) VALUES ('nuevo')")
    app.commit()
    assert f.counts(FileModifiedEvent(str(root / "cola-wal")))
    assert f.counts(FileModifiedEvent(str(root / "chat.db")))
    assert tree_fingerprint(cfg) != before
    app.close()
    # a file only named like a side file still counts, and so does every side file when
    # discovery is off (the backup then never reads such a database)
    (root / "notas-shm").write_text("x")
    assert f.counts(FileCreatedEvent(str(root / "notas-shm")))
    off = ChangeFilter.from_config(make_config(root, tmp_path / "backups",
                                               source={"databases": [],
                                                       "discover_databases": False}))
    assert off.counts(FileCreatedEvent(str(root / "chat.db-shm")))


def test_a_full_backup_disk_fails_the_run_rather_than_the_found_database(
        siip: Path, tmpfs: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A found database whose copy meets a full backup disk is healthy: the run fails as it
    does for a listed one, instead of keeping the database as raw files with a warning."""
    chat = siip / CHAT
    make_db(chat, rows=0)
    con = sqlite3.connect(chat)
    with con:  # 3 MB that compress to almost nothing: as raw files they would fit
        con.executemany("INSERT INTO mensajes (texto) VALUES (?)",
                        [("hola " * 20,) for _ in range(30_000)])
    con.close()
    local = tmpfs("1m")
    monkeypatch.setattr(take_module, "_check_free_space", lambda folder, needed: None)
    report = run_backup(make_config(siip, local), trigger="manual", email=False)
    assert report.status == "failed", report.warnings
    assert report.errors[0].cause == "disk_full", report.errors[0].message
    assert not [p for p in local.iterdir() if p.name.endswith((".partial", ".tar.zst"))]
