"""Delta snapshots end to end: what a delta stores, that every snapshot restores complete,
databases that change, shrink, grow or appear, a missing base, a kill in the middle, the
manual tar + python3 path of the README, and `full_every_days = 0` as before deltas."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shlex
import signal
import sqlite3
import subprocess
import sys
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import zstandard

from tests.helpers import (
    FULLS_ONLY,
    KILL_AFTER,
    REPO,
    clean_env,
    committing_writer,
    make_config,
    not_private,
    write_config,
    writer_script,
)
from watcher.actions.list import list_snapshots
from watcher.actions.restore import restore_snapshot
from watcher.actions.verify import verify_snapshots
from watcher.archive.read import integrity_check
from watcher.backup.report import RunReport
from watcher.backup.run import run_backup, summary_line
from watcher.config.settings import Config, RetentionConfig
from watcher.notify.message import build_report_message
from watcher.snapshot.base_state import STATE_DIR
from watcher.snapshot.plan import BaseFull, delta_too_big, plan_snapshot

WRITER = writer_script(
    'con.execute("UPDATE personas SET nombre = ? WHERE id = ?", (f"cambio {i}", i % 3000 + 1))')


def backup(cfg: Config, **kw: Any) -> RunReport:
    report = run_backup(cfg, trigger="manual", email=False, **kw)
    assert report.snapshot is not None and report.status in ("ok", "warning"), report.errors
    return report


def members(archive: str | Path) -> list[str]:
    """The member names of an archive, in order (read as plain tar would)."""
    with open(archive, "rb") as fh, zstandard.ZstdDecompressor().stream_reader(
            fh, read_across_frames=True) as stream, tarfile.open(fileobj=stream,
                                                                 mode="r|") as tar:
        return [m.name for m in tar]


def manifest_of(archive: str | Path) -> dict[str, Any]:
    out = subprocess.run(["tar", "--zstd", "-xOf", str(archive), "manifest.json"],
                         capture_output=True, check=True).stdout
    return json.loads(out)


def tree(root: Path) -> dict[str, tuple[str, str]]:
    """Each entry under ``root`` but the databases: (type, content or link target)."""
    found = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if "siip_database.db" in rel or rel.split("/")[0] in (".git", "venv") or \
                "__pycache__" in rel or rel.endswith(".pyc") or rel.endswith(".db"):
            continue
        if path.is_symlink():
            found[rel] = ("link", os.readlink(path))
        elif path.is_dir():
            found[rel] = ("dir", "")
        else:
            found[rel] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
    return found


def restored(cfg: Config, sid: str, target: Path) -> Path:
    restore_snapshot(cfg, "local", sid, target)
    return target


def db_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- the pure decision --------------------------------------------------------------------


NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def full(days_old: float, *, ready: bool = True) -> BaseFull:
    return BaseFull(id="siip-20261120T000000Z", created_at=NOW - timedelta(days=days_old),
                    size=1000, ready=ready)


@pytest.mark.parametrize(("every", "forced", "latest", "kind"), [
    (0, False, full(1), "full"),             # deltas off: as before
    (7, True, full(1), "full"),              # once --full
    (7, False, None, "full"),                # the first snapshot
    (7, False, full(1, ready=False), "full"),  # the base's page digests are gone
    (7, False, full(7), "full"),             # the base is full_every_days old
    (7, False, full(6.9), "delta"),
    (1, False, full(0.5), "delta"),
])
def test_plan(every: int, forced: bool, latest: BaseFull | None, kind: str) -> None:
    plan = plan_snapshot(full_every_days=every, forced=forced, latest_full=latest, now=NOW)
    assert plan.kind == kind and plan.reason
    assert plan.base is (latest if kind == "delta" else None)


def test_a_delta_over_the_ratio_is_too_big() -> None:
    assert not delta_too_big(500, 1000, 0.5)
    assert delta_too_big(501, 1000, 0.5)


# --- a working day, end to end -------------------------------------------------------------


def a_working_day(siip: Path) -> None:
    """An edit, a deletion, a rename, a new photo, a file replaced by a link, a changed
    mode, and a database the app just created."""
    uploads = siip / "static" / "uploads"
    (siip / "app" / "views.py").write_text("def index():\n    return 'adiós'\n")
    (uploads / "foto 0.jpg").unlink()
    (uploads / "foto 1.jpg").rename(uploads / "foto renombrada.jpg")
    (uploads / "nueva.jpg").write_bytes(os.urandom(30_000))
    (siip / "vacío.txt").unlink()
    os.symlink("app/views.py", siip / "vacío.txt")
    os.chmod(uploads / "foto 2.jpg", 0o600)
    chat = sqlite3.connect(siip / "chat.db")
    chat.execute("CREATE TABLE m (t TEXT)")
    chat.execute("INSERT INTO m VALUES ('hola')")
    chat.commit()
    chat.close()


def test_a_day_of_changes_is_a_delta_that_restores_the_whole_project(
        cfg: Config, siip: Path, tmp_path: Path) -> None:
    first = backup(cfg)
    assert first.snapshot.kind == "full" and first.snapshot.base is None
    assert (cfg.local.dir / STATE_DIR / first.snapshot.id).is_dir()

    a_working_day(siip)
    with committing_writer(WRITER, siip / "siip_database.db"):     # the app keeps writing
        second = backup(cfg)

    snap = second.snapshot
    assert (snap.kind, snap.base) == ("delta", first.snapshot.id)
    assert f"delta of {first.snapshot.id}" in summary_line(second)
    assert Path(snap.file).name == f"{snap.id}.delta.tar.zst"
    stored = members(snap.file)
    assert stored[0] == "rebuild.py" and stored[-1] == "manifest.json"
    files = {m for m in stored if m.startswith("files/") and not m.endswith("/")}
    # only what changed is in the archive: never an unchanged photo
    assert "files/static/uploads/foto 3.jpg" not in files
    assert {"files/app/views.py", "files/static/uploads/nueva.jpg",
            "files/static/uploads/foto renombrada.jpg", "files/vacío.txt",
            "files/static/uploads/foto 2.jpg"} <= files
    assert "databases/siip_database.db.pages" in stored
    assert "databases/chat.db" in stored                    # new since the base: whole

    # the manifest describes the whole snapshot, with the sha256 of every file
    manifest = manifest_of(snap.file)
    every = {m["path"]: m for m in [*manifest["members"], *manifest["referenced"]]}
    for rel, (kind, content) in tree(siip).items():
        entry = every["files/" + rel]
        if kind == "file":
            assert entry["sha256"] == content, rel
    assert "files/static/uploads/foto 0.jpg" not in every
    [db] = [d for d in manifest["databases"] if d["path"] == "siip_database.db"]
    assert 0 < db["changed_pages"] < db["pages"]

    target = restored(cfg, snap.id, tmp_path / "restored")
    assert tree(target) == tree(siip)
    assert db_sha(target / "siip_database.db") == db["sha256"]
    assert integrity_check(target / "siip_database.db") == "ok"
    assert integrity_check(target / "chat.db") == "ok"
    [result] = list(verify_snapshots(cfg, "local", snap.id))
    assert result.result.ok, result.result.problems

    # and back: the link becomes a file again, in a second delta against the same full
    (siip / "vacío.txt").unlink()
    (siip / "vacío.txt").write_text("otra vez un archivo")
    third = backup(cfg)
    assert (third.snapshot.kind, third.snapshot.base) == ("delta", first.snapshot.id)
    again = restored(cfg, third.snapshot.id, tmp_path / "again")
    assert tree(again) == tree(siip)
    # the full itself still restores as it was
    base = restored(cfg, first.snapshot.id, tmp_path / "base")
    assert (base / "static" / "uploads" / "foto 0.jpg").is_file()
    assert not (base / "vacío.txt").is_symlink()

    listed = {r.id: (r.kind, r.base) for r in list_snapshots(cfg, "local")}
    assert listed == {first.snapshot.id: ("full", None),
                      snap.id: ("delta", first.snapshot.id),
                      third.snapshot.id: ("delta", first.snapshot.id)}
    # the email says what it is, in both languages
    for lang, words in (("es", "copia diferencial"), ("en", "delta: only the changes")):
        text = build_report_message(dataclasses.replace(
            cfg, email=dataclasses.replace(cfg.email, language=lang, sender="a@b.c",
                                           to=["d@e.f"])), third, "success").get_body(
            ("plain",)).get_content()
        assert words in text and first.snapshot.id in text


def test_a_database_that_grows_and_shrinks(cfg: Config, siip: Path, tmp_path: Path) -> None:
    base = backup(cfg).snapshot
    db = sqlite3.connect(siip / "siip_database.db")
    with db:
        db.executemany("INSERT INTO personas (nombre, datos) VALUES (?, ?)",
                       [(f"nueva {i}", os.urandom(100)) for i in range(1500)])
    grown = backup(cfg).snapshot
    db.execute("DELETE FROM personas WHERE id > 500")
    db.commit()
    db.execute("VACUUM")
    db.close()
    shrunk = backup(cfg).snapshot   # the canaries call this data loss; it is stored all the same
    assert shrunk.databases[0].pages < base.databases[0].pages < grown.databases[0].pages
    for snap, rows in ((grown, 4500), (shrunk, 500)):
        assert snap.kind == "delta"
        [db_result] = snap.databases
        target = restored(cfg, snap.id, tmp_path / snap.id)
        assert db_sha(target / "siip_database.db") == db_result.sha256
        con = sqlite3.connect(target / "siip_database.db")
        assert con.execute("SELECT count(*) FROM personas").fetchone() == (rows,)
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        con.close()


def test_forced_full_too_big_delta_and_missing_base(cfg: Config, siip: Path,
                                                     tmp_path: Path) -> None:
    first = backup(cfg).snapshot
    forced = backup(cfg, full=True).snapshot
    assert forced.kind == "full" and Path(forced.file).name == f"{forced.id}.tar.zst"
    # a delta over max_delta_ratio of its full is written as a full instead
    (siip / "static" / "uploads" / "grande.jpg").write_bytes(os.urandom(600_000))
    tiny = dataclasses.replace(cfg, snapshot=dataclasses.replace(cfg.snapshot,
                                                                 max_delta_ratio=0.01))
    assert backup(tiny).snapshot.kind == "full"
    delta = backup(cfg).snapshot
    assert delta.kind == "delta"

    # its base gone: verify names it, restore refuses and writes nothing, the next is a full
    Path(delta.file).with_name(f"{delta.base}.tar.zst").unlink()
    [outcome] = list(verify_snapshots(cfg, "local", delta.id))
    assert not outcome.result.ok and delta.base in outcome.result.problems[0]
    assert "missing" in outcome.result.problems[0]
    with pytest.raises(Exception, match="base full is missing"):
        restore_snapshot(cfg, "local", delta.id, tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists() or not any((tmp_path / "nothing").iterdir())
    assert backup(cfg).snapshot.kind == "full"
    assert first.kind == "full"


def test_page_digests_of_another_kind_or_gone_make_a_full(cfg: Config) -> None:
    first = backup(cfg).snapshot
    state = cfg.local.dir / STATE_DIR / first.id / "databases.json"
    doc = json.loads(state.read_text())
    state.write_text(json.dumps({**doc, "digest": "blake2b/16"}))  # another version's
    second = backup(cfg).snapshot
    assert second.kind == "full"
    assert [p.name for p in (cfg.local.dir / STATE_DIR).iterdir()] == [second.id]
    (cfg.local.dir / STATE_DIR / second.id / "databases.json").unlink()
    assert backup(cfg).snapshot.kind == "full"


def test_a_damaged_base_is_named_by_verify(cfg: Config, siip: Path) -> None:
    first = backup(cfg).snapshot
    (siip / "app" / "views.py").write_text("cambio\n")
    delta = backup(cfg).snapshot
    archive = Path(first.file)
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    [outcome] = list(verify_snapshots(cfg, "local", delta.id))
    assert not outcome.result.ok
    assert any(first.id in p and "damaged" in p for p in outcome.result.problems)


def test_prune_keep_last_1_keeps_the_base(cfg: Config, siip: Path) -> None:
    first = backup(cfg).snapshot
    backup(cfg)
    keep_one = dataclasses.replace(cfg, retention=RetentionConfig(
        keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0))
    last = backup(keep_one)
    assert sorted(p.name for p in cfg.local.dir.glob("*.tar.zst")) == sorted(
        [f"{first.id}.tar.zst", f"{last.snapshot.id}.delta.tar.zst"])


# --- full_every_days = 0 -------------------------------------------------------------------


#: the manifest's keys before deltas: a full's keep exactly these
FULL_KEYS = ["format", "tool", "version", "name", "host", "source_root", "members", "id",
             "created_at", "databases", "totals", "warnings"]
FULL_DB_KEYS = ["path", "member", "pages", "page_size", "size", "check", "check_pragma",
                "discovered"]


def tar_members(archive: str | Path) -> dict[str, tuple[Any, ...]]:
    """Each member's tar header fields and its content's sha256 (the manifest's content
    without its id and time). Members are compared by name: where a database lands between
    the tree's members depends on when its copy is ready, in every run before deltas too."""
    found: dict[str, tuple[Any, ...]] = {}
    with open(archive, "rb") as fh, zstandard.ZstdDecompressor().stream_reader(
            fh, read_across_frames=True) as stream, tarfile.open(fileobj=stream,
                                                                 mode="r|") as tar:
        for m in tar:
            data = tar.extractfile(m).read() if m.isreg() else b""
            if m.name == "manifest.json":  # its time is the snapshot's, its order the run's
                doc = json.loads(data)
                doc.pop("id"), doc.pop("created_at")
                doc["members"].sort(key=lambda e: e["path"])
                found[m.name] = (m.mode, doc)
                continue
            found[m.name] = (m.type, m.mode, m.uid, m.gid, m.uname, m.gname, m.size, m.mtime,
                             m.linkname, m.pax_headers, hashlib.sha256(data).hexdigest())
    return found


