"""Which members are not worth compressing hard: photos, video, archives, zip-based documents.

A snapshot puts such members into frames of stored zstd blocks (see tarstream): on data that
is already compressed every level gives the same size, and the configured level only burns
CPU. The name decides first; a big file with an unknown extension is judged by a trial
compression of its first bytes. A database copy is judged by trial compressions of pieces
spread over it (:func:`frames_for_samples`): one full of photo attachments compresses a
little, and goes into frames made at zstd's fastest level.
"""

from __future__ import annotations

import os

import zstandard

from watcher.snapshot.member import open_member
from watcher.snapshot.tarstream import FAST, LEVEL, STORED

#: extensions of formats that are compressed already (lower case, with the dot)
INCOMPRESSIBLE_SUFFIXES = frozenset({
    ".jpg", ".jpeg", ".png", ".gif", ".webp", ".heic", ".heif", ".avif", ".jxl",  # images
    ".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm",                            # video
    ".mp3", ".m4a", ".aac", ".ogg", ".opus", ".flac",                           # audio
    ".zip", ".gz", ".tgz", ".bz2", ".xz", ".zst", ".lz4", ".7z", ".rar",        # archives
    ".pdf", ".docx", ".xlsx", ".pptx", ".odt", ".ods", ".odp", ".epub", ".jar",  # documents
    ".apk",
})
#: files at least this big with an unknown extension get a trial compression
SNIFF_MIN_SIZE = 256 << 10
#: how much of such a file the trial compresses
SNIFF_BYTES = 64 << 10
#: a sample that zstd cannot shrink below this fraction of its size counts as incompressible
INCOMPRESSIBLE_RATIO = 0.97
#: samples that zstd's fastest level cannot shrink below this fraction go into FAST frames:
#: on issue 9's database of attachments (fastest level 0.913) level 3 gets 0.911 in 2.3 times
#: the CPU time, where on text (0.24) it is 5% smaller
FAST_RATIO = 0.8
#: :func:`frames_for_samples` compresses this many pieces of SPREAD_BYTES, spread over the
#: file: a database holds runs of text pages between runs of attachments, and 16 pieces of
#: 64 KiB of issue 9's database copy said 0.73 where the whole file is 0.91; 128 of 8 KiB
#: said 0.913
SPREAD_SAMPLES = 128
SPREAD_BYTES = 8 << 10


def incompressible_name(name: str) -> bool:
    """True when ``name``'s extension is a compressed format (case-insensitive)."""
    dot = name.rfind(".")
    return dot > name.rfind("/") and name[dot:].lower() in INCOMPRESSIBLE_SUFFIXES


def _trial_ratio(samples: list[bytes]) -> float:
    """Compressed size over size of ``samples`` at zstd's fastest level (1.0 for nothing)."""
    total = sum(len(s) for s in samples)
    if not total:
        return 1.0
    # a compressor per call: they are not thread-safe, and this runs for few members
    compressor = zstandard.ZstdCompressor(level=1)
    return sum(len(compressor.compress(s)) for s in samples) / total


def incompressible_sample(sample: bytes) -> bool:
    """True when a fast trial compression of ``sample`` saves (almost) nothing."""
    return bool(sample) and _trial_ratio([sample]) >= INCOMPRESSIBLE_RATIO


def frames_for_samples(fd: int, size: int) -> str:
    """The frame class (tarstream's LEVEL, FAST or STORED) for the ``size`` bytes open at
    ``fd``, by trial compressions of SPREAD_SAMPLES pieces spread evenly over them.

    For a big member read whole later (a database copy): its first bytes alone (a SQLite
    file's schema pages) say little about the rest. Reads with ``pread``, so the file
    position is left as it was.
    """
    if size < SNIFF_MIN_SIZE:
        return LEVEL  # small members cost little whatever the level
    piece = SPREAD_BYTES
    count = min(SPREAD_SAMPLES, size // piece)
    step = (size - piece) // max(1, count - 1)
    ratio = _trial_ratio([_read_at(fd, piece, i * step) for i in range(count)])
    if ratio >= INCOMPRESSIBLE_RATIO:
        return STORED
    return FAST if ratio >= FAST_RATIO else LEVEL


def _read_at(fd: int, n: int, offset: int) -> bytes:
    """Up to ``n`` bytes at ``offset``, leaving the file position alone (pread, where the
    platform has it)."""
    if hasattr(os, "pread"):
        return os.pread(fd, n, offset)
    here = os.lseek(fd, 0, os.SEEK_CUR)
    try:
        os.lseek(fd, offset, os.SEEK_SET)
        return os.read(fd, n)
    finally:
        os.lseek(fd, here, os.SEEK_SET)


def looks_incompressible(path: str, name: str, walked: os.stat_result) -> bool:
    """Decide for one regular file: by name, then by its first bytes when it is big.

    ``walked`` is the walk's ``lstat`` of it: the trial reads only that file
    (:func:`watcher.snapshot.member.open_member`), never what a link swapped in since points to.
    A file that cannot be read here counts as compressible; reading it for the archive reports
    the problem.
    """
    if incompressible_name(name):
        return True
    if walked.st_size < SNIFF_MIN_SIZE:
        return False  # small files cost little whatever the level
    try:
        fd, _ = open_member(path, walked)
    except OSError:
        return False
    try:
        return incompressible_sample(_read_at(fd, SNIFF_BYTES, 0))
    except OSError:
        return False
    finally:
        os.close(fd)
