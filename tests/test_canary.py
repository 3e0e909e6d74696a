"""Data-loss canaries as pure logic: what raises one, and how a hold starts and ends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from watcher.backup.canary import (
    Canary,
    Hold,
    Sample,
    SnapshotFacts,
    detect,
    next_hold,
)
from watcher.config.settings import CanaryConfig

POLICY = CanaryConfig()
NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


def facts(n_files: int = 100, pages: int = 1000, changed: int = 0, gone: int = 0,
          ) -> SnapshotFacts:
    files = {f"app/f{i}.py": ("new" if i < gone + changed else "old")
             for i in range(gone, n_files)}
    return SnapshotFacts(files=files, databases={"siip_database.db": pages})


def kinds(found: list[Canary]) -> list[str]:
    return [c.kind for c in found]


def test_a_normal_day_raises_nothing() -> None:
    assert detect(facts(), facts(changed=5), POLICY) == []
    assert detect(None, facts(), POLICY) == []


def test_an_empty_database_raises_even_on_the_first_snapshot() -> None:
    assert kinds(detect(None, facts(pages=0), POLICY)) == ["database_empty"]
    assert kinds(detect(None, facts(pages=1), POLICY)) == ["database_empty"]  # schema only
    assert detect(None, facts(pages=2), POLICY) == []
    found = detect(facts(), facts(pages=0), POLICY)
    assert kinds(found) == ["database_empty"] and "1,000 pages" in found[0].message


def test_a_database_that_lost_more_than_half_its_pages() -> None:
    assert kinds(detect(facts(pages=1000), facts(pages=499), POLICY)) == ["database_shrunk"]
    assert detect(facts(pages=1000), facts(pages=500), POLICY) == []


def test_many_files_gone_or_changed_at_once() -> None:
    assert kinds(detect(facts(), facts(changed=20, gone=11), POLICY)) == ["tree_changed"]
    assert detect(facts(), facts(changed=20, gone=10), POLICY) == []  # 30% is not more
    strict = CanaryConfig(changed_share=0.1)
    assert kinds(detect(facts(), facts(changed=11), strict)) == ["tree_changed"]


def test_a_tiny_tree_needs_more_than_a_share() -> None:
    # 5 of 6 files changed: a share of 83%, but too few files to mean anything
    assert detect(facts(n_files=6), facts(n_files=6, changed=5), POLICY) == []


def test_changed_files_that_turned_random() -> None:
    assert kinds(detect(facts(), facts(), POLICY, Sample(sampled=20, incompressible=11))) == \
        ["incompressible"]
    assert detect(facts(), facts(), POLICY, Sample(sampled=20, incompressible=10)) == []
    assert detect(facts(), facts(), POLICY, Sample(sampled=9, incompressible=9)) == []


def test_disabled_raises_nothing() -> None:
    assert detect(facts(), facts(pages=0, gone=90), CanaryConfig(enabled=False)) == []


def test_manifest_facts_keep_only_files_and_database_pages() -> None:
    data = {"members": [
        {"path": "files/app/views.py", "type": "file", "sha256": "a"},
        {"path": "files/app", "type": "dir"},
        {"path": "files/enlace.jpg", "type": "symlink", "target": "x"},
        {"path": "databases/siip_database.db", "type": "file", "sha256": "b"},
    ], "databases": [{"path": "siip_database.db", "pages": 66}]}
    got = SnapshotFacts.from_manifest(data)
    assert got.files == {"app/views.py": "a"}
    assert got.databases == {"siip_database.db": 66}


ALERT = [Canary("database_empty", "the database siip_database.db is empty", "check")]


def test_a_hold_starts_continues_and_ends_after_quiet_days() -> None:
    hold, event = next_hold(None, ALERT, "s1", NOW, POLICY)
    assert event == "raised" and hold is not None and hold.snapshot_id == "s1"
    later = NOW + timedelta(days=3)
    same, event = next_hold(hold, [], "s2", later, POLICY)
    assert event == "held" and same == hold
    again, event = next_hold(hold, ALERT, "s3", later, POLICY)
    assert event == "raised again" and again is not None
    assert again.raised_at == NOW and again.last_raised_at == later
    assert again.reasons == hold.reasons  # the same reason is not listed twice
    still, event = next_hold(again, [], "s4", later + timedelta(days=6, hours=23), POLICY)
    assert event == "held"
    gone, event = next_hold(again, [], "s5", later + timedelta(days=7), POLICY)
    assert event == "released" and gone is None


def test_only_ack_releases_when_release_after_days_is_zero() -> None:
    hold, _ = next_hold(None, ALERT, "s1", NOW, POLICY)
    kept, event = next_hold(hold, [], "s2", NOW + timedelta(days=400),
                            CanaryConfig(release_after_days=0))
    assert event == "held" and kept == hold


def test_a_hold_round_trips_through_its_record() -> None:
    hold = Hold(NOW, NOW + timedelta(hours=1), "siip-20261128T100000Z", ("a", "b"))
    assert Hold.from_dict(hold.to_dict()) == hold