def test_full_every_days_0_writes_fulls_byte_for_byte_as_before(
        cfg: Config, siip: Path, tmp_path: Path) -> None:
    off = dataclasses.replace(cfg, snapshot=FULLS_ONLY)
    one, two = backup(off).snapshot, backup(off).snapshot
    assert [one.kind, two.kind] == ["full", "full"]
    assert sorted(p.name for p in cfg.local.dir.glob("*.tar.zst")) == sorted(
        [f"{one.id}.tar.zst", f"{two.id}.tar.zst"])
    assert not (cfg.local.dir / STATE_DIR).exists()        # nothing kept for deltas
    manifest = manifest_of(two.file)
    assert list(manifest) == FULL_KEYS
    assert list(manifest["databases"][0]) == FULL_DB_KEYS

    # a full taken with deltas on holds the same members, header and content byte for byte,
    # and the same manifest but for its id and time: nothing changed in between
    on = make_config(siip, tmp_path / "on")
    three = backup(on).snapshot
    assert three.kind == "full"
    assert tar_members(two.file) == tar_members(three.file)


# --- a kill in the middle, and the manual path -----------------------------------------------


KILLER = KILL_AFTER + """
from watcher.backup.run import run_backup, summary_line
from watcher.config.settings import load
cfg, limit = load(Path(sys.argv[1])), int(sys.argv[2])
run_backup(cfg, trigger="manual", email=False, progress=progress)
"""


