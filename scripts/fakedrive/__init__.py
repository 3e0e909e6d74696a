"""A Google Drive API v3 server of our own, for the tests and the upload benchmark.

Real HTTP on 127.0.0.1 (``http.server``, one thread per connection, keep-alive), so the real
google-api-python-client, google-auth and httplib2 talk to it exactly as to Google: the
OAuth token endpoint, resumable uploads, files.list with ``q``, downloads with ``Range``,
folders, deletes (see :mod:`fakedrive.handler` for the routes).

Behaviour worth testing against is modelled: service accounts have no storage quota outside
shared drives (403 storageQuotaExceeded), shared-drive items need ``supportsAllDrives``, a
shared drive's roles decide who may add, trash (Content manager and up) and delete for good
(Manager only; 403 insufficientFilePermissions otherwise),
a ``drive.file`` token only sees files its app created or was given, chunks must be
multiples of 256 KiB, a resumable session accepts overlapping re-sends.

Faults are injected per request with :meth:`DriveState.inject`: an error status with a
reason, a connection dropped mid-body, a request processed but its answer lost, a short
308, an expired session, an expired access token, a slow answer; and a slow uplink, as
``DriveState.read_rate`` (request bodies read no faster than that on each connection).
The server records protocol violations by the client (a chunk whose body is shorter than
its Content-Length, the google-api-python-client trap; a gap; a non-256-KiB chunk; a
re-send with different bytes). Leaving ``with DriveServer() as server:`` fails if a fault
did not fire or a violation was recorded, so a fault test cannot silently stop testing
anything.

It lives outside ``tests/`` because ``scripts/bench_upload.py`` runs it too (``python -m
fakedrive --help``), and outside ``watcher/`` because it is not the product (the wheel
ships ``watcher`` only).

Modules by job: :mod:`~fakedrive.state` (files, sessions, permissions),
:mod:`~fakedrive.faults`, :mod:`~fakedrive.query` (``q`` and ``fields``),
:mod:`~fakedrive.auth` (tokens), :mod:`~fakedrive.handler` (HTTP routes),
:mod:`~fakedrive.server` (running it).
"""

from .faults import Fault
from .server import DriveServer, sign_in
from .state import (
    FOLDER_MIME,
    QUANTUM,
    ROLES,
    SCOPE_FILE,
    SCOPE_FULL,
    DriveState,
    Principal,
    Record,
    StoredFile,
)

__all__ = ["FOLDER_MIME", "QUANTUM", "ROLES", "SCOPE_FILE", "SCOPE_FULL", "DriveServer",
           "DriveState", "Fault", "Principal", "Record", "StoredFile", "sign_in"]
