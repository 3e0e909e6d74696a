"""The archive stream's own parts: hand-built tar headers, frame switching, compressibility.

Headers are checked against both readers that matter, Python's tarfile and GNU tar; frames
against `zstd`/`tar --zstd` and our reader. Real files and real processes, no mocks.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import shutil
import sqlite3
import subprocess
import tarfile
from pathlib import Path

import pytest
import zstandard

from tests.helpers import make_config, make_siip_tree
from watcher.backup.run import run_backup
from watcher.snapshot import take
from watcher.snapshot.compressibility import (
    SNIFF_MIN_SIZE,
    frames_for_samples,
    incompressible_name,
    incompressible_sample,
    looks_incompressible,
)
from watcher.snapshot.take import _Later, _later_record, _read_later
from watcher.snapshot.tarstream import (
    BLOCK,
    FAST,
    LEVEL,
    STORED,
    STORED_BLOCK,
    WRITEBACK_EVERY,
    CompressedSink,
    StoredFrameWriter,
    TarProducer,
    _owner_name,
    padding,
    tar_header,
)

needs_gnu_tar = pytest.mark.skipif(shutil.which("tar") is None or shutil.which("zstd") is None,
                                   reason="GNU tar and zstd are not installed")
needs_zstd = pytest.mark.skipif(shutil.which("zstd") is None,
                                reason="the zstd command is not installed")

LONG_DIR = "carpeta con un nombre bastante largo/" * 4
NAMES = [
    "files/a.txt",
    "files/" + "x" * 94,                                  # exactly 100 characters
    "files/" + "y" * 95,                                  # 101: needs a pax record
    "files/" + LONG_DIR + "archivo.txt",                   # long, ASCII
    "files/SIIP CON FOTO/fotografía ñandú.jpg",            # short, UTF-8
    "files/" + LONG_DIR + "Muñoz Cruz Héctor/credencial reverso 001.jpg",  # long, UTF-8
    "files/日本語/ファイル.txt",                              # multi-byte UTF-8
    "files/with space and 'quotes'.txt",
]


def build_tar(members: list[tuple[str, str, bytes, str]]) -> bytes:
    """An uncompressed tar of (name, kind, data, link target) members, via tar_header."""
    out = io.BytesIO()
    for name, kind, data, target in members:
        out.write(tar_header(name, kind, size=len(data), mode=0o640 if kind == "file" else 0o755,
                             mtime=1_700_000_000.9, uid=os.getuid(), gid=os.getgid(),
                             linkname=target))
        if kind == "file":
            out.write(data + padding(len(data)))
    out.write(b"\0" * (2 * BLOCK))
    return out.getvalue()


def sample_members() -> list[tuple[str, str, bytes, str]]:
    members: list[tuple[str, str, bytes, str]] = [("files/dir", "dir", b"", ""),
                                                  ("files/" + LONG_DIR.rstrip("/"), "dir", b"",
                                                   "")]
    for i, name in enumerate(NAMES):
        members.append((name, "file", f"content {i}\n".encode() * (i * 40), ""))
    members.append(("files/enlace.jpg", "symlink", b"", "SIIP CON FOTO/fotografía ñandú.jpg"))
    members.append(("files/long link", "symlink", b"", "../" * 40 + "ñ"))
    members.append(("files/empty", "file", b"", ""))
    return members


def test_headers_read_back_identically_with_tarfile() -> None:
    members = sample_members()
    with tarfile.open(fileobj=io.BytesIO(build_tar(members)), mode="r:") as tar:
        infos = tar.getmembers()
        assert [i.name for i in infos] == [m[0] for m in members]
        for info, (_name, kind, data, target) in zip(infos, members, strict=True):
            assert info.type == {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE,
                                 "symlink": tarfile.SYMTYPE}[kind]
            assert info.mtime == 1_700_000_000  # whole seconds; the manifest keeps the rest
            assert info.uid == os.getuid() and info.gid == os.getgid()
            assert info.mode == (0o640 if kind == "file" else 0o755)
            assert info.linkname == target
            if kind == "file":
                extracted = tar.extractfile(info)
                assert extracted is not None and extracted.read() == data
                assert info.size == len(data)


def first_member(header: bytes) -> tarfile.TarInfo:
    with tarfile.open(fileobj=io.BytesIO(header + b"\0" * (1 << 14)), mode="r:") as tar:
        info = tar.next()
    assert info is not None
    return info


def test_headers_match_tarfiles_own_pax_output_field_by_field() -> None:
    """Same meaning as tarfile's PAX_FORMAT header for the cases the fast path builds."""
    for name in NAMES + ["files/dir/"]:
        kind = "dir" if name.endswith("/") else "file"
        ours = tar_header(name, kind, size=123 if kind == "file" else 0, mode=0o100644,
                          mtime=1_600_000_000, uid=1000, gid=1000)
        info = tarfile.TarInfo(name)
        info.type = tarfile.DIRTYPE if kind == "dir" else tarfile.REGTYPE
        info.size, info.mode, info.mtime, info.uid, info.gid = (
            123 if kind == "file" else 0, 0o644, 1_600_000_000, 1000, 1000)
        info.uname, info.gname = _owner_name("u", 1000), _owner_name("g", 1000)
        theirs = info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8",
                            errors="surrogateescape")
        a, b = first_member(ours), first_member(theirs)
        assert a.get_info() == b.get_info()
        assert a.pax_headers == b.pax_headers
        assert len(ours) == len(theirs)  # a pax record exactly when tarfile writes one