def test_kill_9_during_a_delta_leaves_only_partial_files(siip: Path, tmp_path: Path) -> None:
    local = tmp_path / "backups"
    config = write_config(tmp_path / "c.toml", siip, local, "[compression]\nthreads = 1\n")
    for i in range(10):  # a base big enough that the day's photos stay a delta
        (siip / "static" / "uploads" / f"antes {i}.jpg").write_bytes(os.urandom(1_000_000))
    first = subprocess.run([sys.executable, "-m", "watcher", "-c", str(config), "once",
                            "--no-email", "--json"], env=clean_env(), capture_output=True,
                           text=True, timeout=120, check=True)
    base = json.loads(first.stdout)["snapshot"]["id"]
    for i in range(8):
        (siip / "static" / "uploads" / f"hoy {i}.jpg").write_bytes(os.urandom(500_000))
    proc = subprocess.run([sys.executable, "-c", KILLER, str(config), str(2_000_000)],
                          env=clean_env(), cwd=REPO, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not [*local.glob("*.delta.tar.zst"), *local.glob("*.sha256.partial"),
                *local.glob("*.delta.tar.zst.sha256")], "a killed delta looks complete"
    assert list(local.glob("*.delta.tar.zst.partial")), "the kill came before the delta"
    assert [p.name for p in local.glob("*.tar.zst")] == [f"{base}.tar.zst"]
    assert [p.name for p in (local / STATE_DIR).iterdir()] == [base]

    again = subprocess.run([sys.executable, "-m", "watcher", "-c", str(config), "once",
                            "--no-email", "--json"], env=clean_env(), capture_output=True,
                           text=True, timeout=120, check=False)
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)["snapshot"]
    assert (report["kind"], report["base"]) == ("delta", base)
    assert not list(local.glob("*.partial"))


