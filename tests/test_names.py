"""File names that are not valid UTF-8 (an upload saved by a Windows client in Latin-1) are
archived, listed, verified and restored byte for byte, and never break a report."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from watcher.archive.read import scan, verify
from watcher.archive.restore import restore
from watcher.backup.report import Problem, RunReport
from watcher.backup.run import run_backup
from watcher.config.settings import Config
from watcher.notify.message import build_report_message

LATIN1_NAME = b"Mu\xf1oz credencial.jpg"


def uploads(root: Path) -> bytes:
    return os.fsencode(root / "static" / "uploads")


def test_a_latin1_name_is_archived_and_restored_byte_for_byte(cfg: Config, siip: Path,
                                                              tmp_path: Path) -> None:
    with open(os.path.join(uploads(siip), LATIN1_NAME), "wb") as fh:
        fh.write(b"foto de credencial")
    os.mkdir(os.path.join(uploads(siip), b"carpeta \xe9"))

    report = run_backup(cfg, trigger="manual", email=False)
    assert report.status == "ok", report.errors
    archive = Path(report.snapshot.file)

    assert verify(archive).ok
    manifest = scan(archive).manifest
    assert "files/static/uploads/" + os.fsdecode(LATIN1_NAME) in manifest.members
    # the manifest stays plain JSON that any tool reads
    json.loads(subprocess.run(["tar", "--zstd", "-xOf", str(archive), "manifest.json"],
                              capture_output=True, check=True).stdout)

    target = tmp_path / "restored"
    restore(archive, target)
    assert LATIN1_NAME in os.listdir(uploads(target))
    assert b"carpeta \xe9" in os.listdir(uploads(target))
    with open(os.path.join(uploads(target), LATIN1_NAME), "rb") as fh:
        assert fh.read() == b"foto de credencial"

    # and plain tar gives the same bytes back
    plain = tmp_path / "plain"
    plain.mkdir()
    subprocess.run(["tar", "--zstd", "-xf", str(archive), "-C", str(plain)], check=True)
    assert LATIN1_NAME in os.listdir(os.fsencode(plain / "files" / "static" / "uploads"))


def test_a_warning_naming_such_a_file_still_makes_an_email(cfg: Config) -> None:
    now = datetime.now(UTC)
    report = RunReport(name="siip", trigger="manual", started_at=now, finished_at=now,
                       status="warning")
    report.warnings.append(Problem(f"skipped {os.fsdecode(LATIN1_NAME)}: not a regular file",
                                   "exclude it in source.exclude"))

    message = build_report_message(cfg, report, "success")
    message.as_bytes()  # serialises: no UnicodeEncodeError
    assert "Mu\\xf1oz credencial.jpg" in message.get_body(("plain",)).get_content()
