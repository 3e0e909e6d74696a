"""The HTTP side: Drive v3's routes, each request named by an operation (what faults and the
request log use), faults applied, errors answered as Drive answers them.

Routes: ``POST /token``; ``POST /upload/drive/v3/files?uploadType=resumable`` then ``PUT``
chunks (308 + ``Range``; status query ``Content-Range: bytes */N``); ``GET /drive/v3/files``
(files.list with ``q``, ``orderBy``, paging, ``fields``, the corpora/driveId rules of shared
drives); ``GET /drive/v3/files/ID`` (metadata, or ``alt=media`` with ``Range``); ``POST
/drive/v3/files`` (metadata only, e.g. folders); ``PATCH /drive/v3/files/ID`` (files.update:
``trashed`` and ``name``); ``DELETE /drive/v3/files/ID``; and ``PUT /bench/put``, a plain
upload that is the benchmark's baseline. Multipart uploads are not
served: the product uploads through resumable sessions only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import secrets
import socket
import struct
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from . import auth
from .errors import ApiFailure, error_body
from .faults import Fault
from .query import apply_fields, matches, order, parse_fields, parse_q
from .state import (
    MAY_DELETE,
    MAY_TRASH,
    QUANTUM,
    DriveState,
    Principal,
    Record,
    Session,
    StoredFile,
)

#: a rate-limited connection reads in steps of this many seconds' worth of bytes
PACE_STEP = 0.05
#: the receive buffer of a rate-limited connection (the kernel may double it)
SLOW_RCVBUF = 64 * 1024


class DriveHTTPServer(ThreadingHTTPServer):
    """One thread per connection, keep-alive, and a set of live connections to cut."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], state: DriveState) -> None:
        self.state = state
        self.active: set[socket.socket] = set()
        self.active_lock = threading.Lock()
        super().__init__(address, DriveHandler)


