"""Logging for the CLI and the service: stderr always, plus an optional rotating file.

Under systemd (``$JOURNAL_STREAM`` is set) stderr lines carry no timestamp, since journald adds
its own, but start with a ``<N>`` syslog priority so ``journalctl -p warning`` filters by level.
Elsewhere (a terminal, NSSM's log files) each line reads ``time level message``. ``log.file``
adds a size-capped rotating file (10 MiB, 5 kept): the persistent log the old in-app routine
lacked.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from pathlib import Path

from watcher.config.settings import Config

FILE_MAX_BYTES = 10 * 1024 * 1024
FILE_BACKUPS = 5

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}
#: syslog priorities that journald reads from a "<N>" line prefix (sd-daemon(3))
_SYSLOG_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
                    logging.CRITICAL: 2}
#: chatty libraries: their INFO lines (every job run, every HTTP request) drown ours
_QUIET = ("apscheduler", "watchdog", "googleapiclient", "google_auth_httplib2", "urllib3",
          "mail.log", "filelock")
_MARK = "_siip_watcher_handler"


class JournalFormatter(logging.Formatter):
    """``<priority>level name: message`` for journald, which timestamps lines itself."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        prio = _SYSLOG_PRIORITY.get(record.levelno, 6)
        # journald reads the prefix per line; a traceback's continuation lines get it too
        return "\n".join(f"<{prio}>{line}" for line in text.splitlines() or [""])


def under_systemd() -> bool:
    """True when stderr is connected to the journal (systemd sets ``$JOURNAL_STREAM``)."""
    return bool(os.environ.get("JOURNAL_STREAM"))


def setup_logging(cfg: Config | None, verbose: bool = False) -> None:
    """Configure the root logger from ``cfg.log`` (None: before a config is loaded).

    ``verbose`` forces debug level. Calling it again replaces what an earlier call installed,
    so the CLI can log with defaults first and reconfigure once the config has been read.
    """
    level = logging.DEBUG if verbose else _LEVELS.get(cfg.log.level if cfg else "info",
                                                      logging.INFO)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _MARK, False):
            root.removeHandler(handler)
            handler.close()

    stderr = logging.StreamHandler(sys.stderr)
    if under_systemd():
        stderr.setFormatter(JournalFormatter("%(levelname)s %(name)s: %(message)s"))
    else:
        stderr.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s",
                                              "%Y-%m-%d %H:%M:%S"))
    _add(root, stderr)

    file_problem = None
    if cfg and cfg.log.file:
        path = Path(cfg.log.file)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handler = logging.handlers.RotatingFileHandler(
                path, maxBytes=FILE_MAX_BYTES, backupCount=FILE_BACKUPS, encoding="utf-8",
                errors="backslashreplace")  # a file name that is not UTF-8 must not lose a line
        except OSError as exc:
            file_problem = (f"log.file: cannot write {path} ({exc.strerror or exc}); logging to "
                            f"stderr only; fix the path or its permissions")
        else:
            handler.setFormatter(logging.Formatter(
                "%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"))
            _add(root, handler)

    root.setLevel(level)
    for name in _QUIET:
        logging.getLogger(name).setLevel(level if verbose else max(level, logging.WARNING))
    if file_problem:
        logging.getLogger(__name__).warning(file_problem)


def _add(root: logging.Logger, handler: logging.Handler) -> None:
    setattr(handler, _MARK, True)
    root.addHandler(handler)
