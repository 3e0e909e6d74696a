"""A Google Drive API v3 server of our own, for tests and the upload benchmark.

Real HTTP on 127.0.0.1 (``http.server``, one thread per connection, keep-alive), so the real
google-api-python-client, google-auth and httplib2 talk to it exactly as to Google:

- ``POST /token``: the OAuth token endpoint: service-account JWT grant (signature checked
  against the registered public key, ``sub`` for domain-wide delegation), refresh_token
  grant and authorization_code grant (PKCE S256 checked).
- ``POST /upload/drive/v3/files``: ``uploadType=resumable`` (session, then ``PUT`` chunks:
  308 + ``Range``, status query ``Content-Range: bytes */N``) and ``uploadType=multipart``.
- ``GET /drive/v3/files``: files.list with ``q`` (``'X' in parents``, ``trashed = false``,
  ``name = / contains``, ``mimeType =``, ``appProperties has { key= and value= }``, joined
  by ``and``), ``orderBy``, paging, ``fields``; corpora/driveId rules of shared drives.
- ``GET /drive/v3/files/ID`` (metadata, or ``alt=media`` with ``Range``), ``POST
  /drive/v3/files`` (metadata only, e.g. folders), ``DELETE /drive/v3/files/ID``.

Behaviour worth testing against is modelled: service accounts have no storage quota outside
shared drives (403 storageQuotaExceeded), shared-drive items need ``supportsAllDrives``,
a ``drive.file`` token only sees files its app created or was given, chunks must be
multiples of 256 KiB, a resumable session accepts overlapping re-sends.

Faults are injected per request with :meth:`DriveState.inject`: an error status with a
reason, a connection dropped mid-body, a request processed but its answer lost, a short
308, an expired session, an expired access token, a slow answer. The server records
protocol violations by the client (a chunk whose body is shorter than its Content-Length,
the google-api-python-client trap; a gap; a non-256-KiB chunk; a re-send with different
bytes) in :attr:`DriveState.violations`; tests assert there are none.

Run it alone for the benchmark: ``python tests/drive_server.py --help``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import email.parser
import email.policy
import hashlib
import json
import re
import secrets
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

QUANTUM = 256 * 1024
FOLDER_MIME = "application/vnd.google-apps.folder"
SCOPE_FILE = "https://www.googleapis.com/auth/drive.file"
SCOPE_FULL = "https://www.googleapis.com/auth/drive"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"

MESSAGES = {
    "backendError": "Backend Error",
    "rateLimitExceeded": "Rate Limit Exceeded",
    "userRateLimitExceeded": "User rate limit exceeded.",
    "storageQuotaExceeded": "The user's Drive storage quota has been exceeded.",
    "notFound": "File not found.",
    "authError": "Request had invalid authentication credentials.",
    "badRequest": "Bad Request",
}
SA_QUOTA_MESSAGE = ("Service Accounts do not have storage quota. Leverage shared drives "
                    "(https://developers.google.com/workspace/drive/api/guides/about-shareddrives)"
                    ", or use OAuth delegation instead.")


# --- the stored world ---------------------------------------------------------------------


@dataclass
class Principal:
    """Who a token speaks for."""

    kind: str                      # "user" or "service_account"
    email: str
    client_id: str = ""
    scope: str = SCOPE_FULL


@dataclass
class StoredFile:
    id: str
    name: str
    mime_type: str
    parents: list[str]
    app_properties: dict[str, str]
    created: datetime
    content: bytes | None = b""    # None when the server only keeps hashes (benchmark)
    size: int = 0
    md5: str = ""
    drive_id: str | None = None
    trashed: bool = False
    creator_client: str = ""
    owner: str = ""
    opened_by: set[str] = field(default_factory=set)


@dataclass
class Session:
    id: str
    metadata: dict[str, Any]
    total: int | None
    principal: Principal
    fields: str | None
    parent_drive: str | None
    data: bytearray = field(default_factory=bytearray)
    received: int = 0
    md5: Any = field(default_factory=hashlib.md5)
    done_file: str | None = None
    expired: bool = False


@dataclass
class Fault:
    """One injected misbehaviour, consumed by the next matching requests.

    ``op``: token, initiate, chunk, status, multipart, list, get, media, create, delete, or
    any. ``action``: error, drop, lost, short, corrupt, expire_session, expire_token, delay.
    ``skip`` lets that many matching requests pass first; ``times`` is how many it hits.
    """

    op: str
    action: str
    status: int = 500
    reason: str = "backendError"
    times: int = 1
    skip: int = 0
    keep: int | None = None
    delay: float = 0.0
    used: int = 0


@dataclass
class Record:
    op: str
    method: str
    status: int
    body_bytes: int
    content_range: str = ""
    fault: str = ""


class DriveState:
    """Everything the server holds, shared by its threads (guarded by one lock)."""

    def __init__(self, *, keep_content: bool = True) -> None:
        self.lock = threading.RLock()
        self.keep_content = keep_content
        self.base_url = ""
        self.files: dict[str, StoredFile] = {}
        self.shared_drives: dict[str, set[str]] = {}       # id -> member emails
        self.sessions: dict[str, Session] = {}
        self.tokens: dict[str, tuple[Principal, float]] = {}
        self.service_accounts: dict[str, Any] = {}         # email -> public key
        self.delegation: set[str] = set()                  # SA emails allowed to impersonate
        self.clients: dict[str, str] = {}                  # client id -> secret
        self.refresh_tokens: dict[str, Principal] = {}
        self.codes: dict[str, tuple[str, str, str, Principal]] = {}
        self.faults: list[Fault] = []
        self.records: list[Record] = []
        self.violations: list[str] = []
        self.sa_without_quota = True
        self.token_lifetime = 3600
        self.max_page_size = 1000
        self.body_timeout = 10.0      # how long a request body may take to arrive
        self.chunk_bytes = 0          # chunk payload bytes received (re-sends included)
        self.resent_bytes = 0         # of which already stored before

    # --- setup helpers for tests --------------------------------------------------------

    def new_id(self, prefix: str = "f") -> str:
        return prefix + secrets.token_hex(8)

    def add_folder(self, name: str = "backups", *, folder_id: str | None = None,
                   drive_id: str | None = None, visible_to: set[str] | None = None) -> str:
        """A folder made by a person in the web UI (or in a shared drive's top level)."""
        with self.lock:
            fid = folder_id or self.new_id("folder")
            parents = [drive_id] if drive_id else ["root"]
            self.files[fid] = StoredFile(fid, name, FOLDER_MIME, parents, {}, _now(),
                                         drive_id=drive_id, opened_by=set(visible_to or ()))
            return fid

    def add_shared_drive(self, drive_id: str, members: set[str]) -> None:
        with self.lock:
            self.shared_drives[drive_id] = set(members)

    def add_service_account(self, email: str, public_key: Any, *,
                            delegation: bool = False) -> None:
        with self.lock:
            self.service_accounts[email] = public_key
            if delegation:
                self.delegation.add(email)

    def add_oauth_client(self, client_id: str, secret: str) -> None:
        with self.lock:
            self.clients[client_id] = secret

    def issue_refresh_token(self, client_id: str, email: str = "admin@example.com",
                            scope: str = SCOPE_FILE) -> str:
        with self.lock:
            rt = "1//rt-" + secrets.token_urlsafe(24)
            self.refresh_tokens[rt] = Principal("user", email, client_id, scope)
            return rt

    def revoke_refresh_tokens(self) -> None:
        with self.lock:
            self.refresh_tokens.clear()

    def authorize(self, client_id: str, redirect_uri: str, code_challenge: str = "",
                  email: str = "admin@example.com", scope: str = SCOPE_FILE) -> str:
        """What the consent screen does: a code for ``redirect_uri``."""
        with self.lock:
            code = "4/code-" + secrets.token_urlsafe(16)
            self.codes[code] = (client_id, redirect_uri, code_challenge,
                                Principal("user", email, client_id, scope))
            return code

    def inject(self, op: str, action: str = "error", **kw: Any) -> Fault:
        fault = Fault(op=op, action=action, **kw)
        with self.lock:
            self.faults.append(fault)
        return fault

    def expire_tokens(self) -> None:
        with self.lock:
            self.tokens.clear()

    def expire_sessions(self) -> None:
        with self.lock:
            for s in self.sessions.values():
                s.expired = True

    # --- queries for assertions ---------------------------------------------------------

    def live_files(self, *, app_property: tuple[str, str] | None = None) -> list[StoredFile]:
        with self.lock:
            found = [f for f in self.files.values()
                     if not f.trashed and f.mime_type != FOLDER_MIME]
        if app_property:
            k, v = app_property
            found = [f for f in found if f.app_properties.get(k) == v]
        return found

    def ops(self, op: str) -> list[Record]:
        with self.lock:
            return [r for r in self.records if r.op == op]

    def chunk_bytes_sent(self) -> int:
        """Bytes the client sent in upload chunks, re-sends included, as each chunk's
        Content-Range declares them: a chunk whose connection dropped counts whole, however
        little of it arrived (``chunk_bytes`` counts what arrived)."""
        total = 0
        for r in self.ops("chunk"):
            m = re.fullmatch(r"bytes (\d+)-(\d+)/\d+", r.content_range)
            total += int(m[2]) - int(m[1]) + 1 if m else 0
        return total

    # --- internals ----------------------------------------------------------------------

    def take_fault(self, op: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.op not in (op, "any") or fault.used >= fault.times:
                    continue
                if fault.skip > 0:
                    fault.skip -= 1
                    return None
                fault.used += 1
                return fault
        return None

    def issue_access_token(self, principal: Principal) -> str:
        token = "ya29.test-" + secrets.token_urlsafe(24)
        self.tokens[token] = (principal, time.time() + self.token_lifetime)
        return token

    def principal_for(self, header: str | None) -> Principal | None:
        if not header or not header.startswith("Bearer "):
            return None
        found = self.tokens.get(header[7:])
        if not found or found[1] < time.time():
            return None
        return found[0]

    def visible(self, f: StoredFile, who: Principal, all_drives: bool) -> bool:
        members = self.shared_drives.get(f.drive_id or "", set())
        if f.drive_id is not None and (not all_drives or who.email not in members):
            return False
        if who.scope == SCOPE_FILE:
            return f.creator_client == who.client_id or who.client_id in f.opened_by
        return True

    def resource(self, f: StoredFile) -> dict[str, Any]:
        res: dict[str, Any] = {
            "kind": "drive#file", "id": f.id, "name": f.name, "mimeType": f.mime_type,
            "parents": list(f.parents), "trashed": f.trashed,
            "createdTime": f.created.strftime("%Y-%m-%dT%H:%M:%S.") +
            f"{f.created.microsecond // 1000:03d}Z",
            "webViewLink": (f"https://drive.google.com/drive/folders/{f.id}"
                            if f.mime_type == FOLDER_MIME else
                            f"https://drive.google.com/file/d/{f.id}/view?usp=drivesdk"),
        }
        if f.app_properties:
            res["appProperties"] = dict(f.app_properties)
        if f.mime_type != FOLDER_MIME:
            res["size"] = str(f.size)
            res["md5Checksum"] = f.md5
        if f.drive_id:
            res["driveId"] = f.drive_id
        return res


def _now() -> datetime:
    return datetime.now(UTC)


class ApiFailure(Exception):
    def __init__(self, status: int, reason: str, message: str | None = None) -> None:
        super().__init__(message or MESSAGES.get(reason, reason))
        self.status, self.reason = status, reason


def error_body(status: int, reason: str, message: str | None = None) -> dict[str, Any]:
    msg = message or MESSAGES.get(reason, reason)
    return {"error": {"code": status, "message": msg,
                      "errors": [{"domain": "global", "reason": reason, "message": msg}]}}


# --- q, fields and orderBy ------------------------------------------------------------------


_TOKEN = re.compile(r"\s*(?:(?P<str>'(?:\\.|[^'\\])*')|(?P<op>!=|=|\{|\})|(?P<word>[A-Za-z_]+))")


def _tokens(q: str) -> list[str]:
    out, pos = [], 0
    while pos < len(q):
        if q[pos:].strip() == "":
            break
        m = _TOKEN.match(q, pos)
        if not m:
            raise ApiFailure(400, "invalid", f"Invalid Value: q near {q[pos:pos + 20]!r}")
        out.append(m.group(m.lastgroup or "word"))
        pos = m.end()
    return out


def _literal(token: str) -> str:
    if not (token.startswith("'") and token.endswith("'")):
        raise ApiFailure(400, "invalid", f"Invalid Value: expected a string, got {token}")
    return re.sub(r"\\(.)", r"\1", token[1:-1])


def parse_q(q: str) -> list[tuple[str, ...]]:
    """Clauses joined by ``and``; each a tuple the matcher understands."""
    toks = _tokens(q)
    clauses: list[tuple[str, ...]] = []
    i = 0

    def expect(word: str) -> None:
        nonlocal i
        if i >= len(toks) or toks[i] != word:
            raise ApiFailure(400, "invalid", f"Invalid Value: expected {word!r} in q")
        i += 1

    while i < len(toks):
        t = toks[i]
        if t.startswith("'"):
            i += 1
            expect("in")
            expect("parents")
            clauses.append(("parent", _literal(t)))
        elif t == "trashed":
            i += 1
            expect("=")
            value = toks[i]
            i += 1
            clauses.append(("trashed", value))
        elif t in ("name", "mimeType"):
            i += 1
            op = toks[i]
            i += 1
            if op not in ("=", "!=", "contains"):
                raise ApiFailure(400, "invalid", f"Invalid Value: {t} {op}")
            clauses.append((t, op, _literal(toks[i])))
            i += 1
        elif t == "appProperties":
            i += 1
            expect("has")
            expect("{")
            expect("key")
            expect("=")
            key = _literal(toks[i])
            i += 1
            expect("and")
            expect("value")
            expect("=")
            value = _literal(toks[i])
            i += 1
            expect("}")
            clauses.append(("prop", key, value))
        else:
            raise ApiFailure(400, "invalid", f"Invalid Value: unsupported q term {t!r}")
        if i < len(toks):
            expect("and")
    return clauses


def matches(f: StoredFile, clauses: list[tuple[str, ...]]) -> bool:
    for c in clauses:
        if c[0] == "parent" and c[1] not in f.parents:
            return False
        if c[0] == "trashed" and f.trashed != (c[1] == "true"):
            return False
        if c[0] in ("name", "mimeType"):
            value = f.name if c[0] == "name" else f.mime_type
            if c[1] == "=" and value != c[2]:
                return False
            if c[1] == "!=" and value == c[2]:
                return False
            if c[1] == "contains" and c[2] not in value:
                return False
        if c[0] == "prop" and f.app_properties.get(c[1]) != c[2]:
            return False
    return True


def parse_fields(spec: str) -> dict[str, Any] | None:
    """``nextPageToken,files(id,name)`` -> a tree; None means every field."""
    pos = 0

    def level() -> dict[str, Any] | None:
        nonlocal pos
        tree: dict[str, Any] | None = {}
        while pos < len(spec):
            m = re.match(r"\s*([A-Za-z_*][A-Za-z0-9_/]*)\s*", spec[pos:])
            if not m:
                raise ApiFailure(400, "invalidParameter", f"Invalid field selection {spec}")
            name = m.group(1)
            pos += m.end()
            sub: dict[str, Any] | None = {}
            if pos < len(spec) and spec[pos] == "(":
                pos += 1
                sub = level()
                pos += 1  # ')'
            if name == "*":
                tree = None
            elif tree is not None:
                tree[name] = sub
            while pos < len(spec) and spec[pos] == " ":
                pos += 1
            if pos < len(spec) and spec[pos] == ",":
                pos += 1
                continue
            break
        return tree

    return level()


def apply_fields(obj: Any, tree: dict[str, Any] | None) -> Any:
    if tree is None or not isinstance(obj, (dict, list)) or tree == {}:
        return obj
    if isinstance(obj, list):
        return [apply_fields(o, tree) for o in obj]
    return {k: apply_fields(obj[k], sub) for k, sub in tree.items() if k in obj}


# --- the HTTP side ----------------------------------------------------------------------------


class DriveHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], state: DriveState) -> None:
        self.state = state
        self.active: set[socket.socket] = set()
        self.active_lock = threading.Lock()
        super().__init__(address, DriveHandler)


