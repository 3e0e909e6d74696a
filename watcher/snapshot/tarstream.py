"""Streaming tar into zstd into a file, hashing the output, with reads and compression overlapped.

The producer (the caller's thread) builds tar blocks: it reads files and hashes them, both of
which release the GIL. A sink thread feeds zstd (multi-threaded in C, GIL released) and writes
and hashes the compressed output. A bounded queue between them keeps memory flat whatever the
data size. The output is an ordinary POSIX (pax) tar in a few concatenated zstd frames, which is
one valid zstd stream: `zstd -d` and `tar --zstd -xf` read it whole.

Incompressible members (photos, video, zip-based documents) go into frames of their own made
of stored ("raw") zstd blocks: on such data every level gives the same size, and the configured,
multi-threaded level costs 0.9 CPU-s per GB for nothing (zstd's fastest level still 0.3). A
stored block is the data behind a 3-byte header, written without a copy. Members that compress
only a little (a database of photo attachments) go into frames made at zstd's fastest level,
which gets within a fraction of a percent of the configured level's size on such data in less
than half its time. The caller groups members by class so the stream switches frames only a
few times.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import os
import queue
import struct
import tarfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zstandard

BLOCK = tarfile.BLOCKSIZE            # 512
RECORD = tarfile.RECORDSIZE          # 10240: what tar pads an archive to
BATCH = 1 << 20                      # small members are batched into ~1 MiB writes
PASS_THROUGH = 64 << 10              # bigger pieces are queued as they are, never copied
FEED = 256 << 10                     # zstd gets at most this much per call (see _feed)
QUEUE_DEPTH = 8                      # at most ~8 MiB in flight between the two threads
WRITEBACK_EVERY = 32 << 20           # start writing the archive to disk every 32 MiB
_FADV_DONTNEED: int | None = getattr(os, "POSIX_FADV_DONTNEED", None)

_names: dict[tuple[str, int], str] = {}

#: the classes of zstd frame a member can go into (see the module doc): the configured level,
#: zstd's fastest level, stored blocks
LEVEL, FAST, STORED = "level", "fast", "stored"
#: the level of FAST frames (a configured level below it is used as it is)
FAST_LEVEL = 1


#: the ustar header's name and link fields, and its owner-name fields (bytes)
USTAR_NAME = 100
USTAR_OWNER = 32
#: buffers handed to one writev: well under any system's limit (IOV_MAX)
WRITEV_PARTS = 512


def _owner_name(kind: str, ident: int) -> str:
    """User or group name for a numeric id, cached (lookups are slow on big trees)."""
    key = (kind, ident)
    if key not in _names:
        name = ""
        try:
            if kind == "u":
                import pwd  # noqa: PLC0415 - POSIX only: Windows has no pwd

                name = pwd.getpwuid(ident).pw_name
            else:
                import grp  # noqa: PLC0415 - POSIX only: Windows has no grp

                name = grp.getgrgid(ident).gr_name
        except (ImportError, KeyError):
            pass
        _names[key] = name
    return _names[key]


_HEADER = struct.Struct("100s8s8s8s12s12s8sc100s8s32s32s16x155s12x")  # one ustar block
_USTAR_MAGIC = b"ustar\x0000"
_TYPES = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE}
_MAX_ID = 8 ** 7          # what fits a 7-digit octal field (uid, gid)
_MAX_NUM = 8 ** 11        # what fits an 11-digit octal field (size, mtime)


def tar_header(name: str, kind: str, *, size: int = 0, mode: int = 0o644, mtime: float = 0,
               uid: int = 0, gid: int = 0, linkname: str = "") -> bytes:
    """The header block(s) of one member, in pax format (long and UTF-8 names just work).

    Built by hand: ``tarfile.TarInfo.tobuf`` costs 20-40 us a member, several tenths of a second
    of GIL-held time on a tree of 15,000 files. The result means the same as tobuf's
    ``PAX_FORMAT`` output: a plain ustar block, preceded by a pax record for a name or link
    target that is not ASCII or longer than 100 characters. Rare cases (names that are not
    valid UTF-8, owner names that need a record, numbers out of the ustar range) go to tarfile.
    """
    if kind == "dir" and not name.endswith("/"):
        name += "/"
    size = size if kind == "file" else 0
    mtime_s = int(mtime)  # whole seconds (no per-member record); the manifest keeps nanoseconds
    uname, gname = _owner_name("u", uid), _owner_name("g", gid)
    if not (0 <= uid < _MAX_ID and 0 <= gid < _MAX_ID and 0 <= size < _MAX_NUM
            and 0 <= mtime_s < _MAX_NUM and len(uname) <= USTAR_OWNER and len(gname) <= USTAR_OWNER
            and uname.isascii() and gname.isascii()):
        return _tarfile_header(name, kind, size, mode, mtime_s, uid, gid, linkname)
    records = b""
    if len(name) > USTAR_NAME or not name.isascii():
        try:
            records += _pax_record("path", name)
        except UnicodeEncodeError:  # not valid UTF-8 on disk (surrogate escapes)
            return _tarfile_header(name, kind, size, mode, mtime_s, uid, gid, linkname)
    if linkname and (len(linkname) > USTAR_NAME or not linkname.isascii()):
        try:
            records += _pax_record("linkpath", linkname)
        except UnicodeEncodeError:
            return _tarfile_header(name, kind, size, mode, mtime_s, uid, gid, linkname)
    block = _ustar(name, _TYPES[kind], size, mode & 0o7777, mtime_s, uid, gid, linkname,
                   uname, gname)
    if not records:
        return block
    return _pax_header_block(len(records)) + records + padding(len(records)) + block


@functools.cache
def _pax_header_block(size: int) -> bytes:
    """The ustar block that announces a pax record of ``size`` bytes. Only the size varies
    (most of a Spanish tree's names need a record), so each is built once."""
    return _ustar("././@PaxHeader", tarfile.XHDTYPE, size, 0, 0, 0, 0, "", "", "")


# the ustar header's fields, in the header's order
def _ustar(name: str, typeflag: bytes, size: int, mode: int, mtime: int, uid: int, gid: int,  # noqa: PLR0913,PLR0917
           linkname: str, uname: str, gname: str) -> bytes:
    """One ustar header block; text fields as ASCII ("?" for the rest, as tarfile does)."""
    block = _HEADER.pack(
        name.encode("ascii", "replace"), b"%07o\0" % mode, b"%07o\0" % uid, b"%07o\0" % gid,
        b"%011o\0" % size, b"%011o\0" % mtime, b"        ", typeflag,
        linkname.encode("ascii", "replace"), _USTAR_MAGIC, uname.encode("ascii", "replace"),
        gname.encode("ascii", "replace"), b"",
    )
    # the checksum is the byte sum with its own field read as spaces, as six octal digits
    return b"%s%06o\0%s" % (block[:148], sum(block), block[155:])


def _pax_record(keyword: str, value: str) -> bytes:
    """``"<len> <keyword>=<value>\\n"``, where <len> counts the whole record, itself included."""
    payload = b" %s=%s\n" % (keyword.encode("ascii"), value.encode("utf-8"))
    length = len(payload) + 1
    while len(str(length)) + len(payload) != length:
        length = len(str(length)) + len(payload)
    return b"%d%s" % (length, payload)


# the tar header's fields, in the header's order
def _tarfile_header(name: str, kind: str, size: int, mode: int, mtime: int, uid: int,  # noqa: PLR0917
                    gid: int, linkname: str) -> bytes:
    """The general (slow) path: tarfile's own pax header."""
    info = tarfile.TarInfo(name)
    info.type = _TYPES[kind]
    info.size = size
    info.mode = mode & 0o7777
    info.mtime = mtime
    info.uid, info.gid = uid, gid
    info.uname, info.gname = _owner_name("u", uid), _owner_name("g", gid)
    info.linkname = linkname
    return info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="surrogateescape")