def readme_rebuild_steps() -> list[str]:
    """The commands of README.md's "Rebuilding a delta without siip-watcher", as written."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("### Rebuilding a delta without siip-watcher"):]
    block = section[section.index("```sh\n") + len("```sh\n"):section.index("```\n", 6)]
    return [line.split("  #")[0].strip() for line in block.splitlines()
            if line.strip() and not line.startswith("#")]


README_BASE, README_DELTA = "siip-20261127T181500Z", "siip-20261128T093000Z"


def test_the_readme_steps_rebuild_a_delta_with_tar_and_python3_alone(
        cfg: Config, siip: Path, tmp_path: Path) -> None:
    first = backup(cfg).snapshot
    (siip / "app" / "views.py").write_text("editado\n")
    (siip / "static" / "uploads" / "foto 0.jpg").unlink()
    db = sqlite3.connect(siip / "siip_database.db")
    with db:
        db.execute("UPDATE personas SET nombre = 'editada' WHERE id = 7")
    db.close()
    delta = backup(cfg).snapshot
    work = tmp_path / "manual"
    work.mkdir()
    # the archives as an admin copies them from the backup folder or a NAS
    for path in (Path(first.file), Path(delta.file)):
        for f in (path, path.with_name(path.name + ".sha256")):
            (work / f.name).write_bytes(f.read_bytes())

    steps = readme_rebuild_steps()
    assert any(s.startswith("tar --zstd -xf") for s in steps)
    assert any(s.startswith("python3 ") for s in steps)
    env = {"PATH": os.environ["PATH"], "LC_ALL": "C.UTF-8"}  # no PYTHONPATH: no siip-watcher
    for step in steps:
        command = step.replace(README_BASE, first.id).replace(README_DELTA, delta.id)
        done = subprocess.run(["bash", "-c", command], cwd=work, env=env, capture_output=True,
                              text=True, timeout=120, check=False)
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        if "base" in command and "manifest.json" in command:
            assert done.stdout.strip() == first.id  # the step naming the base names it

    out = work / "rebuilt"
    assert tree(out / "files") == tree(siip)
    [db_record] = delta.databases
    assert db_sha(out / "databases" / "siip_database.db") == db_record.sha256
    con = sqlite3.connect(out / "databases" / "siip_database.db")
    assert con.execute("SELECT nombre FROM personas WHERE id = 7").fetchone() == ("editada",)
    con.close()
    assert shlex.split(steps[-1])[0] == "python3"


def test_every_file_a_run_writes_in_the_backup_dir_is_private_whatever_the_umask(
        cfg: Config, siip: Path) -> None:
    """The work files hold the database (its copy, a delta's changed pages) or the list of
    the project's files, as the archives do: 0600 while they exist, not the umask's 0644."""
    local = cfg.local.dir
    seen: dict[str, int] = {}

    def look(_: int) -> None:
        for path in local.rglob("*"):
            try:
                st = path.lstat()
            except FileNotFoundError:
                continue  # a work file gone between the listing and its stat
            seen[path.relative_to(local).as_posix()] = st.st_mode

    old = os.umask(0o022)
    try:
        backup(cfg, progress=look)
        with sqlite3.connect(siip / "siip_database.db") as db:
            db.execute("UPDATE personas SET nombre = 'editada' WHERE id = 7")
        db.close()
        (siip / "app" / "views.py").write_text("# editado\n")
        assert backup(cfg, progress=look).snapshot.kind == "delta"
    finally:
        os.umask(old)
    look(0)  # and what stays once the runs are done

    def named(suffix: str) -> list[str]:
        return [name for name in seen if name.endswith(suffix)]

    # the run's work files were there to be looked at: the test sees what it claims to
    for work in (".db0.partial", ".db0.partial.pages", ".manifest.partial", ".later.partial",
                 "db0.digests", "last-manifest.json", "manifest.json", "catalog.sqlite3"):
        assert named(work), f"no {work} seen during the runs: {sorted(seen)}"
    assert not not_private(seen)
