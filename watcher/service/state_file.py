"""The service's small state file in the local dir, which `status` reads.

The catalog holds what happened (snapshots, runs, copies); this file holds what only the running
service knows: when it started, how it watches, the changes not yet backed up and when it will
look again. It is replaced atomically, so a reader never sees half of it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

SERVICE_STATE_FILE = "siip-watcher.service.json"


def state_path(local_dir: Path) -> Path:
    """Where the service keeps its state file."""
    return Path(local_dir) / SERVICE_STATE_FILE


def write_state(local_dir: Path, state: dict[str, Any]) -> None:
    """Replace the state file with ``state`` (JSON; datetimes as ISO 8601 strings)."""
    path = state_path(local_dir)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=2, default=_iso) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_state(local_dir: Path) -> dict[str, Any] | None:
    """The last state the service wrote, or None if there is none (or it is unreadable)."""
    try:
        data = json.loads(state_path(local_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _iso(value: Any) -> str:
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    return str(value)
