"""What a full snapshot of a tree must cost at least, piece by piece, in CPU seconds.

`siip-watcher once` does work that ``tar | zstd`` does not (docs/benchmarks.md, "Small
files"): the sha256 of every member and of the archive, a consistent copy of each database
with SQLite's backup API and its ``quick_check``, the digests of its pages that deltas compare
against. This script times each piece of a full snapshot on its own, in one process, with as
little Python per file as the piece allows (a whole file per call), on the tree a
configuration names:

- ``read``: open, read whole and close every file the snapshot keeps, and each database copy
  (the pieces below work on the bytes in memory);
- ``sha256 members``: the sha256 of each of them;
- ``zstd text``: the configured level, one thread, on the compressible files (what is not a
  photo, video, archive...: watcher/snapshot/compressibility.py), in 1 MiB pieces;
- ``zstd database``: each database copy at the level its sampled compressibility picks;
- ``database copy + check``: watcher/snapshot/sqlite_copy.py's ``copy_database``;
- ``page digests``: watcher/snapshot/base_state.py's ``page_digest`` over each copy;
- ``sha256 archive`` and ``write archive``: the sha256 and the writing (with fsync) of as many
  bytes as the archive holds (the compressed text and databases, the photos as they are);
- ``start-up``: a new interpreter importing what ``once`` imports (``watcher.backup.run``).

The sum is the least CPU any implementation of the same snapshot spends, whatever language
it is written in; half of it is the least wall time on two cores. What a run spends beyond
that (``once``'s CPU from scripts/bench_snapshot.py) is the per-member cost of doing it in
Python, and of handing data between threads and processes.

    .venv/bin/python scripts/bench_floor.py /tmp/bench-data-sf/smallfiles-1/siip-watcher.toml
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import zstandard  # noqa: E402
from bench_snapshot import compile_bytecode  # noqa: E402

from watcher.config.settings import load  # noqa: E402
from watcher.snapshot.base_state import page_digest  # noqa: E402
from watcher.snapshot.compressibility import (  # noqa: E402
    frames_for_samples,
    looks_incompressible,
)
from watcher.snapshot.sqlite_copy import copy_database  # noqa: E402
from watcher.snapshot.tarstream import FAST, FAST_LEVEL, LEVEL  # noqa: E402
from watcher.snapshot.tree import TreeFilter, walk  # noqa: E402

PIECE = 1 << 20


def cpu(fn: Callable[[], Any]) -> tuple[float, Any]:
    """CPU seconds of this process spent in ``fn()`` (all its threads), and its result."""
    start = time.process_time()
    result = fn()
    return time.process_time() - start, result


def read_all(paths: list[str]) -> list[bytes]:
    """Every file's bytes (the pieces after this one work on them in memory)."""
    out = []
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            out.append(os.read(fd, os.fstat(fd).st_size + 1))
        finally:
            os.close(fd)
    return out


def sha_each(contents: list[bytes]) -> None:
    for data in contents:
        hashlib.sha256(data).digest()


def zstd_stream(contents: list[bytes], level: int) -> int:
    """Compressed size of ``contents`` as one stream at ``level``, fed in 1 MiB pieces."""
    out = 0
    compressor = zstandard.ZstdCompressor(level=level).compressobj()
    batch = bytearray()
    for data in contents:
        batch += data
        if len(batch) >= PIECE:
            out += len(compressor.compress(bytes(batch)))
            batch = bytearray()
    out += len(compressor.compress(bytes(batch)))
    return out + len(compressor.flush())


def digest_pages(data: bytes, page_size: int) -> None:
    view = memoryview(data)
    for i in range(0, len(view), page_size):
        page_digest(view[i:i + page_size])


