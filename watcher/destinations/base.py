"""The one small interface every destination implements.

A destination holds copies of archives under their snapshot id. Everything it needs to be
resumable (a Drive resumable-session URI and offset, say) is an opaque JSON-able ``state``
dict that the caller persists in the catalog through ``save_state`` and hands back on the next
attempt, so a restarted service resumes instead of starting over.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

ProgressFn = Callable[[int], None]
"""Called with the number of bytes just transferred."""


class DestinationError(Exception):
    """A destination operation failed.

    ``retryable`` says whether trying again later may succeed (network down, 5xx) or not
    (no quota, a folder that does not exist): the queue stops retrying the latter.
    ``retry_after`` is how many seconds the service asked to wait before the next try, if it
    said; the queue waits at least that long. The message is one line an admin can act on
    and never holds a secret.
    """

    def __init__(self, message: str, *, retryable: bool = True,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class SetupError(Exception):
    """A destination's setup command (`siip-watcher drive login`) could not finish.

    The message says why and what to do, in one line.
    """


@dataclass(frozen=True)
class Sealed:
    """An archive encrypted with age (docs/encryption.md): what a destination stores in its
    place when ``[encryption]`` names recipients.

    ``recipients`` are the public keys it was made for (age headers do not say; a
    destination records them beside the copy so a reader without the identity can be told
    which key opens it). ``sha256`` is the hash of the encrypted bytes, None when the
    destination does not record it (age authenticates every chunk, so a damaged copy still
    fails to decrypt).
    """

    recipients: tuple[str, ...]
    sha256: str | None = None


@dataclass(frozen=True)
class RemoteFile:
    """One archive as a destination holds it.

    ``sha256`` is always the archive's own (its ``.sha256`` sidecar's); for an encrypted copy
    (``sealed``) it is what the decrypted file must hash to.
    """

    snapshot_id: str
    name: str
    size: int
    remote_id: str
    sha256: str | None = None
    created_at: datetime | None = None
    link: str | None = None
    #: "full" or "delta", as the file's name says (watcher/archive/files.py)
    kind: str = "full"
    sealed: Sealed | None = None

    @property
    def stored_sha256(self) -> str | None:
        """The sha256 the stored bytes themselves must have, when known: what ``get``
        checks the download against."""
        return self.sealed.sha256 if self.sealed else self.sha256


def put_hashes(sha256: str, sealed: Sealed | None) -> tuple[str, str]:
    """The two hashes every ``put`` works with: the archive's own sha256, lower case (its
    sidecar's), and the sha256 the stored bytes must have (the ciphertext's for an encrypted
    copy). An encrypted copy without the hash of its bytes could not be checked once stored,
    so it is refused rather than stored unchecked."""
    sha256 = sha256.lower()
    if sealed is None:
        return sha256, sha256
    if not sealed.sha256:
        raise DestinationError("an encrypted copy needs the sha256 of its bytes",
                               retryable=False)
    return sha256, sealed.sha256


def archive_size(archive: Path) -> int:
    """The size of the local file a ``put`` sends; one that cannot be read is not worth
    retrying."""
    try:
        return archive.stat().st_size
    except OSError as exc:
        raise DestinationError(f"cannot read the local archive {archive}: "
                               f"{exc.strerror or exc}", retryable=False) from None


@dataclass(frozen=True)
class Notice:
    """Something a destination did otherwise than it was asked, which the admin should hear
    of once per run however often it happened (say, old copies moved to a trash because the
    account may not delete them for good).

    ``key`` is a problem key of watcher/backup/report.py (``PROBLEM_KEYS``), whose words the
    email says in the admin's language with ``params``; ``message`` and ``hint`` are English,
    for the log and the CLI; ``detail`` is the destination's own exact advice, which the
    email shows as the technical detail.
    """

    key: str
    message: str
    hint: str
    params: dict[str, str | int] = field(default_factory=dict)
    detail: str = ""


class Destination(ABC):
    """Stores, lists, fetches and deletes archives somewhere other than the local dir.

    A context manager: ``with`` closes it (its connections) however the block ends.
    """

    #: short name used in the catalog, the CLI (`--from NAME`) and reports
    name: str

    @abstractmethod
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
        """Copy ``archive`` here exactly once and verify it; return the stored copy.

        If a verified copy of ``snapshot_id`` is already here, return it without uploading.
        ``sha256`` is the archive's. With ``sealed``, ``archive`` is its age-encrypted file:
        it is stored as :func:`watcher.archive.files.sealed_name` with the recipients
        recorded, and verified against ``sealed.sha256``.
        """

    @abstractmethod
    def find(self, snapshot_id: str) -> RemoteFile | None:
        """The copy of ``snapshot_id`` held here, if any."""

    @abstractmethod
    def list(self) -> list[RemoteFile]:
        """Every archive held here, newest first."""

    @abstractmethod
    def get(self, remote: RemoteFile, target: Path, *, progress: ProgressFn | None = None) -> Path:
        """Download ``remote`` to the file ``target`` (resuming a partial download where the
        service allows), check it against ``remote.stored_sha256`` when known, and return
        ``target``. An encrypted copy arrives encrypted: the caller decrypts it."""

    @abstractmethod
    def delete(self, remote: RemoteFile) -> None:
        """Remove ``remote`` from here."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the default has nothing to release."""

    def take_notices(self) -> list[Notice]:
        """The notices gathered since the last call, which the caller now owns (each is
        reported once); the default destination never has any."""
        return []

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
