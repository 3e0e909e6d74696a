"""rclone's own servers on 127.0.0.1 for the rclone destination's tests and benchmark:
``rclone serve webdav``, ``rclone serve sftp`` and ``rclone serve s3``, each serving a
temporary folder and asking for credentials, and an rclone.conf that reaches them.

The servers get their credentials through the environment (``RCLONE_USER``,
``RCLONE_PASS``, ``RCLONE_AUTH_KEY``), as siip-watcher passes its own secrets, so no
password shows in ``ps`` here either. What a server stores is a plain file in its folder,
which the tests read, count and damage behind the destination's back.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from watcher.destinations.rclone.process import find_binary

USER, PASSWORD = "siip", "s3cret-test-pass"
ACCESS_KEY, SECRET_KEY = "SIIPTESTKEY", "siip-test-secret-key"
BUCKET = "backups"
KINDS = ("webdav", "sftp", "s3")
#: how long a server may take to answer after it starts
START_SECONDS = 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def obscure(password: str) -> str:
    """rclone's reversible obscuring, as rclone.conf stores passwords (read from stdin)."""
    return subprocess.run([find_binary(""), "obscure", "-"], input=password, text=True,
                          capture_output=True, check=True).stdout.strip()


@dataclass
class RcloneServer:
    """One ``rclone serve KIND`` of ``root`` on 127.0.0.1:``port``; the remote named
    ``kind`` in the rclone.conf of :func:`write_conf` reaches it."""

    kind: str
    root: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server (again, on the same port and folder) and wait until it answers."""
        # serve s3 would also ask for RCLONE_USER's basic auth on top of its keys
        env = ({"RCLONE_AUTH_KEY": f'"{ACCESS_KEY},{SECRET_KEY}"'} if self.kind == "s3"
               else {"RCLONE_USER": USER, "RCLONE_PASS": PASSWORD})
        env |= {"RCLONE_CONFIG": str(self.root.parent / "empty-rclone.conf"),
                "HOME": str(self.root.parent)}
        if self.kind == "s3":
            (self.root / BUCKET).mkdir(parents=True, exist_ok=True)
        self.root.mkdir(parents=True, exist_ok=True)
        log = open(self.root.parent / f"{self.kind}.log", "ab")  # noqa: SIM115 - the server's
        self.proc = subprocess.Popen(
            [find_binary(""), "serve", self.kind, str(self.root),
             "--addr", f"127.0.0.1:{self.port}"], env=env, stdout=log, stderr=log,
            stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + START_SECONDS
        while not self._answers():
            if time.monotonic() > deadline:
                raise AssertionError(f"rclone serve {self.kind} on port {self.port} did not "
                                     f"answer in {START_SECONDS} s")
            time.sleep(0.05)

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            log = (self.root.parent / f"{self.kind}.log").read_text(errors="replace")
            raise AssertionError(f"rclone serve {self.kind} exited: {log[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def kill(self) -> None:
        """Kill the server at once (as a crash or a cut network would end it)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def folder(self, remote_path: str) -> Path:
        """Where a file under ``remote_path`` (the part after ``kind:``) is stored."""
        return self.root / remote_path

    def remote(self, name: str = "") -> str:
        """A fresh folder on this server as rclone.remote (``kind:[bucket/]NAME``)."""
        name = name or uuid.uuid4().hex[:12]
        return f"{self.kind}:{BUCKET}/{name}"


def write_conf(servers: list[RcloneServer], path: Path) -> Path:
    """An rclone.conf with one remote per server, named after its kind (mode 0600)."""
    secret = obscure(PASSWORD)
    sections = []
    for s in servers:
        if s.kind == "webdav":
            body = (f"type = webdav\nurl = http://127.0.0.1:{s.port}/\nvendor = rclone\n"
                    f"user = {USER}\npass = {secret}\n")
        elif s.kind == "sftp":
            body = (f"type = sftp\nhost = 127.0.0.1\nport = {s.port}\nuser = {USER}\n"
                    f"pass = {secret}\nshell_type = unix\nknown_hosts_file = none\n")
        else:
            body = (f"type = s3\nprovider = Rclone\naccess_key_id = {ACCESS_KEY}\n"
                    f"secret_access_key = {SECRET_KEY}\n"
                    f"endpoint = http://127.0.0.1:{s.port}/\n")
        sections.append(f"[{s.kind}]\n{body}")
    path.write_text("\n".join(sections), encoding="utf-8")
    path.chmod(0o600)
    return path


@dataclass(frozen=True)
class RcloneServers:
    """Servers by kind, and the rclone.conf that reaches them."""

    by_kind: dict[str, RcloneServer]
    conf: Path


@contextlib.contextmanager
def running_servers(base: Path, kinds: tuple[str, ...] = KINDS) -> Iterator[RcloneServers]:
    """One server of each of ``kinds`` under ``base`` for as long as the block lasts."""
    servers = {kind: RcloneServer(kind, base / kind / "root") for kind in kinds}
    try:
        for server in servers.values():
            server.start()
        yield RcloneServers(servers, write_conf(list(servers.values()), base / "rclone.conf"))
    finally:
        for server in servers.values():
            server.kill()
