"""Encrypting and decrypting whole files with age, streaming: pyrage's ``encrypt_io`` and
``decrypt_io`` read and write file objects in 64 KiB pieces (age's chunk size), so memory stays
flat whatever the archive's size (docs/benchmarks.md has the figures).

Output goes to a file the caller names and owns (a ``.partial`` it renames once complete), so
no half-written file ever looks complete, and no plaintext is ever written anywhere but the
file the caller asked for.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pyrage
from pyrage import x25519

from watcher.archive.files import open_private

#: the first line of every age file (age-encryption.org/v1)
AGE_HEADER = b"age-encryption.org/v1\n"
_NO_MATCH = "No matching keys found"


class DecryptFailed(Exception):
    """A copy could not be decrypted; ``wrong_key`` tells a key that does not open it from a
    damaged file. The message is one line and never holds key text."""

    def __init__(self, message: str, *, wrong_key: bool) -> None:
        super().__init__(message)
        self.wrong_key = wrong_key


class _HashingWriter:
    """A write-only file object over a descriptor that hashes what it writes."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.sha256.update(view)
        self.size += len(view)
        while view:
            view = view[os.write(self.fd, view):]
        return len(data)

    def flush(self) -> None:
        """Nothing is buffered here."""


class _HashingReader:
    """A read-only file object that hashes what it hands out."""

    def __init__(self, f: Any) -> None:
        self.f = f
        self.sha256 = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data: bytes = self.f.read(n)
        self.sha256.update(data)
        return data


def encrypt_file(source: Path, target: Path,
                 recipients: list[x25519.Recipient]) -> tuple[str, str]:
    """Encrypt ``source`` into ``target`` (created or truncated, mode 0600, fsynced) for
    ``recipients``; return the sha256 of what was read and of what was written, in one pass
    over each."""
    fd = open_private(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        out = _HashingWriter(fd)
        # buffered: pyrage asks for 8 KiB at a time, each a system call unbuffered
        with open(source, "rb", buffering=1 << 20) as raw:
            src = _HashingReader(raw)
            pyrage.encrypt_io(src, out, recipients)
        os.fsync(fd)
    finally:
        os.close(fd)
    return src.sha256.hexdigest(), out.sha256.hexdigest()


def decrypt_file(source: Path, target: Path, identities: list[x25519.Identity], *,
                 what: str) -> str:
    """Decrypt ``source`` into ``target`` (mode 0600) with ``identities`` and return the
    sha256 of what was written; ``what`` names the copy in the error. On failure ``target``
    is removed and :class:`DecryptFailed` raised.

    age authenticates every 64 KiB chunk and the end of the file, so what decrypts is the
    very file that was encrypted: the hash returned stands in for a sidecar the copy lacks.
    """
    fd = open_private(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    out = _HashingWriter(fd)
    try:
        with open(source, "rb", buffering=1 << 20) as src:
            pyrage.decrypt_io(src, out, identities)
        os.fsync(fd)
    except (pyrage.DecryptError, OSError) as exc:
        os.close(fd)
        target.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno is not None:
            raise  # the disk, not the copy: a full or failing target
        # a damaged age chunk comes back as an OSError without errno ("decryption error")
        if _NO_MATCH in str(exc):
            raise DecryptFailed(f"{what}: the identity given does not open it (it was made "
                                f"for other keys)", wrong_key=True) from None
        raise DecryptFailed(f"{what}: it cannot be decrypted, the file is damaged or "
                            f"truncated; restore another snapshot", wrong_key=False) from None
    except BaseException:
        os.close(fd)
        target.unlink(missing_ok=True)
        raise
    os.close(fd)
    return out.sha256.hexdigest()

