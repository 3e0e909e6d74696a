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
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path
from typing import Any

import pyrage
from pyrage import x25519

from watcher.archive.files import file_sha256, open_private, write_all

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
        write_all(self.fd, view)
        return len(data)

    def flush(self) -> None:
        """Nothing is buffered here."""


class _Cancelled(Exception):
    """The encryption failed: the thread hashing alongside it stops."""


class _Written:
    """How much of the ciphertext is on disk, shared by the thread that writes it and the
    thread that hashes it behind the writer."""

    #: the hashing thread wakes up once this much more is written (or at the end)
    STEP = 4 << 20

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.size = 0
        self.done = False
        self.failed = False

    def grew(self, size: int, *, done: bool = False) -> None:
        """``size`` bytes are written (all of them, if ``done``)."""
        with self.changed:
            self.size, self.done = size, done
            self.changed.notify()

    def fail(self) -> None:
        """The writer gave up: the hasher stops instead of waiting for more."""
        with self.changed:
            self.failed = True
            self.changed.notify()

    def wait_for(self, pos: int) -> tuple[int, bool]:
        """Block until :attr:`STEP` bytes beyond ``pos`` are written, or all of them; return
        how many are written and whether that is all. Raises :class:`_Cancelled`."""
        with self.changed:
            self.changed.wait_for(lambda: self.failed or self.done
                                  or self.size - pos >= self.STEP)
            if self.failed:
                raise _Cancelled
            return self.size, self.done


class _CountingWriter:
    """A write-only file object over a descriptor that tells :class:`_Written` how far it
    got, once per :attr:`_Written.STEP` (a notify per 64 KiB write would cost more)."""

    def __init__(self, fd: int, written: _Written) -> None:
        self.fd = fd
        self.written = written
        self.size = 0
        self._told = 0
        #: what a write raised: pyrage hands it on as an EncryptError that names no errno
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        n = len(data)
        try:
            write_all(self.fd, data)
        except OSError as exc:
            self.error = exc
            raise
        self.size += n
        if self.size - self._told >= _Written.STEP:
            self._told = self.size
            self.written.grew(self.size)
        return n

    def flush(self) -> None:
        """Nothing is buffered here."""


def _hash_alongside(source: Path, target: Path, written: _Written) -> tuple[str, str]:
    """The sha256 of ``source`` and then of ``target`` as it is written, read back from the
    page cache a window at a time: on a thread of its own, beside the encryption.

    pyrage holds the GIL for the whole of ``encrypt_io`` (two encryptions on two threads take
    as long as one after the other), but hashlib and file reads drop it for each window, so
    the hashing runs on the other core. Hashed inside the reader and writer pyrage calls, the
    two hashes took about half of the encryption's CPU time and all of it on one core
    (docs/benchmarks.md, encrypted copies).
    """
    def stop_if_failed(_n: int) -> None:
        if written.failed:
            raise _Cancelled

    plain = file_sha256(source, progress=stop_if_failed)
    stored = hashlib.sha256()
    buf = memoryview(bytearray(_Written.STEP))
    pos = 0
    with open(target, "rb", buffering=0) as f:
        while True:
            size, done = written.wait_for(pos)
            while pos < size:
                n = f.readinto(buf[:min(len(buf), size - pos)])
                if not n:
                    raise OSError(f"{target.name} became shorter while it was written")
                stored.update(buf[:n])
                pos += n
            if done:
                return plain, stored.hexdigest()


def encrypt_file(source: Path, target: Path,
                 recipients: list[x25519.Recipient]) -> tuple[str, str]:
    """Encrypt ``source`` into ``target`` (created or truncated, mode 0600, fsynced) for
    ``recipients``; return the sha256 of ``source`` and of what was written.

    Memory stays flat: pyrage's 64 KiB pieces, a 1 MiB read buffer, and one window of
    :attr:`_Written.STEP` for the thread that hashes alongside (:func:`_hash_alongside`).
    """
    fd = open_private(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    written = _Written()
    with ThreadPoolExecutor(1, thread_name_prefix="age-sha256") as pool:
        hashes = pool.submit(_hash_alongside, source, target, written)
        try:
            out = _CountingWriter(fd, written)
            # buffered: pyrage asks for 8 KiB at a time, each a system call unbuffered
            with open(source, "rb", buffering=1 << 20) as src:
                try:
                    pyrage.encrypt_io(src, out, recipients)
                except pyrage.EncryptError:
                    if out.error is None:
                        raise
                    raise out.error from None   # a full disk, told as such by the caller
            written.grew(out.size, done=True)
            os.fsync(fd)
            plain, stored = hashes.result()
        except BaseException:
            written.fail()
            with suppress(Exception):  # the encryption's own error is the one to tell
                hashes.result()
            raise
        finally:
            os.close(fd)
    return plain, stored


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

