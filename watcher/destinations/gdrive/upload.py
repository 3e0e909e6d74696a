"""Drive's resumable upload protocol, driven by our own loop.

Why not ``MediaFileUpload`` + ``next_chunk(num_retries=N)``: google-api-python-client re-sends
a stream-backed chunk with an EMPTY body when it (or httplib2, or a 401 token refresh)
retries, and the upload then stalls until the HTTP timeout. Here every chunk is a fixed
buffer (a read-only view of the file's pages, see :func:`mapped_chunk`), so any re-send
carries the same bytes, and after every interruption we ask the server where it stands
(``Content-Range: bytes */N``) instead of assuming.

The loop: [find an existing copy, else open a session] -> send a chunk -> 308 tells the new
offset (possibly less than we sent), and with a ``Location`` header the session's new
address -> ... -> 200/201 with the file's metadata. 5xx, resets
and timeouts back off (truncated exponential, with jitter), 429 and 403 rate limits on a
longer schedule and never for less than a ``Retry-After`` asks (see
:class:`~watcher.destinations.gdrive.errors.Backoff`), and then ask for the offset; 404/410
on the session means it expired: look again for an existing copy, then open a new session.
The session address and offset are handed to ``save_state`` after every step so a restarted
service resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

from watcher.destinations.base import DestinationError, ProgressFn
from watcher.destinations.gdrive.errors import (
    Action,
    Backoff,
    Context,
    Verdict,
    classify,
    exception_verdict,
    parse_error,
)
from watcher.destinations.gdrive.transport import set_timeout
from watcher.retry import Stopped, wait

log = logging.getLogger(__name__)

QUANTUM = 256 * 1024
"""Drive accepts resumable chunks in multiples of 256 KiB (except the last)."""
RESUME_INCOMPLETE = 308
"""Google's resumable upload protocol answers 308 ("Resume Incomplete", not a redirect) while
the upload is not whole; its Range header says what is stored."""


def round_chunk(size: int) -> int:
    """``size`` rounded down to a multiple of 256 KiB, and at least 256 KiB."""
    return max(QUANTUM, size // QUANTUM * QUANTUM)


@dataclass
class Pace:
    """How big the next chunk is and how long its request may take, from the rate the link
    has shown so far; one per destination, so a second archive starts at the learned rate.

    A fixed timeout covers a whole chunk (``sendall`` of the chunk, then the wait for its
    answer): with 16 MiB chunks and 60 s, any uplink under about 2.3 Mbit/s timed out on every
    chunk, and offices have 0.3-1 Mbit/s. So:

    - the first chunk is small (:attr:`first_chunk`), timed as if the link ran at
      :attr:`assumed_rate`;
    - each chunk is then sized to take about :attr:`chunk_seconds` at the rate measured on
      the last one (never above the configured chunk, never below 256 KiB);
    - its timeout is the transport's own (``base``, for the answer) plus :attr:`slack` times
      the time its bytes need at that rate: the bytes in flight, not a fixed figure;
    - a timeout says the link is slower than thought: the rate is taken as half what the
      chunk would have needed to arrive in time, so the next chunk is smaller and its
      timeout longer, at any speed. Only the chunk in flight is ever sent again.
    """

    base: float
    first_chunk: int = 1024 * 1024
    assumed_rate: float = 16 * 1024.0          # bytes/s: 128 kbit/s, below any office uplink
    chunk_seconds: float = 30.0
    slack: float = 2.0
    #: bytes/s measured on the last chunk; None until one has been sent
    rate: float | None = None
    #: chunk requests that ran out of time so far
    timeouts: int = 0

    def chunk(self, largest: int) -> int:
        """The size of the next chunk, at most ``largest`` (a multiple of 256 KiB)."""
        if self.rate is None:
            return min(largest, round_chunk(self.first_chunk))
        return min(largest, round_chunk(int(self.rate * self.chunk_seconds)))

    def timeout(self, length: int) -> float:
        """Seconds a request carrying ``length`` bytes may take."""
        return self.base + self.slack * length / (self.rate or self.assumed_rate)

    def sent(self, length: int, seconds: float) -> None:
        """A chunk of ``length`` bytes was answered ``seconds`` after it was sent."""
        if length >= QUANTUM and seconds > 0:
            self.rate = length / seconds

    def timed_out(self, length: int, seconds: float) -> None:
        """A chunk of ``length`` bytes was not answered within ``seconds``."""
        self.timeouts += 1
        slower = length / max(seconds, 1e-3) / 2
        self.rate = min(self.rate, slower) if self.rate else slower


def parse_range(header: str | None) -> int:
    """The next offset from a 308's ``Range: bytes=0-N`` (no header: nothing stored yet)."""
    if not header:
        return 0
    match = re.fullmatch(r"\s*bytes=0-(\d+)\s*", header)
    if not match:
        raise ValueError(f"unexpected Range header {header!r}")
    return int(match.group(1)) + 1