def test_rare_cases_fall_back_to_tarfile_and_still_read_back() -> None:
    bad_utf8 = os.fsdecode(b"files/caf\xe9.txt")  # a Latin-1 name on disk: surrogate escapes
    cases = [
        (bad_utf8, {"size": 3}),
        ("files/huge.bin", {"size": 9 << 30}),            # over the 8 GiB ustar size limit
        ("files/old.txt", {"mtime": -86400.0}),           # before 1970
        ("files/big-uid.txt", {"uid": 8 ** 8}),
    ]
    for name, extra in cases:
        header = tar_header(name, "file", **extra)
        with tarfile.open(fileobj=io.BytesIO(header + b"\0" * (1 << 14)), mode="r|",
                          encoding="utf-8", errors="surrogateescape") as tar:
            info = tar.next()
            assert info is not None and info.name == name
            for key, value in extra.items():
                assert getattr(info, key) == int(value)


@needs_gnu_tar
def test_gnu_tar_lists_and_extracts_long_and_utf8_names(tmp_path: Path) -> None:
    members = sample_members()
    archive = tmp_path / "t.tar"
    archive.write_bytes(build_tar(members))
    env = {**os.environ, "LC_ALL": "C.UTF-8"}
    listing = subprocess.run(["tar", "-tf", str(archive)], capture_output=True, text=True,
                             env=env, check=True).stdout.splitlines()
    assert [n.rstrip("/") for n in listing] == [m[0] for m in members]
    out = tmp_path / "out"
    out.mkdir()
    run = subprocess.run(["tar", "-xf", str(archive), "-C", str(out)], capture_output=True,
                         text=True, env=env, check=False)
    assert run.returncode == 0, run.stderr
    for name, kind, data, target in members:
        path = out / name
        if kind == "file":
            assert path.read_bytes() == data
            assert path.stat().st_mtime == 1_700_000_000
        elif kind == "symlink":
            assert os.readlink(path) == target
        else:
            assert path.is_dir()


def write_with_switches(path: Path, parts: list[tuple[str, str, bytes]],
                        threads: int = 0) -> CompressedSink:
    sink = CompressedSink(path, level=3, threads=threads)
    producer = TarProducer(sink)
    for frames, name, data in parts:
        producer.set_frames(frames)
        producer.add_bytes(name, data, 0o644, 1_700_000_000)
    producer.set_incompressible(False)
    producer.add_bytes("manifest.json", b"{}", 0o600, 1_700_000_000)
    producer.end()
    sink.close()
    return sink


def frame_parts() -> list[tuple[str, str, bytes]]:
    rnd = random.Random(7)
    text = b"".join(f"line {i}: hola mundo, fotografía\n".encode() for i in range(20_000))
    return [(LEVEL, "files/a.txt", text), (LEVEL, "files/b.txt", text[:1000]),
            (STORED, "files/foto 1.jpg", rnd.randbytes(300_000)),
            (STORED, "files/foto 2.jpg", rnd.randbytes(3_000_000)),
            (FAST, "databases/siip.db", text * 3),
            (STORED, "files/foto 3.jpg", rnd.randbytes(1000))]


