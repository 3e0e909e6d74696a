"""The tree reader that runs ahead of the archive: order, bounds, and what it makes of files
that vanished, were swapped or grew since the walk. Real files on disk, a real thread."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from watcher.snapshot import readahead
from watcher.snapshot.member import MemberChanged
from watcher.snapshot.readahead import AHEAD_FILES, ReadAhead, read_member


def test_outcomes_come_back_in_the_order_asked_with_the_items_that_need_no_read(
        tmp_path: Path) -> None:
    items: list[tuple[str, Path | None]] = []
    for i in range(3 * AHEAD_FILES):
        if i % 7 == 0:
            items.append((f"folder {i}", None))  # needs no read, keeps its place
            continue
        path = tmp_path / f"f{i:04d}.txt"
        path.write_bytes(f"archivo {i}\n".encode() * (i + 1))
        items.append((path.name, path))
    ahead = ReadAhead()
    most_pending = 0

    def target(item: tuple[str, Path | None]) -> tuple[str, os.stat_result] | None:
        nonlocal most_pending
        most_pending = max(most_pending, len(ahead._sizes))  # noqa: SLF001 - the bound itself
        path = item[1]
        return None if path is None else (str(path), path.lstat())

    try:
        got = list(ahead.in_order(items, target))
    finally:
        ahead.close()
    assert [item for item, _ in got] == items
    for (_, path), outcome in got:
        if path is None:
            assert outcome is None
            continue
        assert outcome is not None and outcome.read is not None
        assert outcome.read.data == path.read_bytes()
        assert outcome.read.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert not outcome.read.changed
    assert most_pending <= AHEAD_FILES


def test_the_byte_bound_holds_the_reader_back(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readahead, "AHEAD_BYTES", 10_000)
    paths = []
    for i in range(20):
        path = tmp_path / f"{i:02d}.bin"
        path.write_bytes(bytes([i]) * 4_000)
        paths.append(path)
    ahead = ReadAhead()
    pending_bytes: list[int] = []
    ask = ahead.ask

    def counting_ask(path: str, walked: os.stat_result) -> None:
        pending_bytes.append(ahead._bytes)  # noqa: SLF001 - the bound itself
        ask(path, walked)

    ahead.ask = counting_ask  # type: ignore[method-assign]
    try:
        got = [outcome.read.data for _, outcome in ahead.in_order(
            paths, lambda p: (str(p), p.lstat())) if outcome is not None and outcome.read]
    finally:
        ahead.close()
    assert got == [p.read_bytes() for p in paths]
    # one more file is asked only while less than the bound is pending
    assert max(pending_bytes) < 10_000
    assert len(pending_bytes) == len(paths)


def test_vanished_swapped_big_and_growing_files(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    gone = tmp_path / "gone.txt"
    gone.write_text("x")
    gone_st = gone.lstat()
    gone.unlink()
    assert isinstance(read_member(str(gone), gone_st).error, FileNotFoundError)

    swapped = tmp_path / "swapped.txt"
    swapped.write_text("x")
    swapped_st = swapped.lstat()
    swapped.unlink()
    os.symlink(tmp_path / "elsewhere", swapped)
    assert isinstance(read_member(str(swapped), swapped_st).error, MemberChanged)

    monkeypatch.setattr(readahead, "SMALL_FILE", 100)
    big = tmp_path / "big.bin"
    big.write_bytes(b"b" * 101)
    outcome = read_member(str(big), big.lstat())
    assert outcome.read is None and outcome.error is None and outcome.failure is None

    grew = tmp_path / "grew.log"
    grew.write_bytes(b"a" * 50)
    walked = grew.lstat()
    with open(grew, "ab") as fh:  # it grows between the walk and the read
        fh.write(b"b" * 10)
    outcome = read_member(str(grew), walked)
    assert outcome.read is not None
    # read as it was when opened, and marked as changed only if it changed while read
    assert outcome.read.data == b"a" * 50 + b"b" * 10
    assert not outcome.read.changed
