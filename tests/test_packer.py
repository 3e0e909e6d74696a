"""The tree packer (watcher/snapshot/packer.py): a real process packing real files, the part
it writes as tar members in zstd frames, the records it writes, and what it leaves when the
snapshot behind it dies. Then whole snapshots with every small file packed there."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import zstandard

from tests.helpers import (
    assert_restored,
    clean_env,
    make_config,
    make_siip_tree,
    wait_until,
    write_config,
)
from watcher.archive.manifest import member_entry
from watcher.backup.run import run_backup
from watcher.snapshot import packer as packer_module
from watcher.snapshot import take as take_module
from watcher.snapshot.member import MemberChanged
from watcher.snapshot.packer import (
    CHANGED,
    END,
    EXIT_ABANDONED,
    EXIT_OTHER_VERSION,
    MEMBER,
    PROTOCOL,
    TOO_BIG,
    UNREADABLE,
    Packer,
    job_record,
    rebuild_error,
    records,
)
from watcher.snapshot.readahead import SMALL_FILE, Outcome, SmallRead
from watcher.snapshot.take import PACK_AFTER, take_snapshot
from watcher.snapshot.tree import TreeFilter, walk
from watcher.state.store import LocalStore


def start(tmp_path: Path, workers: int = 1) -> Packer:
    return Packer(tmp_path / "jobs.partial", tmp_path / "part.partial",
                  tmp_path / "records.partial", level=3, workers=workers)


def wait(proc: subprocess.Popen[bytes]) -> None:
    proc.wait(timeout=60)


def part_members(part: Path) -> dict[str, tuple[tarfile.TarInfo, bytes]]:
    """The part as a tar (it lacks tar's end blocks, which tarfile does not need)."""
    raw = zstandard.ZstdDecompressor().stream_reader(part.read_bytes(),
                                                     read_across_frames=True).read()
    out: dict[str, tuple[tarfile.TarInfo, bytes]] = {}
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
        for info in tar:
            fh = tar.extractfile(info)
            assert fh is not None
            out[info.name] = (info, fh.read())
    return out


@pytest.mark.parametrize("workers", [0, 1])
def test_the_part_holds_each_file_as_the_snapshot_would_and_records_say_so(
        tmp_path: Path, workers: int) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    names = ["uno.py", "plantilla con espacios.html", "año/ñandú.txt", "vacío.txt",
             "x" * 120 + ".txt", os.fsdecode(b"latin-\xe9.txt")]
    for i, name in enumerate(names):
        path = tree / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"" if "vac" in name else (f"linea {i}\n" * (i * 300 + 1)).encode())
    path = tree / "uno.py"
    os.chmod(path, 0o750)
    packer = start(tmp_path, workers)
    for name in names:
        path = tree / name
        packer.add(str(path), "files/" + name, path.lstat())
    packed = packer.finish(wait)
    assert (packed.members, packed.bytes) == (len(names),
                                               sum((tree / n).stat().st_size for n in names))
    got = part_members(packed.part)
    assert sorted(got) == sorted("files/" + n for n in names)
    lines = list(records(packed.records))
    assert [tag for tag, _ in lines] == [MEMBER] * len(names)
    for (_, value), name in zip(lines, names, strict=True):
        path = tree / name
        st = path.lstat()
        data = path.read_bytes()
        # the same record the snapshot's own process writes
        assert json.loads(value) == member_entry(
            "files/" + name, "file", len(data), st.st_mode, st.st_mtime_ns,
            sha256=hashlib.sha256(data).hexdigest())
        info, content = got["files/" + name]
        assert content == data
        assert (info.mode, info.mtime) == (st.st_mode & 0o7777, int(st.st_mtime))
    # whole tar members: the tar stream continues right after the part
    raw = zstandard.ZstdDecompressor().stream_reader(packed.part.read_bytes(),
                                                     read_across_frames=True).read()
    assert len(raw) == packed.tar_bytes and len(raw) % 512 == 0
    packer.abort()  # after finish: only deletes its files
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def test_vanished_swapped_and_grown_files_are_recorded_not_packed(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("se-va.txt", "cambia.txt", "crece.log", "queda.txt"):
        (tree / name).write_text("contenido\n")
    secret = tmp_path / "secreto.txt"
    secret.write_text("no es del árbol\n")
    walked = {name: (tree / name).lstat() for name in ("se-va.txt", "cambia.txt", "crece.log",
                                                       "queda.txt")}
    (tree / "se-va.txt").unlink()
    (tree / "cambia.txt").unlink()
    (tree / "cambia.txt").symlink_to(secret)
    with open(tree / "crece.log", "ab") as fh:  # past what is read whole: streamed instead
        fh.write(os.urandom(SMALL_FILE + 1))
    packer = start(tmp_path)
    for name, st in walked.items():
        packer.add(str(tree / name), "files/" + name, st)
    packed = packer.finish(wait)
    assert packed.members == 1
    assert list(part_members(packed.part)) == ["files/queda.txt"]
    lines = list(records(packed.records))
    assert [tag for tag, _ in lines] == [UNREADABLE, UNREADABLE, TOO_BIG, MEMBER]
    gone = rebuild_error(json.loads(lines[0][1]))
    assert isinstance(gone, FileNotFoundError) and gone.filename == str(tree / "se-va.txt")
    swapped = rebuild_error(json.loads(lines[1][1]))
    assert isinstance(swapped, MemberChanged) and swapped.now == "a link"
    big = json.loads(lines[2][1])
    assert (big["name"], big["size"], big["ino"]) == ("files/crece.log", walked[
        "crece.log"].st_size, walked["crece.log"].st_ino)
    assert b"no es del" not in packed.part.read_bytes()
    packer.abort()


def test_a_file_that_changes_while_read_is_packed_with_a_warning(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the packer writes for a file whose fstat after the read differs from before
    (the app wrote it meanwhile): the member, and a record the snapshot turns into a
    warning and a manifest entry that says so."""
    path = tmp_path / "vivo.txt"
    path.write_text("antes\n")
    real = packer_module.read_member

    def read_while_written(p: str, walked: os.stat_result) -> Outcome:
        outcome = real(p, walked)
        assert outcome.read is not None
        later = os.stat_result((*outcome.read.after[:8], outcome.read.after.st_mtime + 1,
                                outcome.read.after.st_ctime))
        return Outcome(SmallRead(outcome.read.data, outcome.read.before, later,
                                 outcome.read.sha256))

    monkeypatch.setattr(packer_module, "read_member", read_while_written)
    part = io.BytesIO()
    out = io.StringIO()
    assert packer_module.pack(iter([(str(path), "files/vivo.txt", path.lstat()), None]),
                              part, out, level=3, workers=0)
    first, totals = out.getvalue().splitlines()
    tag, _, value = first.partition("\t")
    assert tag == CHANGED
    fields = json.loads(value)
    assert fields["path"] == str(path)
    entry = json.loads(fields["entry"])
    assert entry["warning"] == "changed while being read"
    assert entry["sha256"] == hashlib.sha256(b"antes\n").hexdigest()
    assert json.loads(totals.partition("\t")[2])["members"] == 1


def spawn(tmp_path: Path, listed: bytes) -> subprocess.Popen[bytes]:
    """A packer started by hand on a list holding ``listed`` (``jobs.partial``), writing
    ``part.partial`` and ``records.partial`` in ``tmp_path``."""
    jobs = tmp_path / "jobs.partial"
    jobs.write_bytes(listed)
    return subprocess.Popen(  # noqa: S603 - our interpreter, our module
        [sys.executable, "-m", "watcher.snapshot.packer", str(PROTOCOL), str(jobs),
         str(tmp_path / "part.partial"), str(tmp_path / "records.partial"), "3", "0"],
        stdin=subprocess.PIPE, cwd=Path(__file__).resolve().parent.parent)


def test_a_list_without_its_end_mark_leaves_nothing(tmp_path: Path) -> None:
    """The snapshot died (kill -9): the notice pipe closes without the end mark."""
    path = tmp_path / "a.txt"
    path.write_text("hola\n")
    proc = spawn(tmp_path, job_record(str(path), "files/a.txt", path.lstat()))
    assert proc.stdin is not None
    proc.stdin.write(b"+")
    proc.stdin.close()
    assert proc.wait(timeout=60) == EXIT_ABANDONED
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "jobs.partial"]


def test_the_end_mark_may_come_in_a_later_piece_of_the_list(tmp_path: Path) -> None:
    """The list grows while the packer reads it; a record split across two appends is
    read whole, and the packer waits for the snapshot's notice instead of ending early."""
    path = tmp_path / "a.txt"
    path.write_text("hola\n")
    record = job_record(str(path), "files/a.txt", path.lstat())
    proc = spawn(tmp_path, record[:7])
    jobs = tmp_path / "jobs.partial"
    assert proc.stdin is not None
    proc.stdin.write(b"+")
    proc.stdin.flush()
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(timeout=0.5)  # a half record and no end mark: it waits
    with open(jobs, "ab") as fh:
        fh.write(record[7:] + END)
    proc.stdin.write(b"+")
    proc.stdin.close()
    assert proc.wait(timeout=60) == 0
    (tag, _), = records(tmp_path / "records.partial")
    assert tag == MEMBER


def test_a_full_disk_under_the_packer_reads_as_one(tmp_path: Path,
                                                   tmpfs: Callable[[str], Path]) -> None:
    small = tmpfs("64k")
    tree = tmp_path / "tree"
    tree.mkdir()
    packer = Packer(small / "jobs.partial", small / "part.partial", small / "records.partial",
                    level=1, workers=0)
    for i in range(40):  # random bytes: ~160 KB that no level shrinks
        path = tree / f"{i}.bin"
        path.write_bytes(os.urandom(4000))
        packer.add(str(path), f"files/{i}.bin", path.lstat())
    with pytest.raises(OSError) as caught:
        packer.finish(wait)
    assert caught.value.errno == 28  # ENOSPC, as the snapshot's own writes would raise it
    packer.abort()
    assert not [p for p in small.iterdir() if p.name != "lost+found"]


def test_a_packer_of_another_version_refuses_and_the_snapshot_says_restart(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The package on disk was upgraded under a running service: the packer it starts
    speaks another protocol. It writes nothing, and the error says what to do."""
    path = tmp_path / "a.txt"
    path.write_text("hola\n")
    monkeypatch.setattr(packer_module, "PROTOCOL", PROTOCOL + 1)  # this side only
    packer = start(tmp_path)
    packer.add(str(path), "files/a.txt", path.lstat())
    with pytest.raises(packer_module.PackerFailed) as caught:
        packer.finish(wait)
    assert f"status {EXIT_OTHER_VERSION}" in str(caught.value)
    assert "restart the service" in caught.value.hint
    packer.abort()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def test_a_packer_that_says_much_on_stderr_is_not_stopped_by_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Python at PYTHONVERBOSE=2 writes far more than a pipe holds while it imports; nobody
    reads the packer's stderr before it ends, so it must not be a pipe."""
    monkeypatch.setenv("PYTHONVERBOSE", "2")
    path = tmp_path / "a.txt"
    path.write_text("hola\n")
    packer = start(tmp_path)
    packer.add(str(path), "files/a.txt", path.lstat())
    packed = packer.finish(wait)  # wait() gives up after 60 s
    assert packed.members == 1
    packer.abort()


def test_the_packer_inherits_no_secret_from_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIIP_WATCHER_SMTP_PASSWORD", "s3creto-smtp")
    monkeypatch.setenv("OFICINA_TOKEN", "s3creto-web")
    monkeypatch.setenv("LANG", "C.UTF-8")
    packer = start(tmp_path)
    packer2 = Packer(tmp_path / "j2.partial", tmp_path / "p2.partial", tmp_path / "r2.partial",
                     level=3, workers=0, hidden=("OFICINA_TOKEN",))
    try:
        plain = Path(f"/proc/{packer._proc.pid}/environ").read_bytes()  # noqa: SLF001
        hiding = Path(f"/proc/{packer2._proc.pid}/environ").read_bytes()  # noqa: SLF001
        assert b"s3creto-smtp" not in plain and b"OFICINA_TOKEN=s3creto-web" in plain
        assert b"s3creto" not in hiding
        for environ in (plain, hiding):  # the rest is passed on (file name encoding)
            assert b"LANG=C.UTF-8" in environ
    finally:
        packer.abort()
        packer2.abort()


# --- whole snapshots with the packer doing every small file -------------------------------


@pytest.fixture
def pack_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(take_module, "PACK_AFTER", 0)


def test_a_packed_snapshot_restores_the_tree_and_verifies(
        siip: Path, tmp_path: Path, pack_everything: None) -> None:
    add_code(siip)
    cfg = make_config(siip, tmp_path / "backups")
    report = run_backup(cfg, trigger="manual", email=False)
    assert report.status == "ok", report.errors
    assert report.snapshot is not None
    names = tarfile_names(Path(report.snapshot.file))
    # the folders still come last, after the packer's members (tar -x sets their mtime)
    first_dir = min(i for i, n in enumerate(names) if n.endswith("/"))
    assert all(n.endswith("/") for n in names[first_dir:-1]) and names[-1] == "manifest.json"
    out = subprocess.run([sys.executable, "-m", "watcher", "-c", str(write_cfg(cfg, tmp_path)),
                          "verify", report.snapshot.id], capture_output=True, text=True,
                         check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert_untarred(Path(report.snapshot.file), cfg, tmp_path / "restored")


def assert_untarred(archive: Path, cfg: Any, target: Path) -> None:
    """Plain ``tar --zstd -xf`` of ``archive`` gives every kept file, and the run left no
    work file behind."""
    target.mkdir()
    subprocess.run(["tar", "--zstd", "-xf", str(archive), "-C", str(target)], check=True)
    assert_restored_files(target / "files", cfg)
    assert not [p for p in cfg.local.dir.iterdir() if p.name.endswith(".partial")]


def add_code(siip: Path) -> None:
    """Sixty code files in nested folders, some with names tar's ustar field cannot hold."""
    for i in range(60):
        folder = siip / "app" / f"módulo_{i % 7}" / ("sub" * (i % 3))
        folder.mkdir(parents=True, exist_ok=True)
        name = f"vista_{i}.py" if i % 5 else f"{'nombre_largo_' * 9}{i}.py"
        (folder / name).write_text(f"def vista_{i}():\n    return {i!r}\n" * (i + 1))


def tarfile_names(archive: Path) -> list[str]:
    with open(archive, "rb") as fh, \
            zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True) as zr, \
            tarfile.open(fileobj=zr, mode="r|") as tar:
        return [info.name + ("/" if info.isdir() else "") for info in tar]


def write_cfg(cfg: Any, tmp_path: Path) -> Path:
    return write_config(tmp_path / "c.toml", cfg.source.root, cfg.local.dir)


def assert_restored_files(files: Path, cfg: Any, ignore: tuple[str, ...] = ()) -> None:
    """Every file the snapshot keeps is under ``files``, byte for byte, and nothing else
    (but ``ignore``: the databases a restore puts back)."""
    expected = {e.rel: Path(e.path) for e in walk(cfg.source.root, TreeFilter.for_config(cfg))
                if e.kind == "file"}
    restored = {p.relative_to(files).as_posix(): p for p in files.rglob("*")
                if p.is_file() and not p.is_symlink() and p.name not in ignore}
    assert sorted(restored) == sorted(expected)
    assert len(expected) > 60
    for rel, path in expected.items():
        assert restored[rel].read_bytes() == path.read_bytes(), rel


def test_a_packed_delta_restores_like_a_full(siip: Path, tmp_path: Path,
                                             pack_everything: None) -> None:
    add_code(siip)
    cfg = make_config(siip, tmp_path / "backups")
    first = run_backup(cfg, trigger="manual", email=False)
    assert first.status == "ok"
    (siip / "app" / "nuevo.py").write_text("print('nuevo')\n")
    (siip / "app" / "módulo_3" / "vista_3.py").write_text("# cambiado\n")
    (siip / "app" / "módulo_1" / "sub" / "vista_1.py").unlink()
    second = run_backup(cfg, trigger="manual", email=False)
    assert second.status == "ok" and second.snapshot is not None
    assert second.snapshot.kind == "delta"
    target = tmp_path / "restored"
    out = subprocess.run([sys.executable, "-m", "watcher", "-c", str(write_cfg(cfg, tmp_path)),
                          "restore", second.snapshot.id, "--to", str(target)],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert_restored(target, siip)
    assert_restored_files(target, cfg, ignore=("siip_database.db",))


def test_without_a_packer_the_snapshot_reads_every_file_itself(
        siip: Path, tmp_path: Path, pack_everything: None,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The interpreter is gone (replaced by an upgrade, a venv moved): slower, as complete."""
    add_code(siip)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python"))
    cfg = make_config(siip, tmp_path / "backups")
    report = run_backup(cfg, trigger="manual", email=False)
    assert report.status == "ok", report.errors
    assert "could not start the tree packer" in caplog.text
    assert report.snapshot is not None
    assert_untarred(Path(report.snapshot.file), cfg, tmp_path / "restored")


def test_stopping_a_packed_snapshot_kills_the_packer_and_leaves_nothing(
        siip: Path, tmp_path: Path, pack_everything: None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = make_config(siip, tmp_path / "backups")
    stop = threading.Event()
    started: list[Packer] = []
    real_finish = Packer.finish

    def finish_after_stop(self: Packer, wait: Callable[..., None]) -> Any:
        started.append(self)
        stop.set()  # the service is shutting down while the packer works
        return real_finish(self, wait)

    monkeypatch.setattr(Packer, "finish", finish_after_stop)
    store = LocalStore(cfg)
    store.ensure()
    with pytest.raises(take_module.Aborted):
        take_snapshot(cfg, store, now=datetime.now(UTC), stop=stop)
    assert started and started[0]._proc.poll() is not None  # noqa: SLF001 - it was ended
    assert not [p for p in cfg.local.dir.iterdir() if p.name.endswith((".partial", ".zst"))]


def test_kill_9_of_the_snapshot_ends_the_packer_and_leaves_nothing_that_looks_complete(
        tmp_path: Path) -> None:
    """A tree big enough for the packer, the `once` behind it killed while it packs: the
    packer ends on its own (no orphan keeps running), nothing looks complete, and the next
    run removes what is left and snapshots normally. (A packer whose list had no end mark
    deletes its part itself: test_a_list_without_its_end_mark_leaves_nothing.)"""
    root = make_siip_tree(tmp_path / "siip")
    code = root / "app" / "muchos"
    for i in range(PACK_AFTER + 3000):
        folder = code / f"m{i // 100}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"vista_{i}.py").write_text(f"def vista_{i}():\n    return {i}\n" * 40)
    local = tmp_path / "backups"
    config = write_config(tmp_path / "c.toml", root, local)
    proc = subprocess.Popen([sys.executable, "-m", "watcher", "-c", str(config), "once",
                             "--no-email"], env=clean_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_until(lambda: proc.poll() is not None or any(local.glob("*.pack.partial")),
               "the packer to start writing its part", 60, interval=0.002)
    assert proc.poll() is None, "the run ended before it could be killed"
    jobs = next(local.glob("*.pack-jobs.partial"))
    packers = [pid for pid in os.listdir("/proc") if pid.isdigit()
               and str(jobs).encode() in _cmdline(pid)]
    assert packers, "no packer process found"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    wait_until(lambda: not [p for p in packers if os.path.exists(f"/proc/{p}")
                            and b"watcher.snapshot.packer" in _cmdline(p)],
               "the packer to end on its own", 60)
    assert not list(local.glob("*.tar.zst")), "a killed run left a complete-looking archive"
    # what is left (the list, and the part if the list was complete already) is .partial
    assert all(p.name.endswith(".partial") for p in local.iterdir()
               if p.name.startswith(".siip-"))

    again = subprocess.run([sys.executable, "-m", "watcher", "-c", str(config), "once",
                            "--no-email", "--json"], env=clean_env(), capture_output=True,
                           text=True, timeout=300, check=False)
    assert again.returncode == 0, again.stderr
    assert not list(local.glob("*.partial"))
    archive = next(local.glob("*.tar.zst"))
    names = tarfile_names(archive)
    assert sum(1 for n in names if n.startswith("files/app/muchos/")
               and n.endswith(".py")) == PACK_AFTER + 3000


def _cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
