"""The one line per run in the journal and in `status` names each destination once: a queued
copy of an older snapshot that failed with the new one is counted, not repeated."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from watcher.backup.report import DestinationResult, RunReport, SnapshotInfo
from watcher.backup.run import summary_line

STARTED = datetime(2026, 11, 27, 18, 15, tzinfo=UTC)
NEW = "siip-20261127T181500Z"
OLD = "siip-20261126T181500Z"


def report(*destinations: DestinationResult) -> RunReport:
    snap = SnapshotInfo(id=NEW, file=f"/var/backups/{NEW}.tar.zst", created_at=STARTED,
                        size=1_000_000, sha256="0" * 64, files=10, bytes_in=2_000_000)
    r = RunReport(name="siip", trigger="manual", started_at=STARTED, snapshot=snap,
                  destinations=list(destinations))
    r.finish(STARTED + timedelta(seconds=3))
    return r


def test_a_destination_whose_two_copies_failed_is_named_once_with_the_count() -> None:
    line = summary_line(report(DestinationResult("drive", "failed", snapshot_id=OLD),
                               DestinationResult("drive", "failed", snapshot_id=NEW)))
    assert line.count("drive") == 1, line
    assert "drive failed (2 copies)" in line


def test_mixed_states_of_one_destination_are_counted_per_state() -> None:
    line = summary_line(report(DestinationResult("drive", "uploaded", snapshot_id=OLD),
                               DestinationResult("drive", "failed", snapshot_id=NEW),
                               DestinationResult("nas", "uploaded", snapshot_id=NEW)))
    assert line.count("drive") == 1, line
    assert "drive 1 uploaded and 1 failed, nas uploaded" in line


def test_one_copy_per_destination_reads_as_before() -> None:
    line = summary_line(report(DestinationResult("drive", "uploaded", snapshot_id=NEW)))
    assert line.endswith(", drive uploaded"), line
