"""The tree packer: small compressible files read, hashed, tarred and compressed by a process
of its own.

On a tree of ten thousand small code files a snapshot's cost is per member, and in one
process every member's Python (open, read and hash it, its tar header, its manifest record,
the hand-overs between threads) waits for the one GIL, so a second core sits idle while the
first one works (docs/benchmarks.md, "Small files"). The snapshot therefore hands such files
to this process once there are enough of them to pay for its start (``python -m
watcher.snapshot.packer``, 40-80 ms, which overlaps the walk). The packer does for each file
what the snapshot does in its own process, with the same functions
(:func:`watcher.snapshot.readahead.read_member`, which opens through
:func:`watcher.snapshot.member.open_member`; :func:`watcher.snapshot.tarstream.tar_header`;
:func:`watcher.archive.manifest.member_entry`), and writes

- the part: whole tar members in zstd frames, which the snapshot appends to its archive as
  they are (a zstd stream may be any number of frames; tar sees one stream of members);
- the records: one line per file asked for, in the order asked: its manifest record, or why
  it is not in the part (vanished, swapped, unreadable, grown too big to read whole here).

They and the list of files to pack (see :class:`Packer`) are ``.partial`` files in the local
dir, removed by the snapshot whatever happens (and by the next run's clean-up after a crash).
An end mark says the list is complete; when standard input closes without it (the snapshot
was killed) the packer deletes what it wrote and exits. It imports only the standard library,
zstandard and these few modules: it must start fast, and it never sees the configuration or a
secret.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import zstandard

from watcher.archive.files import write_all
from watcher.archive.manifest import dump_json, member_entry
from watcher.snapshot import nulrecords
from watcher.snapshot.member import MemberChanged, walked_stat
from watcher.snapshot.readahead import read_member
from watcher.snapshot.tarstream import BATCH, padding, tar_header

#: fields of one file on the packer's input: path, member name, and the walk's mode, device,
#: inode and size (what open_member compares); each field ends with NUL, which no path holds
JOB_FIELDS = 6
#: the end mark: a record of empty fields (no path is empty)
END = b"\0" * JOB_FIELDS
#: the configuration's environment variables (watcher/config/settings.py), never passed on
SETTINGS_ENV_PREFIX = "SIIP_WATCHER_"
#: record tags, the first field of each line of the records file
MEMBER, CHANGED, UNREADABLE, TOO_BIG, FAILED, TOTALS = "m", "c", "e", "b", "f", "t"
#: the packer's exit status when its input ended without the end mark
EXIT_ABANDONED = 3
#: ... and when it could not write its part or records (the message is JSON on stderr)
EXIT_WRITE_FAILED = 4
#: ... and when the snapshot speaks another version of this protocol: the package on disk was
#: upgraded under a running service, whose code in memory is the old one
EXIT_OTHER_VERSION = 5
#: the version of the command line, list, part and records described here
PROTOCOL = 2
_ARGUMENTS = ("protocol", "jobs", "part", "records", "level", "workers")


def job_record(path: str, name: str, walked: os.stat_result) -> bytes:
    """One file for the packer: see :data:`JOB_FIELDS`."""
    return nulrecords.encode((os.fsencode(path), name.encode("utf-8", "surrogateescape"),
                              b"%d" % walked.st_mode, b"%d" % walked.st_dev,
                              b"%d" % walked.st_ino, b"%d" % walked.st_size))


def _appended(jobs: IO[bytes], notices: int) -> Iterator[bytes]:
    """What the snapshot appends to ``jobs``, as it comes.

    The snapshot appends to the file and then writes a byte to the pipe ``notices``; at the
    end of what is there, the packer waits for such a byte. The pipe's end of file means the
    snapshot is done with the list, or gone: what it appended before is read, then no more.
    """
    while True:
        if block := jobs.read(1 << 16):
            yield block
        elif not os.read(notices, 1 << 16):
            while block := jobs.read(1 << 16):
                yield block
            return


def _jobs(jobs: IO[bytes], notices: int) -> Iterator[tuple[str, str, os.stat_result] | None]:
    """The files listed in ``jobs`` (see :func:`_appended`), then None for the end mark
    (nothing if it never came: the snapshot is gone)."""
    for path, name, mode, dev, ino, size in nulrecords.decode(_appended(jobs, notices),
                                                              JOB_FIELDS):
        if not path:
            yield None
            return
        yield (os.fsdecode(path), name.decode("utf-8", "surrogateescape"),
               walked_stat(int(mode), int(ino), int(dev), int(size)))


def _line(tag: str, value: Any) -> str:
    return f"{tag}\t{value}\n"


def _error(path: str, exc: BaseException) -> dict[str, Any]:
    """An exception from reading ``path`` as JSON-able fields (see :func:`rebuild_error`)."""
    if isinstance(exc, MemberChanged):
        return {"path": path, "changed": exc.now}
    if isinstance(exc, OSError):
        return {"path": path, "errno": exc.errno, "strerror": exc.strerror or str(exc)}
    return {"path": path, "errno": None, "strerror": f"{type(exc).__name__}: {exc}"}


def rebuild_error(fields: dict[str, Any]) -> OSError:
    """The exception the snapshot's own process would have met (see :func:`_error`)."""
    path = str(fields["path"])
    if "changed" in fields:
        return MemberChanged(path, str(fields["changed"]))
    number = fields.get("errno")
    if number == errno.ENOENT:
        return FileNotFoundError(number, fields["strerror"], path)
    return OSError(number, fields["strerror"], path) if number else OSError(fields["strerror"])


