"""Encrypted off-site copies (docs/encryption.md), through the real command line against the
Drive server and a [folder] on 127.0.0.1 and real disks: nothing readable leaves the machine,
Debian's `age` opens our copies and we open its files, a new machine restores with the
identity and refuses without it, and a resumed upload sends the very ciphertext it started.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from subprocess import CompletedProcess

import pyrage
import pytest
from pyrage import x25519

from scripts.fakedrive import DriveServer
from tests.fakes.drive import CHUNK, drive_config, drive_section, drive_settings, make_archive
from tests.fakes.drive import make_drive as drive_destination
from tests.fakes.smtp import TEST_PASSWORD, TEST_USER, SmtpTestServer, TlsFiles
from tests.helpers import assert_restored, make_config, toml_table, write_config
from watcher.archive.files import snapshot_time
from watcher.backup.report import SnapshotInfo
from watcher.backup.sealing import discard, sealed_archive, sealed_path
from watcher.backup.uploads import send_copies
from watcher.cli import main
from watcher.destinations.base import DestinationError
from watcher.destinations.folder import LocalFolderDestination
from watcher.encryption.keys import write_new_identity
from watcher.encryption.stream import AGE_HEADER, _Written
from watcher.state.catalog import Catalog
from watcher.state.store import LocalStore

Cli = Callable[..., CompletedProcess[str]]

MARKER_FILE = b"MARCADOR-ARCHIVO-7f3a9c"
MARKER_DB = "MARCADOR-BASE-5e1d2b"
needs_age = pytest.mark.skipif(shutil.which("age") is None,
                               reason="Debian's age package (scripts/test installs it)")


@dataclass(frozen=True)
class Key:
    file: Path
    public: str

    def secret(self) -> str:
        return next(line for line in self.file.read_text().splitlines()
                    if line.startswith("AGE-SECRET-KEY-1"))


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Key]:
    """The office's key, the owner's second key, and a stranger's."""
    folder = tmp_path_factory.mktemp("keys")
    return {name: Key(folder / f"{name}.txt", write_new_identity(folder / f"{name}.txt"))
            for name in ("office", "owner", "stranger")}


def snapshot_in(catalog: Catalog, local: Path, sid: str, size: int) -> tuple[Path, str]:
    """An archive-like file of ``size`` bytes in ``local``, known to ``catalog`` as ``sid``:
    (its path, its sha256)."""
    archive, sha = make_archive(local, sid, size)
    created = snapshot_time(sid)
    assert created is not None
    catalog.add_snapshot(SnapshotInfo(id=sid, file=str(archive), created_at=created, size=size,
                                      sha256=sha, files=1, bytes_in=size),
                         trigger="manual", duration=1.0)
    return archive, sha


def one_line_refusal(proc: CompletedProcess[str], code: int, *needles: str) -> None:
    assert proc.returncode == code, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def add_markers(siip: Path) -> None:
    """A marker in a database row and in a file, each inside random bytes, so the plain
    archive holds them byte for byte (nothing to compress): the test below can fail."""
    rnd = random.Random(7)
    (siip / "SIIP CON FOTO" / "ficha.bin").write_bytes(
        rnd.randbytes(100_000) + MARKER_FILE + rnd.randbytes(100_000))
    db = sqlite3.connect(siip / "siip_database.db")
    with db:
        db.execute("INSERT INTO personas (nombre, datos) VALUES (?, ?)",
                   (MARKER_DB, rnd.randbytes(3000)))
    db.close()


