"""Shared fixtures: a small SIIP-like project on real temporary folders, its config, the
real command line, and the Drive server. Plain helpers are in tests/helpers.py."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from scripts.fakedrive import DriveServer
from scripts.rclone_servers import RcloneServers, running_servers
from tests.fakes.healthchecks import Recorder
from tests.fakes.service import Running
from tests.fakes.smtp import TlsFiles, make_tls_files
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
    """A fresh Drive API server on 127.0.0.1 (see :mod:`scripts.fakedrive`).

    On teardown it fails the test if an injected fault did not fire or the client broke the
    upload protocol, so a fault test cannot quietly stop testing anything.
    """
    with DriveServer() as server:
        yield server


@pytest.fixture(scope="session")
def rclone_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RcloneServers]:
    """`rclone serve webdav`, `sftp` and `s3` on 127.0.0.1, with credentials, for the whole
    run (each test works in a folder of its own; a test that stops one starts it again)."""
    with running_servers(tmp_path_factory.mktemp("rclone")) as servers:
        yield servers


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A throwaway CA and a certificate for 127.0.0.1 that the SMTP servers of
    tests/fakes/smtp.py present (one set for the whole run: nothing writes to it)."""
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def hc() -> Iterator[Recorder]:
    """A Healthchecks stand-in on 127.0.0.1 that records the pings it gets."""
    with Recorder() as recorder:
        yield recorder


@pytest.fixture
def services() -> Iterator[Callable[[Config, Any], Running]]:
    """Start serve() in a thread with a given run function; every one still running is
    stopped at the end of the test."""
    started: list[Running] = []

    def start(cfg: Config, run_fn: Any) -> Running:
        r = Running(cfg, run_fn)
        started.append(r)
        return r

    yield start
    for r in started:
        if r.thread.is_alive():
            r.stop()


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the real `python -m watcher` in a subprocess, as a user would."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120,
            check: bool = False) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-m", "watcher", *args], capture_output=True,
                              text=True, timeout=timeout, env=clean_env(**(env or {})),
                              cwd=tmp_path, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    return run


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """``tmpfs("8m")``: a real file system that small, so a disk really fills up; unmounted
    (lazily: a test's own open files must not keep it) when the test ends."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        if not hasattr(os, "geteuid") or os.geteuid() != 0:
            pytest.skip("mounting a small file system needs root")
        path = tmp_path / f"small-{uuid.uuid4().hex[:6]}"
        path.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                               str(path)], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
        mounted.append(path)
        return path

    yield mount
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture
def small_disk(tmpfs: Callable[[str], Path]) -> Path:
    """An 8 MiB disk: a small project's snapshots fit, a big restore does not."""
    return tmpfs("8m")
