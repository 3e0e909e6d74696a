"""Records of NUL-terminated fields, read back however the blocks they are read in fall.

A snapshot writes two such lists while it walks: the entries it holds back for a later pass
(watcher/snapshot/take.py) and the files it hands to the tree packer
(watcher/snapshot/packer.py). NUL cannot occur in a path, and names that are not valid UTF-8
travel as their bytes. Standard library only: the packer's process imports it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator


def encode(fields: Iterable[bytes]) -> bytes:
    """One record: each field followed by a NUL."""
    return b"".join(field + b"\0" for field in fields)


def decode(blocks: Iterable[bytes], width: int) -> Iterator[list[bytes]]:
    """The records of ``width`` fields in ``blocks``, in order; a record may straddle two
    blocks (its start waits for the rest), and an unfinished one at the end is dropped."""
    rest = b""
    for block in blocks:
        fields = (rest + block).split(b"\0")
        tail = fields.pop()  # the unterminated end of the last field
        whole = len(fields) - len(fields) % width
        for i in range(0, whole, width):
            yield fields[i:i + width]
        rest = encode(fields[whole:]) + tail
