"""Snapshots on real files: consistency under a writer, fidelity, layout, crash safety."""

from __future__ import annotations

import filecmp
import hashlib
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from tests.helpers import (
    clean_env,
    committing_writer,
    make_config,
    make_siip_tree,
    wait_until,
    write_config,
    writer_script,
)
from watcher.archive.read import verify
from watcher.archive.restore import restore
from watcher.backup.run import run_backup
from watcher.config.settings import Config
from watcher.snapshot import take as snapshot_module
from watcher.snapshot.tarstream import CompressedSink, TarProducer

EXCLUDED = ["app/__pycache__", "app/models.pyc", ".git", "venv"]


def archive_members(path: Path) -> list[str]:
    with open(path, "rb") as fh, zstandard.ZstdDecompressor().stream_reader(fh) as zr, \
            tarfile.open(fileobj=zr, mode="r|") as tar:
        return [m.name for m in tar]


def test_restored_tree_equals_source_byte_for_byte(cfg: Config, siip: Path,
                                                   tmp_path: Path) -> None:
    report = run_backup(cfg, trigger="manual", email=False)
    assert report.status == "ok", report.errors
    assert report.exit_code == 0
    target = tmp_path / "restored"
    result = restore(Path(report.snapshot.file), target)
    assert result.files > 0 and result.databases == ["siip_database.db"]

    for dirpath, dirnames, filenames in os.walk(siip):
        rel_dir = Path(dirpath).relative_to(siip)
        dirnames[:] = [d for d in dirnames if (rel_dir / d).as_posix() not in EXCLUDED]
        assert (target / rel_dir).is_dir(), rel_dir
        for name in filenames:
            rel = (rel_dir / name).as_posix()
            if rel in EXCLUDED or rel.startswith("siip_database.db"):
                continue
            src, dst = siip / rel, target / rel
            if src.is_symlink():
                assert dst.is_symlink() and os.readlink(dst) == os.readlink(src)
            else:
                assert filecmp.cmp(src, dst, shallow=False), rel
                assert src.stat().st_mode == dst.stat().st_mode, rel
                assert src.stat().st_mtime_ns == dst.stat().st_mtime_ns, rel
    for rel in EXCLUDED:
        assert not (target / rel).exists(), rel
    assert (target / "vacío.txt").read_bytes() == b""
    assert (target / "static" / "empty dir").is_dir()
    assert (target / "SIIP CON FOTO" / "fotografía ñandú.jpg").read_bytes() == \
        (siip / "SIIP CON FOTO" / "fotografía ñandú.jpg").read_bytes()
    # the database is back at its relative path, whole, with no stale side files
    con = sqlite3.connect(target / "siip_database.db")
    assert con.execute("SELECT count(*) FROM personas").fetchone()[0] == 3000
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()