@contextmanager
def mapped_chunk(src: Any, offset: int, length: int, size: int) -> Iterator[memoryview]:
    """``length`` bytes of the open file ``src`` at ``offset``, as a read-only view of its
    pages: no copy into a new buffer and nothing held after the chunk (one chunk of memory).

    A memoryview, not a file-like object: a re-send (httplib2's, or after a 401 refresh)
    must carry the same bytes, never what is left of a stream (see the module docstring).
    Archives never change once written (``.partial`` + rename, and retention keeps queued
    ones); the size check still turns a changed file into an error instead of a SIGBUS.
    """
    if length == 0:
        yield memoryview(b"")
        return
    if os.fstat(src.fileno()).st_size != size:
        raise DestinationError("the archive changed size during the upload", retryable=False)
    m = mmap.mmap(src.fileno(), length, offset=offset, access=mmap.ACCESS_READ)
    view = memoryview(m)
    try:
        yield view
    finally:
        # a slice still referenced (say, by a traceback) keeps the map; it closes when freed
        with suppress(BufferError):
            view.release()
            m.close()


class PrefixHasher:
    """The md5 of a file (what Drive reports as md5Checksum), over a growing prefix.

    It always covers a prefix ``[0, pos)`` of the file: bytes fed from ``offset`` beyond
    ``pos`` first catch up from disk, bytes fed again only add their new tail, so no byte is
    hashed twice. The uploader runs :meth:`catch_up` on a thread of its own (see
    :class:`HashAhead`).

    Only md5: it is what proves Drive's copy equals the local file. The archive's sha256 was
    computed as it was written and is checked by `verify` and by every restore; hashing it
    again here would cost a third of the upload's CPU (measured in docs/benchmarks.md (part 3)).
    """

    WINDOW = 4 << 20
    """Bytes mapped per step of :meth:`catch_up`: hashlib drops the GIL for the whole window,
    a cancel is seen within one window (about 6 ms of md5), and memory stays at one window."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pos = 0
        self.md5 = hashlib.md5(usedforsecurity=False)

    def feed(self, offset: int, data: bytes) -> None:
        """Account for ``data`` found at ``offset`` in the file."""
        if offset > self.pos:
            self.catch_up(offset)
        skip = self.pos - offset
        if skip < len(data):
            self.md5.update(memoryview(data)[skip:])
            self.pos = offset + len(data)

    def finish(self, size: int) -> str:
        """The hex md5 of the first ``size`` bytes."""
        self.catch_up(size)
        return self.md5.hexdigest()

    def catch_up(self, until: int, cancel: threading.Event | None = None) -> None:
        """Hash the file from disk up to byte ``until``; return early once ``cancel`` is set.

        The file is read through read-only maps of :attr:`WINDOW` bytes, like the chunks
        themselves (no copy into a buffer: about 5% less CPU than ``readinto``).
        """
        if self.pos >= until:
            return
        with open(self.path, "rb") as f:
            while self.pos < until:
                if cancel is not None and cancel.is_set():
                    return
                start = self.pos - self.pos % mmap.ALLOCATIONGRANULARITY
                length = min(self.WINDOW, until - start)
                if os.fstat(f.fileno()).st_size < start + length:
                    raise DestinationError(f"{self.path.name} became shorter during the "
                                           "upload", retryable=False)
                with mmap.mmap(f.fileno(), length, offset=start, access=mmap.ACCESS_READ) as m:
                    view = memoryview(m)
                    part = view[self.pos - start:]
                    try:
                        self.md5.update(part)
                    finally:
                        part.release()
                        view.release()
                self.pos = start + length


class HashAhead:
    """The md5 of a whole file, computed on a thread of its own while the upload runs.

    Not tied to the chunks: hashing each chunk alongside its send made every chunk wait for
    both its hash and the server's answer. This thread runs through the file by itself,
    at a lower priority (:data:`HASH_NICENESS`), so it takes the CPU the sending leaves idle
    instead of competing with it (hashlib drops the GIL while it hashes a window); what it
    has not reached when the upload ends, :meth:`result` hashes at normal priority. It maps
    the file a window at a time (see :meth:`PrefixHasher.catch_up`).

    Use as a context manager: leaving it (an error, a stop) cancels the thread and waits
    for it, so no thread outlives the upload.
    """

    def __init__(self, path: Path, size: int) -> None:
        self.size = size
        self.hasher = PrefixHasher(path)
        self._cancel = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="drive-md5", daemon=True)

    def __enter__(self) -> HashAhead:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._cancel.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            lower_thread_priority(HASH_NICENESS)
            self.hasher.catch_up(self.size, self._cancel)
        except BaseException as exc:  # noqa: BLE001 - handed to the uploader's thread by result()
            self._error = exc

    def result(self) -> str:
        """The hex md5 of the file's first ``size`` bytes.

        Whatever the thread has not reached yet is hashed here, on the caller's thread at its
        normal priority: a thread starved by a busy machine never holds the upload up longer
        than hashing the rest would.
        """
        self._cancel.set()
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self.hasher.finish(self.size)


HASH_NICENESS = 10
"""How much lower the md5 thread runs than the upload (Linux nice steps). The thread then
takes the CPU the sending (and everything else on the machine) leaves idle instead of
competing with it; 10 gives it about a tenth of a core that others want."""


def lower_thread_priority(steps: int) -> None:
    """Make the calling thread ``steps`` nice levels less urgent (Linux; elsewhere nothing).

    On Linux a thread id passed to setpriority names that one thread; on other systems
    the same call would renice the whole process, so it is not made there.
    """
    if not sys.platform.startswith("linux"):
        return
    tid = threading.get_native_id()
    with suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + steps))


@dataclass(frozen=True)
class Outcome:
    """The result of :meth:`ResumableUploader.upload`."""

    resource: dict[str, Any]       # Drive's file metadata
    md5: str                       # of the local file
    existing: bool                 # a copy was already there; nothing was uploaded


class _Retry(Exception):
    def __init__(self, verdict: Verdict, *, timed_out: bool = False) -> None:
        super().__init__(verdict.message)
        self.verdict = verdict
        self.timed_out = timed_out


class _Expired(Exception):
    """The resumable session is gone (404/410)."""


class ResumableUploader:
    """Uploads one file through a resumable session; see the module docstring."""

    def __init__(
        self,
        http: Any,
        api_root: str,
        *,
        chunk_size: int,
        backoff: Backoff,
        pace: Pace,
        context: Context,
        params: dict[str, str],
        stop: threading.Event | None = None,
    ) -> None:
        self.http = http
        self.api_root = api_root.rstrip("/") + "/"
        self.upload_url = self.api_root + "upload/drive/v3/files"
        self.chunk_size = round_chunk(chunk_size)
        self.pace = pace
        self.backoff = backoff
        self.ctx = context
        self.params = params
        self.stop = stop

    # the resumable protocol's states share one loop's state
    def upload(  # noqa: PLR0912,PLR0915
        self,
        path: Path,
        metadata: dict[str, Any],
        *,
        sha256: str,
        state: dict[str, Any] | None,
        save_state: Callable[[dict[str, Any]], None] | None,
        progress: ProgressFn | None,
        find_existing: Callable[[], dict[str, Any] | None],
        mime_type: str,
    ) -> Outcome:
        """Upload ``path`` (or find it already there) and return Drive's metadata for it."""
        size = path.stat().st_size
        session = self._resumable(state, size, sha256)
        offset: int | None = None if session else 0    # None: ask the server first
        confirmed = 0                                  # high-water mark, for progress
        resuming = session is not None                 # bytes already there are not progress
        failures = 0

        def save(uri: str | None, at: int) -> None:
            if save_state:
                save_state({"session": uri, "offset": at, "size": size, "sha256": sha256}
                           if uri else {})

        with open(path, "rb") as src, HashAhead(path, size) as md5:
            while True:
                if self.stop is not None and self.stop.is_set():
                    raise Stopped()          # the session is saved: the next start resumes
                try:
                    if session is None:
                        existing = find_existing()   # exactly once: never a second copy
                        if existing is not None:
                            return Outcome(existing, md5.result(), existing=True)
                        session = self._initiate(metadata, size, mime_type)
                        offset = 0
                        save(session, 0)
                    if offset is None:
                        answer, moved = self._status(session, size)
                    else:
                        answer, moved = self._send(session, src, offset, size)
                except _Expired:
                    log.info("Drive upload session expired; looking for a copy, then "
                             "starting a new session")
                    session, offset = None, 0
                    save(None, 0)
                    failures += 1
                    if self.backoff.errors.gives_up(failures):
                        raise DestinationError("Google Drive kept expiring the upload session; "
                                               "the copy stays queued") from None
                    continue
                except _Retry as exc:
                    failures += 1
                    try:
                        delay = self.backoff.wait(exc.verdict, failures,
                                                  then="the copy stays queued")
                    except DestinationError as gave_up:
                        raise gave_up from None
                    log.info("%s; retrying in %.1f s", exc.verdict.message, delay)
                    wait(delay, self.stop)
                    offset = None            # never assume a chunk arrived: ask
                    continue

                if isinstance(answer, dict):
                    digest = md5.result()
                    save(None, 0)
                    if progress and size > confirmed and not resuming:
                        progress(size - confirmed)
                    return Outcome(answer, digest, existing=False)
                before, offset = offset, answer
                if moved is not None:
                    # the session lives at a new address from now on, as Google's own client
                    # takes it (googleapiclient.http.HttpRequest._process_response)
                    session = moved
                    save(session, offset)
                if resuming:
                    resuming = False
                    confirmed = offset
                    log.info("resuming the Drive upload at byte %d of %d", offset, size)
                    continue
                if offset > confirmed:
                    failures = 0
                    save(session, offset)
                    if progress:
                        progress(offset - confirmed)
                    confirmed = offset
                elif before is not None:
                    # a chunk went out and the server kept nothing of it: back off
                    failures += 1
                    if self.backoff.errors.gives_up(failures):
                        raise DestinationError("Google Drive keeps refusing the upload's data "
                                               "without an error; the copy stays queued")
                    wait(self.backoff.errors.delay(failures), self.stop)

    # --- one request each ---------------------------------------------------------------

    def _resumable(self, state: dict[str, Any] | None, size: int, sha256: str) -> str | None:
        """The saved session, if it belongs to this very file and this API root."""
        if not state or not state.get("session"):
            return None
        uri = str(state["session"])
        same_root = urlsplit(uri)[:2] == urlsplit(self.api_root)[:2]
        if state.get("size") == size and state.get("sha256") == sha256 and same_root:
            return uri
        return None

    def _initiate(self, metadata: dict[str, Any], size: int, mime_type: str) -> str:
        query = urlencode({"uploadType": "resumable", **self.params})
        headers = {
            "Content-Type": "application/json; charset=UTF-8",
            "X-Upload-Content-Type": mime_type,
            "X-Upload-Content-Length": str(size),
        }
        resp, content = self._request(f"{self.upload_url}?{query}", "POST",
                                      json.dumps(metadata).encode(), headers, "initiate")
        if resp.status == HTTPStatus.OK and resp.get("location"):
            return str(resp["location"])
        if resp.status == HTTPStatus.OK:
            raise _Retry(Verdict(Action.RETRY, "Google Drive opened an upload session without "
                                 "an address"))
        raise self._failure(resp, content, "initiate")

    def _status(self, session: str, size: int) -> tuple[int | dict[str, Any], str | None]:
        headers = {"Content-Range": f"bytes */{size}", "Content-Length": "0"}
        resp, content = self._request(session, "PUT", b"", headers, "status")
        return self._answer(session, resp, content, "status")

    def _send(self, session: str, src: Any, offset: int,
              size: int) -> tuple[int | dict[str, Any], str | None]:
        length = min(self.pace.chunk(self.chunk_size), size - offset)
        with mapped_chunk(src, offset, length, size) as data:
            # an empty file has no byte range: "bytes */0" finishes its session
            rng = f"bytes {offset}-{offset + length - 1}/{size}" if length else f"bytes */{size}"
            headers = {"Content-Range": rng, "Content-Length": str(length)}
            allowed = self.pace.timeout(length)
            started = time.monotonic()
            try:
                resp, content = self._request(session, "PUT", data, headers, "chunk",
                                              timeout=allowed)
            except _Retry as exc:
                if exc.timed_out:
                    self.pace.timed_out(length, time.monotonic() - started)
                    log.info("a chunk of %d bytes was not answered within %.0f s; the link "
                             "is slower than it was, the next chunks are smaller",
                             length, allowed)
                raise
        answer = self._answer(session, resp, content, "chunk")
        self.pace.sent(length, time.monotonic() - started)
        return answer

    def _answer(self, session: str, resp: Any, content: bytes,
                op: str) -> tuple[int | dict[str, Any], str | None]:
        """A chunk's or status query's answer: the next offset or the finished file, and the
        session's new address if a 308 gave one (``Location``, relative to the old one)."""
        if resp.status in (HTTPStatus.OK, HTTPStatus.CREATED):
            try:
                body = json.loads(content)
            except ValueError:
                raise _Retry(Verdict(Action.RETRY, "Google Drive finished the upload with "
                                     "an unreadable answer")) from None
            if not isinstance(body, dict) or "id" not in body:
                raise _Retry(Verdict(Action.RETRY, "Google Drive finished the upload without "
                                     "the file's id"))
            return body, None
        if resp.status == RESUME_INCOMPLETE:
            try:
                offset = parse_range(resp.get("range"))
            except ValueError:
                raise _Retry(Verdict(Action.RETRY, "Google Drive answered with an unreadable "
                                     "Range header")) from None
            location = resp.get("location")
            return offset, urljoin(session, location) if location else None
        raise self._failure(resp, content, op)

    def _failure(self, resp: Any, content: bytes, op: str) -> Exception:
        verdict = classify(parse_error(resp.status, content, resp), op, self.ctx)
        if verdict.action is Action.NEW_SESSION:
            return _Expired()
        if verdict.action is Action.RETRY:
            return _Retry(verdict)
        return DestinationError(verdict.message, retryable=False)

    def _request(self, uri: str, method: str, body: bytes, headers: dict[str, str],
                 op: str, *, timeout: float | None = None) -> tuple[Any, bytes]:
        """One HTTP request, allowed ``timeout`` seconds instead of the transport's own;
        transport failures become :class:`_Retry` (or fatal)."""
        if timeout is not None:
            set_timeout(self.http, timeout)
        try:
            return self.http.request(uri, method, body=body, headers=headers)
        except Exception as exc:
            verdict = exception_verdict(exc, op, self.ctx)
            if verdict is None:
                raise
            if verdict.action is Action.RETRY:
                raise _Retry(verdict, timed_out=isinstance(exc, TimeoutError)) from None
            raise DestinationError(verdict.message, retryable=False) from None
        finally:
            if timeout is not None:
                set_timeout(self.http, self.pace.base)
