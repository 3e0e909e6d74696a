"""The monitor page's test rig: a real `siip-watcher start` serving it on a free port of
127.0.0.1, and plain urllib requests that return 4xx answers instead of raising."""

from __future__ import annotations

import contextlib
import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any

from tests.fakes.service import ServiceProcess
from tests.helpers import make_siip_tree, toml_table, wait_until, write_config


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Answer:
    status: int
    headers: Message
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def http(url: str, *, method: str = "GET", headers: dict[str, str] | None = None,
         data: bytes | None = None) -> Answer:
    """One request; any status comes back as an :class:`Answer`."""
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with _OPENER.open(request, timeout=30) as r:
            return Answer(r.status, r.headers, r.read())
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, exc.headers, exc.read())


class MonitorService(ServiceProcess):
    """`python -m watcher start` with the monitor on, in a subprocess, on a fresh tree."""

    def __init__(self, base: Path, *, web: dict[str, Any] | None = None,
                 extra: str = "", env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.root = make_siip_tree(base / "siip")
        self.local = base / "backups"
        settings = {"listen": f"127.0.0.1:{self.port}", **(web or {})}
        super().__init__(write_config(base / "siip-watcher.toml", self.root, self.local,
                                      extra + toml_table("web", settings)), base, env)

    def wait_ready(self) -> None:
        """Until the page answers and the start run stored its snapshot."""
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"the service exited {self.proc.returncode}\n{self.log()}")
            return self.count("backup OK") > 0
        wait_until(ready, "the service's first snapshot", 60, interval=0.1, detail=self.log)


@contextlib.contextmanager
def monitor_with_folder(base: Path) -> Iterator[MonitorService]:
    """A :class:`MonitorService` copying to a folder destination, after its first snapshot;
    it must stop cleanly (exit 0) at the end."""
    folder = base / "nas"
    folder.mkdir()
    svc = MonitorService(base, extra=toml_table("folder", {"enabled": True,
                                                           "path": str(folder)}))
    try:
        svc.wait_ready()
        yield svc
    finally:
        code = svc.stop()
    assert code == 0, svc.log()