class DriveHandler(BaseHTTPRequestHandler):
    server: DriveHTTPServer
    protocol_version = "HTTP/1.1"
    timeout = 10     # a body that never comes (the empty re-send trap) must not hang us

    # --- connection bookkeeping (so stop() can cut live keep-alive connections) ------

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.state.body_timeout)
        # headers and body go out in two writes: without this, Nagle + delayed ACK add 40 ms
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
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

    do_GET = do_POST = do_PUT = do_DELETE = lambda self: self._dispatch()  # noqa: E731

    # --- plumbing ---------------------------------------------------------------------

    def _read_body(self, limit: int | None = None) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        want = length if limit is None else min(limit, length)
        self._body_read = True
        chunks, got = [], 0
        while got < want:
            block = self.rfile.read(min(1 << 20, want - got))
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
        self._recorded = False
        op, handler = self._route(self.command, url.path)
        self._op = op
        if handler is None:
            self._json(404, error_body(404, "notFound", "Not Found"))
            return
        fault = self.state.take_fault(op)
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
                                             self._fault_name))

    def _route(self, method: str, path: str) -> tuple[str, Any]:
        if path == "/token" and method == "POST":
            return "token", self._token
        if path == "/upload/drive/v3/files":
            if method == "POST":
                kind = self.query.get("uploadType", "")
                return ("initiate", self._initiate) if kind == "resumable" else \
                    ("multipart", self._multipart)
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
        if path == "/bench/put" and method == "PUT":
            return "bench", self._bench_put
        return "unknown", None

    def _apply_fault(self, op: str, fault: Fault) -> bool:
        """Misbehave as ``fault`` says; True if the request is fully handled by it."""
        if fault.action == "delay":
            time.sleep(fault.delay)
            return False
        if fault.action == "error":
            self._read_body()
            if fault.status == 401:
                self.state.expire_tokens()
            body = (json.dumps({"error": fault.reason, "error_description": "injected"})
                    .encode() if op == "token" else
                    json.dumps(error_body(fault.status, fault.reason)).encode())
            self._send(fault.status, body)
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
        if fault.action == "short" and op == "chunk":
            self._chunk(short=True)
            return True
        return False

    def _principal(self, *, optional: bool = False) -> Principal | None:
        header = self.headers.get("Authorization")
        if optional and not header:
            return None
        who = self.state.principal_for(header)
        if who is None:
            raise ApiFailure(401, "authError")
        return who

    # --- the token endpoint -------------------------------------------------------------

    def _token(self) -> None:
        form = {k: v[0] for k, v in parse_qs(self._read_body().decode()).items()}
        basic = self.headers.get("Authorization", "")
        if basic.startswith("Basic "):      # client credentials may come as HTTP Basic auth
            cid, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
            form.setdefault("client_id", unquote(cid))
            form.setdefault("client_secret", unquote(secret))
        grant = form.get("grant_type", "")
        st = self.state
        with st.lock:
            if grant == JWT_GRANT:
                who = self._verify_jwt(form.get("assertion", ""))
            elif grant == "refresh_token":
                who = st.refresh_tokens.get(form.get("refresh_token", ""))
                if who is None or st.clients.get(form.get("client_id", "")) != \
                        form.get("client_secret") or who.client_id != form.get("client_id"):
                    return self._json(400, {"error": "invalid_grant",
                                            "error_description": "Token has been expired or "
                                                                 "revoked."})
            elif grant == "authorization_code":
                entry = st.codes.pop(form.get("code", ""), None)
                if entry is None or st.clients.get(form.get("client_id", "")) != \
                        form.get("client_secret") or entry[0] != form.get("client_id") or \
                        entry[1] != form.get("redirect_uri"):
                    return self._json(400, {"error": "invalid_grant",
                                            "error_description": "Malformed auth code."})
                challenge = entry[2]
                verifier = form.get("code_verifier", "")
                if challenge and _s256(verifier) != challenge:
                    return self._json(400, {"error": "invalid_grant",
                                            "error_description": "Invalid code verifier."})
                who = entry[3]
                rt = "1//rt-" + secrets.token_urlsafe(24)
                st.refresh_tokens[rt] = who
                return self._json(200, {"access_token": st.issue_access_token(who),
                                        "expires_in": st.token_lifetime, "token_type": "Bearer",
                                        "scope": who.scope, "refresh_token": rt})
            else:
                return self._json(400, {"error": "unsupported_grant_type"})
            if who is None:
                return self._json(400, {"error": "invalid_grant",
                                        "error_description": "Invalid JWT Signature."})
            reply = {"access_token": st.issue_access_token(who),
                     "expires_in": st.token_lifetime, "token_type": "Bearer"}
            if grant == "refresh_token":
                reply["scope"] = who.scope
            self._json(200, reply)

    def _verify_jwt(self, assertion: str) -> Principal | None:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        try:
            head, body, sig = assertion.split(".")
            claims = json.loads(_b64(body))
            key = self.state.service_accounts.get(claims.get("iss", ""))
            if key is None:
                return None
            key.verify(_b64(sig), f"{head}.{body}".encode(), padding.PKCS1v15(),
                       hashes.SHA256())
        except (ValueError, InvalidSignature):
            return None
        # google-auth always addresses Google's endpoint, whatever token_uri it posts to
        audiences = (self.state.base_url + "token", "https://oauth2.googleapis.com/token")
        if claims.get("aud") not in audiences or claims.get("exp", 0) < time.time():
            return None
        scope = claims.get("scope", "")
        if claims.get("sub"):
            if claims["iss"] not in self.state.delegation:
                return None
            return Principal("user", claims["sub"], "", scope)
        return Principal("service_account", claims["iss"], "", scope)

    # --- creating files -----------------------------------------------------------------

    def _check_parent(self, who: Principal, metadata: dict[str, Any], size: int) -> str | None:
        """The shared drive the new file lands in (None for My Drive), after the checks
        Drive makes: the parent exists and is visible, and someone has quota."""
        all_drives = self.query.get("supportsAllDrives") == "true"
        parents = metadata.get("parents") or ["root"]
        parent = parents[0]
        st = self.state
        with st.lock:
            if parent in st.shared_drives:
                if not all_drives or who.email not in st.shared_drives[parent]:
                    raise ApiFailure(404, "notFound", f"File not found: {parent}.")
                return parent
            if parent != "root":
                folder = st.files.get(parent)
                if folder is None or folder.trashed or not st.visible(folder, who, all_drives):
                    raise ApiFailure(404, "notFound", f"File not found: {parent}.")
                if folder.drive_id:
                    return folder.drive_id
        if who.kind == "service_account" and st.sa_without_quota and \
                metadata.get("mimeType") != FOLDER_MIME:
            raise ApiFailure(403, "storageQuotaExceeded", SA_QUOTA_MESSAGE)
        return None

    def _store_file(self, who: Principal, metadata: dict[str, Any], content: bytes | None,
                    size: int, md5: str, drive_id: str | None) -> StoredFile:
        st = self.state
        with st.lock:
            f = StoredFile(id=st.new_id(), name=str(metadata.get("name", "Untitled")),
                           mime_type=str(metadata.get("mimeType") or
                                         "application/octet-stream"),
                           parents=list(metadata.get("parents") or ["root"]),
                           app_properties=dict(metadata.get("appProperties") or {}),
                           created=_now(), content=content, size=size, md5=md5,
                           drive_id=drive_id, creator_client=who.client_id, owner=who.email)
            st.files[f.id] = f
            return f

    def _file_answer(self, f: StoredFile, fields: str | None, status: int = 200) -> None:
        tree = parse_fields(fields) if fields else \
            {"kind": {}, "id": {}, "name": {}, "mimeType": {}}
        self._json(status, apply_fields(self.state.resource(f), tree))

    def _initiate(self) -> None:
        who = self._principal()
        assert who is not None
        raw = self._read_body()
        metadata = json.loads(raw or b"{}")
        total = self.headers.get("X-Upload-Content-Length")
        drive_id = self._check_parent(who, metadata, int(total or 0))
        sid = secrets.token_urlsafe(24)
        with self.state.lock:
            self.state.sessions[sid] = Session(sid, metadata, int(total) if total else None, who,
                                               self.query.get("fields"), drive_id)
        keep = {k: v for k, v in self.query.items() if k in ("fields", "supportsAllDrives")}
        location = (self.state.base_url + "upload/drive/v3/files?" +
                    urlencode({"uploadType": "resumable", **keep, "upload_id": sid}))
        self._send(200, b"", {"Location": location, "X-GUploader-UploadID": sid})

    def _multipart(self) -> None:
        who = self._principal()
        assert who is not None
        raw = self._read_body()
        ctype = self.headers.get("Content-Type", "")
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {ctype}\r\n\r\n".encode() + raw)
        parts = list(msg.iter_parts()) if msg.is_multipart() else []
        if len(parts) != 2:
            raise ApiFailure(400, "badContent", "Multipart body must have two parts.")
        metadata = json.loads(parts[0].get_payload(decode=True) or b"{}")
        content = parts[1].get_payload(decode=True) or b""
        drive_id = self._check_parent(who, metadata, len(content))
        f = self._store_file(who, metadata, content, len(content),
                             hashlib.md5(content).hexdigest(), drive_id)
        self._file_answer(f, self.query.get("fields"))

    def _create(self) -> None:
        who = self._principal()
        assert who is not None
        metadata = json.loads(self._read_body() or b"{}")
        drive_id = self._check_parent(who, metadata, 0)
        f = self._store_file(who, metadata, b"", 0, hashlib.md5(b"").hexdigest(), drive_id)
        self._file_answer(f, self.query.get("fields"))

    # --- resumable sessions ----------------------------------------------------------------

    def _session(self) -> Session:
        sid = self.query.get("upload_id", "")
        with self.state.lock:
            s = self.state.sessions.get(sid)
        if s is None or s.expired:
            raise ApiFailure(404, "notFound", "Not Found")
        return s

    def _range_answer(self, s: Session) -> None:
        if s.done_file:
            f = self.state.files[s.done_file]
            return self._file_answer(f, s.fields)
        headers = {"Range": f"bytes=0-{s.received - 1}"} if s.received else {}
        headers["X-GUploader-UploadID"] = s.id
        self._send(308, b"", headers)

    def _chunk(self, short: bool = False) -> None:
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
        bytes are kept (a "short" fault). False if the body ended early."""
        self._body_read = True
        md5 = s.md5.copy()
        kept = bytearray()
        skip = s.received - start              # bytes of a re-send we already hold
        got = 0
        while got < want:
            block = self.rfile.read(min(1 << 20, want - got))
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
            f = self._store_file(s.principal, s.metadata, content, s.received,
                                 s.md5.hexdigest(), s.parent_drive)
            s.done_file = f.id
            s.data = bytearray()

    # --- reading, listing, deleting -----------------------------------------------------------

    def _visible_file(self, who: Principal) -> StoredFile:
        all_drives = self.query.get("supportsAllDrives") == "true"
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
        for key in reversed([k.strip() for k in q.get("orderBy", "").split(",") if k.strip()]):
            name, _, direction = key.partition(" ")
            attr = {"createdTime": "created", "name": "name"}.get(name)
            if attr is None:
                raise ApiFailure(400, "invalid", f"Invalid Value: orderBy {key}")
            found.sort(key=lambda f, a=attr: getattr(f, a), reverse=direction == "desc")
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
        with self.state.lock:
            self.state.files.pop(f.id, None)
        self._send(204)

    def _bench_put(self) -> None:
        """A plain HTTP PUT that hashes what it receives: the benchmark's baseline."""
        length = int(self.headers.get("Content-Length") or 0)
        md5, got = hashlib.md5(), 0
        while got < length:
            block = self.rfile.read(min(1 << 20, length - got))
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


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode() \
        .rstrip("=")


