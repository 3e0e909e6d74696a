"""Opening an encrypted copy on this machine: the identity `list`, `verify` and `restore`
are given (``--identity`` or ``SIIP_WATCHER_IDENTITY_FILE``), and the one-line refusals
when it is missing or is not one the copy was made for.

The identity's text is never printed or logged: messages name its file and public key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pyrage import x25519

from watcher.actions import UsageError
from watcher.destinations.base import RemoteFile
from watcher.encryption.keys import IDENTITY_ENV, KeyFileError, load_identities
from watcher.encryption.stream import DecryptFailed, decrypt_file


@dataclass(frozen=True)
class Identity:
    """The private keys of an identity file, and their public keys (safe to show)."""

    file: Path
    keys: list[x25519.Identity]
    public: tuple[str, ...]

    def opens(self, remote: RemoteFile) -> bool | None:
        """Whether this identity opens ``remote``: None when it is not encrypted or does not
        say whom it was made for."""
        if remote.sealed is None or not remote.sealed.recipients:
            return None
        return any(key in remote.sealed.recipients for key in self.public)


def load_identity(path: Path | None) -> Identity | None:
    """The identity in ``path`` (None: none given); :class:`UsageError` when it is unusable."""
    if path is None:
        return None
    try:
        keys = load_identities(path)
    except KeyFileError as exc:
        raise UsageError(str(exc)) from None
    return Identity(path, keys, tuple(str(k.to_public()) for k in keys))


def _made_for(remote: RemoteFile) -> str:
    keys = remote.sealed.recipients if remote.sealed else ()
    return ", ".join(keys) if keys else "keys it does not record"


def require_identity(remote: RemoteFile, identity: Identity | None, source: str) -> Identity:
    """The identity that opens ``remote``, or :class:`UsageError` saying which public key it
    was made for (before anything is downloaded)."""
    if identity is None:
        raise UsageError(f"{remote.snapshot_id} at {source} is encrypted: an identity is needed "
                         f"(--identity FILE or {IDENTITY_ENV}); it was made for "
                         f"{_made_for(remote)}")
    if identity.opens(remote) is False:
        raise UsageError(f"{remote.snapshot_id} at {source} was made for {_made_for(remote)}; "
                         f"the identity in {identity.file} is {', '.join(identity.public)}, "
                         f"which does not open it")
    return identity


def decrypt_copy(encrypted: Path, target: Path, identity: Identity, remote: RemoteFile,
                 source: str) -> str:
    """Decrypt the downloaded ``encrypted`` into ``target`` and return the archive's sha256;
    a key that does not open it is a :class:`UsageError`, a damaged copy a
    :class:`DecryptFailed`, each one line."""
    what = f"{remote.snapshot_id} at {source}"
    try:
        return decrypt_file(encrypted, target, identity.keys, what=what)
    except DecryptFailed as exc:
        if exc.wrong_key:
            raise UsageError(f"{exc}: made for {_made_for(remote)}, the identity in "
                             f"{identity.file} is {', '.join(identity.public)}") from None
        raise
