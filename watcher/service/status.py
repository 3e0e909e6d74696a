"""`siip-watcher status [--json]`: is the service running, what happened last, what comes next.

Works with the service stopped: "running" comes from the service's OS lock (not a PID file that
may be stale), the last run and the upload queue from the catalog, and what only the live
service knows (changes pending, next look) from its state file. Reads only; never creates the
local dir or the catalog.
"""

from __future__ import annotations

import os
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from watcher.backup.report import human_size
from watcher.config.settings import Config
from watcher.service.state_file import read_state
from watcher.state.canary_file import read_hold
from watcher.state.catalog import CATALOG_FILE, Catalog, utcnow
from watcher.state.lock import SERVICE_LOCK_FILE, FileLock


class StatusError(Exception):
    """Status cannot be read; the message says what to do (exit 1)."""


def collect_status(cfg: Config, *, now: datetime | None = None) -> dict[str, Any]:
    """Everything `status` shows, JSON-ready (times as ISO 8601 UTC strings, ``running`` bool)."""
    now = now or utcnow()
    local = cfg.local.dir
    running, pid = _service(local)
    state = read_state(local)
    catalog = _read_catalog(local)
    hold = read_hold(local, now) if local.is_dir() else None
    last_snapshot = catalog["last_snapshot"]
    interval = timedelta(hours=cfg.schedule.interval_hours)

    live = state if running and state else None
    if live and live.get("next_interval_at"):
        next_interval = live["next_interval_at"]
    elif last_snapshot:
        next_interval = _iso(datetime.fromisoformat(last_snapshot["created_at"]) + interval)
    else:
        next_interval = None

    if live:
        changes = {"known": True, "pending_since": live.get("dirty_since"),
                   "events": live.get("pending_changes", 0), "as_of": live.get("updated_at")}
        backup_running = ({"since": live["running_since"], "trigger": live.get("running_trigger")}
                          if live.get("running_since") else None)
        service = {k: live.get(k) for k in ("started_at", "watch", "watched", "next_check_at",
                                             "waiting_for", "consecutive_failures")}
    else:
        # while stopped nobody watches; the start compares the tree with the last snapshot
        changes = {"known": False, "pending_since": state.get("dirty_since") if state else None,
                   "events": state.get("pending_changes") if state else None,
                   "as_of": state.get("stopped_at") or state.get("updated_at") if state else None}
        backup_running = None
        service = None

    return {
        "running": running,
        "pid": pid,
        "config": str(cfg.path.resolve()) if cfg.path else None,
        "local_dir": str(local),
        "service": service,
        "backup_running": backup_running,
        "last_run": catalog["last_run"],
        "last_snapshot": last_snapshot,
        "snapshots": catalog["snapshots"],
        "next_interval_run": next_interval,
        "only_if_changed": cfg.schedule.only_if_changed,
        "changes": changes,
        "uploads": catalog["uploads"],
        "notifications": catalog["notifications"],
        "alert": hold.to_dict() if hold else None,
        "checked_at": _iso(now),
    }


def _service(local: Path) -> tuple[bool, int | None]:
    lock = FileLock(local / SERVICE_LOCK_FILE)
    if lock.path.exists() and not os.access(lock.path, os.R_OK | os.W_OK):
        raise StatusError(
            f"cannot tell whether the service runs: {lock.path} is not accessible to this user; "
            f"run status as the service's user (sudo -u siip-watcher siip-watcher status)")
    if lock.is_held_elsewhere():
        return True, lock.holder_pid()
    return False, None


def _read_catalog(local: Path) -> dict[str, Any]:
    """The catalog's part of the status, read without taking a write lock."""
    empty: dict[str, Any] = {"last_run": None, "last_snapshot": None, "snapshots": 0,
                             "uploads": {"pending": 0, "failed": 0, "items": []},
                             "notifications": {}}
    try:
        catalog = Catalog.read_only(local)
        if catalog is None:
            return empty
        count = catalog.snapshot_count()
        snap = catalog.newest_snapshot()
        run = catalog.last_run()
        run_snapshot = catalog.snapshot(run.snapshot_id) if run and run.snapshot_id else None
        copies = [c for c in catalog.copies() if c.state in ("pending", "failed")]
        notes = catalog.last_notifications()
    except sqlite3.Error as exc:
        raise StatusError(f"cannot read the catalog {local / CATALOG_FILE} ({exc}); run status "
                          f"as the service's user") from None

    last_run = None
    if run is not None:
        duration = None
        if run.finished_at:
            duration = round((run.finished_at - run.started_at).total_seconds(), 3)
        last_run = {"started_at": _iso(run.started_at), "finished_at": _opt_iso(run.finished_at),
                    "result": run.status, "trigger": run.trigger,
                    "archive": run.snapshot_id,
                    "size": run_snapshot.size if run_snapshot else None,
                    "kind": run_snapshot.kind if run_snapshot else None,
                    "base": run_snapshot.base if run_snapshot else None,
                    "duration_seconds": duration, "summary": run.summary}
    last_snapshot = None
    if snap is not None:
        last_snapshot = {"id": snap.id, "created_at": _iso(snap.created_at),
                         "size": snap.size, "trigger": snap.trigger, "kind": snap.kind,
                         "base": snap.base}
    items = [{"snapshot": c.snapshot_id, "destination": c.destination,
              "state": c.state, "attempts": c.attempts, "last_error": c.last_error,
              "next_try_at": _opt_iso(c.next_try_at)} for c in copies]
    uploads = {"pending": sum(1 for c in items if c["state"] == "pending"),
               "failed": sum(1 for c in items if c["state"] == "failed"), "items": items}
    notifications = {n.channel: {"state": n.state, "error": n.error, "at": _iso(n.at),
                                 "run_id": n.run_id} for n in notes.values()}
    return {"last_run": last_run, "last_snapshot": last_snapshot, "snapshots": count,
            "uploads": uploads, "notifications": notifications}