def hash_and_write(size: int, work: Path) -> tuple[float, float]:
    """(sha256 CPU, write + fsync CPU) of ``size`` bytes of random data in 1 MiB pieces."""
    block = os.urandom(PIECE)
    start = time.process_time()
    digest = hashlib.sha256()
    for _ in range(size // PIECE):
        digest.update(block)
    hashed = time.process_time() - start
    start = time.process_time()
    fd = os.open(work / "archive", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(size // PIECE):
            os.write(fd, block)
        os.fsync(fd)
    finally:
        os.close(fd)
    (work / "archive").unlink()
    return hashed, time.process_time() - start


def start_up() -> float:
    """CPU seconds of a new interpreter that imports what ``once`` imports, from bytecode
    (as installed: see bench_snapshot.compile_bytecode)."""
    compile_bytecode([REPO])
    before = os.times()
    subprocess.run([sys.executable, "-c", "import watcher.cli, watcher.backup.run"],
                   cwd=REPO, check=True)
    after = os.times()
    return (after.children_user - before.children_user
            + after.children_system - before.children_system)


def one_round(config: Path) -> dict[str, float]:
    cfg = load(config)
    files = [e for e in walk(cfg.source.root, TreeFilter.for_config(cfg)) if e.kind == "file"]
    paths = [e.path for e in files]
    photos_bytes = sum(e.st.st_size for e in files if looks_incompressible(e.path, e.rel, e.st))
    got: dict[str, float] = {}
    got["read"], contents = cpu(lambda: read_all(paths))
    got["sha256 members"], _ = cpu(lambda: sha_each(contents))
    text = [data for data, e in zip(contents, files, strict=True)
            if not looks_incompressible(e.path, e.rel, e.st)]
    got["zstd text"], text_out = cpu(lambda: zstd_stream(text, cfg.compression.level))
    archive = photos_bytes + text_out
    contents = text = []  # the memory, for the database copies
    with tempfile.TemporaryDirectory(dir=cfg.local.dir.parent) as tmp:
        work = Path(tmp)
        got["database copy + check"] = got["page digests"] = got["zstd database"] = 0.0
        for i, db in enumerate(cfg.source.database_paths()):
            spent, copy = cpu(lambda db=db, i=i: copy_database(db, work / f"db{i}"))
            got["database copy + check"] += spent
            spent, (data,) = cpu(lambda copy=copy: read_all([str(copy.copy)]))
            got["read"] += spent
            got["sha256 members"] += cpu(lambda data=data: sha_each([data]))[0]
            got["page digests"] += cpu(lambda data=data, copy=copy: digest_pages(
                data, copy.page_size))[0]
            with open(copy.copy, "rb", buffering=0) as fh:
                frames = frames_for_samples(fh.fileno(), os.fstat(fh.fileno()).st_size)
            if frames in (LEVEL, FAST):
                level = cfg.compression.level if frames == LEVEL else FAST_LEVEL
                spent, out = cpu(lambda data=data, level=level: zstd_stream([data], level))
                got["zstd database"] += spent
                archive += out
            else:
                archive += len(data)
        got["sha256 archive"], got["write archive"] = hash_and_write(archive, work)
    got["start-up"] = start_up()
    got["archive MB"] = archive / 1e6
    return got


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("config", type=Path, help="a siip-watcher configuration (a bench dataset's)")
    p.add_argument("--repeat", type=int, default=3, help="rounds; the median is printed")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    args = p.parse_args(argv)
    rounds = [one_round(args.config) for _ in range(args.repeat)]
    median = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    pieces = {k: v for k, v in median.items() if k != "archive MB"}
    total = sum(pieces.values())
    if args.json:
        json.dump({"config": str(args.config), "rounds": rounds, "median": median,
                   "total_cpu_s": total, "least_wall_s_on_2_cores": total / 2}, sys.stdout,
                  indent=2)
        print()
        return 0
    print(f"median of {args.repeat} rounds, CPU seconds; archive {median['archive MB']:,.1f} MB")
    for name, value in pieces.items():
        print(f"  {name:24s} {value:6.3f}")
    print(f"  {'total':24s} {total:6.3f}   (at least {total / 2:.3f} s of wall time on two "
          f"cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
