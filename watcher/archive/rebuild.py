#!/usr/bin/env python3
"""Rebuild a delta snapshot from its base full and itself, with python3 alone.

Every delta archive carries this file as ``rebuild.py`` (README.md, "Rebuilding a delta
without siip-watcher"). It needs nothing but Python's standard library, so it works on any
machine with ``tar --zstd`` and ``python3``::

    mkdir base delta
    tar --zstd -xf NAME-BASE.tar.zst -C base
    tar --zstd -xf NAME-DELTA.delta.tar.zst -C delta
    python3 delta/rebuild.py base delta out

``out`` then holds what a full archive of that snapshot would: ``files/`` (the project
tree), ``databases/`` (each database, rebuilt page by page and checked against the sha256
of the snapshot's consistent copy and SQLite's integrity_check) and ``manifest.json``.

siip-watcher's own restore and verify apply database pages with :func:`apply_pages` from
this same file, so the manual path and the program cannot drift apart.

A database page delta (``databases/<name>.pages``) is a sequence of records: the page's
index (0-based, 4 bytes big-endian) followed by the page's ``page_size`` bytes. Applied to a
copy of the base full's database, truncated or extended to ``pages`` pages, it gives the
snapshot's consistent copy byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import sys
from typing import IO, Any

PAGE_NUMBER_BYTES = 4
READ_CHUNK = 1 << 20


def page_record(index: int, page: bytes) -> bytes:
    """One record of a page delta: the page's index, then the page."""
    return index.to_bytes(PAGE_NUMBER_BYTES, "big") + page


def apply_pages(db_fd: int, pages: IO[bytes], *, page_size: int, page_count: int) -> int:
    """Write every page record of ``pages`` into the open database file ``db_fd`` (a copy
    of the base's database) and cut or extend it to ``page_count`` pages; returns how many
    pages were written. Raises ValueError on a truncated or out-of-range record."""
    written = 0
    while True:
        head = pages.read(PAGE_NUMBER_BYTES)
        if not head:
            break
        index = int.from_bytes(head, "big") if len(head) == PAGE_NUMBER_BYTES else -1
        page = _read_exactly(pages, page_size)
        if index < 0 or index >= page_count or len(page) != page_size:
            raise ValueError(f"a damaged page delta (record {written + 1})")
        os.lseek(db_fd, index * page_size, os.SEEK_SET)
        view = memoryview(page)
        while view:
            view = view[os.write(db_fd, view):]
        written += 1
    os.ftruncate(db_fd, page_count * page_size)
    return written


def _read_exactly(fh: IO[bytes], n: int) -> bytes:
    parts, got = [], 0
    while got < n:
        data = fh.read(n - got)
        if not data:
            break
        parts.append(data)
        got += len(data)
    return b"".join(parts)