# --- text -----------------------------------------------------------------------------------


# one line per field of `status`, in display order
def format_status(data: dict[str, Any], *, now: datetime | None = None) -> str:  # noqa: PLR0912,PLR0915
    """The human form of :func:`collect_status`'s result, a few aligned lines."""
    now = now or utcnow()
    lines: list[tuple[str, str]] = []
    svc = data.get("service") or {}
    if data["running"]:
        text = f"running (pid {data['pid']})"
        if svc.get("started_at"):
            text += f" since {_when(svc['started_at'], now)}"
        if svc.get("watch"):
            text += f", {svc['watch']} watching"
        lines.append(("service", text))
    else:
        lines.append(("service", "not running"))

    alert = data.get("alert")
    if alert:
        lines.append(("ALERT", f"possible data loss since {_when(alert['raised_at'], now)}: "
                               f"{'; '.join(alert['reasons'])}. Nothing is pruned; check the "
                               f"data, then run `siip-watcher ack`"))

    busy = data.get("backup_running")
    if busy:
        lines.append(("backup", f"in progress since {_when(busy['since'], now)} "
                                f"(trigger {busy['trigger']})"))

    run = data.get("last_run")
    if run:
        parts = [_when(run["started_at"], now), run["result"], f"trigger {run['trigger']}"]
        if run.get("archive"):
            parts.append(run["archive"])
        if run.get("kind"):
            parts.append(f"delta of {run['base']}" if run["kind"] == "delta" else "full")
        if run.get("size") is not None:
            parts.append(human_size(run["size"]))
        if run.get("duration_seconds") is not None:
            parts.append(f"{run['duration_seconds']:.1f} s")
        lines.append(("last run", ", ".join(parts)))
        if run["result"] == "failed" and run.get("summary"):
            lines.append(("", run["summary"]))
    else:
        lines.append(("last run", "none yet"))

    nxt = data.get("next_interval_run")
    if nxt:
        cond = " if something changed" if data.get("only_if_changed") else ""
        lines.append(("next interval", f"{_when(nxt, now)}{cond}"))
    elif data["running"]:
        lines.append(("next interval", "as soon as possible (no snapshot yet)"))
    else:
        lines.append(("next interval", "at start (no snapshot yet)"))

    ch = data["changes"]
    if ch["known"]:
        if ch["pending_since"]:
            lines.append(("changes", f"pending since {_when(ch['pending_since'], now)} "
                                     f"({ch['events']} events)"))
        else:
            lines.append(("changes", "none since the last snapshot"))
    else:
        lines.append(("changes", "not watched while the service is stopped; the next start "
                                 "compares the tree with the last snapshot"))

    up = data["uploads"]
    if up["pending"] or up["failed"]:
        lines.append(("uploads", f"{up['pending']} pending, {up['failed']} failed"))
        for item in up["items"][:5]:
            err = f": {item['last_error']}" if item.get("last_error") else ""
            lines.append(("", f"{item['snapshot']} -> {item['destination']} {item['state']}, "
                              f"{item['attempts']} attempt(s){err}"))
    else:
        lines.append(("uploads", "nothing pending"))
    for channel, note in sorted(data.get("notifications", {}).items()):
        text = f"last {note['state']} {_when(note['at'], now)}"
        if note.get("error"):
            text += f": {note['error']}"
        lines.append((channel, text))
    if svc.get("waiting_for") and data["running"]:
        lines.append(("now", svc["waiting_for"]))

    width = max(len(k) for k, _ in lines) + 2
    return "\n".join(f"{(k + ':') if k else '':<{width}}{v}" for k, v in lines) + "\n"


def _iso(dt: datetime) -> str:
    return dt.isoformat()


def _opt_iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt else None


def _when(iso: str, now: datetime) -> str:
    """Local time plus a relative hint: ``2026-11-27 18:15:00 CET (3 h ago)``."""
    dt = datetime.fromisoformat(iso)
    delta = (dt - now).total_seconds()
    rel = _span(abs(delta))
    hint = f"in {rel}" if delta > 0 else f"{rel} ago"
    return f"{dt.astimezone().strftime('%Y-%m-%d %H:%M:%S %Z')} ({hint})"


_MINUTE = 60
_HOUR = 3600
_DAY = 86400


def _span(seconds: float) -> str:
    if seconds < 1.5 * _MINUTE:
        return f"{seconds:.0f} s"
    if seconds < 1.5 * _HOUR:
        return f"{seconds / _MINUTE:.0f} min"
    if seconds < 2 * _DAY:
        return f"{seconds / _HOUR:.1f} h"
    return f"{seconds / _DAY:.1f} days"