def test_archive_layout_and_plain_tools(cfg: Config, tmp_path: Path) -> None:
    report = run_backup(cfg, trigger="manual", email=False)
    archive = Path(report.snapshot.file)
    assert archive.name.startswith("siip-") and archive.name.endswith(".tar.zst")
    names = archive_members(archive)
    assert names[-1] == "manifest.json"
    assert "databases/siip_database.db" in names
    assert "files/SIIP CON FOTO/fotografía ñandú.jpg" in names
    assert not [n for n in names if n.endswith(("-wal", "-shm", "-journal"))]
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc") or "/.git" in n]
    assert oct(archive.stat().st_mode & 0o777) == "0o600"
    assert oct(archive.parent.stat().st_mode & 0o777) == "0o700"

    # without siip-watcher: sha256sum -c and tar --zstd -xf
    check = subprocess.run(["sha256sum", "-c", archive.name + ".sha256"], cwd=archive.parent,
                           capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr
    out = tmp_path / "untar"
    out.mkdir()
    untar = subprocess.run(["tar", "--zstd", "-xf", str(archive), "-C", str(out)],
                           capture_output=True, text=True, check=False)
    assert untar.returncode == 0, untar.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["databases"][0]["check"] == "ok"
    for member in manifest["members"]:
        if member["type"] == "file":
            data = (out / member["path"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == member["sha256"], member["path"]


WRITER = writer_script('con.execute("INSERT INTO personas (nombre, datos) VALUES '
                       '(?, randomblob(2000))", (f"escritor {i}",))')


def test_consistent_copy_while_a_writer_process_commits(tmp_path: Path) -> None:
    root = make_siip_tree(tmp_path / "siip", db_rows=20000, photos=40, photo_size=400_000)
    cfg = make_config(root, tmp_path / "backups")
    db_path = root / "siip_database.db"
    with committing_writer(WRITER, db_path):
        probe = sqlite3.connect(db_path, timeout=30)
        committed_before = probe.execute("SELECT max(id) FROM personas").fetchone()[0]
        report = run_backup(cfg, trigger="manual", email=False)
        committed_after = probe.execute("SELECT max(id) FROM personas").fetchone()[0]
        probe.close()
    assert report.status == "ok", report.errors
    assert committed_after > committed_before, "the writer must have kept committing"
    out = tmp_path / "restored"
    restore(Path(report.snapshot.file), out)
    con = sqlite3.connect(out / "siip_database.db")
    ids = {r[0] for r in con.execute("SELECT id FROM personas WHERE id <= ?",
                                     (committed_before,))}
    assert ids == set(range(1, committed_before + 1)), "a row committed before the run is missing"
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    assert report.snapshot.databases[0].check == "ok"


def test_backup_dir_inside_the_tree_is_never_archived(siip: Path) -> None:
    inside = siip / "app" / "chat" / "temp_backups"
    cfg = make_config(siip, inside)
    first = run_backup(cfg, trigger="manual", email=False)
    second = run_backup(cfg, trigger="manual", email=False)
    assert first.status == second.status == "ok"
    names = archive_members(Path(second.snapshot.file))
    assert not [n for n in names if "temp_backups" in n]
    assert "files/app/chat" in [n.rstrip("/") for n in names]
    assert second.snapshot.size < first.snapshot.size * 1.1


def test_missing_database_fails_naming_it(siip: Path, tmp_path: Path) -> None:
    cfg = make_config(siip, tmp_path / "backups", source={"databases": ["no_existe.db"]})
    report = run_backup(cfg, trigger="manual", email=False)
    assert report.status == "failed" and report.exit_code == 1
    assert "no_existe.db" in report.errors[0].message
    assert not list((tmp_path / "backups").glob("*.tar.zst*"))


def test_corrupt_database_fails_and_stores_nothing(siip: Path, tmp_path: Path) -> None:
    bad = siip / "roto.db"
    bad.write_bytes(b"SQLite format 3\0" + os.urandom(8192))
    cfg = make_config(siip, tmp_path / "backups",
                      source={"databases": ["siip_database.db", "roto.db"]})
    report = run_backup(cfg, trigger="manual", email=False)
    assert report.status == "failed"
    assert "roto.db" in report.errors[0].message
    leftovers = [p.name for p in (tmp_path / "backups").iterdir()
                 if not p.name.startswith(("catalog.", "siip-watcher."))]
    assert leftovers == []


def test_kill_9_midway_leaves_nothing_that_looks_complete(tmp_path: Path) -> None:
    root = make_siip_tree(tmp_path / "siip")
    big = root / "static" / "videos"
    big.mkdir()
    for i in range(6):
        (big / f"v{i}.mp4").write_bytes(os.urandom(25_000_000))
    local = tmp_path / "backups"
    config = write_config(tmp_path / "c.toml", root, local, "[compression]\nthreads = 1\n")
    proc = subprocess.Popen([sys.executable, "-m", "watcher", "-c", str(config), "once",
                             "--no-email"], env=clean_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_until(lambda: proc.poll() is not None or any(local.glob("*.tar.zst.partial")),
               "the run to start writing its archive", 60, interval=0.002)
    time.sleep(0.05)                      # some of the archive written, most of it not
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not list(local.glob("*.tar.zst")), "a killed run left a complete-looking archive"
    assert list(local.glob("*.partial")), "the test should have caught the run mid-write"

    again = subprocess.run([sys.executable, "-m", "watcher", "-c", str(config), "once",
                            "--no-email", "--json"],
                           env=clean_env(SIIP_WATCHER_COMPRESSION_THREADS="0"),
                           capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 0, again.stderr
    assert not list(local.glob("*.partial"))
    assert len(list(local.glob("*.tar.zst"))) == 1
    assert "interrupted" in again.stderr


def test_disk_full_is_refused_up_front_and_mid_write(
        siip: Path, tmpfs: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch) -> None:
    local = tmpfs("1m")
    cfg = make_config(siip, local)
    report = run_backup(cfg, trigger="manual", email=False)
    assert report.status == "failed"
    assert "not enough free space" in report.errors[0].message
    assert report.errors[0].cause == "disk_full"
    # with the up-front check out of the way, the disk fills while writing
    monkeypatch.setattr(snapshot_module, "_check_free_space", lambda folder, needed: None)
    (siip / "static" / "grande.bin").write_bytes(os.urandom(2_000_000))
    report = run_backup(cfg, trigger="manual", email=False)
    assert report.status == "failed"
    assert "full" in report.errors[0].message
    assert report.errors[0].cause == "disk_full"
    assert not [p for p in local.iterdir() if p.name.endswith((".partial", ".tar.zst"))]


def test_shrinking_file_is_padded_and_reported_never_silently_short(tmp_path: Path) -> None:
    sink = CompressedSink(tmp_path / "a.tar.zst.partial", level=3, threads=0)
    producer = TarProducer(sink)
    sha, got = producer.add_stream("files/log.txt", io.BytesIO(b"abc"), 10, 0o644, 0, 0, 0)
    producer.end()
    sink.close()
    assert got == 3
    assert sha == hashlib.sha256(b"abc" + b"\0" * 7).hexdigest()
    with open(tmp_path / "a.tar.zst.partial", "rb") as fh, \
            zstandard.ZstdDecompressor().stream_reader(fh) as zr, \
            tarfile.open(fileobj=zr, mode="r|") as tar:
        member = next(iter(tar))
        assert member.size == 10


def test_verify_catches_a_flipped_byte(cfg: Config) -> None:
    report = run_backup(cfg, trigger="manual", email=False)
    archive = Path(report.snapshot.file)
    assert verify(archive).ok
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0x01
    archive.write_bytes(bytes(data))
    result = verify(archive)
    assert not result.ok
    assert any("sha256" in p for p in result.problems)
    # even with a matching sidecar forged, the content checks still catch it
    forged = hashlib.sha256(bytes(data)).hexdigest()
    archive.with_name(archive.name + ".sha256").write_text(f"{forged}  {archive.name}\n")
    result = verify(archive)
    assert not result.ok, "a corrupted archive with a forged sidecar passed verify"


def test_damaged_page_in_a_live_database_fails_the_run(siip: Path, tmp_path: Path) -> None:
    """A page garbled on disk (not a missing file): the check of the copy catches it."""
    db = siip / "dañada.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    with con:
        con.executemany("INSERT INTO t (v) VALUES (?)", [("x" * 200,) for _ in range(5000)])
    con.close()
    page = 4096
    with open(db, "r+b") as fh:  # garble a leaf page of the table's b-tree
        fh.seek(page * 40)
        fh.write(b"\x0d" + os.urandom(page - 1))
    cfg = make_config(siip, tmp_path / "backups",
                      source={"databases": ["siip_database.db", "dañada.db"]})
    report = run_backup(cfg, trigger="manual", email=False)
    assert report.status == "failed", "a damaged database was archived as if it were healthy"
    assert "dañada.db" in report.errors[0].message
    assert "damaged" in report.errors[0].message
    assert not list((tmp_path / "backups").glob("*.tar.zst"))


def test_each_copy_records_its_check_and_verify_runs_the_full_one(cfg: Config) -> None:
    report = run_backup(cfg, trigger="manual", email=False)
    db = report.snapshot.databases[0]
    assert (db.check_pragma, db.check) == ("quick_check", "ok")
    result = verify(Path(report.snapshot.file))
    assert result.ok and result.databases[0]["check"] == "ok"


def test_restore_as_root_gives_files_back_to_their_owners(cfg: Config, siip: Path,
                                                          tmp_path: Path) -> None:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("only root can give files to other users")
    photo = siip / "SIIP CON FOTO" / "fotografía ñandú.jpg"
    os.chown(photo, 4321, 4322)                    # an id with no name on this machine
    os.chown(siip / "siip_database.db", 65534, 65534)   # the app's user, by name (nobody)
    os.chown(siip / "static", 4321, 4322)
    report = run_backup(cfg, trigger="manual", email=False)
    target = tmp_path / "restored"
    restore(Path(report.snapshot.file), target)
    owner = lambda p: (p.lstat().st_uid, p.lstat().st_gid)  # noqa: E731
    assert owner(target / "SIIP CON FOTO" / "fotografía ñandú.jpg") == (4321, 4322)
    assert owner(target / "siip_database.db") == (65534, 65534)
    assert owner(target / "static") == (4321, 4322)
    assert owner(target / "app" / "views.py") == (0, 0)


def test_a_small_project_fits_a_small_disk(cfg: Config, small_disk: Path) -> None:
    """The free-space margin grows with the snapshot: a fixed 64 MB refused a project of a
    few hundred KB on a disk with 8 MB free."""
    small = cfg.__class__(**{**cfg.__dict__, "local": cfg.local.__class__(
        **{**cfg.local.__dict__, "dir": small_disk / "backups"})})
    report = run_backup(small, trigger="manual", email=False)
    assert report.status == "ok", report.errors
    assert Path(report.snapshot.file).parent == small_disk / "backups"