# --- running it --------------------------------------------------------------------------------


class DriveServer:
    """Start/stop/restart the server; the state survives a restart (a server that is down
    and comes back)."""

    def __init__(self, state: DriveState | None = None, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.state = state or DriveState()
        self.host, self.port = host, port
        self._httpd: DriveHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The API root, for ``drive.api_root``."""
        return f"http://{self.host}:{self.port}/"

    @property
    def token_uri(self) -> str:
        return self.url + "token"

    def start(self) -> DriveServer:
        self._httpd = DriveHTTPServer((self.host, self.port), self.state)
        self.port = self._httpd.server_address[1]
        self.state.base_url = self.url
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="drive-server",
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut every open connection (the server is down)."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._httpd.active_lock:
            for sock in list(self._httpd.active):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                    sock.close()
        self._httpd = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> DriveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def running(state: DriveState | None = None) -> Iterator[DriveServer]:
    server = DriveServer(state).start()
    try:
        yield server
    finally:
        server.stop()


def main() -> None:
    """Serve until killed; print the API root and an OAuth sign-in (benchmark use)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--hash-only", action="store_true",
                    help="keep md5 and size of uploads, not their bytes (big benchmarks)")
    args = ap.parse_args()
    state = DriveState(keep_content=not args.hash_only)
    client_id, secret = "bench-client", "bench-secret"
    state.add_oauth_client(client_id, secret)
    rt = state.issue_refresh_token(client_id)
    folder = state.add_folder("bench", visible_to={client_id})
    server = DriveServer(state, port=args.port).start()
    print(json.dumps({"api_root": server.url, "token_uri": server.token_uri, "folder": folder,
                      "client_id": client_id, "client_secret": secret, "refresh_token": rt}),
          flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()


if __name__ == "__main__":
    main()
