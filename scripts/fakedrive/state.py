"""What the server holds: files and folders, shared drives and who may see what, upload
sessions, credentials, injected faults, and the log of requests tests assert on."""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .errors import SA_QUOTA_MESSAGE, ApiFailure
from .faults import Fault, Faults

QUANTUM = 256 * 1024
#: a shared drive's member roles as the API names them (the web page's words in brackets):
#: organizer (Manager), fileOrganizer (Content manager), writer (Contributor), commenter,
#: reader (Viewer)
ROLES = ("organizer", "fileOrganizer", "writer", "commenter", "reader")
#: who may delete an item of a shared drive for good (files.delete: "the user must be an
#: organizer on the parent folder"), move it to the trash, and add files
MAY_DELETE = frozenset({"organizer"})
MAY_TRASH = frozenset({"organizer", "fileOrganizer"})
MAY_ADD = frozenset({"organizer", "fileOrganizer", "writer"})
FOLDER_MIME = "application/vnd.google-apps.folder"
SCOPE_FILE = "https://www.googleapis.com/auth/drive.file"
SCOPE_FULL = "https://www.googleapis.com/auth/drive"


@dataclass
class Principal:
    """Who a token speaks for."""

    kind: str                      # "user" or "service_account"
    email: str
    client_id: str = ""
    scope: str = SCOPE_FULL


@dataclass
class StoredFile:
    """A file or folder as Drive keeps it."""

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
    """A resumable upload session: what arrived so far, and the file it became."""

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
class Record:
    """One request as the server saw it."""

    op: str
    method: str
    status: int
    body_bytes: int
    content_range: str = ""
    fault: str = ""
    #: when the request arrived (time.monotonic), for tests of how long a client waited
    at: float = 0.0


def now() -> datetime:
    """The server's clock (Drive's ``createdTime``)."""
    return datetime.now(UTC)


