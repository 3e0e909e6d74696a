"""A small real HTTP server on 127.0.0.1 standing in for Healthchecks, recording what it was
asked. The URL's path holds the check id, a secret that must never reach a log line."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CHECK_ID = "5f1c2a9e-0b7d-4c1e-9a55-secretcheck"


class Recorder:
    """A tiny Healthchecks stand-in: 200 for /ping/<id> and /ping/<id>/fail, else 404."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                recorder.paths.append(self.path)
                known = self.path.split("?")[0] in (f"/ping/{CHECK_ID}",
                                                    f"/ping/{CHECK_ID}/fail")
                body = b"OK" if known else b"not found"
                self.send_response(200 if known else 404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep the test output clean

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/ping/{CHECK_ID}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)

    def __enter__(self) -> Recorder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
