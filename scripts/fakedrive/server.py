"""Running the server: in a thread for tests, or alone in a process for the benchmark."""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import threading
from typing import Any

from .handler import DriveHTTPServer
from .state import DriveState


class DriveServer:
    """Start/stop/restart the server; the state survives a restart (a server that is down
    and comes back).

    As a context manager it also checks, on a clean exit, that the test saw what it was
    written to see: every injected fault fired and the client broke no protocol rule
    (:meth:`check`).
    """

    def __init__(self, state: DriveState | None = None, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.state = state or DriveState()
        self.host, self.port = host, port
        self._httpd: DriveHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The API root, for ``drive.api_root``."""
        return f"http://{self.host}:{self.port}/"

    @property
    def token_uri(self) -> str:
        """The OAuth token endpoint, for credentials files."""
        return self.url + "token"

    def start(self) -> DriveServer:
        """Listen (on the same port as before, after a stop) and serve in a thread."""
        self._httpd = DriveHTTPServer((self.host, self.port), self.state)
        self.port = self._httpd.server_address[1]
        self.state.base_url = self.url
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="drive-server",
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut every open connection (the server is down)."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._httpd.active_lock:
            for sock in list(self._httpd.active):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                    sock.close()
        self._httpd = None

    def restart(self) -> None:
        """Down, then up again on the same port with the same state."""
        self.stop()
        self.start()

    def check(self) -> None:
        """Fail if a fault did not fire or the client broke the protocol.

        A fault injected for an operation that was renamed, or skipping past the last
        request, would otherwise leave its test passing without testing anything.
        """
        problems = self.state.problems()
        if problems:
            raise AssertionError("the Drive server saw what the test did not expect:\n  "
                                 + "\n  ".join(problems))

    def __enter__(self) -> DriveServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self.stop()
        if exc_type is None:          # a failing test's own error says more than ours
            self.check()


def sign_in(state: DriveState, client_id: str = "bench-client",
            secret: str = "bench-secret") -> dict[str, Any]:
    """An OAuth client, a stored user sign-in and a folder the app may fill: what a
    client outside this process needs (the fields of a ``drive login`` token file)."""
    state.add_oauth_client(client_id, secret)
    rt = state.issue_refresh_token(client_id)
    folder = state.add_folder("bench", visible_to={client_id})
    return {"folder": folder, "client_id": client_id, "client_secret": secret,
            "refresh_token": rt}


def main() -> None:
    """Serve until killed; print the API root and an OAuth sign-in (benchmark use)."""
    ap = argparse.ArgumentParser(prog="python -m fakedrive",
                                 description="A local Google Drive API v3 server.")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--hash-only", action="store_true",
                    help="keep md5 and size of uploads, not their bytes (big benchmarks)")
    ap.add_argument("--read-rate", type=float, default=None, metavar="BYTES_PER_S",
                    help="read each connection's request bodies no faster than this (a slow "
                         "uplink)")
    args = ap.parse_args()
    state = DriveState(keep_content=not args.hash_only)
    state.read_rate = args.read_rate
    info = sign_in(state)
    server = DriveServer(state, port=args.port).start()
    print(json.dumps({"api_root": server.url, "token_uri": server.token_uri, **info}),
          flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()
