"""Drive uploads under every fault the issue lists, with the real google-api-python-client,
google-auth and httplib2 against fakedrive (our Drive server).

Each test ends with exactly one verified copy on the server (same bytes, same md5), or with
a clear, one-line failure and nothing half-made. The server also checks the client's side
of the protocol: no chunk whose body is shorter than its Content-Length (the library's
empty re-send that stalls an upload), no gap, no re-send with different bytes.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from scripts.fakedrive import DriveServer, DriveState
from tests.fakes.drive import (
    CHUNK,
    SA_EMAIL,
    drive_config,
    make_archive,
    make_drive,
    shared_drive_config,
)
from watcher.destinations.base import DestinationError
from watcher.destinations.gdrive.destination import KEY_SNAPSHOT, GoogleDriveDestination

SID = "siip-20261127T181500Z"
SIZE = 5 * CHUNK + 1000           # six chunks, the last one short


@dataclass
class Env:
    server: DriveServer
    tmp: Path
    dest: GoogleDriveDestination
    archive: Path
    sha256: str

    @property
    def state(self) -> DriveState:
        return self.server.state

    def put(self, **kw: Any) -> Any:
        return self.dest.put(self.archive, snapshot_id=SID, sha256=self.sha256, **kw)

    def assert_one_verified_copy(self) -> None:
        copies = self.state.live_files(app_property=(KEY_SNAPSHOT, SID))
        assert len(copies) == 1
        data = self.archive.read_bytes()
        assert copies[0].content == data
        assert copies[0].md5 == hashlib.md5(data).hexdigest()
        assert self.state.violations == []

    def assert_nothing_stored(self) -> None:
        assert self.state.live_files() == []
        assert self.archive.exists()                  # the local snapshot is kept
        assert self.state.violations == []


@pytest.fixture
def env(tmp_path: Path, drive_server: DriveServer) -> Iterator[Env]:
    dest = make_drive(drive_config(drive_server, tmp_path))
    path, sha = make_archive(tmp_path, SID, SIZE)
    yield Env(drive_server, tmp_path, dest, path, sha)
    dest.close()


def chunk_ops(state: DriveState) -> list[str]:
    return [r.op for r in state.records if r.op in ("initiate", "chunk", "status")]


# --- retried faults: one verified copy at the end ---------------------------------------------


@pytest.mark.parametrize("status,reason", [
    (500, "backendError"),
    (503, "backendError"),
    (429, "rateLimitExceeded"),
    (403, "userRateLimitExceeded"),
    (403, "rateLimitExceeded"),
])
def test_error_answer_on_a_chunk_is_retried(env: Env, status: int, reason: str) -> None:
    env.state.inject("chunk", "error", status=status, reason=reason, skip=2, times=2)
    env.put()
    env.assert_one_verified_copy()
    ops = chunk_ops(env.state)
    # after each error the client asked for the offset instead of assuming
    for i, r in enumerate(env.state.records):
        if r.fault and r.op == "chunk":
            assert env.state.records[i + 1].op == "status"
    assert ops.count("initiate") == 1


def test_errors_when_starting_and_when_asking_are_retried(env: Env) -> None:
    env.state.inject("initiate", "error", status=503)
    env.state.inject("chunk", "error", status=500, skip=1)
    env.state.inject("status", "error", status=500)
    env.put()
    env.assert_one_verified_copy()


def test_connection_dropped_mid_chunk_resends_at_most_one_chunk(env: Env) -> None:
    env.state.inject("chunk", "drop", skip=2)
    env.put()
    env.assert_one_verified_copy()
    resent = env.state.chunk_bytes_sent() - SIZE
    assert 0 < resent <= CHUNK


def test_chunk_stored_but_answer_lost(env: Env) -> None:
    # the second and the third chunk: each time the uploader asks for the offset, and a lost
    # answer right after that question is handled as well as the first
    env.state.inject("chunk", "lost", skip=1, times=2)
    env.put()
    env.assert_one_verified_copy()
    assert "status" in chunk_ops(env.state)


def test_last_answer_lost_still_one_copy(env: Env) -> None:
    env.state.inject("chunk", "lost", skip=5)       # the sixth, final chunk
    remote = env.put()
    env.assert_one_verified_copy()
    assert remote.remote_id == env.state.live_files()[0].id


def test_last_answer_lost_and_session_expired_finds_the_copy(env: Env) -> None:
    env.state.inject("chunk", "lost", skip=5)
    env.state.inject("status", "expire_session")
    remote = env.put()
    env.assert_one_verified_copy()
    assert chunk_ops(env.state).count("initiate") == 1     # found, not uploaded again
    assert remote.remote_id == env.state.live_files()[0].id


@pytest.mark.parametrize("op", ["chunk", "status"])
def test_a_308_with_a_location_moves_the_session(env: Env, op: str) -> None:
    """Google's own client takes a 308's Location as the session's address; the old address
    may stop working, and starting over would send everything again."""
    if op == "status":
        env.state.inject("chunk", "lost", skip=1)           # so that the client asks
    env.state.inject(op, "relocate", skip=0 if op == "status" else 2)
    saved: dict[str, Any] = {}
    env.put(save_state=saved.update)
    env.assert_one_verified_copy()
    assert chunk_ops(env.state).count("initiate") == 1
    assert env.state.chunk_bytes_sent() - SIZE <= (CHUNK if op == "status" else 0)
    assert [r for r in env.state.records if r.status == 404] == []


def test_a_moved_session_is_saved_at_its_new_address(env: Env) -> None:
    """A restart after the move resumes at the new address, not from zero."""
    env.state.inject("chunk", "relocate", skip=1)
    saved: dict[str, Any] = {}
    accepted: list[int] = []

    class Crash(Exception):
        pass

    def crash_after_three(n: int) -> None:
        accepted.append(n)
        if len(accepted) == 3:
            raise Crash()

    with pytest.raises(Crash):
        env.put(save_state=saved.update, progress=crash_after_three)
    env.put(state=dict(saved))
    env.assert_one_verified_copy()
    assert chunk_ops(env.state).count("initiate") == 1
    assert env.state.chunk_bytes_sent() == SIZE
    assert [r for r in env.state.records if r.status == 404] == []


def test_expired_session_starts_a_new_one(env: Env) -> None:
    env.state.inject("chunk", "expire_session", skip=3)
    env.put()
    env.assert_one_verified_copy()
    assert chunk_ops(env.state).count("initiate") == 2


def test_server_keeping_less_than_it_was_sent(tmp_path: Path) -> None:
    with DriveServer() as server:
        dest = make_drive(drive_config(server, tmp_path), chunk=2 * CHUNK)
        path, sha = make_archive(tmp_path, SID, SIZE)
        server.state.inject("chunk", "short", skip=1, times=2)
        dest.put(path, snapshot_id=SID, sha256=sha)
        env = Env(server, tmp_path, dest, path, sha)
        env.assert_one_verified_copy()


def test_access_token_expiring_mid_upload_neither_stalls_nor_corrupts(env: Env) -> None:
    """The trap: a 401 refresh retried a stream-based chunk with an empty body. Ours
    re-sends the same bytes; the server would record a short body as a violation."""
    env.state.inject("chunk", "expire_token", skip=2)
    env.put()
    env.assert_one_verified_copy()
    assert len(env.state.ops("token")) == 2
    refused = [r for r in env.state.records if r.op == "chunk" and r.status == 401]
    assert len(refused) == 1


def test_timeout_is_retried(tmp_path: Path) -> None:
    with DriveServer() as server:
        dest = make_drive(drive_config(server, tmp_path), timeout=0.5)
        path, sha = make_archive(tmp_path, SID, SIZE)
        server.state.inject("chunk", "delay", delay=1.5, skip=1)
        dest.put(path, snapshot_id=SID, sha256=sha)
        Env(server, tmp_path, dest, path, sha).assert_one_verified_copy()


def test_failing_token_endpoint_is_retried(env: Env) -> None:
    # google-auth retries the token endpoint itself, then reports a retryable failure
    env.state.inject("token", "error", status=503, reason="temporarily_unavailable", times=3)
    env.put()
    env.assert_one_verified_copy()


def test_md5_mismatch_deletes_and_uploads_again(env: Env) -> None:
    env.state.inject("chunk", "corrupt", skip=2)
    env.put()
    env.assert_one_verified_copy()
    assert chunk_ops(env.state).count("initiate") == 2
    assert len(env.state.ops("delete")) == 1


def test_restart_resumes_the_saved_session(env: Env) -> None:
    """A service that dies mid-upload resumes with the saved session, not from zero."""
    saved: dict[str, Any] = {}

    class Crash(Exception):
        pass

    sent: list[int] = []

    def crash_after_three(n: int) -> None:
        sent.append(n)
        if len(sent) == 3:
            raise Crash()

    with pytest.raises(Crash):
        env.put(save_state=saved.update, progress=crash_after_three)
    assert saved["offset"] == 3 * CHUNK
    assert "upload_id=" in saved["session"]

    restarted = make_drive(env.dest.cfg)
    later: list[dict[str, Any]] = []
    restarted.put(env.archive, snapshot_id=SID, sha256=env.sha256, state=dict(saved),
                  save_state=later.append)
    env.assert_one_verified_copy()
    assert chunk_ops(env.state).count("initiate") == 1
    assert env.state.chunk_bytes == SIZE                   # nothing sent twice
    assert later[-1] == {}                                 # finished: nothing to resume


def test_saved_session_of_another_file_is_not_used(env: Env) -> None:
    stale = {"session": env.server.url + "upload/drive/v3/files?upload_id=old", "offset": CHUNK,
             "size": SIZE + 1, "sha256": env.sha256}
    env.put(state=stale)
    env.assert_one_verified_copy()
    assert [r.op for r in env.state.records].count("status") == 0


# --- failures that stop: one line, nothing stored, the local file kept -----------------------


def test_service_account_without_quota_is_one_actionable_line(tmp_path: Path) -> None:
    with DriveServer() as server:
        folder = server.state.add_folder("backups")
        dest = make_drive(drive_config(server, tmp_path, auth="service_account",
                                       folder_id=folder))
        path, sha = make_archive(tmp_path, SID, SIZE)
        with pytest.raises(DestinationError) as err:
            dest.put(path, snapshot_id=SID, sha256=sha)
        assert not err.value.retryable
        message = str(err.value)
        assert "no storage quota" in message and "shared_drive_id" in message
        assert "\n" not in message
        Env(server, tmp_path, dest, path, sha).assert_nothing_stored()


def test_full_user_drive_is_not_retried(env: Env) -> None:
    env.state.inject("initiate", "error", status=403, reason="storageQuotaExceeded")
    with pytest.raises(DestinationError, match="storage is full") as err:
        env.put()
    assert not err.value.retryable
    assert len(env.state.ops("initiate")) == 1
    env.assert_nothing_stored()


def test_missing_folder(tmp_path: Path) -> None:
    with DriveServer() as server:
        cfg = replace(drive_config(server, tmp_path), folder_id="1NoSuchFolder")
        dest = make_drive(cfg)
        path, sha = make_archive(tmp_path, SID, SIZE)
        with pytest.raises(DestinationError, match="folder '1NoSuchFolder' was not found") as err:
            dest.put(path, snapshot_id=SID, sha256=sha)
        assert not err.value.retryable


def test_folder_made_in_the_web_ui_is_invisible_to_drive_file(tmp_path: Path) -> None:
    """drive.file only sees what the app created: a clear line, not a mystery 404."""
    with DriveServer() as server:
        folder = server.state.add_folder("made by hand")          # not visible to the app
        dest = make_drive(drive_config(server, tmp_path, folder_id=folder))
        with pytest.raises(DestinationError, match="not found or this account cannot see it"):
            dest.check_folder()


def test_revoked_sign_in_says_to_log_in_again(env: Env) -> None:
    env.state.revoke_refresh_tokens()
    with pytest.raises(DestinationError, match="drive login") as err:
        env.put()
    assert not err.value.retryable
    env.assert_nothing_stored()


def test_401_after_a_refresh_says_to_log_in_again(env: Env) -> None:
    env.state.inject("list", "expire_token", times=None)      # every list, however many
    with pytest.raises(DestinationError, match="drive login") as err:
        env.put()
    assert not err.value.retryable


def test_a_rate_limit_that_does_not_lift_leaves_the_copy_queued(env: Env) -> None:
    """userRateLimitExceeded also answers a burst of requests: it is never taken for the daily
    limit (which would stop the copy for hours) unless Google says so."""
    env.state.inject("chunk", "error", status=403, reason="userRateLimitExceeded", skip=1,
                     times=None)
    with pytest.raises(DestinationError, match="asked to slow down") as err:
        env.put()
    assert err.value.retryable
    assert "daily" not in str(err.value) and "750" not in str(err.value)
    assert len(env.state.ops("chunk")) == 1 + env.dest.backoff.rate_limits.attempts
    assert env.state.violations == []


@pytest.mark.parametrize("reason,message", [
    ("dailyLimitExceeded", None),
    ("rateLimitExceeded", "Daily Limit Exceeded. The quota will be reset at midnight."),
])
def test_a_daily_limit_google_names_stops_at_once(env: Env, reason: str,
                                                  message: str | None) -> None:
    env.state.inject("chunk", "error", status=403, reason=reason, message=message, skip=1)
    with pytest.raises(DestinationError, match="daily limit") as err:
        env.put()
    assert not err.value.retryable
    assert len(env.state.ops("chunk")) == 2          # no retry spent on it


def test_retry_after_is_waited_for(env: Env) -> None:
    env.state.inject("chunk", "error", status=429, reason="rateLimitExceeded", skip=1,
                     retry_after=1)
    env.put()
    env.assert_one_verified_copy()
    records = env.state.records
    [limited] = [i for i, r in enumerate(records) if r.status == 429]
    # FAST_RETRY alone would wait at most 0.05 s
    assert records[limited + 1].at - records[limited].at >= 1.0


def test_a_longer_retry_after_goes_back_to_the_queue_with_it(env: Env) -> None:
    env.state.inject("initiate", "error", status=429, reason="rateLimitExceeded",
                     retry_after=3600)
    with pytest.raises(DestinationError, match="asked to wait 3600 s") as err:
        env.put()
    assert err.value.retryable and err.value.retry_after == 3600
    assert len(env.state.ops("initiate")) == 1       # not hammered meanwhile
    env.assert_nothing_stored()


def test_a_full_shared_drive_is_not_blamed_on_a_missing_shared_drive_id(tmp_path: Path) -> None:
    """The advice matches the configuration: shared_drive_id is already set."""
    with DriveServer() as server:
        dest = make_drive(shared_drive_config(server, tmp_path))
        path, sha = make_archive(tmp_path, SID, SIZE)
        server.state.inject("initiate", "error", status=403, reason="storageQuotaExceeded")
        with pytest.raises(DestinationError, match="shared drive 0AshareD is out of storage"):
            dest.put(path, snapshot_id=SID, sha256=sha)


def test_a_full_shared_drive_says_so(tmp_path: Path) -> None:
    with DriveServer() as server:
        dest = make_drive(shared_drive_config(server, tmp_path))
        path, sha = make_archive(tmp_path, SID, SIZE)
        server.state.inject("initiate", "error", status=403, reason="teamDriveFileLimitExceeded")
        with pytest.raises(DestinationError, match="400,000") as err:
            dest.put(path, snapshot_id=SID, sha256=sha)
        assert not err.value.retryable and "0AshareD" in str(err.value)
        assert "750" not in str(err.value)


def test_server_down_is_retryable(env: Env) -> None:
    env.server.stop()
    with pytest.raises(DestinationError, match="connection to Google Drive failed|token") as err:
        env.put()
    assert err.value.retryable
    assert "\n" not in str(err.value) and "upload_id" not in str(err.value)


def test_server_going_down_mid_upload_resumes_when_back(env: Env) -> None:
    saved: dict[str, Any] = {}
    stopped: list[int] = []

    def stop_after_two(n: int) -> None:
        stopped.append(n)
        if len(stopped) == 2:
            env.server.stop()

    with pytest.raises(DestinationError) as err:
        env.put(save_state=saved.update, progress=stop_after_two)
    assert err.value.retryable and saved["offset"] == 2 * CHUNK
    env.server.start()                  # same port, same stored state
    env.put(state=dict(saved))
    env.assert_one_verified_copy()
    assert env.state.chunk_bytes == SIZE


# --- service accounts, shared drives, delegation ---------------------------------------------


def test_shared_drive_needs_and_gets_all_drives_parameters(tmp_path: Path) -> None:
    with DriveServer() as server:
        dest = make_drive(shared_drive_config(server, tmp_path))
        path, sha = make_archive(tmp_path, SID, SIZE)
        remote = dest.put(path, snapshot_id=SID, sha256=sha)
        assert server.state.files[remote.remote_id].drive_id == "0AshareD"
        assert [r.snapshot_id for r in dest.list()] == [SID]
        dest.get(remote, tmp_path / "back.tar.zst")
        dest.delete(remote)
        assert server.state.live_files() == []
        # every list asked the shared drive the way Drive requires
        assert all(r.status == 200 for r in server.state.ops("list"))


def test_service_account_not_in_the_shared_drive(tmp_path: Path) -> None:
    with DriveServer() as server:
        cfg = shared_drive_config(server, tmp_path)
        server.state.shared_drives["0AshareD"].pop(SA_EMAIL)
        with pytest.raises(DestinationError, match="not found"):
            make_drive(cfg).list()


def test_impersonation_uploads_as_the_user(tmp_path: Path) -> None:
    with DriveServer() as server:
        folder = server.state.add_folder("backups")
        dest = make_drive(drive_config(server, tmp_path, auth="service_account",
                                       folder_id=folder, impersonate="admin@example.com"))
        path, sha = make_archive(tmp_path, SID, SIZE)
        remote = dest.put(path, snapshot_id=SID, sha256=sha)
        assert server.state.files[remote.remote_id].owner == "admin@example.com"


def test_impersonation_without_delegation_is_refused(tmp_path: Path) -> None:
    with DriveServer() as server:
        folder = server.state.add_folder("backups")
        cfg = drive_config(server, tmp_path, auth="service_account", folder_id=folder,
                           impersonate="admin@example.com")
        server.state.delegation.clear()
        with pytest.raises(DestinationError, match="domain-wide delegation") as err:
            make_drive(cfg).list()
        assert not err.value.retryable


# --- reading back ----------------------------------------------------------------------------


def test_list_follows_pages(env: Env) -> None:
    env.state.max_page_size = 2
    ids = [f"siip-2026010{d}T000000Z" for d in range(1, 6)]
    for sid in ids:
        path, sha = make_archive(env.tmp, sid, 1000)
        env.dest.put(path, snapshot_id=sid, sha256=sha)
    assert [r.snapshot_id for r in env.dest.list()] == list(reversed(ids))
    assert len(env.state.ops("list")) >= 3 + 5


def test_download_dropped_midway_resumes_with_range(env: Env) -> None:
    remote = env.put()
    env.state.inject("media", "drop", skip=2)
    target = env.tmp / "restored.tar.zst"
    env.dest.get(remote, target)
    assert target.read_bytes() == env.archive.read_bytes()
    ranges = [r for r in env.state.ops("media")]
    assert len(ranges) == 6 + 1


def test_download_resumes_a_partial_file(env: Env) -> None:
    remote = env.put()
    target = env.tmp / "restored.tar.zst"
    target.with_name(target.name + ".partial").write_bytes(env.archive.read_bytes()[:3 * CHUNK])
    got: list[int] = []
    env.dest.get(remote, target, progress=got.append)
    assert sum(got) == SIZE - 3 * CHUNK
    assert target.read_bytes() == env.archive.read_bytes()


def test_download_of_a_deleted_copy(env: Env) -> None:
    remote = env.put()
    env.dest.delete(remote)
    with pytest.raises(DestinationError, match="no longer on Google Drive") as err:
        env.dest.get(remote, env.tmp / "x.tar.zst")
    assert not err.value.retryable


def test_stop_between_chunks_keeps_the_session_for_the_next_start(env: Env) -> None:
    stop = threading.Event()
    dest = make_drive(env.dest.cfg, stop=stop)
    saved: list[dict[str, Any]] = []

    def stop_after_two(n: int) -> None:
        if len(saved) >= 3:          # the session, then two chunks
            stop.set()

    with pytest.raises(DestinationError, match="stopped") as err:
        dest.put(env.archive, snapshot_id=SID, sha256=env.sha256, save_state=saved.append,
                 progress=stop_after_two)
    assert err.value.retryable and saved[-1]["offset"] == 2 * CHUNK
    assert env.state.live_files() == []
    make_drive(env.dest.cfg).put(env.archive, snapshot_id=SID, sha256=env.sha256,
                                 state=saved[-1])
    env.assert_one_verified_copy()
    assert env.state.chunk_bytes == SIZE
