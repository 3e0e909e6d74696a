"""A Drive file's name is not ours to trust: anyone who can edit the folder can rename it.
`list`, `verify` and `restore --from drive` name what they write after the snapshot id, checked
against the archive name pattern, so a hostile name never chooses a path on this machine."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

import pytest

from scripts.fakedrive import DriveServer
from tests.fakes.drive import drive_section
from tests.helpers import write_config
from watcher.destinations.gdrive.destination import KEY_SNAPSHOT

Cli = Callable[..., CompletedProcess[str]]


def every_path(root: Path) -> set[Path]:
    return {root, *root.rglob("*")}


@pytest.fixture
def uploaded(siip: Path, tmp_path: Path, cli: Cli,
             drive_server: DriveServer) -> tuple[DriveServer, str, str]:
    """A snapshot uploaded by `once`; (server, drive config section, snapshot id)."""
    extra = drive_section(drive_server, tmp_path)
    config = write_config(tmp_path / "server.toml", siip, tmp_path / "backups", extra)
    run = cli("-c", str(config), "once", "--no-email", "--json")
    assert run.returncode == 0, run.stderr
    return drive_server, extra, json.loads(run.stdout)["snapshot"]["id"]


@pytest.mark.parametrize("hostile", ["{outside}/evil", "../../evil.tar.zst"])
def test_a_renamed_drive_file_never_chooses_where_restore_writes(
        uploaded: tuple[DriveServer, str, str], tmp_path: Path, cli: Cli,
        hostile: str) -> None:
    server, extra, sid = uploaded
    outside = tmp_path / "outside"
    outside.mkdir()
    [stored] = server.state.live_files(app_property=(KEY_SNAPSHOT, sid))
    stored.name = hostile.format(outside=outside)

    # a new machine: only the configuration and the sign-in; its backup dir (where the
    # download folder goes) is two levels under the work folder, so "../.." stays inside it
    machine = tmp_path / "machine"
    (machine / "siip").mkdir(parents=True)
    (machine / "backups").mkdir()
    config = write_config(machine / "c.toml", machine / "siip", machine / "backups", extra)
    target = tmp_path / "restored"
    before = every_path(tmp_path)

    verified = cli("-c", str(config), "verify", "latest", "--from", "drive")
    restored = cli("-c", str(config), "restore", sid, "--from", "drive", "--to", str(target))
    written = {p for p in every_path(tmp_path) - before if p != target and target not in p.parents}
    assert written == set(), written
    assert list(outside.iterdir()) == []
    # the archive is still good, and found by its snapshot id
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert (target / "siip_database.db").is_file()

    listed = cli("-c", str(config), "list", "--from", "drive", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [r["id"] for r in json.loads(listed.stdout)] == [sid]
    assert "was renamed to" in listed.stderr  # flagged


def test_a_drive_file_whose_snapshot_id_is_not_one_is_ignored(
        uploaded: tuple[DriveServer, str, str], tmp_path: Path, cli: Cli) -> None:
    server, extra, sid = uploaded
    [stored] = server.state.live_files(app_property=(KEY_SNAPSHOT, sid))
    stored.app_properties[KEY_SNAPSHOT] = "../../evil"
    machine = tmp_path / "machine"
    (machine / "siip").mkdir(parents=True)
    config = write_config(machine / "c.toml", machine / "siip", machine / "backups", extra)

    listed = cli("-c", str(config), "list", "--from", "drive", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []
    assert "is not a snapshot id" in listed.stderr

    before = every_path(tmp_path)
    restored = cli("-c", str(config), "restore", "latest", "--from", "drive", "--to",
                   str(tmp_path / "restored"))
    assert restored.returncode == 2 and "no snapshots at drive" in restored.stderr
    assert every_path(tmp_path) == before
