"""age keys: the public keys copies are encrypted for, and the private identities that open
them.

The service only ever reads public keys (``[encryption] recipients`` and
``recipients_file``). A private identity is read only by `list`, `verify` and `restore` with
``--identity`` (or :data:`IDENTITY_ENV`), and written only by `siip-watcher key generate`.
No message here ever holds an identity's text: a wrong line is named by its number.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pyrage
from pyrage import x25519

from watcher.archive.files import open_private, write_all

if TYPE_CHECKING:
    from watcher.config.settings import EncryptionConfig

#: where `list`/`verify`/`restore --from` look for the identity when ``--identity`` is absent
IDENTITY_ENV = "SIIP_WATCHER_IDENTITY_FILE"
RECIPIENT_PREFIX = "age1"
#: each recipient is recorded beside the copy; Drive allows 30 properties per file and app
MAX_RECIPIENTS = 20
IDENTITY_PREFIX = "AGE-SECRET-KEY-1"


class KeyFileError(Exception):
    """A key file or a key cannot be used; one line that says what to do, no key text."""


def parse_recipient(text: str, where: str) -> x25519.Recipient:
    """An age X25519 public key (``age1...``); ``where`` names it in the error."""
    key = text.strip()
    if key.upper().startswith(IDENTITY_PREFIX):
        # never echoed: it is the secret half
        raise KeyFileError(f"{where}: this is a private key (AGE-SECRET-KEY-1...), which must "
                           f"never be on the server; put its public key (age1...) here and "
                           f"keep the private key offline (docs/encryption.md)")
    if not key.startswith(RECIPIENT_PREFIX):
        raise KeyFileError(f"{where}: expected an age public key (age1...), got {key[:12]!r}...; "
                        f"`siip-watcher key generate` prints one")
    try:
        return x25519.Recipient.from_str(key)
    except pyrage.RecipientError:
        raise KeyFileError(f"{where}: {key[:12]}... is not a valid age public key (a typo or a "
                        f"truncated copy?)") from None


def recipient_lines(text: str) -> list[str]:
    """The keys of a recipients file as ``age -R`` reads it: one per line, ``#`` comments
    and blank lines ignored."""
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.strip().startswith("#")]


def read_recipients_file(path: Path) -> list[str]:
    """The public keys listed in ``path`` (see :func:`recipient_lines`)."""
    try:
        return recipient_lines(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not text"
        raise KeyFileError(f"cannot read the recipients file {path}: {reason}") from None


def load_identities(path: Path) -> list[x25519.Identity]:
    """The age identities in ``path`` (the text `age-keygen` and `key generate` write).

    Errors name the file and the line number, never the line: it may be a private key.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeyFileError(f"the identity file {path} does not exist; pass the file "
                        f"`siip-watcher key generate` wrote") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not text"
        raise KeyFileError(f"cannot read the identity file {path}: {reason}") from None
    found: list[x25519.Identity] = []
    for number, line in enumerate(text.splitlines(), start=1):
        key = line.strip()
        if not key or key.startswith("#"):
            continue
        if not key.startswith(IDENTITY_PREFIX):
            raise KeyFileError(f"the identity file {path}, line {number}: not an age private key "
                            f"(AGE-SECRET-KEY-1...); is it the public key or another file?")
        try:
            found.append(x25519.Identity.from_str(key))
        except pyrage.IdentityError:
            raise KeyFileError(f"the identity file {path}, line {number}: a damaged age private "
                            f"key") from None
    if not found:
        raise KeyFileError(f"the identity file {path} holds no age private key "
                        f"(AGE-SECRET-KEY-1...)")
    return found


def identity_file(given: str | None, environ: dict[str, str] | None = None) -> Path | None:
    """The identity file named by ``--identity``, else by :data:`IDENTITY_ENV`, else None."""
    env = os.environ if environ is None else environ
    chosen = given or env.get(IDENTITY_ENV, "")
    return Path(chosen).expanduser() if chosen else None


def new_identity_text(now: datetime | None = None) -> tuple[str, str]:
    """A fresh identity as ``age-keygen`` writes it, and its public key."""
    identity = x25519.Identity.generate()
    public = str(identity.to_public())
    created = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    text = f"# created: {created}\n# public key: {public}\n{identity}\n"
    return text, public


def write_new_identity(path: Path) -> str:
    """Write a fresh identity to ``path`` (mode 0600, never over an existing file) and return
    its public key."""
    text, public = new_identity_text()
    try:
        fd = open_private(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        raise KeyFileError(f"{path} exists; it may be the only key to the off-site copies, so it "
                        f"is never overwritten: choose another file") from None
    except OSError as exc:
        raise KeyFileError(f"cannot create {path}: {exc.strerror or exc}") from None
    try:
        write_all(fd, text.encode())
        os.fsync(fd)
    except OSError as exc:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise KeyFileError(f"cannot write {path}: {exc.strerror or exc}") from None
    os.close(fd)
    return public


def configured_recipients(enc: EncryptionConfig) -> list[str]:
    """The public keys of ``[encryption]`` (``recipients``, then ``recipients_file``), each
    checked, without repeats; empty when copies are not encrypted."""
    keys = [(k, f"encryption.recipients[{n}]") for n, k in enumerate(enc.recipients)]
    if enc.recipients_file:
        path = Path(enc.recipients_file)
        keys += [(k, f"encryption.recipients_file {path}") for k in read_recipients_file(path)]
        if not any(where.startswith("encryption.recipients_file") for _, where in keys):
            raise KeyFileError(f"encryption.recipients_file: {path} lists no public key; add "
                               f"one per line (age1...)")
    for key, where in keys:
        parse_recipient(key, where)
    return list(dict.fromkeys(k.strip() for k, _ in keys))