def pack(jobs: Iterator[tuple[str, str, os.stat_result] | None], part: IO[bytes],
         records: IO[str], *, level: int, workers: int) -> bool:
    """Pack the files of ``jobs`` into ``part`` and describe each in ``records``; returns
    whether the end mark came (the list was complete)."""
    params = zstandard.ZstdCompressionParameters.from_level(level, threads=workers,
                                                            write_checksum=True)
    zw = zstandard.ZstdCompressor(compression_params=params).stream_writer(
        part, write_size=BATCH, closefd=False)
    batch = bytearray()
    members = content = tar_bytes = 0
    ended = False
    for job in jobs:
        if job is None:
            ended = True
            break
        path, name, walked = job
        outcome = read_member(path, walked)
        if outcome.failure is not None:
            records.write(_line(FAILED, json.dumps(_error(path, outcome.failure))))
            continue
        if outcome.error is not None:
            records.write(_line(UNREADABLE, json.dumps(_error(path, outcome.error))))
            continue
        read = outcome.read
        if read is None:  # grew past SMALL_FILE since the walk: the snapshot streams it
            records.write(_line(TOO_BIG, json.dumps({"path": path, "name": name,
                                                     "mode": walked.st_mode,
                                                     "dev": walked.st_dev,
                                                     "ino": walked.st_ino,
                                                     "size": walked.st_size})))
            continue
        before = read.before
        header = tar_header(name, "file", size=len(read.data), mode=before.st_mode,
                            mtime=before.st_mtime, uid=before.st_uid, gid=before.st_gid)
        batch += header
        batch += read.data
        batch += padding(len(read.data))
        tar_bytes += len(header) + len(read.data) + (-len(read.data) % 512)
        if len(batch) >= BATCH:
            zw.write(batch)
            batch = bytearray()
        warning = "changed while being read" if read.changed else None
        entry = dump_json(member_entry(name, "file", len(read.data), before.st_mode,
                                       before.st_mtime_ns, sha256=read.sha256, warning=warning))
        if warning:
            records.write(_line(CHANGED, json.dumps({"path": path, "entry": entry})))
        else:
            records.write(_line(MEMBER, entry))
        members += 1
        content += len(read.data)
    if ended:
        if batch:
            zw.write(batch)
        if tar_bytes:
            zw.flush(zstandard.FLUSH_FRAME)
        records.write(_line(TOTALS, json.dumps({"members": members, "bytes": content,
                                                "tar_bytes": tar_bytes})))
    return ended


def main(argv: list[str]) -> int:
    """``python -m watcher.snapshot.packer PROTOCOL JOBS PART RECORDS LEVEL WORKERS``: see the
    module doc."""
    if len(argv) != len(_ARGUMENTS) or argv[0] != str(PROTOCOL):
        sys.stderr.write(f"the tree packer on disk speaks protocol {PROTOCOL}, not the "
                         f"running snapshot's\n")
        return EXIT_OTHER_VERSION
    jobs_path, part_path, records_path = argv[1], argv[2], argv[3]
    level, workers = int(argv[4]), int(argv[5])
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    try:
        with open(jobs_path, "rb", buffering=0) as jobs, \
                open(os.open(part_path, flags, 0o600), "wb") as part, \
                open(os.open(records_path, flags, 0o600), "w", encoding="utf-8",
                     newline="\n") as records:
            ended = pack(_jobs(jobs, sys.stdin.fileno()), part, records, level=level,
                         workers=workers)
    except OSError as exc:
        sys.stderr.write(json.dumps({"errno": exc.errno, "strerror": exc.strerror or str(exc),
                                     "filename": str(exc.filename or "")}) + "\n")
        ended = False
        status = EXIT_WRITE_FAILED
    else:
        status = 0 if ended else EXIT_ABANDONED
    if not ended:  # abandoned, or failed: nothing of it may look usable
        for leftover in (part_path, records_path):
            with contextlib.suppress(OSError):
                os.unlink(leftover)
    return status


@dataclass(frozen=True)
class Packed:
    """What a finished packer left: its part and records files, and its totals."""

    part: Path
    records: Path
    members: int
    bytes: int
    tar_bytes: int


class PackerFailed(Exception):
    """The packer process failed; the message says how, in one line, ``hint`` what to do."""

    def __init__(self, message: str,
                 hint: str = "run again, and report it if it happens again") -> None:
        super().__init__(message)
        self.hint = hint


#: the snapshot appends the files it names to the packer's list in pieces of about this size
NOTICE_EVERY = 32 << 10


