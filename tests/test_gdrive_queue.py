"""The upload queue (watcher.backup.uploads) with a real catalog, real archives and the Drive
destination against fakedrive (our Drive server)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from scripts.fakedrive import DriveServer
from tests.fakes.drive import CHUNK, drive_config, drive_settings, make_archive, make_drive
from tests.helpers import make_config
from watcher.archive.files import snapshot_time
from watcher.backup.report import SnapshotInfo
from watcher.backup.uploads import (
    FAILED_RETRY,
    next_due,
    pending_copies,
    protected_snapshot_ids,
    retry_delay,
    send_copies,
)
from watcher.config.settings import Config
from watcher.destinations.base import Destination
from watcher.destinations.gdrive.destination import KEY_SNAPSHOT, GoogleDriveDestination
from watcher.state.catalog import Catalog, utcnow

IDS = ["siip-20260101T000000Z", "siip-20260102T000000Z", "siip-20260103T000000Z"]
SIZE = 3 * CHUNK + 77


@dataclass
class Queue:
    server: DriveServer
    cfg: Config
    catalog: Catalog
    dest: GoogleDriveDestination

    def snapshot(self, sid: str) -> Path:
        path, sha = make_archive(self.cfg.local.dir, sid, SIZE)
        created = snapshot_time(sid)
        assert created is not None
        self.catalog.add_snapshot(SnapshotInfo(id=sid, file=str(path), created_at=created,
                                               size=SIZE, sha256=sha, files=1, bytes_in=SIZE),
                                  trigger="manual", duration=1.0)
        return path

    def send(self, ids: list[str] | None = None, **kw: object) -> list:
        dests: list[Destination] = [self.dest]
        return send_copies(self.cfg, self.catalog, dests, ids, **kw)  # type: ignore[arg-type]

    def on_drive(self, sid: str) -> int:
        return len(self.server.state.live_files(app_property=(KEY_SNAPSHOT, sid)))


@pytest.fixture
def queue(tmp_path: Path, drive_server: DriveServer) -> Queue:
    creds = tmp_path / "creds"
    creds.mkdir()
    drive = drive_config(drive_server, creds)
    local = tmp_path / "backups"
    local.mkdir()
    cfg = make_config(tmp_path, local, check_paths=False, drive=drive_settings(drive))
    return Queue(drive_server, cfg, Catalog(local), make_drive(cfg.drive))


def test_new_snapshot_is_uploaded_with_its_link(queue: Queue) -> None:
    queue.snapshot(IDS[0])
    [result] = queue.send([IDS[0]])
    assert (result.name, result.state, result.snapshot_id) == ("drive", "uploaded", IDS[0])
    assert result.link and result.link.startswith("https://drive.google.com/file/d/")
    [copy] = queue.catalog.copies(IDS[0])
    assert (copy.state, copy.attempts, copy.resume, copy.link) == ("uploaded", 1, None,
                                                                     result.link)
    assert copy.remote_id == queue.server.state.live_files()[0].id
    assert protected_snapshot_ids(queue.catalog, [queue.dest]) == set()
    assert queue.send([IDS[0]]) == []             # nothing left to do, nothing sent again
    assert queue.on_drive(IDS[0]) == 1


def test_server_down_leaves_the_copy_queued_then_sends_it(queue: Queue) -> None:
    path = queue.snapshot(IDS[0])
    queue.server.stop()
    [result] = queue.send([IDS[0]])
    assert result.state == "pending" and result.error and "queued" in (result.hint or "")
    [copy] = queue.catalog.copies(IDS[0])
    assert copy.state == "pending" and copy.attempts == 1 and copy.last_error
    assert copy.next_try_at is not None and copy.next_try_at > utcnow()
    assert protected_snapshot_ids(queue.catalog, [queue.dest]) == {IDS[0]}
    assert path.exists()

    queue.server.start()
    assert queue.send() == []                      # the service waits for next_try_at
    later = copy.next_try_at + timedelta(seconds=1)
    [result] = queue.send(now=lambda: later)
    assert result.state == "uploaded"
    assert queue.catalog.copies(IDS[0])[0].attempts == 2
    assert protected_snapshot_ids(queue.catalog, [queue.dest]) == set()
    assert queue.on_drive(IDS[0]) == 1


def test_once_sends_everything_pending_now(queue: Queue) -> None:
    queue.snapshot(IDS[0])
    queue.server.stop()
    queue.send([IDS[0]])
    queue.server.start()
    [result] = queue.send(force=True)              # `siip-watcher once`
    assert result.state == "uploaded"


def test_non_retryable_failure_is_failed_with_reason_and_kept(queue: Queue) -> None:
    path = queue.snapshot(IDS[0])
    queue.server.state.inject("initiate", "error", status=403, reason="storageQuotaExceeded")
    [result] = queue.send([IDS[0]])
    assert result.state == "failed" and "storage is full" in (result.error or "")
    assert "siip-watcher once" in (result.hint or "")
    [copy] = queue.catalog.copies(IDS[0])
    assert copy.state == "failed" and copy.next_try_at is not None
    assert copy.next_try_at - utcnow() > FAILED_RETRY - timedelta(minutes=1)
    assert protected_snapshot_ids(queue.catalog, [queue.dest]) == {IDS[0]}
    assert path.exists()
    [result] = queue.send(force=True)              # the admin freed space and ran `once`
    assert result.state == "uploaded"


def test_a_rate_limit_is_pending_and_waits_as_long_as_google_asked(queue: Queue) -> None:
    queue.snapshot(IDS[0])
    queue.server.state.inject("initiate", "error", status=429, reason="rateLimitExceeded",
                              retry_after=2 * 3600)
    [result] = queue.send([IDS[0]])
    assert result.state == "pending" and "750" not in (result.error or "")
    [copy] = queue.catalog.copies(IDS[0])
    assert copy.next_try_at is not None
    # beyond the queue's own 5 minutes: the two hours Google asked for
    assert copy.next_try_at - utcnow() > timedelta(hours=2) - timedelta(minutes=1)


def test_resume_state_survives_a_restart(queue: Queue) -> None:
    queue.snapshot(IDS[0])
    # every chunk after the first two is dropped: the attempt gives up, the session is saved
    queue.server.state.inject("chunk", "drop", skip=2, times=None)
    [result] = queue.send([IDS[0]])
    assert result.state == "pending"
    [copy] = queue.catalog.copies(IDS[0])
    assert copy.resume and copy.resume["offset"] == 2 * CHUNK

    queue.server.state.stop_faults()
    restarted = Queue(queue.server, queue.cfg, Catalog(queue.cfg.local.dir),
                      make_drive(queue.cfg.drive))
    [result] = restarted.send(force=True)
    assert result.state == "uploaded"
    assert [r.op for r in queue.server.state.records].count("initiate") == 1
    assert queue.server.state.chunk_bytes == SIZE
    assert restarted.catalog.copies(IDS[0])[0].resume is None


def test_oldest_first_and_a_down_destination_holds_back_the_rest(queue: Queue) -> None:
    for sid in IDS:
        queue.snapshot(sid)
    queue.server.stop()
    results = queue.send(IDS)
    assert [r.snapshot_id for r in results] == IDS
    assert [r.state for r in results] == ["pending"] * 3
    assert "not tried" in (results[1].hint or "")
    # only the first spent its retry budget
    attempts = {c.snapshot_id: c.attempts for c in queue.catalog.copies()}
    assert attempts == {IDS[0]: 1, IDS[1]: 0, IDS[2]: 0}
    assert len(pending_copies(queue.catalog, [queue.dest])) == 3
    # the rest wait with the first, so the next pass is not a retry budget per copy
    retry_at = {c.snapshot_id: c.next_try_at for c in queue.catalog.copies()}
    assert retry_at[IDS[0]] is not None and retry_at[IDS[0]] > utcnow()
    assert retry_at[IDS[1]] == retry_at[IDS[2]] == retry_at[IDS[0]]
    assert next_due(queue.catalog, [queue.dest], utcnow()) == retry_at[IDS[0]]
    assert queue.send() == []                      # nothing is due before then

    queue.server.start()
    results = queue.send(force=True)
    assert [(r.snapshot_id, r.state) for r in results] == [(sid, "uploaded") for sid in IDS]
    order = [f.app_properties[KEY_SNAPSHOT] for f in sorted(
        queue.server.state.live_files(), key=lambda f: f.created)]
    assert order == IDS


def test_missing_local_archive_fails_clearly(queue: Queue) -> None:
    path = queue.snapshot(IDS[0])
    path.unlink()
    [result] = queue.send([IDS[0]])
    assert result.state == "failed" and "missing" in (result.error or "")
    assert queue.server.state.records == []


def test_stop_holds_everything_back(queue: Queue) -> None:
    queue.snapshot(IDS[0])
    stop = threading.Event()
    stop.set()
    [result] = queue.send([IDS[0]], stop=stop)
    assert result.state == "pending" and "stopping" in (result.hint or "")
    assert queue.server.state.records == []


def test_retry_delay_grows_and_is_capped() -> None:
    mid = lambda: 0.5  # noqa: E731 - no jitter
    assert retry_delay(1, retryable=True, rand=mid) == timedelta(minutes=5)
    assert retry_delay(3, retryable=True, rand=mid) == timedelta(minutes=20)
    assert retry_delay(30, retryable=True, rand=mid) == timedelta(hours=6)
    assert retry_delay(1, retryable=False) == FAILED_RETRY
    low, high = retry_delay(2, retryable=True, rand=lambda: 0), \
        retry_delay(2, retryable=True, rand=lambda: 1)
    assert low < timedelta(minutes=10) < high
