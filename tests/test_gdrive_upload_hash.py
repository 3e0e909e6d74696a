"""The upload's md5, computed on its own thread (`HashAhead`): right whatever the thread
reached, errors handed to the uploader, no thread left behind."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from watcher.destinations.base import DestinationError
from watcher.destinations.gdrive.upload import HashAhead, PrefixHasher

SIZE = 3 * PrefixHasher.WINDOW + 12_345      # several windows and an unaligned tail


def write(tmp_path: Path, size: int = SIZE) -> tuple[Path, bytes]:
    data = os.urandom(size)
    path = tmp_path / "archive.bin"
    path.write_bytes(data)
    return path, data


def md5_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "drive-md5"]


def test_the_thread_hashes_the_whole_file(tmp_path: Path) -> None:
    path, data = write(tmp_path)
    with HashAhead(path, len(data)) as ahead:
        ahead._thread.join()                  # let it run to the end by itself
        assert ahead.hasher.pos == len(data)
        assert ahead.result() == hashlib.md5(data).hexdigest()
    assert md5_threads() == []


def test_the_caller_finishes_what_the_thread_has_not_reached(tmp_path: Path) -> None:
    path, data = write(tmp_path)
    with HashAhead(path, len(data)) as ahead:  # result() at once: cancel, then catch up
        assert ahead.result() == hashlib.md5(data).hexdigest()
    # only the first `size` bytes count, however far the file goes
    with HashAhead(path, 1000) as ahead:
        assert ahead.result() == hashlib.md5(data[:1000]).hexdigest()


def test_an_empty_file(tmp_path: Path) -> None:
    path, _ = write(tmp_path, 0)
    with HashAhead(path, 0) as ahead:
        assert ahead.result() == hashlib.md5(b"").hexdigest()


def test_a_file_shorter_than_announced_is_an_error_for_the_uploader(tmp_path: Path) -> None:
    path, data = write(tmp_path)
    with HashAhead(path, len(data) + 1) as ahead, \
            pytest.raises(DestinationError, match="became shorter"):
        ahead.result()
    assert md5_threads() == []


def test_leaving_early_stops_the_thread(tmp_path: Path) -> None:
    path, data = write(tmp_path)
    with pytest.raises(RuntimeError), HashAhead(path, len(data)):
        raise RuntimeError("the upload failed")
    assert md5_threads() == []
