"""Restore never touches what lies outside its folder, and never leaves a folder that looks
finished when it is not: hostile archives, links and hard links in the target, a full disk,
a kill -9 halfway, and the umask."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import zstandard

from tests.helpers import KILL_AFTER
from watcher.archive.files import sidecar_line
from watcher.archive.manifest import FORMAT_VERSION, MANIFEST_MEMBER, member_entry
from watcher.archive.read import ArchiveError, verify
from watcher.archive.restore import STAGING_PREFIX, DiskFullError, restore
from watcher.backup.run import run_backup
from watcher.config.settings import Config

OLD_MTIME = 946684800  # 2000-01-01


def hostile_archive(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]],
                    manifest_members: list[dict[str, object]]) -> Path:
    """A .tar.zst with a manifest that agrees with it and a sidecar that matches: everything
    an attacker who can write to the backup folder or to Drive can forge."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
        manifest = json.dumps({"format": FORMAT_VERSION, "members": manifest_members,
                               "databases": []}).encode()
        info = tarfile.TarInfo(MANIFEST_MEMBER)
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
    raw = zstandard.ZstdCompressor().compress(buf.getvalue())
    path.write_bytes(raw)
    path.with_name(path.name + ".sha256").write_text(
        sidecar_line(hashlib.sha256(raw).hexdigest(), path.name))
    return path


def dir_info(name: str, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, OLD_MTIME
    info.uid = info.gid = 4321
    return info


def link_info(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mtime = tarfile.SYMTYPE, target, OLD_MTIME
    return info


def file_info(name: str, data: bytes, mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, OLD_MTIME
    return info


def snapshot_state(path: Path) -> tuple[int, int, int, int, bytes]:
    st = path.lstat()
    return st.st_mode, st.st_uid, st.st_mtime_ns, st.st_nlink, path.read_bytes()


def test_folder_then_link_of_the_same_name_changes_nothing_outside(tmp_path: Path) -> None:
    work = tmp_path / "work"
    target = work / "out"
    work.mkdir()
    victim = tmp_path / "victima.txt"
    victim.write_text("no me toques\n")
    victim.chmod(0o600)
    before = snapshot_state(victim)
    archive = hostile_archive(
        tmp_path / "siip-20261128T101500Z.tar.zst",
        [(dir_info("files/a/", 0o7777), None),
         (link_info("files/a", "../../victima.txt"), None)],
        [member_entry("files/a", "symlink", 0, 0o777, OLD_MTIME * 10**9,
                      target="../../victima.txt")])

    result = verify(archive)
    assert not result.ok
    assert any("appears twice" in p for p in result.problems), result.problems
    with pytest.raises(ArchiveError, match="appears twice"):
        restore(archive, target)

    assert snapshot_state(victim) == before
    assert not target.exists() or [p.name for p in target.iterdir()] == []


def test_member_under_a_link_of_the_archive_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "out"
    archive = hostile_archive(
        tmp_path / "siip-20261128T101500Z.tar.zst",
        [(link_info("files/a", str(outside)), None),
         (file_info("files/a/planted.sh", b"#!/bin/sh\n", 0o4755), b"#!/bin/sh\n")],
        [member_entry("files/a", "symlink", 0, 0o777, 0, target=str(outside)),
         member_entry("files/a/planted.sh", "file", 10, 0o4755, 0,
                      sha256=hashlib.sha256(b"#!/bin/sh\n").hexdigest())])

    with pytest.raises(ArchiveError, match="link"):
        restore(archive, target)
    assert list(outside.iterdir()) == []
    assert [p.name for p in target.iterdir()] == []


@pytest.fixture
def snapshot(cfg: Config) -> Path:
    report = run_backup(cfg, trigger="manual", email=False)
    assert report.status == "ok", report.errors
    return Path(report.snapshot.file)


def test_force_over_a_hard_link_replaces_it_and_leaves_the_outside_file(
        snapshot: Path, siip: Path, tmp_path: Path) -> None:
    target = tmp_path / "restored"
    target.mkdir()
    (target / "app").mkdir()
    outside = tmp_path / "outside.py"
    outside.write_text("el original de otro\n")
    os.link(outside, target / "app" / "views.py")

    restore(snapshot, target, force=True)

    assert outside.read_text() == "el original de otro\n"
    assert (target / "app" / "views.py").read_bytes() == (siip / "app" / "views.py").read_bytes()
    assert os.stat(target / "app" / "views.py").st_ino != os.stat(outside).st_ino


def test_force_over_a_link_in_the_target_writes_nothing_through_it(
        snapshot: Path, siip: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "restored"
    target.mkdir()
    os.symlink(outside, target / "static")

    restore(snapshot, target, force=True)

    assert list(outside.iterdir()) == []
    assert not (target / "static").is_symlink() and (target / "static").is_dir()
    assert (target / "static" / "uploads" / "foto 0.jpg").read_bytes() == \
        (siip / "static" / "uploads" / "foto 0.jpg").read_bytes()


def test_new_restore_folder_is_private_whatever_the_umask(cfg: Config, siip: Path,
                                                          tmp_path: Path) -> None:
    (siip / "app" / "views.py").chmod(0o640)
    snapshot = Path(run_backup(cfg, trigger="manual", email=False).snapshot.file)
    target = tmp_path / "nuevo" / "restored"
    old = os.umask(0)
    try:
        restore(snapshot, target)
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "nuevo").stat().st_mode) == 0o700
    # the project inside keeps its own modes, not the umask's
    assert stat.S_IMODE((target / "app" / "views.py").stat().st_mode) == \
        stat.S_IMODE((siip / "app" / "views.py").stat().st_mode)


KILLER = KILL_AFTER + """
from watcher.archive.restore import restore
archive, target, limit = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
restore(archive, target, progress=progress)
"""


def test_killed_restore_leaves_no_folder_that_looks_finished(cfg: Config, siip: Path,
                                                             tmp_path: Path) -> None:
    for i in range(40):  # enough content that the kill falls among the photos
        (siip / "static" / "uploads" / f"grande {i}.jpg").write_bytes(os.urandom(200_000))
    report = run_backup(cfg, trigger="manual", email=False)
    archive = Path(report.snapshot.file)
    target = tmp_path / "restored"

    # progress counts the archive's bytes read while extracting: this kills it halfway
    limit = archive.stat().st_size // 2
    proc = subprocess.run([sys.executable, "-c", KILLER, str(archive), str(target), str(limit)],
                          cwd=Path(__file__).resolve().parents[1], capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    left = list(target.iterdir())
    assert [p.name[:len(STAGING_PREFIX)] for p in left] == [STAGING_PREFIX]
    assert any(p.is_file() for p in left[0].rglob("*")), "the kill came before any write"

    # the leftover is not the user's: a plain restore (no --force) removes it and completes
    result = restore(archive, target)
    assert sorted(p.name for p in target.iterdir()) == sorted(
        ["app", "SIIP CON FOTO", "static", "vacío.txt", "enlace.jpg", "siip_database.db"])
    assert result.databases == ["siip_database.db"]


def test_full_disk_is_reported_as_a_full_disk_and_leaves_nothing(
        cfg: Config, siip: Path, small_disk: Path) -> None:
    for i in range(60):  # 12 MB: more than the small disk holds
        (siip / "static" / "uploads" / f"grande {i}.jpg").write_bytes(os.urandom(200_000))
    report = run_backup(cfg, trigger="manual", email=False)
    target = small_disk / "restored"

    with pytest.raises(DiskFullError, match="full") as caught:
        restore(Path(report.snapshot.file), target)
    assert "damaged" not in str(caught.value)
    assert list(target.iterdir()) == []