def file_sha256(path: str) -> str:
    """The sha256 of a file, read in bounded blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(READ_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _safe(rel: str) -> str:
    """A member path that stays inside the folder it is joined to."""
    parts = rel.split("/")
    if rel.startswith("/") or any(p in ("", ".", "..") for p in parts if p != parts[-1]) \
            or parts[-1] in (".", ".."):
        raise SystemExit(f"refusing the member path {rel!r}: it leaves the folder")
    return os.path.join(*parts)


def _copy_entry(src_root: str, out: str, entry: dict[str, Any]) -> None:
    rel = _safe(entry["path"].rstrip("/"))
    src, dst = os.path.join(src_root, rel), os.path.join(out, rel)
    os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
    kind = entry.get("type")
    if kind == "dir":
        os.makedirs(dst, exist_ok=True)
    elif kind == "symlink":
        os.symlink(entry["target"], dst)
    else:
        if os.path.islink(src):
            raise SystemExit(f"{src} is a link where a file was expected; the archive is "
                             f"damaged")
        shutil.copyfile(src, dst)
        if entry.get("sha256") and file_sha256(dst) != entry["sha256"]:
            raise SystemExit(f"{entry['path']} does not match its sha256 in the manifest; "
                             f"the base or the delta is damaged")


def _finish_meta(out: str, entries: list[dict[str, Any]]) -> None:
    """Modes and times, folders last and deepest first (files inside change their time)."""
    files = [e for e in entries if e.get("type") == "file"]
    dirs = sorted((e for e in entries if e.get("type") == "dir"),
                  key=lambda e: e["path"].count("/"), reverse=True)
    for entry in [*files, *dirs]:
        path = os.path.join(out, _safe(entry["path"].rstrip("/")))
        os.chmod(path, int(entry.get("mode", 0o644)) | (0o700 if entry.get("type") == "dir"
                                                         else 0))
        if entry.get("mtime_ns") is not None:
            os.utime(path, ns=(int(entry["mtime_ns"]), int(entry["mtime_ns"])))


def _rebuild_database(base: str, delta: str, out: str, db: dict[str, Any]) -> None:
    target = os.path.join(out, _safe(db["member"]))
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.copyfile(os.path.join(base, _safe(db["base_member"])), target)
    fd = os.open(target, os.O_RDWR | getattr(os, "O_BINARY", 0))
    try:
        with open(os.path.join(delta, _safe(db["pages_member"])), "rb") as pages:
            apply_pages(fd, pages, page_size=int(db["page_size"]),
                        page_count=int(db["pages"]))
        os.fsync(fd)
    finally:
        os.close(fd)
    if file_sha256(target) != db["sha256"]:
        raise SystemExit(f"{db['member']}: the rebuilt database does not match the sha256 of "
                         f"the snapshot's copy; the base or the delta is damaged")
    con = sqlite3.connect(target)
    try:
        rows = con.execute("PRAGMA integrity_check").fetchall()
    finally:
        con.close()
    if rows != [("ok",)]:
        raise SystemExit(f"{db['member']}: integrity_check failed: {rows[0][0]}")


def rebuild(base: str, delta: str, out: str) -> dict[str, Any]:
    """Build in ``out`` the full archive's layout of the delta snapshot in ``delta``."""
    with open(os.path.join(delta, "manifest.json"), encoding="utf-8") as fh:
        manifest = json.load(fh)
    if manifest.get("kind") != "delta":
        raise SystemExit(f"{delta}/manifest.json is not a delta snapshot's manifest")
    with open(os.path.join(base, "manifest.json"), encoding="utf-8") as fh:
        base_id = json.load(fh).get("id")
    if base_id != manifest.get("base"):
        raise SystemExit(f"{base} holds the snapshot {base_id}; this delta needs "
                         f"{manifest.get('base')}")
    os.makedirs(out, exist_ok=False)
    databases = manifest.get("databases", [])
    pages = {db.get("pages_member") for db in databases}
    stored = [m for m in manifest["members"]
              if m["path"] != "rebuild.py" and m["path"] not in pages]
    for entry in stored:
        _copy_entry(delta, out, entry)
    for entry in manifest.get("referenced", []):
        _copy_entry(base, out, entry)
    rebuilt = []
    for db in databases:
        if db.get("pages_member"):
            _rebuild_database(base, delta, out, db)
            rebuilt.append({"path": db["member"], "type": "file", "mode": db.get("mode", 0o600),
                            "mtime_ns": db.get("mtime_ns")})
    _finish_meta(out, [*stored, *manifest.get("referenced", []), *rebuilt])
    shutil.copyfile(os.path.join(delta, "manifest.json"), os.path.join(out, "manifest.json"))
    return manifest


def main(argv: list[str]) -> int:
    """``rebuild.py BASE_DIR DELTA_DIR OUT_DIR``: see the module's text."""
    if len(argv) != 3:  # noqa: PLR2004 - three folders
        print("usage: python3 rebuild.py BASE_DIR DELTA_DIR OUT_DIR  (the extracted base "
              "full, the extracted delta, a new folder)", file=sys.stderr)
        return 2
    manifest = rebuild(*argv)
    print(f"rebuilt {manifest.get('id')} in {argv[2]}: files/ is the project folder, "
          f"databases/ holds each database (checked)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