class DriveHandler(BaseHTTPRequestHandler):
    """One connection: every request is routed, logged as a :class:`Record` and answered."""

    server: DriveHTTPServer
    protocol_version = "HTTP/1.1"
    timeout = 10     # a body that never comes (the empty re-send trap) must not hang us

    # --- connection bookkeeping (so stop() can cut live keep-alive connections) ------

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.state.body_timeout)
        # headers and body go out in two writes: without this, Nagle + delayed ACK add 40 ms
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.server.state.read_rate:
            # a slow link holds little in its buffers; loopback's would hold megabytes, and a
            # client would see its chunk "sent" long before this server had read it
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SLOW_RCVBUF)
        self._paced_until = 0.0
        with self.server.active_lock:
            self.server.active.add(self.connection)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        with self.server.active_lock:
            self.server.active.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    @property
    def state(self) -> DriveState:
        return self.server.state

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = lambda self: self._dispatch()  # noqa: E731

    # --- plumbing ---------------------------------------------------------------------

    def _recv(self, n: int) -> bytes:
        """Up to ``n`` bytes of the request body, read no faster than ``state.read_rate``
        bytes a second on this connection (a slow uplink, seen from the server); the bytes
        of an upload chunk are counted as they arrive (``state.arrived_bytes``)."""
        rate = self.state.read_rate
        if rate:
            now = time.monotonic()
            if self._paced_until > now:
                time.sleep(self._paced_until - now)
            block = self.rfile.read(min(n, max(1024, int(rate * PACE_STEP))))
            self._paced_until = max(now, self._paced_until) + len(block) / rate
        else:
            block = self.rfile.read(min(n, 1 << 20))
        with self.state.lock:
            if self._op == "chunk":
                self.state.arrived_bytes += len(block)
            if self.state.received is not None:
                self.state.received.append(block)
        return block

    def _read_body(self, limit: int | None = None) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        want = length if limit is None else min(limit, length)
        self._body_read = True
        chunks, got = [], 0
        while got < want:
            block = self._recv(want - got)
            if not block:
                break
            chunks.append(block)
            got += len(block)
        return b"".join(chunks)

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
              content_type: str = "application/json; charset=UTF-8") -> None:
        self._status = status
        self._record()     # before answering: a test may look as soon as the answer arrives
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if body or status not in (204, 308):
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers)

    def _abort(self) -> None:
        """Drop the connection at once (RST), answering nothing."""
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.connection.close()
        self.close_connection = True
        self._status = 0

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        self.query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        self._status = 0
        self._fault_name = ""
        self._body_len = 0
        self._body_read = False
        self._corrupt = False
        self._relocate = False
        self._recorded = False
        self._started = time.monotonic()
        op, handler = self._route(self.command, url.path)
        self._op = op
        if handler is None:
            self._json(404, error_body(404, "notFound", "Not Found"))
            return
        fault = self.state.faults.take(op)
        try:
            if fault is not None:
                self._fault_name = f"{fault.action}:{fault.status}"
                if self._apply_fault(op, fault):
                    return
            handler()
        except ApiFailure as exc:
            if not self._body_read and int(self.headers.get("Content-Length") or 0):
                # the body is still on the wire: this connection cannot carry another request
                self.close_connection = True
                self._json(exc.status, error_body(exc.status, exc.reason, str(exc)),
                           {"Connection": "close"})
            else:
                self._json(exc.status, error_body(exc.status, exc.reason, str(exc)))
        except TimeoutError:
            self.state.violations.append(f"{op}: the body was shorter than its Content-Length "
                                         f"(the client stalled)")
            self._abort()
        finally:
            self._record()

    def _record(self) -> None:
        """Log this request once (what tests assert on)."""
        if self._recorded:
            return
        self._recorded = True
        with self.state.lock:
            self.state.records.append(Record(self._op, self.command, self._status,
                                             self._body_len,
                                             self.headers.get("Content-Range", ""),
                                             self._fault_name, self._started))

    # a routing table: one return per route Drive answers
    def _route(self, method: str, path: str) -> tuple[str, Any]:  # noqa: PLR0911
        if path == "/token" and method == "POST":
            return "token", self._token
        if path == "/upload/drive/v3/files":
            if method == "POST":
                return "initiate", self._initiate
            if method == "PUT":
                status = self.headers.get("Content-Range", "").startswith("bytes */")
                return ("status", self._chunk) if status else ("chunk", self._chunk)
        if path == "/drive/v3/files":
            if method == "GET":
                return "list", self._list
            if method == "POST":
                return "create", self._create
        m = re.fullmatch(r"/drive/v3/files/([^/]+)", path)
        if m:
            self.file_id = m.group(1)
            if method == "GET":
                return ("media", self._media) if self.query.get("alt") == "media" else \
                    ("get", self._get)
            if method == "DELETE":
                return "delete", self._delete
            if method == "PATCH":
                return "update", self._update
        if path == "/bench/put" and method == "PUT":
            return "bench", self._bench_put
        return "unknown", None

    # one branch per kind of injected fault
    def _apply_fault(self, op: str, fault: Fault) -> bool:  # noqa: PLR0911
        """Misbehave as ``fault`` says; True if the request is fully handled by it."""
        if fault.action == "delay":
            time.sleep(fault.delay)
            return False
        if fault.action == "error":
            self._read_body()
            if fault.status == HTTPStatus.UNAUTHORIZED:
                self.state.expire_tokens()
            body = (json.dumps({"error": fault.reason, "error_description": "injected"})
                    .encode() if op == "token" else
                    json.dumps(error_body(fault.status, fault.reason, fault.message)).encode())
            wait = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
            self._send(fault.status, body, wait)
            return True
        if fault.action == "expire_token":
            self.state.expire_tokens()
            self._read_body()
            self._json(401, error_body(401, "authError"),
                       {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'})
            return True
        if fault.action == "expire_session":
            self.state.expire_sessions()
            return False
        if fault.action == "drop":
            length = int(self.headers.get("Content-Length") or 0)
            keep = fault.keep if fault.keep is not None else length // 2
            if op == "chunk":
                self._store_part(self._read_body(keep))
            elif op == "media":
                self._media(drop_after=True)
                return True
            self._abort()
            return True
        if fault.action == "lost":
            handler = self._route(self.command, urlsplit(self.path).path)[1]
            self.wfile = _Discard()  # process everything, answer nothing
            handler()
            self._abort()
            return True
        if fault.action == "corrupt":
            self._corrupt = True          # store this chunk with one byte flipped
            return False
        if fault.action == "relocate":
            self._relocate = True         # the 308 moves the session (see _range_answer)
            return False
        if fault.action == "short" and op == "chunk":
            self._chunk(short=True)
            return True
        return False

    def _all_drives(self) -> bool:
        """Whether the request may touch shared drives (Drive ignores them otherwise)."""
        return self.query.get("supportsAllDrives") == "true"

    def _principal(self, *, optional: bool = False) -> Principal | None:
        header = self.headers.get("Authorization")
        if optional and not header:
            return None
        who = auth.principal_for(self.state, header)
        if who is None:
            raise ApiFailure(401, "authError")
        return who

    # --- the token endpoint -------------------------------------------------------------

    def _token(self) -> None:
        form = auth.token_form(self._read_body(), self.headers.get("Authorization", ""))
        self._json(*auth.grant(self.state, form))

    # --- creating files -----------------------------------------------------------------

    def _file_answer(self, f: StoredFile, fields: str | None, status: int = 200) -> None:
        tree = parse_fields(fields) if fields else \
            {"kind": {}, "id": {}, "name": {}, "mimeType": {}}
        self._json(status, apply_fields(self.state.resource(f), tree))

    def _initiate(self) -> None:
        if self.query.get("uploadType") != "resumable":
            # the product only uploads through resumable sessions; say so rather than 404
            raise ApiFailure(400, "badRequest", "this server serves uploadType=resumable only")
        who = self._principal()
        assert who is not None
        raw = self._read_body()
        metadata = json.loads(raw or b"{}")
        total = self.headers.get("X-Upload-Content-Length")
        drive_id = self.state.check_parent(who, metadata, self._all_drives())
        sid = secrets.token_urlsafe(24)
        with self.state.lock:
            self.state.sessions[sid] = Session(sid, metadata, int(total) if total else None, who,
                                               self.query.get("fields"), drive_id)
        keep = {k: v for k, v in self.query.items() if k in ("fields", "supportsAllDrives")}
        location = (self.state.base_url + "upload/drive/v3/files?" +
                    urlencode({"uploadType": "resumable", **keep, "upload_id": sid}))
        self._send(200, b"", {"Location": location, "X-GUploader-UploadID": sid})

    def _create(self) -> None:
        who = self._principal()
        assert who is not None
        metadata = json.loads(self._read_body() or b"{}")
        drive_id = self.state.check_parent(who, metadata, self._all_drives())
        f = self.state.store_file(who, metadata, b"", 0, hashlib.md5(b"").hexdigest(), drive_id)
        self._file_answer(f, self.query.get("fields"))

    # --- resumable sessions ----------------------------------------------------------------

    def _session(self) -> Session:
        sid = self.query.get("upload_id", "")
        with self.state.lock:
            s = self.state.sessions.get(sid)
            moved = sid in self.state.moved_sessions
        if s is None or s.expired or moved:
            raise ApiFailure(404, "notFound", "Not Found")
        return s

    def _range_answer(self, s: Session) -> None:
        if s.done_file:
            f = self.state.files[s.done_file]
            return self._file_answer(f, s.fields)
        headers = {"Range": f"bytes=0-{s.received - 1}"} if s.received else {}
        headers["X-GUploader-UploadID"] = s.id
        if self._relocate:
            headers["Location"] = self._move_session(s)
        self._send(308, b"", headers)

    def _move_session(self, s: Session) -> str:
        """Give the session a new address; the one this request used stops working."""
        new = secrets.token_urlsafe(24)
        with self.state.lock:
            self.state.moved_sessions.add(self.query.get("upload_id", ""))
            self.state.sessions[new] = s
        keep = {k: v for k, v in self.query.items() if k != "upload_id"}
        return (self.state.base_url + "upload/drive/v3/files?" +
                urlencode({**keep, "upload_id": new}))

    # every case of the resumable protocol, in the order Google checks them
    def _chunk(self, short: bool = False) -> None:  # noqa: PLR0912
        self._principal(optional=True)    # a stale token still gets a 401, as at Google
        s = self._session()
        header = self.headers.get("Content-Range", "")
        declared = int(self.headers.get("Content-Length") or 0)
        m_status = re.fullmatch(r"bytes \*/(\d+|\*)", header)
        if m_status:
            body = self._read_body()
            if body:
                self.state.violations.append("status query with a body")
            if s.total is None and m_status.group(1) != "*":
                s.total = int(m_status.group(1))
            if s.total is not None and not s.done_file and s.received == s.total:
                self._finish(s)
            return self._range_answer(s)
        m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", header)
        if not m:
            self._read_body()
            raise ApiFailure(400, "badRequest", f"Bad Content-Range {header!r}")
        start, end = int(m.group(1)), int(m.group(2))
        total = None if m.group(3) == "*" else int(m.group(3))
        want = end - start + 1
        if declared != want:
            self.state.violations.append(f"chunk {header} with Content-Length {declared}")
            raise ApiFailure(400, "badRequest", "Content-Range and Content-Length differ")
        if s.done_file:
            self._body_len = len(self._read_body())
            return self._range_answer(s)
        if total is not None:
            if s.total is not None and s.total != total:
                raise ApiFailure(400, "badRequest", "Total size differs from the session's")
            s.total = total
        if start > s.received:
            self.state.violations.append(f"gap: chunk at {start}, server has {s.received}")
            raise ApiFailure(400, "badRequest",
                             f"Invalid request. According to the Content-Range header, the "
                             f"upload offset is {start} byte(s), which exceeds already "
                             f"uploaded size of {s.received} byte(s).")
        last = s.total is not None and end + 1 == s.total
        if not last and want % QUANTUM:
            self.state.violations.append(f"chunk of {want} bytes is not a multiple of 256 KiB")
            raise ApiFailure(400, "badRequest", "Chunk size must be a multiple of 256 KiB")
        accept = (want // 2) // QUANTUM * QUANTUM if short else want
        if not self._stream_chunk(s, start, want, accept):
            self._abort()                 # the client went away mid-body: keep nothing
            return
        if s.total is not None and s.received == s.total:
            self._finish(s)
        self._range_answer(s)

    def _stream_chunk(self, s: Session, start: int, want: int, accept: int) -> bool:
        """Receive a chunk's body, hashing and storing it as it arrives (as a real server
        does, so the client's sending and our hashing overlap). Only the first ``accept``
        bytes are kept (a "short" fault). False if the body ended early.

        A request that another one overtook (a client that timed out on a slow link and sent
        the chunk again on a new connection while this one was still arriving) stores
        nothing: what it holds was computed against what the session held when it began.
        """
        self._body_read = True
        with self.state.lock:
            md5 = s.md5.copy()
            began = s.received
        kept = bytearray()
        skip = began - start                   # bytes of a re-send we already hold
        got = 0
        while got < want:
            block = self._recv(want - got)
            if not block:
                return False
            view = memoryview(block)
            lo, hi = got, got + len(block)
            if skip > lo and self.state.keep_content:
                old = bytes(s.data[start + lo:start + min(hi, skip)])
                if old != bytes(view[: min(hi, skip) - lo]):
                    self.state.violations.append(f"re-sent bytes at {start + lo} differ")
            fresh = view[max(0, skip - lo): max(0, min(len(block), accept - lo))]
            if fresh.nbytes:
                if self._corrupt:
                    fresh = memoryview(bytes([fresh[0] ^ 0xFF]) + bytes(fresh[1:]))
                    self._corrupt = False
                md5.update(fresh)
                if self.state.keep_content:
                    kept += fresh
            got = hi
        self._body_len = got
        with self.state.lock:
            self.state.chunk_bytes += got
            self.state.resent_bytes += max(0, min(skip, got))
            if s.received != began:
                return True                    # overtaken: the answer says where it stands
            s.md5 = md5
            s.data += kept
            s.received = max(s.received, start + min(accept, want))
        return True

    def _store_part(self, body: bytes) -> None:
        """A dropped connection: keep what arrived in whole 256 KiB units, if in order."""
        s = self._session()
        m = re.fullmatch(r"bytes (\d+)-\d+/.*", self.headers.get("Content-Range", ""))
        if not m:
            return
        start = int(m.group(1))
        body = body[: len(body) // QUANTUM * QUANTUM]
        with self.state.lock:
            if start > s.received:
                return
            overlap = min(len(body), s.received - start)
            if overlap:
                self.state.resent_bytes += overlap
                if self.state.keep_content and \
                        bytes(s.data[start:start + overlap]) != body[:overlap]:
                    self.state.violations.append(f"re-sent bytes at {start} differ")
            fresh = body[overlap:]
            if self._corrupt and fresh:
                fresh = bytes([fresh[0] ^ 0xFF]) + fresh[1:]
            if self.state.keep_content:
                s.data.extend(fresh)
            s.md5.update(fresh)
            s.received += len(fresh)

    def _finish(self, s: Session) -> None:
        with self.state.lock:
            if s.done_file:
                return
            content = bytes(s.data) if self.state.keep_content else None
            f = self.state.store_file(s.principal, s.metadata, content, s.received,
                                 s.md5.hexdigest(), s.parent_drive)
            s.done_file = f.id
            s.data = bytearray()

    # --- reading, listing, deleting -----------------------------------------------------------

    def _visible_file(self, who: Principal) -> StoredFile:
        all_drives = self._all_drives()
        with self.state.lock:
            f = self.state.files.get(self.file_id)
            if f is None or not self.state.visible(f, who, all_drives):
                raise ApiFailure(404, "notFound", f"File not found: {self.file_id}.")
            return f

    def _get(self) -> None:
        who = self._principal()
        assert who is not None
        f = self._visible_file(who)
        self._file_answer(f, self.query.get("fields"))

    def _media(self, drop_after: bool = False) -> None:
        who = self._principal()
        assert who is not None
        f = self._visible_file(who)
        if f.content is None:
            raise ApiFailure(500, "backendError", "this server kept only the file's hash")
        data, status, headers = f.content, 200, {}
        rng = self.headers.get("Range")
        if rng:
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
            if not m:
                raise ApiFailure(400, "badRequest", "Bad Range")
            a = int(m.group(1))
            b = min(int(m.group(2)) if m.group(2) else f.size - 1, f.size - 1)
            if a >= f.size:
                self._send(416, b"", {"Content-Range": f"bytes */{f.size}"})
                return
            data, status = f.content[a:b + 1], 206
            headers["Content-Range"] = f"bytes {a}-{b}/{f.size}"
        if drop_after:
            self._status = status
            self._record()
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self._abort()
            return
        self._send(status, data, headers, content_type="application/octet-stream")

    def _list(self) -> None:
        who = self._principal()
        assert who is not None
        q = self.query
        corpora = q.get("corpora", "user")
        all_drives = q.get("includeItemsFromAllDrives") == "true"
        if corpora == "drive":
            if not q.get("driveId"):
                raise ApiFailure(400, "invalid", "The driveId parameter must be specified if "
                                 "and only if corpora is set to drive.")
            members = self.state.shared_drives.get(q["driveId"])
            if members is None or who.email not in members:
                raise ApiFailure(404, "notFound", f"Shared drive not found: {q['driveId']}")
            if not all_drives or q.get("supportsAllDrives") != "true":
                raise ApiFailure(403, "teamDrivesParameterNotSupported" if not all_drives else
                                 "invalid", "includeItemsFromAllDrives and supportsAllDrives "
                                 "must be true when corpora is drive.")
        elif q.get("driveId"):
            raise ApiFailure(400, "invalid", "The driveId parameter must be specified if and "
                             "only if corpora is set to drive.")
        clauses = parse_q(q.get("q", ""))
        st = self.state
        with st.lock:
            found = [f for f in st.files.values()
                     if st.visible(f, who, all_drives) and matches(f, clauses)
                     and (f.drive_id == q.get("driveId") if corpora == "drive"
                          else f.drive_id is None or corpora == "allDrives")]
        found = order(found, q.get("orderBy", ""))
        size = min(int(q.get("pageSize") or 100), st.max_page_size)
        start = int(q.get("pageToken") or 0)
        page = found[start:start + size]
        body: dict[str, Any] = {"kind": "drive#fileList", "incompleteSearch": False,
                                "files": [st.resource(f) for f in page]}
        if start + size < len(found):
            body["nextPageToken"] = str(start + size)
        tree = parse_fields(q["fields"]) if q.get("fields") else \
            {"kind": {}, "nextPageToken": {}, "incompleteSearch": {},
             "files": {"kind": {}, "id": {}, "name": {}, "mimeType": {}}}
        self._json(200, apply_fields(body, tree))

    def _delete(self) -> None:
        who = self._principal()
        assert who is not None
        f = self._visible_file(who)
        if f.drive_id is not None and self.state.role(f, who) not in MAY_DELETE:
            raise ApiFailure(403, "insufficientFilePermissions")
        with self.state.lock:
            self.state.files.pop(f.id, None)
        self._send(204)

    def _update(self) -> None:
        """files.update of the metadata the product changes: the trash flag (and a name)."""
        who = self._principal()
        assert who is not None
        body = json.loads(self._read_body() or b"{}")
        f = self._visible_file(who)
        unknown = set(body) - {"trashed", "name"}
        if unknown:
            raise ApiFailure(400, "badRequest", f"this server updates only trashed and name, "
                             f"not {sorted(unknown)}")
        if "trashed" in body and f.drive_id is not None and \
                self.state.role(f, who) not in MAY_TRASH:
            raise ApiFailure(403, "insufficientFilePermissions")
        with self.state.lock:
            f.trashed = bool(body.get("trashed", f.trashed))
            f.name = str(body.get("name", f.name))
        self._file_answer(f, self.query.get("fields"))

    def _bench_put(self) -> None:
        """A plain HTTP PUT that hashes what it receives: the benchmark's baseline."""
        length = int(self.headers.get("Content-Length") or 0)
        md5, got = hashlib.md5(), 0
        while got < length:
            block = self._recv(length - got)
            if not block:
                break
            md5.update(block)
            got += len(block)
        self._body_len = got
        self._json(200, {"size": got, "md5Checksum": md5.hexdigest()})


class _Discard:
    """A write target that swallows the answer of a request whose answer is 'lost'."""

    def write(self, data: bytes) -> int:
        return len(data)

    def flush(self) -> None:
        pass

    closed = False

    def close(self) -> None:
        pass

