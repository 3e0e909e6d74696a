"""When the upload queue (watcher/backup/uploads.py) next has a copy due: what the service sets
its upload timer to. A real catalog; the destinations are only names here, nothing is sent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from watcher.backup.uploads import next_due
from watcher.destinations.folder import LocalFolderDestination
from watcher.state.catalog import Catalog

NOW = datetime(2026, 11, 27, 18, 15, tzinfo=UTC)
MIN = timedelta(minutes=1)


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return Catalog(tmp_path)


def named(*names: str) -> list[LocalFolderDestination]:
    return [LocalFolderDestination(Path("/nonexistent"), name=n) for n in names]


def test_nothing_queued_means_no_timer(catalog: Catalog) -> None:
    assert next_due(catalog, named("drive"), NOW) is None
    catalog.set_copy("s1", "drive", "uploaded", remote_id="r1")
    assert next_due(catalog, named("drive"), NOW) is None


def test_a_copy_that_never_failed_is_due_now(catalog: Catalog) -> None:
    catalog.set_copy("s1", "drive", "pending")
    assert next_due(catalog, named("drive"), NOW) == NOW


def test_the_earliest_retry_time_wins(catalog: Catalog) -> None:
    catalog.set_copy("s1", "drive", "pending", next_try_at=NOW + 20 * MIN)
    catalog.set_copy("s2", "drive", "failed", next_try_at=NOW + 5 * MIN)
    catalog.set_copy("s3", "drive", "pending", next_try_at=NOW + 360 * MIN)
    assert next_due(catalog, named("drive"), NOW) == NOW + 5 * MIN


def test_a_retry_time_that_has_passed_is_due_now_not_in_the_past(catalog: Catalog) -> None:
    catalog.set_copy("s1", "drive", "pending", next_try_at=NOW - 30 * MIN)
    catalog.set_copy("s2", "drive", "pending", next_try_at=NOW + 5 * MIN)
    assert next_due(catalog, named("drive"), NOW) == NOW


def test_copies_at_a_destination_no_longer_enabled_are_ignored(catalog: Catalog) -> None:
    # otherwise a copy nobody will ever send would look due forever: a timer firing in a loop
    catalog.set_copy("s1", "old-nas", "pending")
    catalog.set_copy("s1", "drive", "pending", next_try_at=NOW + 10 * MIN)
    assert next_due(catalog, named("drive"), NOW) == NOW + 10 * MIN
    assert next_due(catalog, [], NOW) is None
    assert next_due(catalog, named("drive", "old-nas"), NOW) == NOW
