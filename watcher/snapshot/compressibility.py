"""Which files are not worth compressing hard: photos, video, archives, zip-based documents.

A snapshot puts such members into zstd frames made at the fastest level (see tarstream): on
data that is already compressed every level gives the same size, and the configured level
only burns CPU. The name decides first; a big file with an unknown extension is judged by a
trial compression of its first bytes.
"""

from __future__ import annotations

import os

import zstandard

from watcher.snapshot.tree import open_member

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


def incompressible_name(name: str) -> bool:
    """True when ``name``'s extension is a compressed format (case-insensitive)."""
    dot = name.rfind(".")
    return dot > name.rfind("/") and name[dot:].lower() in INCOMPRESSIBLE_SUFFIXES


def incompressible_sample(sample: bytes) -> bool:
    """True when a fast trial compression of ``sample`` saves (almost) nothing."""
    if not sample:
        return False
    # a compressor per call: they are not thread-safe, and this runs for few files
    compressed = zstandard.ZstdCompressor(level=1).compress(sample)
    return len(compressed) >= INCOMPRESSIBLE_RATIO * len(sample)


def looks_incompressible(path: str, name: str, walked: os.stat_result) -> bool:
    """Decide for one regular file: by name, then by its first bytes when it is big.

    ``walked`` is the walk's ``lstat`` of it: the trial reads only that file
    (:func:`watcher.snapshot.tree.open_member`), never what a link swapped in since points to.
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
        return incompressible_sample(os.pread(fd, SNIFF_BYTES, 0)
                                     if hasattr(os, "pread") else os.read(fd, SNIFF_BYTES))
    except OSError:
        return False
    finally:
        os.close(fd)