@needs_age
def test_nothing_readable_leaves_and_a_new_machine_needs_the_identity(
        siip: Path, tmp_path: Path, cli: Cli, drive_server: DriveServer,
        keys: dict[str, Key]) -> None:
    add_markers(siip)
    nas = tmp_path / "nas"
    nas.mkdir()
    drive_toml = drive_section(drive_server, tmp_path)
    places = drive_toml + toml_table("folder", {"enabled": True, "path": str(nas)})
    config = write_config(tmp_path / "server.toml", siip, tmp_path / "backups", places +
                          toml_table("encryption", {"recipients": [keys["office"].public],
                                                    "recipients_file": "owner.pub"}))
    (tmp_path / "owner.pub").write_text(f"# the owner's key\n{keys['owner'].public}\n")
    drive_server.state.received = []

    run = cli("-c", str(config), "once", "--no-email")
    assert run.returncode == 0, run.stdout + run.stderr
    [archive] = (tmp_path / "backups").glob("*.tar.zst")
    plain = archive.read_bytes()
    assert MARKER_FILE in plain and MARKER_DB.encode() in plain   # the test can fail
    # the local archive stays plain; its encrypted file went once both copies were made
    assert list((tmp_path / "backups").glob("*.age*")) == []

    sent = b"".join(drive_server.state.received)
    assert len(sent) > len(plain)
    [stored] = drive_server.state.live_files()
    assert stored.name == archive.name + ".age" and stored.content is not None
    [copy] = nas.glob("*.tar.zst.age")
    for leaving in (sent, stored.content, copy.read_bytes()):
        assert MARKER_FILE not in leaving and MARKER_DB.encode() not in leaving
    assert stored.content.startswith(AGE_HEADER) and copy.read_bytes() == stored.content

    # Debian's age opens the copy with either key, and `tar --zstd` the result
    on_drive = tmp_path / "from-drive.tar.zst.age"
    on_drive.write_bytes(stored.content)
    for name in ("office", "owner"):
        opened = subprocess.run(["age", "-d", "-i", str(keys[name].file), str(on_drive)],
                                capture_output=True, check=True)
        assert opened.stdout == plain

    # a new machine: the configuration and the Drive sign-in, no key
    fresh = tmp_path / "new-machine"
    (fresh / "siip").mkdir(parents=True)
    config_b = write_config(tmp_path / "new.toml", fresh / "siip", fresh / "backups", places)
    outputs: list[CompletedProcess[str]] = []
    target = tmp_path / "restored"

    listed = cli("-c", str(config_b), "list", "--from", "drive", "--identity",
                 str(keys["stranger"].file))
    outputs.append(listed)
    assert listed.returncode == 0 and "NOT for your identity" in listed.stdout, listed.stderr

    refused = cli("-c", str(config_b), "restore", "latest", "--from", "drive", "--to",
                  str(target))
    outputs.append(refused)
    one_line_refusal(refused, 2, "identity is needed", keys["office"].public,
                     keys["owner"].public)
    wrong = cli("-c", str(config_b), "restore", "latest", "--from", "drive", "--to",
                str(target), "--identity", str(keys["stranger"].file))
    outputs.append(wrong)
    one_line_refusal(wrong, 2, "does not open it", keys["stranger"].public)
    assert not target.exists()

    restored = cli("-c", str(config_b), "restore", "latest", "--from", "drive", "--to",
                   str(target), env={"SIIP_WATCHER_IDENTITY_FILE": str(keys["owner"].file)})
    outputs.append(restored)
    assert restored.returncode == 0, restored.stderr
    assert_restored(target, siip)
    assert (target / "SIIP CON FOTO" / "ficha.bin").read_bytes().count(MARKER_FILE) == 1
    verified = cli("-c", str(config_b), "verify", "latest", "--from", "folder", "--identity",
                   str(keys["office"].file))
    outputs.append(verified)
    assert verified.returncode == 0, verified.stdout + verified.stderr

    outputs += age_cli_files_restore(cli, config_b, nas, archive, siip, keys["office"],
                                     tmp_path)
    for proc in outputs:   # the identity is never printed
        for key in keys.values():
            assert key.secret() not in proc.stdout + proc.stderr


def age_cli_files_restore(cli: Cli, config: Path, nas: Path, archive: Path, siip: Path,
                          key: Key, tmp_path: Path) -> list[CompletedProcess[str]]:
    """A file age's own command line encrypted for ``key`` restores from the [folder]; once
    damaged, it is refused in one line. Returns the outputs, to look for the identity."""
    theirs = nas / "siip-20200101T000000Z.tar.zst.age"
    subprocess.run(["age", "-r", key.public, "-o", str(theirs), str(archive)], check=True)
    from_cli = tmp_path / "from-cli"
    done = cli("-c", str(config), "restore", "siip-20200101T000000Z", "--from", "folder",
               "--to", str(from_cli), "--identity", str(key.file))
    assert done.returncode == 0, done.stderr
    assert_restored(from_cli, siip)

    # a damaged copy is one line too (exit 1), and nothing is left in the target
    theirs.write_bytes(theirs.read_bytes()[:-1000])
    damaged = cli("-c", str(config), "restore", "siip-20200101T000000Z", "--from", "folder",
                  "--to", str(tmp_path / "never"), "--identity", str(key.file))
    one_line_refusal(damaged, 1, "damaged")
    assert not (tmp_path / "never").exists()
    return [done, damaged]