class DriveState:
    """Everything the server holds, shared by its threads (guarded by one lock).

    It outlives a :class:`fakedrive.DriveServer` restart, as Google's data outlives a
    connection that breaks.
    """

    def __init__(self, *, keep_content: bool = True) -> None:
        self.lock = threading.RLock()
        self.keep_content = keep_content
        self.base_url = ""
        self.files: dict[str, StoredFile] = {}
        self.shared_drives: dict[str, dict[str, str]] = {}  # id -> member email -> role
        self.sessions: dict[str, Session] = {}
        self.moved_sessions: set[str] = set()            # addresses a 308 replaced
        self.tokens: dict[str, tuple[Principal, float]] = {}
        self.service_accounts: dict[str, Any] = {}         # email -> public key
        self.delegation: set[str] = set()                  # SA emails allowed to impersonate
        self.clients: dict[str, str] = {}                  # client id -> secret
        self.refresh_tokens: dict[str, Principal] = {}
        self.codes: dict[str, tuple[str, str, str, Principal]] = {}
        self.faults = Faults(self.lock)
        self.records: list[Record] = []
        self.violations: list[str] = []
        self.sa_without_quota = True
        self.token_lifetime = 3600
        self.max_page_size = 1000
        self.body_timeout = 10.0      # how long a request body may take to arrive
        self.chunk_bytes = 0          # chunk payload bytes received (re-sends included)
        self.resent_bytes = 0         # of which already stored before
        #: chunk bytes that arrived at all, those of chunks cut off midway included
        self.arrived_bytes = 0
        #: bytes a second each connection reads request bodies at (None: as fast as they
        #: come): a slow uplink, as the server sees it; may change while a test runs
        self.read_rate: float | None = None
        #: every request body byte received, in order, when a test sets this to a list: what
        #: left the client, aborted chunks included
        self.received: list[bytes] | None = None

    # --- setup helpers for tests --------------------------------------------------------

    def new_id(self, prefix: str = "f") -> str:
        """A fresh Drive-like id."""
        return prefix + secrets.token_hex(8)

    def add_folder(self, name: str = "backups", *, folder_id: str | None = None,
                   drive_id: str | None = None, visible_to: set[str] | None = None) -> str:
        """A folder made by a person in the web UI (or in a shared drive's top level)."""
        with self.lock:
            fid = folder_id or self.new_id("folder")
            parents = [drive_id] if drive_id else ["root"]
            self.files[fid] = StoredFile(fid, name, FOLDER_MIME, parents, {}, now(),
                                         drive_id=drive_id, opened_by=set(visible_to or ()))
            return fid

    def add_shared_drive(self, drive_id: str, members: set[str] | dict[str, str]) -> None:
        """A shared drive and its members: emails with their roles (:data:`ROLES`), or a set
        of emails who are all managers ("organizer")."""
        roles = members if isinstance(members, dict) else dict.fromkeys(members, "organizer")
        unknown = set(roles.values()) - set(ROLES)
        if unknown:
            raise ValueError(f"unknown shared-drive roles {sorted(unknown)}; one of {ROLES}")
        with self.lock:
            self.shared_drives[drive_id] = dict(roles)

    def role(self, f: StoredFile, who: Principal) -> str | None:
        """``who``'s role in the shared drive ``f`` is in; None for a My Drive file."""
        if f.drive_id is None:
            return None
        with self.lock:
            return self.shared_drives.get(f.drive_id, {}).get(who.email, "")

    def add_service_account(self, email: str, public_key: Any, *,
                            delegation: bool = False) -> None:
        """A service account whose JWTs the token endpoint checks against ``public_key``."""
        with self.lock:
            self.service_accounts[email] = public_key
            if delegation:
                self.delegation.add(email)

    def add_oauth_client(self, client_id: str, secret: str) -> None:
        """An OAuth client (a "Desktop app" in the Cloud console)."""
        with self.lock:
            self.clients[client_id] = secret

    def issue_refresh_token(self, client_id: str, email: str = "admin@example.com",
                            scope: str = SCOPE_FILE) -> str:
        """A refresh token as a past sign-in left it."""
        with self.lock:
            rt = "1//rt-" + secrets.token_urlsafe(24)
            self.refresh_tokens[rt] = Principal("user", email, client_id, scope)
            return rt

    def revoke_refresh_tokens(self) -> None:
        """The user removed the app's access."""
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
        """Make the next matching request misbehave; see :class:`fakedrive.faults.Fault`."""
        return self.faults.add(Fault(op=op, action=action, **kw))

    def stop_faults(self) -> None:
        """No injected fault hits any further request (each is still checked on exit)."""
        self.faults.stop()

    def expire_tokens(self) -> None:
        """Every access token handed out so far stops working."""
        with self.lock:
            self.tokens.clear()

    def expire_sessions(self) -> None:
        """Every resumable session so far answers 404."""
        with self.lock:
            for s in self.sessions.values():
                s.expired = True

    # --- queries for assertions ---------------------------------------------------------

    def live_files(self, *, app_property: tuple[str, str] | None = None) -> list[StoredFile]:
        """Files (not folders) not in the trash, optionally with one appProperty."""
        with self.lock:
            found = [f for f in self.files.values()
                     if not f.trashed and f.mime_type != FOLDER_MIME]
        if app_property:
            k, v = app_property
            found = [f for f in found if f.app_properties.get(k) == v]
        return found

    def ops(self, op: str) -> list[Record]:
        """The requests of one operation, in order."""
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

    def take_violations(self) -> list[str]:
        """The protocol violations so far, which the caller now owns (a test that provokes
        one on purpose takes it, so that the check on exit does not report it)."""
        with self.lock:
            taken, self.violations = self.violations, []
            return taken

    def problems(self) -> list[str]:
        """Protocol violations and faults that did not fire: each one means the test did not
        see what it was written to see."""
        with self.lock:
            return ([f"protocol violation: {v}" for v in self.violations] +
                    self.faults.shortfalls())

    # --- used by the handler ------------------------------------------------------------

    def visible(self, f: StoredFile, who: Principal, all_drives: bool) -> bool:
        """Whether ``who`` may see ``f`` (shared-drive membership, ``drive.file`` scope)."""
        members = self.shared_drives.get(f.drive_id or "", {})
        if f.drive_id is not None and (not all_drives or who.email not in members):
            return False
        if who.scope == SCOPE_FILE:
            return f.creator_client == who.client_id or who.client_id in f.opened_by
        return True

    def resource(self, f: StoredFile) -> dict[str, Any]:
        """The file's Drive v3 resource, every field (``fields`` trims it later)."""
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

    def check_parent(self, who: Principal, metadata: dict[str, Any],
                     all_drives: bool) -> str | None:
        """The shared drive a new file lands in (None for My Drive), after the checks
        Drive makes: the parent exists and is visible, and someone has quota."""
        parents = metadata.get("parents") or ["root"]
        parent = parents[0]
        with self.lock:
            if parent in self.shared_drives:
                if not all_drives or who.email not in self.shared_drives[parent]:
                    raise ApiFailure(404, "notFound", f"File not found: {parent}.")
                self._may_add(parent, who)
                return parent
            if parent != "root":
                folder = self.files.get(parent)
                if folder is None or folder.trashed or not self.visible(folder, who,
                                                                        all_drives):
                    raise ApiFailure(404, "notFound", f"File not found: {parent}.")
                if folder.drive_id:
                    self._may_add(folder.drive_id, who)
                    return folder.drive_id
        if who.kind == "service_account" and self.sa_without_quota and \
                metadata.get("mimeType") != FOLDER_MIME:
            raise ApiFailure(403, "storageQuotaExceeded", SA_QUOTA_MESSAGE)
        return None

    def _may_add(self, drive_id: str, who: Principal) -> None:
        if self.shared_drives.get(drive_id, {}).get(who.email) not in MAY_ADD:
            raise ApiFailure(403, "insufficientFilePermissions")

    def store_file(self, who: Principal, metadata: dict[str, Any], content: bytes | None,
                   size: int, md5: str, drive_id: str | None) -> StoredFile:
        """A new file created by ``who`` from the request's metadata."""
        with self.lock:
            f = StoredFile(id=self.new_id(), name=str(metadata.get("name", "Untitled")),
                           mime_type=str(metadata.get("mimeType") or
                                         "application/octet-stream"),
                           parents=list(metadata.get("parents") or ["root"]),
                           app_properties=dict(metadata.get("appProperties") or {}),
                           created=now(), content=content, size=size, md5=md5,
                           drive_id=drive_id, creator_client=who.client_id, owner=who.email)
            self.files[f.id] = f
            return f
