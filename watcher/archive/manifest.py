"""The manifest: the last member of every archive, describing every other member.

It makes a snapshot self-describing (a new machine needs nothing else to list, verify or
restore it). Entries are spooled to a file as they are produced, so memory stays flat however
many files the tree holds; the finished document is ordinary JSON.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from watcher.archive.files import FULL, private_opener

MANIFEST_MEMBER = "manifest.json"
FILES_PREFIX = "files/"
DATABASES_PREFIX = "databases/"
FORMAT_VERSION = 1
#: header keys of a delta's manifest only (README, "Deltas")
KIND_KEY, BASE_KEY = "kind", "base"
#: a delta's stdlib-only rebuild script (watcher/archive/rebuild.py), at the archive's root
REBUILD_MEMBER = "rebuild.py"
#: a delta's database member holding its changed pages: ``databases/<name>.pages``
PAGES_SUFFIX = ".pages"
#: a delta's manifest key listing the files it takes unchanged from its base
REFERENCED_KEY = "referenced"


def member_entry(path: str, kind: str, size: int, mode: int, mtime_ns: int, *,
                 sha256: str | None = None, target: str | None = None,
                 warning: str | None = None) -> dict[str, Any]:
    """One member's record: path, type, size, mode, mtime and sha256 (or link target)."""
    entry: dict[str, Any] = {"path": path, "type": kind, "size": size, "mode": mode & 0o7777,
                             "mtime": mtime_ns / 1e9, "mtime_ns": mtime_ns}
    if sha256 is not None:
        entry["sha256"] = sha256
    if target is not None:
        entry["target"] = target
    if warning:
        entry["warning"] = warning
    return entry


def dump_json(value: Any) -> str:
    """JSON text for the manifest, readable UTF-8, and lossless for names that are not UTF-8.

    A file name that is not valid UTF-8 (an upload saved by a Windows client in Latin-1, say)
    reaches Python with each bad byte 0xXY as the lone surrogate U+DCXY (``surrogateescape``).
    UTF-8 cannot carry a lone surrogate, so such a record is written with ``\\udcXY`` escapes,
    which ``json.loads`` turns back into the same name, byte for byte.
    """
    text = _UTF8_JSON.encode(value)
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, ensure_ascii=True)
    return text


#: json.dumps with a keyword argument builds an encoder per call: one record per member
_UTF8_JSON = json.JSONEncoder(ensure_ascii=False)


class ManifestSpool:
    """Writes the manifest document incrementally to ``path``."""

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self.path = path
        self._fh: IO[str] = open(  # noqa: SIM115 - closed in finish
            path, "w", encoding="utf-8", opener=private_opener)
        head = json.dumps(header, ensure_ascii=False)
        # the members list goes last so it can be streamed; the header keys stay readable
        self._fh.write(head[:-1] + ', "members": [\n')
        self._first = True
        self._side = path.with_name(path.name + ".referenced")
        self._referenced: IO[str] | None = None

    def add(self, entry: dict[str, Any]) -> None:
        """Append one member record."""
        self.add_encoded(dump_json(entry))

    def add_encoded(self, record: str) -> None:
        """Append one member record already encoded by :func:`dump_json` (the tree packer
        encodes its members' records in its own process)."""
        if not self._first:
            self._fh.write(",\n")
        self._first = False
        self._fh.write(record)

    def add_referenced(self, entry: dict[str, Any]) -> None:
        """Record a file a delta takes unchanged from its base (spooled to a side file, and
        written as the ``referenced`` list after the members)."""
        if self._referenced is None:
            self._referenced = open(  # noqa: SIM115 - closed in finish or discard
                self._side, "w+", encoding="utf-8", opener=private_opener)
        else:
            self._referenced.write(",\n")
        self._referenced.write(dump_json(entry))

    def finish(self, trailer: dict[str, Any]) -> int:
        """Close the members list, add ``trailer`` keys, and return the file's size."""
        self._fh.write("\n]")
        if self._referenced is not None:
            self._fh.write(f', "{REFERENCED_KEY}": [\n')
            self._referenced.seek(0)
            while block := self._referenced.read(1 << 16):
                self._fh.write(block)
            self._fh.write("\n]")
            self._close_referenced()
        for key, value in trailer.items():
            self._fh.write(f", {json.dumps(key)}: {dump_json(value)}")
        self._fh.write("}\n")
        self._fh.close()
        return self.path.stat().st_size

    def discard(self) -> None:
        """Drop the spool; closing may fail on a full disk, which is why it is dropped."""
        if not self._fh.closed:
            with contextlib.suppress(OSError):
                self._fh.close()
        self._close_referenced()
        self.path.unlink(missing_ok=True)

    def _close_referenced(self) -> None:
        if self._referenced is not None:
            with contextlib.suppress(OSError):
                self._referenced.close()
            self._referenced = None
        self._side.unlink(missing_ok=True)


@dataclass
class Manifest:
    """A parsed manifest."""

    data: dict[str, Any]
    #: the members this archive holds
    members: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: a delta's files taken unchanged from its base archive (same member names)
    referenced: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: bytes) -> Manifest:
        """Parse the manifest member's bytes; raises ValueError when it is not one."""
        data = json.loads(raw.decode("utf-8"))
        if not isinstance(data, dict) or data.get("format") != FORMAT_VERSION:
            raise ValueError("not a siip-watcher manifest (unknown format)")
        members = {m["path"]: m for m in data.get("members", [])}
        referenced = {m["path"]: m for m in data.get(REFERENCED_KEY, [])}
        return cls(data=data, members=members, referenced=referenced)

    @property
    def databases(self) -> list[dict[str, Any]]:
        return list(self.data.get("databases", []))

    def entry(self, member: str) -> dict[str, Any] | None:
        """What the snapshot records about ``member``, wherever its content is: in this
        archive, in a delta's base, or rebuilt from a page delta (the database's record)."""
        found = self.members.get(member) or self.referenced.get(member)
        if found is not None:
            return found
        for db in self.databases:
            if db.get("member") == member and db.get("pages_member"):
                return {"path": member, "type": "file", "size": db.get("size"),
                        "sha256": db.get("sha256"), "mode": db.get("mode", 0o600),
                        "mtime_ns": db.get("mtime_ns")}
        return None

    @property
    def kind(self) -> str:
        """"full", or "delta" (a full's manifest has no ``kind`` key: fulls keep the manifest
        they always had)."""
        return str(self.data.get(KIND_KEY, FULL))

    @property
    def base(self) -> str | None:
        """A delta's base full snapshot id; None for a full."""
        base = self.data.get(BASE_KEY)
        return str(base) if base else None

    def restore_path(self, member: str) -> str | None:
        """Where ``member`` goes in a restored project folder (POSIX, relative), or None.

        Tree members go back to their place under the root; each database goes back to its
        configured relative path, or under ``databases/`` when it was configured absolute. A
        database found in the tree (``"discovered": true``) records its path under the root,
        so it goes back where it was found.
        """
        if member.startswith(FILES_PREFIX):
            return member[len(FILES_PREFIX):]
        for db in self.databases:
            if db.get("member") == member:
                configured = str(db.get("path", ""))
                if configured and not Path(configured).is_absolute() and \
                        not configured.startswith(("/", "\\")) and ".." not in \
                        Path(configured).parts:
                    return Path(configured).as_posix()
                return member
        return None
