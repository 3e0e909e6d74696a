"""The canaries' state in the local dir: the last snapshot's manifest and the current hold.

``last-manifest.json`` is a copy of the newest snapshot's manifest, so the next run compares
without reading a whole archive (its manifest is the last member). ``canary-hold.json``
records a raised alert; while it exists nothing is pruned. Both are 0600, as the archives.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from watcher.archive.files import write_private_atomic
from watcher.backup.canary import Hold, Sample, SnapshotFacts
from watcher.snapshot.compressibility import (
    SNIFF_BYTES,
    incompressible_name,
    incompressible_sample,
)
from watcher.snapshot.member import MemberChanged, open_member

log = logging.getLogger(__name__)

LAST_MANIFEST = "last-manifest.json"
HOLD_FILE = "canary-hold.json"
#: changed files sampled at most per run: enough to tell, bounded on a huge change
SAMPLE_LIMIT = 2000


def load_last_facts(local_dir: Path) -> SnapshotFacts | None:
    """The previous snapshot's facts, or None when there is no usable copy of its manifest."""
    return load_facts(local_dir / LAST_MANIFEST)


def load_facts(path: Path) -> SnapshotFacts | None:
    """The facts of the manifest document in ``path``, or None when missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as fh:
            return SnapshotFacts.from_manifest(json.load(fh))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("cannot read %s (%s); the data-loss checks skip the comparison this once",
                    path, exc)
        return None


def keep_as_last(manifest: Path, local_dir: Path) -> None:
    """Make ``manifest`` (a finished snapshot's) the one the next run compares with."""
    os.replace(manifest, local_dir / LAST_MANIFEST)


def read_hold(local_dir: Path, now: datetime) -> Hold | None:
    """The alert holding pruning, if any. A damaged record still holds: it is safer to keep
    old snapshots one run too long than to delete them under an alert nobody saw."""
    path = local_dir / HOLD_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("the data-loss alert record %s is unreadable (%s); pruning stays paused "
                    "until `siip-watcher ack`", path, exc)
        return Hold(now, now, "", ("the alert record was unreadable",))
    try:
        return Hold.from_dict(data)
    except (KeyError, ValueError, TypeError):
        return Hold(now, now, "", ("the alert record was damaged",))


def write_hold(local_dir: Path, hold: Hold | None) -> None:
    """Record ``hold``, or remove the record when None."""
    path = local_dir / HOLD_FILE
    if hold is None:
        path.unlink(missing_ok=True)
        return
    write_private_atomic(path, json.dumps(hold.to_dict(), indent=1).encode())


def sample_changed(root: Path, paths: Iterable[str], limit: int = SAMPLE_LIMIT) -> Sample:
    """Trial-compress the first bytes of changed files whose names say they are not already
    compressed (code, text, documents): random bytes there look like encryption."""
    sampled = incompressible = 0
    for rel in paths:
        if sampled >= limit:
            break
        if incompressible_name(rel):
            continue
        head = _read_head(root / rel)
        if not head:
            continue
        sampled += 1
        incompressible += incompressible_sample(head)
    return Sample(sampled=sampled, incompressible=incompressible)


def _read_head(path: Path) -> bytes:
    # the tree may change under us: only a regular file, never through a link or a FIFO
    try:
        st = path.lstat()
        if not stat.S_ISREG(st.st_mode):
            return b""
        fd, _ = open_member(str(path), st)
    except (OSError, MemberChanged):
        return b""
    try:
        return os.read(fd, SNIFF_BYTES)
    except OSError:
        return b""
    finally:
        os.close(fd)