def test_key_generate_writes_what_age_keygen_writes(tmp_path: Path, cli: Cli) -> None:
    out = tmp_path / "office-key.txt"
    made = cli("key", "generate", "-o", str(out))
    assert made.returncode == 0, made.stderr
    public = made.stdout.strip()
    assert public.startswith("age1") and len(made.stdout.splitlines()) == 1
    lines = out.read_text().splitlines()
    assert lines[0].startswith("# created: ") and lines[1] == f"# public key: {public}"
    assert lines[2].startswith("AGE-SECRET-KEY-1") and len(lines) == 3
    assert lines[2] not in made.stdout + made.stderr
    if os.name == "posix":
        assert stat.S_IMODE(out.stat().st_mode) == 0o600
    if shutil.which("age-keygen"):
        derived = subprocess.run(["age-keygen", "-y", str(out)], capture_output=True,
                                 text=True, check=True)
        assert derived.stdout.strip() == public

    before = out.read_bytes()
    again = cli("key", "generate", "-o", str(out))
    one_line_refusal(again, 2, "exists")
    assert out.read_bytes() == before


def test_config_check_warns_without_recipients_and_refuses_bad_keys(
        siip: Path, tmp_path: Path, keys: dict[str, Key],
        capsys: pytest.CaptureFixture[str]) -> None:
    nas = tmp_path / "nas"
    nas.mkdir()
    folder = toml_table("folder", {"enabled": True, "path": str(nas)})

    def check(extra: str) -> tuple[int, str]:
        config = write_config(tmp_path / "c.toml", siip, tmp_path / "backups", folder + extra)
        code = main(["-c", str(config), "config", "check"])
        return code, capsys.readouterr().err

    code, err = check("")
    assert code == 0 and "folder: copies are stored unencrypted" in err
    code, err = check(toml_table("encryption", {"recipients": [keys["office"].public]}))
    assert code == 0 and "unencrypted" not in err

    code, err = check(toml_table("encryption", {"recipients": ["age1notakey"]}))
    assert code == 2 and "encryption.recipients[0]" in err and len(err.splitlines()) == 1
    secret = keys["office"].secret()
    for pasted in ({"recipients": [secret]}, {"identity": secret}):
        code, err = check(toml_table("encryption", pasted))
        assert code == 2 and secret not in err and "private key" in err, err
    code, err = check(toml_table("encryption", {"recipients_file": "missing.pub"}))
    assert code == 2 and "missing.pub" in err


def test_a_resumed_upload_sends_the_ciphertext_it_started_with(
        tmp_path: Path, drive_server: DriveServer, keys: dict[str, Key]) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    local = tmp_path / "backups"
    local.mkdir()
    cfg = make_config(tmp_path, local, check_paths=False,
                      drive=drive_settings(drive_config(drive_server, creds)),
                      encryption={"recipients": [keys["office"].public]})
    sid = "siip-20260101T000000Z"
    archive, _ = snapshot_in(Catalog(local), local, sid, 3 * CHUNK + 77)

    def send() -> str:
        # a new catalog and destination each time, as after a restart
        [result] = send_copies(cfg, Catalog(local), [drive_destination(cfg.drive)], [sid])
        return result.state

    # every chunk after the first two is dropped: the attempt gives up, the session is saved
    drive_server.state.inject("chunk", "drop", skip=2, times=None)
    assert send() == "pending"
    encrypted = sealed_path(archive)
    first = encrypted.read_bytes()
    assert first.startswith(AGE_HEADER) and len(first) > 3 * CHUNK

    drive_server.state.stop_faults()
    assert send() == "uploaded"
    [stored] = drive_server.state.live_files()
    assert stored.content == first
    assert [r.op for r in drive_server.state.records].count("initiate") == 1
    assert drive_server.state.chunk_bytes == len(first)    # resumed, nothing sent twice
    assert not encrypted.exists()


def test_no_copy_leaves_when_the_public_keys_cannot_be_read(
        tmp_path: Path, keys: dict[str, Key]) -> None:
    local, nas = tmp_path / "backups", tmp_path / "nas"
    local.mkdir()
    nas.mkdir()
    pub = tmp_path / "office.pub"
    pub.write_text(keys["office"].public + "\n")
    cfg = make_config(tmp_path, local, check_paths=False,
                      encryption={"recipients_file": str(pub)})
    sid = "siip-20260101T000000Z"
    catalog = Catalog(local)
    snapshot_in(catalog, local, sid, 5000)
    pub.unlink()          # gone since the configuration was loaded
    [result] = send_copies(cfg, catalog, [LocalFolderDestination(nas, name="usb")], [sid])
    assert result.state == "failed" and "would leave unencrypted" in (result.error or "")
    assert list(nas.iterdir()) == []


