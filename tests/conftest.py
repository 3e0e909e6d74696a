"""Shared fixtures: a small SIIP-like project on real temporary folders, its config, the
real command line, and the Drive server. Plain helpers are in tests/helpers.py."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fakedrive import DriveServer
from tests.helpers import clean_env, make_config, make_siip_tree
from watcher.config.settings import Config


@pytest.fixture
def siip(tmp_path: Path) -> Path:
    """A fresh SIIP-like project folder."""
    return make_siip_tree(tmp_path / "siip")


@pytest.fixture
def cfg(siip: Path, tmp_path: Path) -> Config:
    """Config backing ``siip`` up to a folder outside it."""
    return make_config(siip, tmp_path / "backups")


@pytest.fixture
def drive_server() -> Iterator[DriveServer]:
    """A fresh Drive API server on 127.0.0.1 (see :mod:`fakedrive`).

    On teardown it fails the test if an injected fault did not fire or the client broke the
    upload protocol, so a fault test cannot quietly stop testing anything.
    """
    with DriveServer() as server:
        yield server


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the real `python -m watcher` in a subprocess, as a user would."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120,
            check: bool = False) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-m", "watcher", *args], capture_output=True,
                              text=True, timeout=timeout, env=clean_env(**(env or {})),
                              cwd=tmp_path)
        if check and proc.returncode != 0:
            raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    return run


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 8 MiB file system (tmpfs), so the disk really fills up."""
    size = "8m"
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    mount = tmp_path / f"small-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
