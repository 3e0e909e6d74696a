"""One contract every destination keeps, run against each of them.

The folder destination is the one the registry builds from a [folder] section, on real
folders; the Drive destination is the real google-api-python-client + google-auth against
fakedrive (our Drive server) on 127.0.0.1, once with a user sign-in (My Drive folder) and once
with a service account in a shared drive; the rclone destination is the one the registry
builds from an [rclone] section, driving the bundled rclone against `rclone serve webdav`
(no hash: size, then the sidecar on download), `sftp` (md5) and `s3` (md5) on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pyrage import x25519

from scripts.fakedrive import DriveServer
from scripts.rclone_servers import RcloneServers
from tests.fakes.drive import (
    CHUNK,
    drive_config,
    make_archive,
    make_drive,
    shared_drive_config,
)
from watcher.backup.sealing import sealed_archive
from watcher.config.settings import from_mapping
from watcher.destinations.base import Destination, DestinationError, RemoteFile, Sealed
from watcher.destinations.folder import LocalFolderDestination
from watcher.destinations.rclone.destination import RcloneDestination
from watcher.destinations.registry import enabled_destinations
from watcher.encryption.stream import AGE_HEADER

SIZE = 3 * CHUNK + 12_345          # several chunks and a short last one
IDS = ["siip-20260101T000000Z", "siip-20260215T120000Z", "siip-20260301T060000Z"]


@dataclass
class Backend:
    dest: Destination
    count: Callable[[], int]                 # copies the service holds, by its own count
    corrupt: Callable[[RemoteFile], None]    # damage a stored copy behind the destination
    resumes: bool = True                     # an interrupted put goes on where it stopped


class Interrupt(Exception):
    """Stands for a crash: raised from the progress callback after the first chunk."""


def damage(path: Path) -> None:
    """Overwrite a few bytes in the middle of a stored file (its size stays)."""
    with open(path, "r+b") as f:
        f.seek(100)
        f.write(b"\x00damaged\x00")


@pytest.fixture(params=["folder", "drive-oauth", "drive-shared", "rclone-webdav", "rclone-sftp",
                        "rclone-s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param.startswith("rclone-"):
        servers: RcloneServers = request.getfixturevalue("rclone_servers")
        server = servers.by_kind[request.param.removeprefix("rclone-")]
        remote = server.remote()
        stored = server.folder(remote.split(":", 1)[1])
        with configured_rclone(tmp_path, remote, servers.conf) as dest:
            yield Backend(dest, lambda: len([*stored.glob("*.tar.zst"),
                                             *stored.glob("*.tar.zst.age")]),
                          lambda r: damage(stored / r.name), resumes=False)
        return
    if request.param == "folder":
        folder = tmp_path / "nas"
        folder.mkdir()
        with configured_folder(tmp_path, folder) as dest:

            yield Backend(dest, lambda: len([*folder.glob("*.tar.zst"),
                                             *folder.glob("*.tar.zst.age")]),
                          lambda r: damage(Path(r.remote_id)))
        return
    with DriveServer() as server:
        creds = tmp_path / "creds"
        creds.mkdir()
        cfg = (drive_config(server, creds) if request.param == "drive-oauth"
               else shared_drive_config(server, creds))
        with make_drive(cfg) as dest:

            def corrupt_drive(remote: RemoteFile) -> None:
                stored = server.state.files[remote.remote_id]
                assert stored.content is not None
                stored.content = (stored.content[:100] + b"\x00damaged\x00" +
                                  stored.content[109:])

            yield Backend(dest, lambda: len(server.state.live_files()), corrupt_drive)
        assert server.state.violations == []


def configured_folder(tmp_path: Path, folder: Path) -> Destination:
    """The folder destination as the registry builds it from ``[folder]``, with the tests'
    chunk size (4 MiB would copy these archives in one piece: nothing to interrupt)."""
    cfg = from_mapping({"source": {"root": str(tmp_path / "siip")},
                        "local": {"dir": str(tmp_path / "backups")},
                        "folder": {"enabled": True, "path": str(folder)}},
                       environ={}, check_paths=False, check_reachable=True)
    [dest] = enabled_destinations(cfg)
    assert isinstance(dest, LocalFolderDestination) and dest.name == "folder"
    dest.chunk_size = CHUNK
    return dest


def configured_rclone(tmp_path: Path, remote: str, conf: Path) -> Destination:
    """The rclone destination as the registry builds it from ``[rclone]``."""
    cfg = from_mapping({"source": {"root": str(tmp_path / "siip")},
                        "local": {"dir": str(tmp_path / "backups")},
                        "rclone": {"enabled": True, "remote": remote, "config_file": str(conf)}},
                       environ={}, check_paths=False, check_reachable=True)
    [dest] = enabled_destinations(cfg)
    assert isinstance(dest, RcloneDestination) and dest.name == "rclone"
    return dest


def archive(tmp_path: Path, sid: str, size: int = SIZE) -> tuple[Path, str]:
    src = tmp_path / "local"
    src.mkdir(exist_ok=True)
    return make_archive(src, sid, size)


def test_put_find_list_get_delete(backend: Backend, tmp_path: Path) -> None:
    path, sha = archive(tmp_path, IDS[0])
    sent: list[int] = []
    remote = backend.dest.put(path, snapshot_id=IDS[0], sha256=sha, progress=sent.append)
    assert (remote.snapshot_id, remote.size, remote.sha256) == (IDS[0], SIZE, sha)
    assert remote.name == f"{IDS[0]}.tar.zst" and remote.link
    assert sum(sent) == SIZE
    assert backend.dest.find(IDS[0]) == remote
    assert backend.dest.find("siip-20991231T000000Z") is None
    assert backend.dest.list() == [remote]

    target = tmp_path / "restore" / "copy.tar.zst"
    target.parent.mkdir()
    assert backend.dest.get(remote, target) == target
    assert target.read_bytes() == path.read_bytes()
    assert not target.with_name(target.name + ".partial").exists()

    backend.dest.delete(remote)
    assert backend.dest.list() == [] and backend.count() == 0
    backend.dest.delete(remote)        # deleting what is gone is not an error


def test_put_is_exactly_once(backend: Backend, tmp_path: Path) -> None:
    path, sha = archive(tmp_path, IDS[0])
    first = backend.dest.put(path, snapshot_id=IDS[0], sha256=sha)
    sent: list[int] = []
    again = backend.dest.put(path, snapshot_id=IDS[0], sha256=sha, progress=sent.append)
    assert again.remote_id == first.remote_id
    assert sent == [] and backend.count() == 1


def test_list_is_newest_first(backend: Backend, tmp_path: Path) -> None:
    for sid in (IDS[1], IDS[0], IDS[2]):
        path, sha = archive(tmp_path, sid, size=1000)
        backend.dest.put(path, snapshot_id=sid, sha256=sha)
    assert [r.snapshot_id for r in backend.dest.list()] == list(reversed(IDS))


def test_get_refuses_a_damaged_copy(backend: Backend, tmp_path: Path) -> None:
    path, sha = archive(tmp_path, IDS[0])
    remote = backend.dest.put(path, snapshot_id=IDS[0], sha256=sha)
    backend.corrupt(remote)
    target = tmp_path / "restored.tar.zst"
    with pytest.raises(DestinationError, match="sha256") as err:
        backend.dest.get(remote, target)
    assert not err.value.retryable
    assert not target.exists()
    assert not target.with_name(target.name + ".partial").exists()


def test_folder_refuses_an_archive_that_does_not_match_its_sha256(tmp_path: Path) -> None:
    """The folder copy is verified by sha256, so it also catches a damaged local archive
    (Drive's copy is verified by md5 against the local file; see gdrive_upload)."""
    dest = LocalFolderDestination(tmp_path / "nas")
    path, _ = archive(tmp_path, IDS[0])
    with pytest.raises(DestinationError, match="does not match its sha256") as err:
        dest.put(path, snapshot_id=IDS[0], sha256="0" * 64)
    assert not err.value.retryable
    assert dest.list() == [] and list((tmp_path / "nas").iterdir()) == []


def test_an_interrupted_put_resumes(backend: Backend, tmp_path: Path) -> None:
    path, sha = archive(tmp_path, IDS[0])
    saved: dict[str, Any] = {}

    def crash_after_first_chunk(n: int) -> None:
        raise Interrupt()

    with pytest.raises(Interrupt):
        backend.dest.put(path, snapshot_id=IDS[0], sha256=sha, save_state=saved.update,
                         progress=crash_after_first_chunk)
    assert backend.dest.list() == []          # nothing that looks complete

    sent: list[int] = []
    remote = backend.dest.put(path, snapshot_id=IDS[0], sha256=sha, state=dict(saved),
                              save_state=saved.update, progress=sent.append)
    if backend.resumes:
        assert 0 < sum(sent) <= SIZE - CHUNK   # the first chunk was not sent again
    else:
        assert sum(sent) == SIZE               # sent again whole, once
    assert backend.count() == 1
    target = tmp_path / "check.tar.zst"
    backend.dest.get(remote, target)
    assert target.read_bytes() == path.read_bytes()


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_folder_copies_are_private_and_sha256sum_readable(tmp_path: Path) -> None:
    dest = LocalFolderDestination(tmp_path / "usb")
    path, sha = archive(tmp_path, IDS[0])
    remote = dest.put(path, snapshot_id=IDS[0], sha256=sha)
    assert stat.S_IMODE((tmp_path / "usb").stat().st_mode) == 0o700
    for p in (Path(remote.remote_id), Path(remote.remote_id + ".sha256")):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
    # the sidecar is in sha256sum format
    assert Path(remote.remote_id + ".sha256").read_text() == f"{sha}  {remote.name}\n"


def test_the_configured_folder_is_never_created(tmp_path: Path) -> None:
    """A missing folder is a share or a disk that is not mounted: creating it would put the
    second copy on the local disk. The copy fails retryably (it stays queued) instead."""
    folder = tmp_path / "mnt" / "nas"
    folder.mkdir(parents=True)
    with configured_folder(tmp_path, folder) as dest:
        folder.rmdir()
        path, sha = archive(tmp_path, IDS[0])
        for attempt in (lambda: dest.put(path, snapshot_id=IDS[0], sha256=sha), dest.list):
            with pytest.raises(DestinationError, match="mounted") as err:
                attempt()
            assert err.value.retryable
        assert dest.find(IDS[0]) is None
        assert not folder.exists()


def sealed_archive_file(tmp_path: Path, sid: str) -> tuple[Path, str, Sealed]:
    """An archive's encrypted file as the queue makes it (watcher/backup/sealing.py), for
    two public keys: (its path, the archive's sha256, what it is)."""
    path, sha = archive(tmp_path, sid)
    keys = [str(x25519.Identity.generate().to_public()) for _ in range(2)]
    made = sealed_archive(path, sha, keys)
    assert made.sealed.recipients == tuple(keys)
    return made.path, sha, made.sealed


def test_an_encrypted_copy_is_stored_listed_and_fetched_as_such(backend: Backend,
                                                                  tmp_path: Path) -> None:
    path, sha, sealed = sealed_archive_file(tmp_path, IDS[0])
    remote = backend.dest.put(path, snapshot_id=IDS[0], sha256=sha, sealed=sealed)
    assert remote.name == f"{IDS[0]}.tar.zst.age"
    # the archive's own sha256 stays what restoring checks; the keys are on record
    assert (remote.snapshot_id, remote.sha256, remote.sealed) == (IDS[0], sha, sealed)
    assert remote.size == path.stat().st_size
    assert backend.dest.find(IDS[0]) == remote and backend.dest.list() == [remote]

    again = backend.dest.put(path, snapshot_id=IDS[0], sha256=sha, sealed=sealed)
    assert again.remote_id == remote.remote_id and backend.count() == 1

    target = tmp_path / "download.tar.zst.age"
    backend.dest.get(remote, target)
    assert target.read_bytes() == path.read_bytes()
    assert target.read_bytes().startswith(AGE_HEADER)

    backend.corrupt(remote)
    with pytest.raises(DestinationError, match="sha256"):
        backend.dest.get(remote, tmp_path / "damaged.tar.zst.age")
    backend.dest.delete(remote)
    assert backend.dest.list() == []


def test_a_delta_keeps_its_name_and_kind(backend: Backend, tmp_path: Path) -> None:
    """A delta archive (issue 9) is stored, found and listed under its own name."""
    full, full_sha = archive(tmp_path, IDS[0], size=1000)
    src = tmp_path / "local"
    delta = src / f"{IDS[1]}.delta.tar.zst"
    delta.write_bytes(b"delta " * 200)
    delta_sha = hashlib.sha256(delta.read_bytes()).hexdigest()
    backend.dest.put(full, snapshot_id=IDS[0], sha256=full_sha)
    stored = backend.dest.put(delta, snapshot_id=IDS[1], sha256=delta_sha)
    assert (stored.name, stored.kind, stored.sha256) == (delta.name, "delta", delta_sha)
    assert backend.dest.find(IDS[1]) == stored
    assert [(r.snapshot_id, r.kind) for r in backend.dest.list()] == [(IDS[1], "delta"),
                                                                     (IDS[0], "full")]
    target = tmp_path / "delta-copy"
    backend.dest.get(stored, target)
    assert target.read_bytes() == delta.read_bytes()