def test_an_encrypted_file_goes_once_no_enabled_destination_waits_for_it(
        tmp_path: Path, keys: dict[str, Key]) -> None:
    local, nas = tmp_path / "backups", tmp_path / "nas"
    local.mkdir()
    nas.mkdir()
    cfg = make_config(tmp_path, local, check_paths=False,
                      encryption={"recipients": [keys["office"].public]})
    catalog = Catalog(local)
    sid = "siip-20260101T000000Z"
    archive, sha = snapshot_in(catalog, local, sid, 5000)
    usb = LocalFolderDestination(nas, name="usb")
    [result] = send_copies(cfg, catalog, [usb], [sid])
    assert result.state == "uploaded" and not sealed_path(archive).exists()

    # one left by a crash right after its copy, and a copy queued at a destination that is
    # no longer enabled: the next pass, with nothing to send, removes it all the same
    sealed_archive(archive, sha, [keys["office"].public])
    catalog.set_copy(sid, "old-nas", "pending")
    assert send_copies(cfg, catalog, [usb]) == []
    assert not sealed_path(archive).exists() and archive.exists()


def test_leftovers_of_encryption_go_and_an_encrypted_archive_stays(
        tmp_path: Path, keys: dict[str, Key]) -> None:
    local = tmp_path / "backups"
    local.mkdir()
    store = LocalStore(make_config(tmp_path, local, check_paths=False))
    names = ["siip-20260101T000000Z", "siip-20260102T000000Z", "siip-20260103T000000Z"]
    for sid in names[:2]:
        archive, sha = make_archive(local, sid, 1000)
        (local / f"{sid}.tar.zst.sha256").write_text(f"{sha}  {sid}.tar.zst\n")
        sealed_archive(archive, sha, [keys["office"].public])
    (local / f"{names[0]}.tar.zst").unlink()         # encrypted in place (local = true)
    (local / f"{names[0]}.tar.zst.sha256").unlink()
    for suffix in (".age.sha256", ".age.recipients", ".age.partial"):   # a crash's leftovers
        (local / f"{names[2]}.tar.zst{suffix}").write_bytes(b"x")
    store.remove_leftovers()
    assert not list(local.glob(f"{names[2]}*"))
    assert [(a.id, a.sealed) for a in store.archives()] == [(names[1], False), (names[0], True)]
    assert len(list(local.iterdir())) == 3 + 5
    for sid in names[:2]:
        store.delete(sid)
    assert list(local.iterdir()) == []


def test_a_delta_is_encrypted_under_its_own_name(tmp_path: Path, keys: dict[str, Key]) -> None:
    local, nas = tmp_path / "backups", tmp_path / "nas"
    local.mkdir()
    sid = "siip-20260101T000000Z"
    full, sha = make_archive(local, sid, 5000)
    delta = full.rename(local / f"{sid}.delta.tar.zst")
    made = sealed_archive(delta, sha, [keys["office"].public])
    assert made.path.name == f"{sid}.delta.tar.zst.age"
    remote = LocalFolderDestination(nas).put(made.path, snapshot_id=sid, sha256=sha,
                                             sealed=made.sealed)
    assert (remote.name, remote.kind, remote.sha256) == (made.path.name, "delta", sha)
    assert LocalFolderDestination(nas).list() == [remote] and remote.sealed == made.sealed


