"""Log lines on stderr (journald or plain) and in the rotating file."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from watcher.config.settings import from_mapping
from watcher.logsetup import setup_logging

SCRIPT = """
import logging, sys
from watcher.config.settings import from_mapping
from watcher.logsetup import setup_logging
cfg = from_mapping({"log": {"file": sys.argv[1], "level": sys.argv[2]}}, environ={},
                   check_paths=False)
setup_logging(cfg)
setup_logging(cfg)  # a second call replaces, never duplicates
logging.getLogger("watcher.test").info("run ok: trigger=change")
logging.getLogger("watcher.test").warning("disk almost full")
logging.getLogger("apscheduler.scheduler").info("Added job")
try:
    raise ValueError("boom")
except ValueError:
    logging.getLogger("watcher.test").exception("run failed")
"""


def run(tmp_path: Path, env: dict[str, str], level: str = "info") -> tuple[str, str]:
    log_file = tmp_path / "logs" / "siip-watcher.log"
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(log_file), level], env=env,
                          capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parents[1])
    return proc.stderr, log_file.read_text(encoding="utf-8")


def test_journald_form_has_priorities_and_no_timestamps(tmp_path: Path) -> None:
    stderr, file_text = run(tmp_path, {"JOURNAL_STREAM": "8:12345", "PATH": ""})
    lines = stderr.splitlines()
    assert "<6>INFO watcher.test: run ok: trigger=change" in lines
    assert "<4>WARNING watcher.test: disk almost full" in lines
    assert any(line.startswith("<3>Traceback") for line in lines)
    assert all(line.startswith("<") for line in lines)
    assert "Added job" not in stderr          # chatty library INFO is muted
    assert stderr.count("run ok") == 1        # one handler after two setups
    assert file_text.count("run ok: trigger=change") == 1
    assert file_text.splitlines()[0][:4].isdigit()  # the file keeps timestamps


def test_plain_form_has_time_and_level(tmp_path: Path) -> None:
    stderr, _ = run(tmp_path, {"PATH": ""}, level="warning")
    lines = stderr.splitlines()
    assert "run ok" not in stderr
    warning = next(line for line in lines if "disk almost full" in line)
    date, time_, level, *_ = warning.split()
    assert date[:4].isdigit() and time_.count(":") == 2 and level == "WARNING"


def test_unwritable_log_file_warns_and_keeps_stderr(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cfg = from_mapping({"log": {"file": str(blocker / "x.log")}}, environ={},
                       check_paths=False)
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    try:
        with caplog.at_level(logging.WARNING):
            setup_logging(cfg)
        assert "log.file: cannot write" in caplog.text
    finally:
        for h in list(root.handlers):
            if h not in before:
                root.removeHandler(h)
        root.setLevel(level)