class Packer:
    """The snapshot's side of a packer process: :meth:`add` files, then :meth:`finish`.

    The list of files goes through a file, not a pipe: the snapshot must never wait for the
    packer while it has other members to write (a database, the photos), however far ahead
    of the packer its walk runs, and the list must not grow in memory either.
    """

    def __init__(self, jobs: Path, part: Path, records: Path, *, level: int,
                 workers: int, hidden: Iterable[str] = ()) -> None:
        """Start the packer; raises OSError when it cannot be (the caller packs the files
        itself then). ``hidden`` names environment variables it must not inherit: the ones
        that hold secrets (every ``SIIP_WATCHER_*`` is left out too)."""
        self.jobs, self.part, self.records = jobs, part, records
        self._jobs_fd = os.open(jobs, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                                | getattr(os, "O_BINARY", 0), 0o600)
        self._pending = bytearray()
        package_parent = Path(__file__).resolve().parent.parent.parent
        drop = set(hidden)
        env = {k: v for k, v in os.environ.items()
               if k not in drop and not k.startswith(SETTINGS_ENV_PREFIX)}
        # the package's own folder first: never a "watcher" module from the service's cwd
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(package_parent),
                                                          os.environ.get("PYTHONPATH")]))
        try:
            # what it says on stderr goes to a file, not a pipe: a pipe nobody reads until
            # the end would stop a packer that says much (warnings) halfway, for good
            self._errors: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed in abort
            self._proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-m", "watcher.snapshot.packer", str(PROTOCOL), str(jobs),
                 str(part), str(records), str(level), str(workers)],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._errors,
                cwd=package_parent, env=env)
        except BaseException:
            os.close(self._jobs_fd)
            jobs.unlink(missing_ok=True)
            if hasattr(self, "_errors"):
                self._errors.close()
            raise
        assert self._proc.stdin is not None
        self._in: IO[bytes] = self._proc.stdin
        self.asked = 0

    def add(self, path: str, name: str, walked: os.stat_result) -> None:
        """Pack the regular file the walk saw as ``walked`` at ``path`` as ``name``."""
        self._pending += job_record(path, name, walked)
        self.asked += 1
        if len(self._pending) >= NOTICE_EVERY:
            self._hand_over()

    def _hand_over(self) -> None:
        """Append what is pending to the list, then tell the packer."""
        write_all(self._jobs_fd, self._pending)
        self._pending = bytearray()
        try:
            self._in.write(b"+")
            self._in.flush()
        except BrokenPipeError:
            raise self._failure() from None

    def finish(self, wait: Any) -> Packed:
        """Close the list and wait for the packer (``wait(proc)`` waits, answering a stop
        request); raises :class:`PackerFailed`, or OSError when it could not write."""
        self._pending += END
        self._hand_over()  # raises what the packer ended on, if it ended already
        with contextlib.suppress(BrokenPipeError):
            self._in.close()
        wait(self._proc)
        if self._proc.returncode != 0:
            raise self._failure()
        totals: dict[str, Any] = {}
        with open(self.records, "rb") as fh:
            # the totals are the last line: seek near the end instead of reading it all
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - 4096))
            last = fh.read().rstrip(b"\n").rsplit(b"\n", 1)[-1].decode("utf-8")
        tag, _, value = last.partition("\t")
        if tag == TOTALS:
            totals = json.loads(value)
        if not totals:
            raise PackerFailed(f"the tree packer left no totals in {self.records}")
        return Packed(self.part, self.records, int(totals["members"]), int(totals["bytes"]),
                      int(totals["tar_bytes"]))

    def abort(self) -> None:
        """Stop the packer at once and delete what it wrote."""
        if self._proc.poll() is None:
            self._proc.kill()
        with contextlib.suppress(OSError):
            self._in.close()
        self._proc.wait()
        self._errors.close()
        self.discard()

    def discard(self) -> None:
        """Delete the list, part and records files."""
        with contextlib.suppress(OSError):
            os.close(self._jobs_fd)
        for path in (self.jobs, self.part, self.records):
            path.unlink(missing_ok=True)

    def _failure(self) -> Exception:
        """Why the packer failed, once it has ended: OSError for a write it could not make
        (a full disk reads as one), else :class:`PackerFailed`."""
        with contextlib.suppress(OSError):
            self._in.close()
        self._proc.wait()
        self._errors.seek(0)
        text = self._errors.read().decode("utf-8", "replace").strip()
        if self._proc.returncode == EXIT_WRITE_FAILED:
            with contextlib.suppress(ValueError, KeyError, IndexError):
                fields = json.loads(text.splitlines()[-1])
                return OSError(fields["errno"], fields["strerror"], fields["filename"] or None)
        last = text.splitlines()[-1] if text else "no message"
        failed = PackerFailed(f"the tree packer process ended with status "
                              f"{self._proc.returncode}: {last}")
        if self._proc.returncode == EXIT_OTHER_VERSION:
            failed.hint = "siip-watcher was upgraded while the service ran: restart the service"
        return failed


def records(path: Path) -> Iterator[tuple[str, str]]:
    """The records file's lines as (tag, value), totals excluded."""
    with open(path, encoding="utf-8", newline="\n") as fh:
        for line in fh:
            tag, _, value = line.rstrip("\n").partition("\t")
            if tag != TOTALS:
                yield tag, value


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