@pytest.mark.parametrize("threads", [0, 1])
def test_frame_switches_round_trip_through_our_reader(tmp_path: Path, threads: int) -> None:
    parts = frame_parts()
    archive = tmp_path / "a.tar.zst"
    sink = write_with_switches(archive, parts, threads)
    # text | photos | database (fastest level) | photo | manifest: a frame per run of a class
    assert sink.frames == 5
    with open(archive, "rb") as fh, \
            zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True) as zr, \
            tarfile.open(fileobj=zr, mode="r|") as tar:
        got = {m.name: tar.extractfile(m).read() for m in tar}  # type: ignore[union-attr]
    assert got == {**{name: data for _, name, data in parts}, "manifest.json": b"{}"}


def test_the_archive_holds_several_frames_and_photos_are_not_recompressed(
        tmp_path: Path) -> None:
    parts = frame_parts()
    archive = tmp_path / "a.tar.zst"
    write_with_switches(archive, parts)
    raw = archive.read_bytes()
    magic = (0xFD2FB528).to_bytes(4, "little")
    assert raw.startswith(magic) and raw.count(magic) >= 5
    # the frames hold the photos (random bytes) at about their own size, the text far smaller
    photos = sum(len(d) for frames, _, d in parts if frames == STORED)
    text = sum(len(d) for frames, _, d in parts if frames != STORED)
    assert photos < len(raw) < photos + text / 4


