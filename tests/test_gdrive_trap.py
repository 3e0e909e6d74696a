"""The google-api-python-client trap, shown on the real library and avoided by ours.

A 401 in the middle of a resumable upload makes google-auth's AuthorizedHttp refresh the
token and re-send the request. With the library's stream-based ``MediaIoBaseUpload``
chunk, the stream was already read, so the re-send carries an EMPTY body under a
Content-Length of a whole chunk: the server waits for bytes that never come (Google until
its timeout). This test first proves that the local server catches exactly that, then that
our uploader, under the same fault, sends the same bytes again and finishes.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from googleapiclient.http import MediaIoBaseUpload

from scripts.fakedrive import DriveServer
from tests.fakes.drive import CHUNK, drive_config, make_archive, make_drive
from watcher.destinations.gdrive.auth import load_credentials
from watcher.destinations.gdrive.transport import authorized_http, build_service

SID = "siip-20260601T000000Z"


def test_library_stream_upload_resends_an_empty_chunk_after_a_401(tmp_path: Path) -> None:
    with DriveServer() as server:
        server.state.body_timeout = 1.0        # how long the server waits for the body
        cfg = drive_config(server, tmp_path)
        http = authorized_http(load_credentials(cfg), cfg.api_root, timeout=5)
        service = build_service(http, cfg.api_root)
        data = bytes(range(256)) * (4 * CHUNK // 256)
        server.state.inject("chunk", "expire_token", skip=1)
        request = service.files().create(
            body={"name": "library.bin", "parents": [cfg.folder_id]}, supportsAllDrives=True,
            media_body=MediaIoBaseUpload(io.BytesIO(data), "application/octet-stream",
                                        chunksize=CHUNK, resumable=True))
        with pytest.raises(OSError):
            done = None
            while done is None:
                _, done = request.next_chunk()
        # the violation this test provokes on purpose: taken, so the check on exit passes
        violations = server.state.take_violations()
        assert any("shorter than its Content-Length" in v for v in violations)
        assert server.state.live_files() == []


def test_our_uploader_under_the_same_fault_resends_the_bytes(tmp_path: Path) -> None:
    with DriveServer() as server:
        server.state.body_timeout = 1.0
        dest = make_drive(drive_config(server, tmp_path))
        path, sha = make_archive(tmp_path, SID, 4 * CHUNK)
        server.state.inject("chunk", "expire_token", skip=1)
        dest.put(path, snapshot_id=SID, sha256=sha)
        assert server.state.violations == []
        [stored] = server.state.live_files()
        assert stored.content == path.read_bytes()
        chunks = [r for r in server.state.records if r.op == "chunk"]
        assert [r.status for r in chunks] == [308, 401, 308, 308, 200]
        assert all(r.body_bytes == CHUNK for r in chunks if r.status != 401)