def padding(size: int) -> bytes:
    """Zero bytes that round a member's data up to a whole block."""
    return b"\0" * (-size % BLOCK)


_HAS_WRITEV = hasattr(os, "writev")
_ZSTD_MAGIC = (0xFD2FB528).to_bytes(4, "little")
#: RFC 8878: Frame_Header_Descriptor 0 (no content size, no checksum, no dictionary, not
#: single-segment), then a Window_Descriptor of 2**17 bytes, which sets the largest block
_STORED_FRAME_HEADER = _ZSTD_MAGIC + bytes([0x00, (17 - 10) << 3])
STORED_BLOCK = 128 << 10
_LAST_EMPTY_BLOCK = b"\x01\x00\x00"  # Last_Block = 1, Block_Type = Raw, Block_Size = 0


class StoredFrameWriter:
    """zstd frames of stored (raw) blocks: a valid zstd stream that costs no compression work.

    Every zstd decoder reads them (RFC 8878, section 3.1.1.2: Raw_Block); zstd itself writes
    such blocks for data it cannot shrink. Frames carry no content checksum: the manifest's
    sha256 of every member and the archive's sha256 are what verify checks.
    Same ``write``/``flush`` calls as python-zstandard's stream writer.
    """

    def __init__(self, out: Callable[[list[bytes | memoryview]], None]) -> None:
        self._out = out
        self._open = False

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Append ``data`` to the current frame (starting one if needed)."""
        view = memoryview(data)
        parts: list[bytes | memoryview] = []
        if not self._open:
            parts.append(_STORED_FRAME_HEADER)
            self._open = True
        for start in range(0, len(view), STORED_BLOCK):
            block = view[start:start + STORED_BLOCK]
            # Block_Header, 3 bytes little-endian: size << 3 | Block_Type (0: Raw) << 1 | Last
            parts.append((len(block) << 3).to_bytes(3, "little"))
            parts.append(block)
            if len(parts) >= WRITEV_PARTS:
                self._out(parts)
                parts = []
        if parts:
            self._out(parts)
        return len(view)

    def flush(self, mode: int = zstandard.FLUSH_FRAME) -> int:
        """End the frame with an empty last block (as zstd does for an empty frame)."""
        if self._open:
            self._out([_LAST_EMPTY_BLOCK])
            self._open = False
        return 0


class SinkError(Exception):
    """Writing the archive failed (disk full, I/O error); the message says what to do and
    ``cause`` which (see :data:`watcher.backup.report.CAUSES`)."""

    def __init__(self, message: str, cause: str = "write_failed") -> None:
        super().__init__(message)
        self.cause = cause


class CompressedSink:
    """Compress and write a byte stream to ``path`` (created 0600, never overwritten)."""

    def __init__(self, path: Path, *, level: int, threads: int,
                 stop: threading.Event | None = None) -> None:
        self.path = path
        self._stop = stop
        self.bytes_in = 0
        self._hash = hashlib.sha256()
        self._size = 0
        self._written_back = 0  # bytes handed to the kernel's writeback (see write)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                           0o600)
        # zstd's "threads" are extra workers: 1 thread means compress in this sink's own
        # thread (0 workers), which also streams output block by block; 0 means all cores
        workers = -1 if threads == 0 else threads if threads > 1 else 0
        self._level = level
        self._workers = workers
        self._zw: Any = self._writer(level, workers)
        self._fast: Any = None        # FAST frames' writer, made when first needed
        self._stored: Any = StoredFrameWriter(self.write_parts)  # for incompressible members
        self._class = LEVEL           # the class of the frame being written
        self._frame_open = False      # has the current frame received any data yet?
        self.frames = 0               # frames finished, for tests and benchmarks
        # chunks of the tar stream; a str switches the class of what follows (see switch), a
        # Path is a file of whole zstd frames to copy in (see append_frames)
        self._queue: queue.Queue[bytes | bytearray | str | Path | None] = queue.Queue(
            QUEUE_DEPTH)
        self._error: BaseException | None = None
        self._cancelled = False
        self._thread = threading.Thread(target=self._drain, name="archive-writer", daemon=True)
        self._thread.start()
        self._closed = False

    def _writer(self, level: int, workers: int) -> Any:
        params = zstandard.ZstdCompressionParameters.from_level(
            level, threads=workers, write_checksum=True
        )
        return zstandard.ZstdCompressor(compression_params=params).stream_writer(
            self, write_size=BATCH, closefd=False
        )

    # the file-like side zstd writes compressed bytes into
    def write(self, data: bytes) -> int:
        if self._cancelled or (self._stop is not None and self._stop.is_set()):
            # raised inside zstd's flush too, so a long final flush is cut short on abort
            raise Aborted("the run was asked to stop")
        view = memoryview(data)
        self._hash.update(view)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self._wrote(len(data))
        return len(data)

    def write_parts(self, parts: list[bytes | memoryview]) -> None:
        """Write several pieces of output with one system call where the OS has writev."""
        if self._cancelled or (self._stop is not None and self._stop.is_set()):
            raise Aborted("the run was asked to stop")
        total = 0
        for part in parts:
            self._hash.update(part)
            total += len(part)
        done = os.writev(self._fd, parts) if _HAS_WRITEV else 0
        if done < total:  # no writev, or a short write (rare on files): write the rest plainly
            rest = memoryview(b"".join(parts))[done:]
            while rest:
                n = os.write(self._fd, rest)
                rest = rest[n:]
        self._wrote(total)

    def _wrote(self, n: int) -> None:
        self._size += n
        if self._size - self._written_back >= WRITEBACK_EVERY:
            self._start_writeback()

    def _start_writeback(self) -> None:
        """Have the kernel start writing what is written so far, without waiting for it.

        Otherwise the whole archive sits dirty in memory until the final fsync, which then
        waits for all of it (0.35 s for 1.2 GB here): written back as it goes, the fsync only
        waits for the tail. For dirty pages POSIX_FADV_DONTNEED starts writeback and drops
        nothing (PostgreSQL's pg_flush_data does the same where sync_file_range is missing).
        """
        if _FADV_DONTNEED is None:
            return
        # only a hint: the fsync at the end is what makes the archive durable
        with contextlib.suppress(OSError):
            os.posix_fadvise(self._fd, self._written_back, self._size - self._written_back,
                             _FADV_DONTNEED)
        self._written_back = self._size

    def _drain(self) -> None:
        ended = False
        try:
            while True:
                chunk = self._queue.get()
                if chunk is None:
                    ended = True
                    break
                if self._stop is not None and self._stop.is_set():
                    self._cancelled = True
                if not self._cancelled:  # aborting: drop the backlog instead of compressing it
                    self._take(chunk)
            if not self._cancelled and (self._frame_open or not self.frames):
                self._frame_open = True  # an empty stream still gets one (empty) frame
                self._end_frame()
        except Aborted:
            self._cancelled = True
            while not ended and self._queue.get() is not None:
                pass
        # reported to the producer on its next put or at close
        except BaseException as exc:  # noqa: BLE001
            self._error = exc
            # keep draining so the producer never blocks on a full queue
            while not ended and self._queue.get() is not None:
                pass

    def _take(self, chunk: bytes | bytearray | str | Path) -> None:
        """One item of the queue: data, a switch of frame class, or a file of frames."""
        if isinstance(chunk, Path):
            self._end_frame()
            self._copy_frames(chunk)
        elif isinstance(chunk, str):
            if chunk != self._class:
                self._end_frame()
                if self._class == FAST:
                    self._fast = None  # its workers' buffers, until needed again
                self._class = chunk
        else:
            self._feed(chunk)

    def _feed(self, chunk: bytes | bytearray) -> None:
        """Compress ``chunk`` in slices, so a stop request is seen between two of them.

        At a high level one call on a 4 MiB piece can take seconds before zstd writes any
        output (where :meth:`write` checks the stop request too).
        """
        writer = self._current_writer()
        view = memoryview(chunk)
        for start in range(0, len(view), FEED):
            if self._stop is not None and self._stop.is_set():
                raise Aborted("the run was asked to stop")
            writer.write(view[start:start + FEED])
            self._frame_open = True

    def _copy_frames(self, path: Path) -> None:
        """Write the zstd frames in ``path`` to the archive as they are (hashing them)."""
        with open(path, "rb", buffering=0) as fh:
            while block := fh.read(BATCH):
                self.write(block)

    def _current_writer(self) -> Any:
        if self._class == STORED:
            return self._stored
        if self._class == FAST:
            if self._fast is None:
                self._fast = self._writer(min(self._level, FAST_LEVEL), self._workers)
            return self._fast
        return self._zw

    def _end_frame(self) -> None:
        if self._frame_open:
            self._current_writer().flush(zstandard.FLUSH_FRAME)
            self._frame_open = False
            self.frames += 1

    def switch(self, frames: str) -> None:
        """Put what follows into frames of class ``frames``: LEVEL, FAST or STORED.

        Each switch that changes the class ends a frame: callers group members to switch
        rarely. Costs nothing when the class does not change.
        """
        if frames not in (LEVEL, FAST, STORED):
            raise ValueError(f"unknown frame class {frames!r}")
        if self._error is not None:
            raise self._as_sink_error(self._error)
        self._queue.put(frames)

    def append_frames(self, path: Path, tar_bytes: int) -> None:
        """Copy the file ``path`` of whole zstd frames, which hold ``tar_bytes`` of whole tar
        members, into the archive after what was put so far (the frame being written ends
        first). The file must stay until :meth:`close`."""
        if self._error is not None:
            raise self._as_sink_error(self._error)
        self.bytes_in += tar_bytes
        self._queue.put(path)

    def put(self, data: bytes | bytearray) -> None:
        """Queue uncompressed bytes; raises :class:`SinkError` once writing has failed."""
        if self._error is not None:
            raise self._as_sink_error(self._error)
        if self._cancelled:
            raise Aborted("the run was asked to stop")
        self.bytes_in += len(data)
        self._queue.put(data)

    @property
    def size(self) -> int:
        """Compressed bytes written so far (a delta checks it against its limit)."""
        return self._size

    def close(self) -> tuple[int, str]:
        """Finish the frame, fsync, and return (compressed size, sha256 hex)."""
        self._finish_thread()
        if self._error is not None:
            raise self._as_sink_error(self._error)
        if self._cancelled:
            raise Aborted("the run was asked to stop")
        try:
            os.fsync(self._fd)
        except OSError as exc:
            raise self._as_sink_error(exc) from None
        finally:
            os.close(self._fd)
            self._closed = True
            # the writers refer back to this sink: break the cycle so each run's compressor
            # (tens of MB) is freed at once, not whenever the cycle collector gets to it
            self._zw = self._fast = self._stored = None
        return self._size, self._hash.hexdigest()

    def abort(self) -> None:
        """Stop at once, dropping what is still queued, and delete the partial file."""
        self._cancelled = True
        self._finish_thread()
        if not self._closed:
            os.close(self._fd)
            self._closed = True
        self._zw = self._fast = self._stored = None
        self.path.unlink(missing_ok=True)

    def _finish_thread(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _as_sink_error(self, exc: BaseException) -> SinkError:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return SinkError(f"the disk holding {self.path.parent} is full; free space there or "
                             f"lower the retention.keep_* settings, then run again", "disk_full")
        if isinstance(exc, OSError):
            return SinkError(f"writing {self.path} failed: {exc.strerror or exc}")
        return SinkError(f"compressing the archive failed: {exc}")


class TarProducer:
    """Builds the tar stream into a :class:`CompressedSink`, batching small writes."""

    def __init__(self, sink: CompressedSink, progress: Callable[[int], None] | None = None,
                 stop: threading.Event | None = None) -> None:
        self.sink = sink
        self.progress = progress
        self.stop = stop
        self._batch = bytearray()
        self.total = 0
        self.frames = LEVEL

    @property
    def incompressible(self) -> bool:
        """Whether members added now go into stored frames."""
        return self.frames == STORED

    def set_frames(self, frames: str) -> None:
        """Members added from now on go into frames of class ``frames``: see the module doc."""
        if frames != self.frames:
            self.flush()
            self.sink.switch(frames)
            self.frames = frames

    def set_incompressible(self, incompressible: bool) -> None:
        """Members added from now on are (not) worth compressing at all: see the module doc."""
        self.set_frames(STORED if incompressible else LEVEL)

    def check_stop(self) -> None:
        if self.stop is not None and self.stop.is_set():
            raise Aborted("the run was asked to stop")

    def write(self, data: bytes | bytearray) -> None:
        """Append bytes of the tar stream."""
        self.total += len(data)
        if len(data) >= PASS_THROUGH:
            # copying a photo into the batch would cost more than one more queue item
            self.flush()
            self.sink.put(data)
            return
        self._batch += data
        if len(self._batch) >= BATCH:
            self.flush()

    def flush(self) -> None:
        if self._batch:
            self.sink.put(self._batch)
            self._batch = bytearray()

    def add_dir(self, name: str, mode: int, mtime: float, uid: int, gid: int) -> None:
        self.write(tar_header(name, "dir", mode=mode, mtime=mtime, uid=uid, gid=gid))

    def add_symlink(self, name: str, target: str, mode: int, mtime: float, uid: int,
                    gid: int) -> None:
        self.write(tar_header(name, "symlink", mode=mode, mtime=mtime, uid=uid, gid=gid,
                              linkname=target))

    def add_bytes(self, name: str, data: bytes, mode: int, mtime: float, uid: int = 0,
                  gid: int = 0) -> None:
        """A member whose whole content is in memory (small files, the manifest)."""
        self.write(tar_header(name, "file", size=len(data), mode=mode, mtime=mtime, uid=uid,
                              gid=gid))
        self.write(data)
        self.write(padding(len(data)))
        if self.progress:
            self.progress(len(data))

    # the tar header's fields, in the header's order
    def add_stream(self, name: str, fh: object, size: int, mode: int, mtime: float, uid: int,  # noqa: PLR0917
                   gid: int, chunk: int = BATCH) -> tuple[str, int]:
        """A member read from the open raw file ``fh`` for exactly ``size`` bytes.

        Returns (sha256 of the member's bytes, bytes actually read). When the file shrank
        while being read, the member is padded with zeros to its declared size (the caller
        records a warning): the tar stays valid and nothing silently pretends to be whole.
        """
        self.write(tar_header(name, "file", size=size, mode=mode, mtime=mtime, uid=uid,
                              gid=gid))
        self.flush()
        digest = hashlib.sha256()
        remaining = size
        read_total = 0
        while remaining:
            self.check_stop()
            data = fh.read(min(chunk, remaining))  # type: ignore[attr-defined]
            if not data:
                break
            digest.update(data)
            self.sink.put(data)
            self.total += len(data)
            read_total += len(data)
            remaining -= len(data)
            if self.progress:
                self.progress(len(data))
        if remaining:
            filler = b"\0" * min(remaining, BATCH)
            while remaining:
                part = filler[:remaining]
                digest.update(part)
                self.write(part)
                remaining -= len(part)
        self.write(padding(size))
        return digest.hexdigest(), read_total

    def append_frames(self, path: Path, tar_bytes: int) -> None:
        """Whole tar members compressed elsewhere (watcher/snapshot/packer.py): see
        :meth:`CompressedSink.append_frames`."""
        self.flush()
        self.sink.append_frames(path, tar_bytes)
        self.total += tar_bytes

    def end(self) -> None:
        """Two zero blocks, then pad to a whole tar record, as tar itself does."""
        self.write(b"\0" * (2 * BLOCK))
        self.write(b"\0" * (-self.total % RECORD))
        self.flush()


class Aborted(Exception):
    """The run was stopped on request (service shutdown); nothing partial is kept."""
