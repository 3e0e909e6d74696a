"""The small files beside an encrypted copy, wherever it lies (the local dir while its copies
are sent, a [folder] destination for good).

``<copy>.sha256`` is the sha256 of the encrypted bytes in ``sha256sum`` format, so
``sha256sum -c`` checks the copy as it checks a plain archive. ``<copy>.recipients`` lists the
public keys it was made for, one per line as ``age -R`` reads them (age headers do not say
which keys a file is for), with the archive's own sha256 in a comment: what the decrypted
file must hash to.
"""

from __future__ import annotations

import re
from pathlib import Path

from watcher.archive.files import SIDECAR_SUFFIX, parse_sidecar
from watcher.destinations.base import Sealed
from watcher.encryption.keys import recipient_lines

RECIPIENTS_SUFFIX = ".recipients"
_ARCHIVE_SHA = re.compile(r"^# archive sha256: ([0-9a-f]{64})$", re.MULTILINE)


def recipients_path(copy: Path) -> Path:
    """The ``.recipients`` file of the encrypted copy ``copy``."""
    return copy.with_name(copy.name + RECIPIENTS_SUFFIX)


def recipients_text(name: str, recipients: tuple[str, ...], archive_sha256: str) -> str:
    """The text of the ``.recipients`` file of the encrypted copy named ``name``."""
    return (f"# {name} is encrypted with age for these public keys; the identity of any one "
            f"opens it\n# archive sha256: {archive_sha256}\n"
            + "".join(f"{key}\n" for key in recipients))


def read_record(copy: Path) -> tuple[Sealed, str | None]:
    """(what the sidecars say of the encrypted copy ``copy``, the archive's sha256); what a
    missing or unreadable sidecar would say is empty or None."""
    text = _read_or_none(recipients_path(copy)) or ""
    stored = _read_or_none(copy.with_name(copy.name + SIDECAR_SUFFIX))
    found = _ARCHIVE_SHA.search(text)
    sealed = Sealed(recipients=tuple(recipient_lines(text)),
                    sha256=parse_sidecar(stored) if stored is not None else None)
    return sealed, found.group(1) if found else None


def _read_or_none(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
