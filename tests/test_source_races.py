"""The source tree changes under a running snapshot: what it reads is still only the tree.

Each swap happens for real, on disk, between the walk that lists a member and the read that
archives it. The snapshot's progress callback is the hook: it runs in the snapshot's thread
after each member's bytes, so the swap lands at a known point of the run.
"""

from __future__ import annotations

import os
import random
import tarfile
import threading
from collections.abc import Callable
from pathlib import Path

import zstandard

from tests.helpers import make_config
from watcher.backup.report import RunReport
from watcher.backup.run import run_backup
from watcher.snapshot.readahead import AHEAD_FILES

SECRET = b"outside-secret-" + random.Random(15).randbytes(48).hex().encode()


def _outside_secret(tmp_path: Path) -> Path:
    """A 0600 folder outside source.root holding a 0600 file with SECRET in it."""
    outside = tmp_path / "outside"
    outside.mkdir(mode=0o700)
    for name in ("secret.txt", "foto.jpg"):
        secret = outside / name
        secret.write_bytes(SECRET * 20)
        secret.chmod(0o600)
    return outside


def _archive_bytes(report: RunReport) -> bytes:
    """The whole tar stream of the report's snapshot."""
    assert report.snapshot is not None, report.errors
    with open(report.snapshot.file, "rb") as fh:
        return zstandard.ZstdDecompressor().stream_reader(fh).read()


def _members(report: RunReport) -> dict[str, tarfile.TarInfo]:
    assert report.snapshot is not None, report.errors
    with open(report.snapshot.file, "rb") as fh, \
            zstandard.ZstdDecompressor().stream_reader(fh) as zr, \
            tarfile.open(fileobj=zr, mode="r|") as tar:
        return {m.name: m for m in tar}


def _run_with_swap(root: Path, local: Path, swap: Callable[[], None]) -> RunReport:
    """A run of ``root`` (no databases, so the only progress comes from tree members) that
    calls ``swap`` once, after the first member's bytes are in the archive."""
    cfg = make_config(root, local, source={"databases": []})
    done: list[bool] = []

    def progress(_: int) -> None:
        if not done:
            done.append(True)
            swap()

    report = run_backup(cfg, trigger="manual", email=False, progress=progress)
    assert done, "the swap never ran: the test no longer reaches its hook"
    return report


def _assert_left_out(report: RunReport, member: str, became: str) -> None:
    leaked = SECRET in _archive_bytes(report)
    assert not leaked, "content from outside source.root was archived"
    assert report.status == "warning", report.errors
    assert member not in _members(report)
    said = [w.message for w in report.warnings if became in w.message]
    assert said, [w.message for w in report.warnings]
    assert "not in this snapshot" in said[0]


def test_file_swapped_for_a_link_after_the_walk_is_not_followed(tmp_path: Path) -> None:
    outside = _outside_secret(tmp_path)
    root = tmp_path / "siip"
    root.mkdir()
    # foto.jpg is listed by the walk and held back for the incompressible pass; zz.txt is
    # archived meanwhile, and its progress swaps the photo for a link to the secret
    (root / "foto.jpg").write_bytes(random.Random(1).randbytes(20_000))
    (root / "zz.txt").write_text("hola\n" * 100)

    def swap() -> None:
        (root / "foto.jpg").unlink()
        os.symlink(outside / "secret.txt", root / "foto.jpg")

    report = _run_with_swap(root, tmp_path / "backups", swap)
    _assert_left_out(report, "files/foto.jpg", "became a link")
    assert "files/zz.txt" in _members(report)


def test_folder_swapped_for_a_link_before_it_is_listed_is_not_entered(tmp_path: Path
                                                                     ) -> None:
    outside = _outside_secret(tmp_path)
    root = tmp_path / "siip"
    (root / "fotos").mkdir(parents=True)
    (root / "fotos" / "a.txt").write_text("a\n")
    # the walk runs ahead of the archive by up to AHEAD_FILES files: with more than that in
    # the root, fotos/ is still unlisted when the first member is in
    for i in range(AHEAD_FILES + 10):
        (root / f"zz{i:03d}.txt").write_text("hola\n" * 100)

    def swap() -> None:
        # the root's listing saw fotos/ as a folder; it is entered only after the zz files
        (root / "fotos").rename(tmp_path / "fotos-moved")
        os.symlink(outside, root / "fotos")

    report = _run_with_swap(root, tmp_path / "backups", swap)
    _assert_left_out(report, "files/fotos/secret.txt", "became a link")
    assert not [m for m in _members(report) if m.startswith("files/fotos/")]


def test_folder_swapped_for_a_link_after_it_was_listed_is_not_read_through(tmp_path: Path
                                                                          ) -> None:
    outside = _outside_secret(tmp_path)
    root = tmp_path / "siip"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    (root / "a" / "foto.jpg").write_bytes(random.Random(2).randbytes(20_000))
    (root / "b" / "zz.txt").write_text("hola\n" * 100)

    def swap() -> None:
        # a/ was listed (foto.jpg held back for the incompressible pass) before b/zz.txt;
        # now a/foto.jpg leads, through a linked folder, to the outside foto.jpg
        (root / "a").rename(tmp_path / "a-moved")
        os.symlink(outside, root / "a")

    report = _run_with_swap(root, tmp_path / "backups", swap)
    _assert_left_out(report, "files/a/foto.jpg", "became another file")


def test_file_swapped_for_a_fifo_after_the_walk_never_blocks_the_run(tmp_path: Path) -> None:
    root = tmp_path / "siip"
    root.mkdir()
    (root / "foto.jpg").write_bytes(random.Random(3).randbytes(20_000))
    (root / "zz.txt").write_text("hola\n" * 100)
    fifo = root / "foto.jpg"

    def swap() -> None:
        fifo.unlink()
        os.mkfifo(fifo)

    result: list[RunReport] = []
    runner = threading.Thread(target=lambda: result.append(
        _run_with_swap(root, tmp_path / "backups", swap)), daemon=True)
    runner.start()
    runner.join(timeout=120)
    blocked = runner.is_alive()
    if blocked:
        # release a reader stuck opening the FIFO, so the thread ends with the test
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        runner.join(timeout=120)
    assert not blocked, "the run blocked opening a FIFO swapped into the tree"
    assert result, "the run raised"
    report = result[0]
    assert report.status == "warning", report.errors
    assert "files/foto.jpg" not in _members(report)
    assert [w for w in report.warnings if "became a FIFO" in w.message], report.warnings
