"""Stand-ins for driving the service: a run that stores a small archive and a catalog row
like the real one (and can be held open or made to fail), serve() in a thread, and the real
`python -m watcher start` in a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.helpers import WAIT, clean_env, wait_until
from watcher.backup.report import RunReport, SnapshotInfo
from watcher.config.settings import Config
from watcher.service.daemon import serve
from watcher.service.state_file import read_state
from watcher.state.catalog import Catalog, utcnow


@dataclass
class Call:
    trigger: str
    started: datetime
    stopped: bool = False
    next_run: datetime | None = None


class FakeRun:
    """A stand-in for run_backup that stores a small archive and a catalog row, like the real
    one, and can be held open (to test stopping) or made to fail."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.calls: list[Call] = []
        self.hold = threading.Event()
        self.hold.set()
        self.entered = threading.Event()
        self.fail = False
        self._lock = threading.Lock()

    def __call__(self, cfg: Config, *, trigger: str, stop: threading.Event | None = None,
                 next_run: Callable[[], datetime | None] | None = None) -> RunReport:
        call = Call(trigger, utcnow(), next_run=next_run() if next_run else None)
        with self._lock:
            self.calls.append(call)
        self.entered.set()
        report = RunReport(name=cfg.name, trigger=trigger, started_at=call.started,
                           next_run=call.next_run)
        partial = cfg.local.dir / f"fake-{len(self.calls)}.tar.zst.partial"
        partial.write_bytes(os.urandom(4096))
        while not self.hold.wait(0.01):
            if stop is not None and stop.is_set():
                call.stopped = True
                partial.unlink()
                report.finish(utcnow())
                return report
        if self.fail:
            partial.unlink()
            report.finish(utcnow())
            return report
        archive = partial.with_suffix("")
        partial.rename(archive)
        info = SnapshotInfo(id=archive.stem, file=str(archive), created_at=call.started,
                            size=4096, sha256="0" * 64, files=1, bytes_in=4096)
        Catalog(cfg.local.dir).add_snapshot(info, trigger=trigger, duration=0.01)
        report.snapshot = info
        report.finish(utcnow())
        return report

    def triggers(self) -> list[str]:
        with self._lock:
            return [c.trigger for c in self.calls]


class Running:
    """serve() in a thread."""

    def __init__(self, cfg: Config, run_fn: Any) -> None:
        self.cfg = cfg
        self.stop_event = threading.Event()
        self.code: int | None = None
        self.thread = threading.Thread(target=self._main, args=(run_fn,), daemon=True)
        self.thread.start()
        wait_until(lambda: read_state(cfg.local.dir) is not None, "the service to start")

    def _main(self, run_fn: Any) -> None:
        self.code = serve(self.cfg, run_fn=run_fn, stop_event=self.stop_event)

    def stop(self) -> int | None:
        self.stop_event.set()
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), "the service did not stop"
        return self.code

    def state(self) -> dict[str, Any]:
        return read_state(self.cfg.local.dir) or {}


class ServiceProcess:
    """`python -m watcher start` in a subprocess; stderr collected line by line."""

    def __init__(self, config: Path, cwd: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "watcher", "-c", str(config), "start"], cwd=cwd,
            env=clean_env(**(env or {})), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def count(self, text: str) -> int:
        return sum(text in line for line in list(self.lines))

    def wait_for(self, text: str, n: int = 1, timeout: float = 60) -> None:
        wait_until(lambda: self.count(text) >= n or self.proc.poll() is not None,
                   f"{text!r} x{n} in the log", timeout)
        assert self.count(text) >= n, "\n".join(self.lines)

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self._reader.join(5)

    def log(self) -> str:
        return "\n".join(self.lines)