@needs_gnu_tar
def test_tar_and_zstd_read_the_concatenated_frames(tmp_path: Path) -> None:
    parts = frame_parts()
    archive = tmp_path / "a.tar.zst"
    write_with_switches(archive, parts)
    assert subprocess.run(["zstd", "-q", "-t", str(archive)], check=False).returncode == 0
    out = tmp_path / "out"
    out.mkdir()
    run = subprocess.run(["tar", "--zstd", "-xf", str(archive), "-C", str(out)],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    for _, name, data in parts:
        assert hashlib.sha256((out / name).read_bytes()).digest() == \
            hashlib.sha256(data).digest()


def test_an_empty_stream_is_still_one_valid_frame(tmp_path: Path) -> None:
    sink = CompressedSink(tmp_path / "e.zst", level=3, threads=0)
    sink.close()
    assert sink.frames == 1
    assert zstandard.ZstdDecompressor().decompressobj().decompress(
        (tmp_path / "e.zst").read_bytes()) == b""


def test_compressibility_by_name_and_by_content(tmp_path: Path) -> None:
    assert incompressible_name("files/SIIP CON FOTO/Foto 1.JPG")
    assert incompressible_name("files/x/informe.docx")
    assert not incompressible_name("files/app/views.py")
    assert not incompressible_name("files/jpg/README")   # a folder named like an extension
    assert not incompressible_name("files/.jpg.d/notes")
    rnd = random.Random(3)
    assert incompressible_sample(rnd.randbytes(65536))
    assert not incompressible_sample(b"hola mundo " * 6000)
    assert not incompressible_sample(b"")

    big_random = tmp_path / "blob.bin"
    big_random.write_bytes(rnd.randbytes(SNIFF_MIN_SIZE))
    big_text = tmp_path / "log.bin"
    big_text.write_bytes(b"2026-11-27 INFO request served\n" * (SNIFF_MIN_SIZE // 20))
    small_random = tmp_path / "small.bin"
    small_random.write_bytes(rnd.randbytes(1000))
    assert looks_incompressible(str(big_random), "blob.bin", big_random.lstat())
    assert not looks_incompressible(str(big_text), "log.bin", big_text.lstat())
    assert not looks_incompressible(str(small_random), "small.bin",
                                    small_random.lstat())  # too small to matter
    walked = big_random.lstat()
    big_random.unlink()
    assert not looks_incompressible(str(big_random), "blob.bin", walked)  # gone since the walk


def test_frames_for_samples_judges_the_whole_file_not_its_start(tmp_path: Path) -> None:
    rnd = random.Random(5)
    page = 4096
    text_page = (b"persona Mu\xc3\xb1oz, calle Ju\xc3\xa1rez 12, Oaxaca; " * 80)[:page]
    # like a database of photo attachments: text pages first (the schema, a table of names),
    # then mostly attachments with a text page now and then
    pages = [text_page] * 40 + [text_page if i % 10 == 0 else rnd.randbytes(page)
                                for i in range(1000)]
    cases = {"attachments.db": (b"".join(pages), FAST),
             "text.db": (text_page * 1000, LEVEL),
             "photos.db": (rnd.randbytes(4 << 20), STORED),
             "tiny.db": (b"SQLite format 3\0", LEVEL),
             "empty.db": (b"", LEVEL)}
    for name, (data, want) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        fd = os.open(path, os.O_RDONLY)
        try:
            os.lseek(fd, 7, os.SEEK_SET)
            assert frames_for_samples(fd, len(data)) == want, name
            assert os.lseek(fd, 0, os.SEEK_CUR) == 7  # the position is left alone
        finally:
            os.close(fd)
    # its first 64 KiB alone would have said "compress it at the configured level"
    assert not incompressible_sample(b"".join(pages)[:65536])


def _frame_count(archive: Path) -> int:
    raw, frames = archive.read_bytes(), 0
    while raw:
        dobj = zstandard.ZstdDecompressor().decompressobj()
        dobj.decompress(raw)
        raw, frames = dobj.unused_data, frames + 1
    return frames


def _contents(archive: Path) -> tuple[set[tuple[object, ...]], list[tuple[object, ...]]]:
    """Every member's header fields and data digest, and the manifest's member records."""
    members: set[tuple[object, ...]] = set()
    with open(archive, "rb") as fh, \
            zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True) as zr, \
            tarfile.open(fileobj=zr, mode="r|") as tar:
        for m in tar:
            data = tar.extractfile(m).read() if m.isfile() else b""  # type: ignore[union-attr]
            if m.name == "manifest.json":
                manifest = json.loads(data)["members"]
                continue
            members.add((m.name, m.type, m.size, m.mode, m.mtime, m.uid, m.gid, m.uname,
                         m.gname, m.linkname, tuple(sorted(m.pax_headers.items())),
                         hashlib.sha256(data).hexdigest()))
    return members, sorted(tuple(sorted(r.items())) for r in manifest)


def test_a_database_of_attachments_goes_in_fast_frames_with_the_same_content(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_siip_tree(tmp_path / "siip")
    rnd = random.Random(9)
    db = sqlite3.connect(root / "siip_database.db")
    with db:
        db.execute("CREATE TABLE adjuntos (id INTEGER PRIMARY KEY, datos BLOB)")
        db.executemany("INSERT INTO adjuntos (datos) VALUES (?)",
                       [(rnd.randbytes(rnd.randint(2000, 20000)),) for _ in range(400)])
    db.close()
    fast = run_backup(make_config(root, tmp_path / "fast"), trigger="manual", email=False)
    # the same tree with the database at the configured level, as before FAST frames existed
    monkeypatch.setattr(take, "frames_for_samples", lambda fd, size: LEVEL)
    level = run_backup(make_config(root, tmp_path / "level"), trigger="manual", email=False)
    assert fast.status == level.status == "ok", (fast.errors, level.errors)
    fast_file = Path(fast.snapshot.file)  # type: ignore[union-attr]
    level_file = Path(level.snapshot.file)  # type: ignore[union-attr]
    assert _frame_count(fast_file) > _frame_count(level_file)
    assert _contents(fast_file) == _contents(level_file)


def test_deferred_entries_round_trip_across_block_boundaries(tmp_path: Path) -> None:
    records = [_Later("f" if i % 3 else "d", f"uploads/{'ñ' * (i % 50)} foto {i}.jpg",
                      f"/srv/siip/uploads/x{i}.jpg", 0o40755 if i % 3 == 0 else 0,
                      1_700_000_000_123_456_789 + i, 1000, 1000 + i % 2)
               for i in range(5000)]
    records.append(_Later("f", os.fsdecode(b"caf\xe9.jpg"), os.fsdecode(b"/srv/siip/caf\xe9.jpg")))
    with open(tmp_path / "later", "w+b") as fh:
        for rec in records:
            fh.write(_later_record(rec))
        assert fh.tell() > 3 * (1 << 16)  # several read blocks
        fh.seek(0)
        assert list(_read_later(fh)) == records


def test_an_archive_past_several_writeback_hints_is_whole(tmp_path: Path) -> None:
    blob = random.Random(5).randbytes(WRITEBACK_EVERY + (3 << 20))
    archive = tmp_path / "big.tar.zst"
    sink = CompressedSink(archive, level=3, threads=1)
    producer = TarProducer(sink)
    producer.set_incompressible(True)
    producer.add_stream("files/video.mp4", io.BytesIO(blob), len(blob), 0o644, 0, 0, 0)
    producer.end()
    size, sha = sink.close()
    assert size == archive.stat().st_size > len(blob)
    assert sha == hashlib.sha256(archive.read_bytes()).hexdigest()
    with open(archive, "rb") as fh, \
            zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True) as zr, \
            tarfile.open(fileobj=zr, mode="r|") as tar:
        member = tar.next()
        assert member is not None
        extracted = tar.extractfile(member)
        assert extracted is not None and extracted.read() == blob


FRAME_SIZES = [[], [0], [1], [STORED_BLOCK], [STORED_BLOCK + 1],
               [300 * STORED_BLOCK + 7, 5, STORED_BLOCK - 1]]


def stored_frames(sizes: list[int]) -> tuple[bytes, bytes]:
    """(stored frames, the bytes they hold) for pieces of ``sizes`` random bytes."""
    rnd = random.Random(len(sizes))
    pieces = [rnd.randbytes(n) for n in sizes]
    out: list[bytes] = []
    writer = StoredFrameWriter(lambda parts: out.extend(bytes(p) for p in parts))
    for piece in pieces:  # each piece its own frame, the last two written as one
        writer.write(piece)
        if len(pieces) < 3:
            writer.flush()
    writer.flush()
    stream = b"".join(out)
    assert stream.count((0xFD2FB528).to_bytes(4, "little")) >= (len(pieces) if
                                                                len(pieces) < 3 else 1)
    return stream, b"".join(pieces)


@pytest.mark.parametrize("sizes", FRAME_SIZES)
def test_stored_frames_decode_with_python_zstandard(sizes: list[int]) -> None:
    stream, expected = stored_frames(sizes)
    with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(stream),
                                                   read_across_frames=True) as zr:
        assert zr.read() == expected


@needs_zstd
# no pieces write no frame, and an empty file is not a zstd file to the command
@pytest.mark.parametrize("sizes", [s for s in FRAME_SIZES if s])
def test_stored_frames_decode_with_the_zstd_cli(tmp_path: Path, sizes: list[int]) -> None:
    stream, expected = stored_frames(sizes)
    path = tmp_path / "s.zst"
    path.write_bytes(stream)
    run = subprocess.run(["zstd", "-q", "-d", "-c", str(path)], capture_output=True, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout == expected


@needs_gnu_tar
def test_snapshot_order_and_gnu_tar_restores_folder_times(tmp_path: Path) -> None:
    root = make_siip_tree(tmp_path / "siip")
    (root / "static" / "uploads" / "notas.txt").write_text("texto\n" * 1000)
    for folder in (root / "SIIP CON FOTO", root / "static" / "uploads", root / "static"):
        os.utime(folder, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    report = run_backup(make_config(root, tmp_path / "backups"), trigger="manual",
                        email=False)
    assert report.status == "ok", report.errors
    archive = Path(report.snapshot.file)  # type: ignore[union-attr]
    with open(archive, "rb") as fh, \
            zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True) as zr, \
            tarfile.open(fileobj=zr, mode="r|") as tar:
        kinds = [("dir" if m.isdir() else m.name.endswith(".jpg") and m.isfile(), m.name)
                 for m in tar]
    names = [n for _, n in kinds]
    assert names[-1] == "manifest.json"
    order = [k for k, n in kinds if n.startswith("files/")]
    # text and links, then photos, then folders
    assert order == sorted(order, key=lambda k: {False: 0, True: 1, "dir": 2}[k])
    assert "files/static/empty dir" in [n.rstrip("/") for n in names]

    out = tmp_path / "untar"
    out.mkdir()
    run = subprocess.run(["tar", "--zstd", "-xf", str(archive), "-C", str(out)],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    for rel in ("SIIP CON FOTO", "static/uploads", "static"):
        assert (out / "files" / rel).stat().st_mtime == 1_600_000_000, rel
    assert (out / "files" / "SIIP CON FOTO" / "fotografía ñandú.jpg").read_bytes() == \
        (root / "SIIP CON FOTO" / "fotografía ñandú.jpg").read_bytes()
