"""`ack`: acknowledge a data-loss alert, so pruning resumes at the next run."""

from __future__ import annotations

import logging

from watcher.actions import UsageError
from watcher.backup.canary import Hold
from watcher.backup.run import run_lock
from watcher.config.settings import Config
from watcher.state.canary_file import read_hold, write_hold
from watcher.state.catalog import utcnow

# the logger `ack` has always written this under, so filters on it keep working
log = logging.getLogger("watcher")


def acknowledge(cfg: Config) -> Hold | None:
    """Clear the alert that holds pruning back; returns it, or None when none was raised.

    Under the run lock, so a run deciding whether to prune never reads a half-cleared alert.
    """
    if not cfg.local.dir.is_dir():
        raise UsageError(f"local.dir {cfg.local.dir} is not a folder; fix local.dir")
    with run_lock(cfg):
        hold = read_hold(cfg.local.dir, utcnow())
        if hold is None:
            return None
        write_hold(cfg.local.dir, None)
    log.warning("data-loss alert acknowledged (raised %s: %s); pruning resumes at the next run",
                hold.raised_at.isoformat(timespec="minutes"), "; ".join(hold.reasons))
    return hold