def test_local_archives_encrypted_in_place_restore_only_with_the_identity(
        siip: Path, tmp_path: Path, cli: Cli, keys: dict[str, Key], tls: TlsFiles) -> None:
    local, nas = tmp_path / "backups", tmp_path / "nas"
    nas.mkdir()
    folder = toml_table("folder", {"enabled": True, "path": str(nas)})

    def config(encrypt_locally: bool, extra: str = "") -> Path:
        return write_config(tmp_path / "c.toml", siip, local, folder + extra + toml_table(
            "encryption", {"recipients": [keys["office"].public], "local": encrypt_locally}))

    with SmtpTestServer(tls, "starttls") as smtp:
        mail = toml_table("email", {
            "enabled": True, "smtp_host": "127.0.0.1", "smtp_port": smtp.port,
            "username": TEST_USER, "password_env": "SIIP_TEST_SMTP_PASSWORD",
            "sender": "watcher@example.test", "to": ["admin@example.test"],
            "ca_file": str(tls.ca_cert), "language": "en"})
        first = cli("-c", str(config(True, mail)), "once", "--json",
                    env={"SIIP_TEST_SMTP_PASSWORD": TEST_PASSWORD})
        [sent] = smtp.received
    assert first.returncode == 0, first.stderr
    assert list(local.glob("*.tar.zst")) == [] and not list(local.glob("*.tar.zst.sha256"))
    [kept] = local.glob("*.tar.zst.age")
    # encrypted once: the copy on the share is the very file kept here
    assert (nas / kept.name).read_bytes() == kept.read_bytes()
    assert kept.read_bytes().startswith(AGE_HEADER)
    # the report names the file the run left, not the plain archive it replaced
    assert json.loads(first.stdout)["snapshot"]["file"] == str(kept)
    body = sent.message.get_body(("plain",)).get_content()
    assert f"Archive: {kept.name}" in body.splitlines()
    db = sqlite3.connect(local / "catalog.sqlite3")
    [(summary, recorded)] = db.execute("SELECT summary, report FROM runs").fetchall()
    db.close()
    assert f"{kept.name}," in summary and json.loads(recorded)["snapshot"]["file"] == str(kept)

    target = tmp_path / "restored"
    refused = cli("-c", str(config(True)), "restore", "latest", "--to", str(target))
    one_line_refusal(refused, 2, "identity is needed", keys["office"].public)
    done = cli("-c", str(config(True)), "restore", "latest", "--to", str(target),
               "--identity", str(keys["office"].file))
    assert done.returncode == 0, done.stderr
    assert_restored(target, siip)
    assert kept.exists()      # reading it left it as it was

    # switched off again: new archives are plain, the encrypted ones stay archives (a run
    # never takes them for leftovers), and a lost catalog is rebuilt with them
    plain = cli("-c", str(config(False)), "once", "--no-email", "--no-upload")
    assert plain.returncode == 0, plain.stderr
    (local / "catalog.sqlite3").unlink()
    listed = cli("-c", str(config(False)), "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(r["encrypted"], r["file"]) for r in rows][1] == (True, str(kept))
    assert len(rows) == 2 and not rows[0]["encrypted"] and kept.exists()
    assert len(list(local.glob("*.tar.zst"))) == 1
    verified = cli("-c", str(config(False)), "verify", "--all", "--identity",
                   str(keys["office"].file))
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_the_hashes_taken_beside_the_encryption_are_of_the_whole_files(
        tmp_path: Path, keys: dict[str, Key], monkeypatch: pytest.MonkeyPatch) -> None:
    # small windows, so a small file crosses many of them and ends inside one
    monkeypatch.setattr(_Written, "STEP", 64 * 1024)
    local = tmp_path / "backups"
    local.mkdir()
    archive, sha = make_archive(local, "siip-20260101T000000Z", 40 * 64 * 1024 + 4321)
    made = sealed_archive(archive, sha, [keys["office"].public])
    ciphertext = made.path.read_bytes()
    assert made.sealed.sha256 == hashlib.sha256(ciphertext).hexdigest()
    identity = x25519.Identity.from_str(keys["office"].secret())
    assert pyrage.decrypt(ciphertext, [identity]) == archive.read_bytes()
    assert sorted(p.name for p in local.iterdir()) == sorted(
        [archive.name, made.path.name, made.path.name + ".sha256",
         made.path.name + ".recipients"])

    # an archive that no longer matches its sha256 is refused, and nothing is left
    discard(archive)
    with pytest.raises(DestinationError, match="does not match its sha256") as refused:
        sealed_archive(archive, "0" * 64, [keys["office"].public])
    assert not refused.value.retryable
    assert [p.name for p in local.iterdir()] == [archive.name]


def test_a_disk_that_fills_mid_encryption_stops_the_hashing_and_leaves_nothing(
        tmp_path: Path, keys: dict[str, Key]) -> None:
    local = tmp_path / "backups"
    local.mkdir()
    archive, sha = make_archive(local, "siip-20260101T000000Z", 24 << 20)
    # a real write error half-way: files may not grow past 10 MiB in the child
    code = f"""
import resource, signal, sys
from pathlib import Path
from watcher.backup.sealing import sealed_archive
from watcher.destinations.base import DestinationError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (10 << 20, 10 << 20))
try:
    sealed_archive(Path({str(archive)!r}), {sha!r}, [{keys["office"].public!r}])
except DestinationError as exc:
    print(exc.retryable, exc)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.startswith("True cannot encrypt siip-20260101T000000Z.tar.zst"), out
    assert [p.name for p in local.iterdir()] == [archive.name]
