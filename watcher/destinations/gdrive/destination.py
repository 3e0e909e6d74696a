"""The Google Drive destination: resumable, verified, exactly-once copies in one folder.

- Each archive is one Drive file named like the archive, in ``drive.folder_id`` (or at the
  top of the shared drive ``drive.shared_drive_id``), tagged with ``appProperties``: the
  snapshot id and the archive's sha256. The tags make the copies findable on a new machine
  with nothing but the configuration and the credentials (``list``/``restore --from drive``).
- ``put`` first looks for a file with the snapshot's id, so a retry after a lost final answer
  never leaves two copies; then uploads with :mod:`watcher.destinations.gdrive.upload`;
  then compares Drive's ``md5Checksum`` and ``size`` with the local file (a mismatch
  deletes the bad copy and uploads again).
- ``get`` downloads in ranged requests of one chunk each (memory stays bounded; httplib2
  reads whole answers into memory), resumes a ``.partial`` with Range, checks the sha256.

Nothing touches the network or the credential files until the first call, so building the
destination never fails a backup run.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import replace
from datetime import datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import quote

from googleapiclient.errors import HttpError

from watcher.archive.files import (
    PARTIAL_SUFFIX,
    archive_kind_of,
    copy_name,
    file_sha256,
    fsync_dir,
    newest_first,
    open_private,
    parse_snapshot_id,
    snapshot_id_of,
    snapshot_time,
    write_all,
)
from watcher.config.settings import DriveConfig
from watcher.destinations.base import (
    Destination,
    DestinationError,
    Notice,
    ProgressFn,
    RemoteFile,
    Sealed,
    archive_size,
    put_hashes,
)
from watcher.destinations.gdrive.auth import load_credentials
from watcher.destinations.gdrive.errors import (
    Action,
    Backoff,
    Context,
    Verdict,
    classify,
    exception_verdict,
    parse_error,
    shared_drive_advice,
)
from watcher.destinations.gdrive.transport import authorized_http, build_service
from watcher.destinations.gdrive.upload import Pace, ResumableUploader, round_chunk
from watcher.retry import EQUAL_JITTER, RetryPolicy, Stopped, wait

log = logging.getLogger(__name__)

MIB = 1024 * 1024
MIME_TYPE = "application/zstd"
#: age has no registered media type
SEALED_MIME_TYPE = "application/octet-stream"
FOLDER_MIME = "application/vnd.google-apps.folder"
KEY_KIND, KIND_ARCHIVE = "siip_kind", "archive"
KEY_SNAPSHOT = "siip_snapshot"
KEY_SHA256 = "siip_sha256"
#: an encrypted copy: the sha256 of its bytes, and each public key it was made for in a
#: property of its own (``siip_age_1``...), since key and value together may hold 124 bytes
KEY_SEALED_SHA256 = "siip_age_sha256"
KEY_RECIPIENT = "siip_age_"
FILE_FIELDS = "id,name,size,md5Checksum,createdTime,appProperties,webViewLink,trashed"
MAX_MISMATCHES = 2
DEFAULT_TIMEOUT = 60.0
#: about half a minute of retries (1 + 2 + 4 + 8 + 16 s, jittered) before an attempt gives
#: up; the queue tries again later, and progress restarts the count on a long upload
DEFAULT_RETRY = RetryPolicy(attempts=6, base=1.0, cap=32.0, jitter=EQUAL_JITTER)
#: Google asking to slow down: its quotas count requests per minute (or per 100 s), so the
#: waits grow to a minute and the attempt lasts about three (2 + 4 + ... + 64 + 64 s,
#: jittered) before the copy goes back to the queue, which tries again minutes later
RATE_LIMIT_RETRY = RetryPolicy(attempts=8, base=2.0, cap=64.0, jitter=EQUAL_JITTER)


class _Gone(Exception):
    """The Drive file does not exist (404)."""


class _TrashInstead(Exception):
    """The account may not delete the file for good (a shared drive's Content manager)."""


def _sealed(props: dict[str, str]) -> Sealed | None:
    """What a copy's appProperties say about its encryption; None for a plain archive."""
    keys = sorted((k for k in props if k.startswith(KEY_RECIPIENT) and k[len(KEY_RECIPIENT):]
                   .isdigit()), key=lambda k: int(k[len(KEY_RECIPIENT):]))
    if KEY_SEALED_SHA256 not in props and not keys:
        return None
    return Sealed(recipients=tuple(props[k] for k in keys), sha256=props.get(KEY_SEALED_SHA256))


def quote_q(value: str) -> str:
    """A string literal for a Drive ``q`` query."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class GoogleDriveDestination(Destination):
    """Copies of archives in one Google Drive folder (see the module docstring)."""

    def __init__(
        self,
        drive: DriveConfig,
        *,
        name: str = "drive",
        credentials: Any | None = None,
        chunk_size: int | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        rate_retry: RetryPolicy | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.cfg = drive
        self.name = name
        self.chunk_size = round_chunk(chunk_size or drive.chunk_mib * MIB)
        self.timeout = timeout
        self.retry = retry or DEFAULT_RETRY
        self.backoff = Backoff(self.retry, rate_retry or RATE_LIMIT_RETRY)
        #: the uplink's pace, learned across this destination's uploads
        self.pace = Pace(base=timeout)
        self.stop = stop
        self.parent = drive.folder_id or drive.shared_drive_id
        self.ctx = Context(auth=drive.auth, folder=self.parent, impersonate=drive.impersonate,
                           shared_drive=drive.shared_drive_id)
        self._credentials = credentials
        self._http: Any = None
        self._service: Any = None
        #: the shared drive drive.folder_id lies in, found on first use ("" for My Drive)
        self._folder_drive: str | None = None
        #: deleting was refused once: every later deletion goes to the trash at once
        self._trash_only = False
        self._notices: list[Notice] = []

    # --- plumbing -----------------------------------------------------------------------

    def _connect(self) -> tuple[Any, Any]:
        """The signed transport and the API client, built on first use."""
        if self._service is None:
            if self._credentials is None:
                self._credentials = load_credentials(self.cfg)
            self._http = authorized_http(self._credentials, self.cfg.api_root, self.timeout)
            self._service = build_service(self._http, self.cfg.api_root)
        return self._http, self._service

    def _common(self) -> dict[str, Any]:
        """Parameters every call carries: shared drives need supportsAllDrives."""
        return {"supportsAllDrives": True}

    def _list_scope(self) -> dict[str, Any]:
        drive_id = self._shared_drive()
        if drive_id:
            return {"corpora": "drive", "driveId": drive_id,
                    "includeItemsFromAllDrives": True, "supportsAllDrives": True}
        return {"corpora": "user", "supportsAllDrives": True}

    def _shared_drive(self) -> str:
        """The shared drive the backups are in: drive.shared_drive_id, else the one
        drive.folder_id lies in ("" for My Drive), asked once.

        Uploads into a shared-drive folder work without shared_drive_id, but a listing
        without the drive (corpora=user) never sees them: `list --from drive` would be empty,
        prune would keep everything and a retried upload could not find its copy. So the
        folder's own driveId is used, and the log says what to set.
        """
        if self.cfg.shared_drive_id or not self.cfg.folder_id:
            return self.cfg.shared_drive_id
        if self._folder_drive is None:
            found = str(self.folder_info().get("driveId") or "")
            self._folder_drive = found
            if found:
                self.ctx = replace(self.ctx, shared_drive=found)
                log.warning("%s: %s", self.name,
                            shared_drive_advice(self.cfg.folder_id, "", found))
        return self._folder_drive

    def _execute(self, op: str, make: Callable[[Any], Any]) -> Any:
        """Run ``make(files()).execute()`` with backoff on 5xx, 429, rate limits, resets."""
        failures = 0
        while True:
            _, service = self._connect()
            try:
                return make(service.files()).execute(num_retries=0)
            except HttpError as exc:
                verdict = classify(parse_error(exc.resp.status, exc.content, exc.resp), op,
                                   self.ctx)
                if verdict.action is Action.GONE:
                    raise _Gone() from None
                if verdict.action is Action.TRASH:
                    raise _TrashInstead(verdict.message) from None
                if verdict.action is not Action.RETRY:
                    raise DestinationError(verdict.message, retryable=False) from None
            except DestinationError:
                raise
            except Exception as exc:
                found = exception_verdict(exc, op, self.ctx)
                if found is None:
                    raise
                if found.action is not Action.RETRY:
                    raise DestinationError(found.message, retryable=False) from None
                verdict = found
            failures += 1
            wait(self.backoff.wait(verdict, failures), self.stop)

    @contextmanager
    def _stoppable(self) -> Iterator[None]:
        try:
            yield
        except Stopped:
            raise DestinationError("stopped before the Drive transfer finished; it resumes "
                                   "next time") from None

    # --- find and list ------------------------------------------------------------------

    def _query(self, *clauses: str) -> str:
        base = [f"{quote_q(self.parent)} in parents", "trashed = false",
                f"appProperties has {{ key='{KEY_KIND}' and value='{KIND_ARCHIVE}' }}"]
        return " and ".join(base + list(clauses))

    def _files(self, q: str, op: str) -> list[dict[str, Any]]:
        """Every file matching ``q``, following nextPageToken."""
        found: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            page = self._execute(op, lambda f, t=token: f.list(
                q=q, pageSize=1000, pageToken=t, spaces="drive",
                fields=f"nextPageToken,files({FILE_FIELDS})", **self._list_scope()))
            found.extend(page.get("files", []))
            token = page.get("nextPageToken")
            if not token:
                return found

    def _find_resource(self, snapshot_id: str) -> dict[str, Any] | None:
        clause = f"appProperties has {{ key='{KEY_SNAPSHOT}' and value={quote_q(snapshot_id)} }}"
        files = self._files(self._query(clause), "find")
        if not files:
            return None
        files.sort(key=lambda r: r.get("createdTime", ""))
        if len(files) > 1:
            log.warning("%s: Drive holds %d files for snapshot %s; using the oldest",
                        self.name, len(files), snapshot_id)
        return files[0]

    def find(self, snapshot_id: str) -> RemoteFile | None:
        """The copy of ``snapshot_id`` on Drive, if any."""
        with self._stoppable():
            res = self._find_resource(snapshot_id)
        return self._remote(res) if res else None

    def list(self) -> list[RemoteFile]:
        """Every archive in the folder, newest first (pages followed).

        Anyone who can edit the folder can rename its files, so a name is never trusted: a
        file whose snapshot id is not ``NAME-YYYYMMDDTHHMMSSZ`` is left out with a warning,
        and a renamed archive is flagged (callers name local copies by snapshot id).
        """
        with self._stoppable():
            found = [self._remote(r) for r in self._files(self._query(), "list")]
        return newest_first(r for r in found if self._acceptable(r))

    def _acceptable(self, remote: RemoteFile) -> bool:
        if parse_snapshot_id(remote.snapshot_id) is None:
            log.warning("%s: ignoring the Drive file %r (id %s): %r is not a snapshot id "
                        "like NAME-YYYYMMDDTHHMMSSZ", self.name, remote.name, remote.remote_id,
                        remote.snapshot_id)
            return False
        if remote.name != copy_name(remote.snapshot_id, remote.kind,
                                    sealed=remote.sealed is not None):
            log.warning("%s: the Drive file holding %s was renamed to %r; it is still used, "
                        "under its snapshot id's name", self.name, remote.snapshot_id,
                        remote.name)
        return True

    def _remote(self, res: dict[str, Any]) -> RemoteFile:
        props = res.get("appProperties") or {}
        name = str(res.get("name", ""))
        sid = props.get(KEY_SNAPSHOT) or snapshot_id_of(name) or name
        created = snapshot_time(sid)
        if created is None and res.get("createdTime"):
            created = datetime.fromisoformat(str(res["createdTime"]).replace("Z", "+00:00"))
        return RemoteFile(snapshot_id=sid, name=name, size=int(res.get("size") or 0),
                          remote_id=str(res["id"]), sha256=props.get(KEY_SHA256),
                          created_at=created, link=res.get("webViewLink"),
                          kind=archive_kind_of(name), sealed=_sealed(props))

    # --- put ----------------------------------------------------------------------------

    def put(
        self,
        archive: Path,
        *,
        snapshot_id: str,
        sha256: str,
        state: dict[str, Any] | None = None,
        save_state: Callable[[dict[str, Any]], None] | None = None,
        progress: ProgressFn | None = None,
        sealed: Sealed | None = None,
    ) -> RemoteFile:
        """Upload ``archive`` exactly once, verify it, and return the copy on Drive."""
        # the upload is of content_sha's bytes: a resumed session must belong to these very
        # bytes, and a re-encrypted copy differs
        sha256, content_sha = put_hashes(sha256, sealed)
        size = archive_size(archive)
        mime_type = SEALED_MIME_TYPE if sealed else MIME_TYPE
        properties = {KEY_KIND: KIND_ARCHIVE, KEY_SNAPSHOT: snapshot_id, KEY_SHA256: sha256}
        if sealed is not None:
            properties[KEY_SEALED_SHA256] = str(sealed.sha256)
            properties.update({f"{KEY_RECIPIENT}{n}": key
                               for n, key in enumerate(sealed.recipients, start=1)})
        metadata = {
            "name": copy_name(snapshot_id, archive_kind_of(archive.name),
                              sealed=sealed is not None),
            "parents": [self.parent],
            "mimeType": mime_type,
            "appProperties": properties,
        }
        with self._stoppable():
            http, _ = self._connect()
            self._shared_drive()         # the advice on a full drive names the right one
            for _attempt in range(MAX_MISMATCHES):
                uploader = ResumableUploader(
                    http, self.cfg.api_root, chunk_size=self.chunk_size, backoff=self.backoff,
                    pace=self.pace, context=self.ctx, stop=self.stop,
                    params={"supportsAllDrives": "true", "fields": FILE_FIELDS})
                out = uploader.upload(archive, metadata, sha256=content_sha, state=state,
                                      save_state=save_state, progress=progress,
                                      find_existing=lambda: self._find_resource(snapshot_id),
                                      mime_type=mime_type)
                remote = self._remote(out.resource)
                problem = self._mismatch(out.resource, size, out.md5, sha256, sealed)
                if problem is None:
                    return remote
                log.warning("%s: the copy of %s on Drive %s; deleting it and uploading "
                            "again", self.name, snapshot_id, problem)
                self._delete_id(remote.remote_id)
                state = None
                if save_state:
                    save_state({})
            raise DestinationError(f"the copy of {snapshot_id} on Google Drive did not match the "
                                   f"local archive {MAX_MISMATCHES} times (last: {problem}); "
                                   f"it stays queued")

    @staticmethod
    def _mismatch(res: dict[str, Any], size: int, md5: str, sha256: str,
                  sealed: Sealed | None) -> str | None:
        """Why Drive's copy differs from the local file (the encrypted one, when
        ``sealed``), or None if it matches."""
        if str(res.get("size")) != str(size):
            return f"has {res.get('size')} bytes instead of {size}"
        if res.get("md5Checksum") != md5:
            return "has a different md5Checksum"
        props = res.get("appProperties") or {}
        if props.get(KEY_SHA256) != sha256:
            return "records a different sha256"
        if sealed is not None and _sealed(props) != sealed:
            return "records other recipients or another encrypted sha256"
        return None

    # --- get ------------------------------------------------------------------------------

    def get(self, remote: RemoteFile, target: Path, *, progress: ProgressFn | None = None) -> Path:
        """Download ``remote`` to ``target`` through ``<target>.partial`` (resumed with
        Range), then check its size and sha256."""
        partial = target.with_name(target.name + PARTIAL_SUFFIX)
        with self._stoppable():
            for fresh in (False, True):
                digest = self._download(remote, partial, fresh=fresh, progress=progress)
                if remote.stored_sha256 is None or digest == remote.stored_sha256:
                    break
                partial.unlink(missing_ok=True)
                if fresh:
                    raise DestinationError(
                        f"the copy of {remote.snapshot_id} on Google Drive does not match its "
                        f"sha256; it is damaged, restore another snapshot", retryable=False)
                log.info("%s: resumed download of %s did not verify; downloading again",
                         self.name, remote.snapshot_id)
        os.replace(partial, target)
        fsync_dir(target.parent)
        return target

    def _download(self, remote: RemoteFile, partial: Path, *, fresh: bool,
                  progress: ProgressFn | None) -> str:
        http, _ = self._connect()
        url = (f"{self.cfg.api_root.rstrip('/')}/drive/v3/files/{quote(remote.remote_id)}"
               f"?alt=media&supportsAllDrives=true")
        offset = 0
        if not fresh and partial.exists():
            offset = partial.stat().st_size
            if offset > remote.size:
                partial.unlink()
                offset = 0
        hasher = hashlib.sha256()
        if offset:
            file_sha256(partial, hasher=hasher)
        fd = open_private(partial, os.O_WRONLY | os.O_CREAT | (0 if offset else os.O_TRUNC))
        try:
            os.lseek(fd, offset, os.SEEK_SET)
            failures = 0
            while offset < remote.size:
                if self.stop is not None and self.stop.is_set():
                    raise Stopped()          # the .partial is kept: the next get resumes
                end = min(offset + self.chunk_size, remote.size) - 1
                data = self._fetch_range(http, url, offset, end)
                if isinstance(data, Verdict):
                    failures += 1
                    wait(self.backoff.wait(data, failures, then="try the download again later"),
                         self.stop)
                    continue
                failures = 0
                write_all(fd, data)
                hasher.update(data)
                offset += len(data)
                if progress:
                    progress(len(data))
            os.fsync(fd)
        finally:
            os.close(fd)
        return hasher.hexdigest()

    def _fetch_range(self, http: Any, url: str, start: int, end: int) -> bytes | Verdict:
        """Bytes ``start..end`` of the file, or what went wrong when trying again may help."""
        try:
            resp, content = http.request(url, "GET", headers={"Range": f"bytes={start}-{end}"})
        except Exception as exc:
            verdict = exception_verdict(exc, "media", self.ctx)
            if verdict is None:
                raise
            if verdict.action is not Action.RETRY:
                raise DestinationError(verdict.message, retryable=False) from None
            log.info("%s; retrying", verdict.message)
            return verdict
        if resp.status == HTTPStatus.PARTIAL_CONTENT:
            got = resp.get("content-range", "")
            if not got.startswith(f"bytes {start}-") or len(content) != end - start + 1:
                return self._odd_answer(f"Drive answered a ranged download with {got!r} "
                                        f"({len(content)} bytes)")
            return content
        if resp.status == HTTPStatus.OK and start == 0:
            # the whole file (a server that ignores Range): keep only what was asked for
            if len(content) > end:
                return content[: end + 1]
            return self._odd_answer(f"Drive answered a download with {len(content)} bytes")
        verdict = classify(parse_error(resp.status, content, resp), "media", self.ctx)
        if verdict.action is Action.RETRY:
            log.info("%s; retrying", verdict.message)
            return verdict
        if verdict.action is Action.GONE:
            raise DestinationError("the copy is no longer on Google Drive; run `siip-watcher "
                                   "list --from drive` and pick another", retryable=False)
        raise DestinationError(verdict.message, retryable=False)

    @staticmethod
    def _odd_answer(what: str) -> Verdict:
        log.info("%s; retrying", what)
        return Verdict(Action.RETRY, what)

    # --- delete -----------------------------------------------------------------------------

    def delete(self, remote: RemoteFile) -> None:
        """Delete the file for good (trash would still count against the quota), or move it
        to the trash when the account may not delete (see :meth:`_delete_id`)."""
        with self._stoppable():
            self._delete_id(remote.remote_id)

    def _delete_id(self, file_id: str) -> None:
        """Delete ``file_id``; already gone is what we wanted.

        In a shared drive only a Manager may delete for good (files.delete in the Drive v3
        reference); a Content manager gets 403 insufficientFilePermissions but may move the
        file to the trash (``files.update`` with ``trashed=true``), which Google empties
        after 30 days. That is done instead, and said once per run in the log and the
        report (:meth:`take_notices`).
        """
        if not self._trash_only:
            try:
                with suppress(_Gone):
                    self._execute("delete", lambda f: f.delete(fileId=file_id,
                                                               **self._common()))
                return
            except _TrashInstead as refused:
                self._trash_only = True
                self._notices.append(self._trash_notice(str(refused)))
                log.warning("%s: %s; %s", self.name, self._notices[-1].message,
                            self._notices[-1].hint)
        with suppress(_Gone):
            self._execute("trash", lambda f: f.update(fileId=file_id, body={"trashed": True},
                                                      fields="id", **self._common()))

    def _trash_notice(self, refused: str) -> Notice:
        where = (f"the shared drive {self.ctx.shared_drive}" if self.ctx.shared_drive
                 else "the shared drive")
        fix = (f"make the account a Manager of {where} (Content manager may only move files "
               f"to the trash), see docs/drive.md")
        return Notice(
            key="trashed_instead",
            message=f"old copies on {self.name} were moved to the trash instead of deleted "
                    f"for good: {refused}; Google empties the trash after 30 days",
            hint=f"{fix}, so old copies are deleted for good", params={"dest": self.name},
            detail=f"{refused}; {fix}")

    def take_notices(self) -> list[Notice]:
        """What to tell the admin about this run's deletions (once, however many)."""
        taken, self._notices = self._notices, []
        return taken

    # --- folders (for `drive login`) ----------------------------------------------------------

    def check_folder(self) -> str:
        """The name of the upload folder; a clear error if this account cannot see it."""
        return str(self.folder_info().get("name", self.parent))

    def folder_info(self) -> dict[str, Any]:
        """The upload folder's ``id``, ``name`` and ``driveId`` (the shared drive it lies in;
        absent in My Drive); a clear error if this account cannot see it."""
        with self._stoppable():
            try:
                found: dict[str, Any] = self._execute("find", lambda f: f.get(
                    fileId=self.parent, fields="id,name,mimeType,driveId", **self._common()))
            except _Gone:
                raise DestinationError(classify(parse_error(404, b""), "find", self.ctx).message,
                                       retryable=False) from None
        return found

    def create_folder(self, title: str) -> str:
        """Create a folder at the top of My Drive (or of the shared drive); return its id.

        With the ``drive.file`` scope the app only sees folders it created itself, so
        `drive login` offers this instead of asking for a folder made in the web UI.
        """
        body: dict[str, Any] = {"name": title, "mimeType": FOLDER_MIME}
        if self.cfg.shared_drive_id:
            body["parents"] = [self.cfg.shared_drive_id]
        with self._stoppable():
            res = self._execute("create_folder", lambda f: f.create(
                body=body, fields="id,name", **self._common()))
        return str(res["id"])

    def close(self) -> None:
        """Close pooled connections."""
        if self._http is not None:
            inner = getattr(self._http, "http", None)
            if inner is not None and hasattr(inner, "close"):
                inner.close()
        self._http = self._service = None
