"""Serving the monitor from the service's process: waitress on a thread of its own.

Waitress is a small, pure-Python production WSGI server that parses HTTP itself (no C
extension, no extra process); with two worker threads it adds a few MB and, with nobody
connected, wakes once a second in its select loop and nothing more.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from waitress import wasyncore
from waitress.server import create_server
from waitress.trigger import trigger as Trigger

from watcher.config.settings import Config
from watcher.web.routes import MonitorApp, RequestBackup

log = logging.getLogger("watcher.web")

#: requests served at once; the page, a script and Prometheus rarely overlap
THREADS = 2
#: how long a stop waits for the server's thread
STOP_SECONDS = 5.0


class WebError(Exception):
    """The monitor cannot listen where ``web.listen`` says; one line."""


class WebServer:
    """The monitor's HTTP server; :meth:`start` serves on a daemon thread, :meth:`stop` ends
    it. Binds in the constructor, so a busy address fails the service's start at once."""

    def __init__(self, cfg: Config, token: str | None, *,
                 request_backup: RequestBackup) -> None:
        self.app = MonitorApp(cfg, token, request_backup=request_backup)
        self._map: dict[int, Any] = {}
        try:
            self._server = create_server(self.app, map=self._map, listen=cfg.web.listen,
                                         threads=THREADS, ident="siip-watcher",
                                         clear_untrusted_proxy_headers=True)
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise WebError(f"the monitor page cannot listen on web.listen = {cfg.web.listen}: "
                           f"{reason}") from None
        self.listen = cfg.web.listen
        self._thread = threading.Thread(target=self._server.run, name="web", daemon=True)

    def start(self) -> None:
        """Serve until :meth:`stop`."""
        self._thread.start()
        log.info("monitor page on http://%s/ (metrics at /metrics)", self.listen)

    def stop(self) -> None:
        """Close the listening sockets and open connections, end the worker threads."""
        trigger = next((v for v in self._map.values() if isinstance(v, Trigger)), None)
        if trigger is not None and self._thread.is_alive():
            # closed on the server's own thread, which owns the sockets: its loop then ends
            trigger.pull_trigger(lambda: wasyncore.close_all(self._map))
            self._thread.join(STOP_SECONDS)
        else:
            wasyncore.close_all(self._map)
        self._server.task_dispatcher.shutdown(timeout=STOP_SECONDS)
