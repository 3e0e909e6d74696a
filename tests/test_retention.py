"""Retention as a pure function over generated dates."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

from watcher.backup.retention import delta_bases, select
from watcher.config.settings import RetentionConfig

START = datetime(2026, 1, 1, 3, 0, tzinfo=UTC)


def hourly(days: int) -> list[tuple[str, datetime]]:
    return [(f"s{i:05d}", START + timedelta(hours=i)) for i in range(days * 24)]


def test_keep_last_only() -> None:
    snaps = hourly(2)
    d = select(snaps, RetentionConfig(keep_last=3, keep_daily=0, keep_weekly=0, keep_monthly=0))
    assert sorted(d.keep) == [s for s, _ in snaps[-3:]]
    assert len(d.delete) == len(snaps) - 3
    assert d.delete[0] == snaps[0][0]  # oldest first


def test_daily_keeps_newest_of_each_of_the_last_n_days() -> None:
    snaps = hourly(10)
    d = select(snaps, RetentionConfig(keep_last=1, keep_daily=7, keep_weekly=0, keep_monthly=0))
    daily = [s for s, rules in d.keep.items() if "daily" in rules]
    assert len(daily) == 7
    by_id = dict(snaps)
    days = sorted({by_id[s].date() for s in daily})
    all_days = sorted({t.date() for _, t in snaps})
    assert days == all_days[-7:]
    for sid in daily:  # each is the last snapshot of its day
        when = by_id[sid]
        assert not any(t.date() == when.date() and t > when for _, t in snaps)


def test_weekly_and_monthly_buckets() -> None:
    snaps = [(f"d{i:04d}", START + timedelta(days=i)) for i in range(400)]
    d = select(snaps, RetentionConfig(keep_last=1, keep_daily=0, keep_weekly=4,
                                      keep_monthly=12))
    by_id = dict(snaps)
    weekly = [by_id[s] for s, r in d.keep.items() if "weekly" in r]
    monthly = [by_id[s] for s, r in d.keep.items() if "monthly" in r]
    assert len({t.isocalendar()[:2] for t in weekly}) == 4 == len(weekly)
    assert len({(t.year, t.month) for t in monthly}) == 12 == len(monthly)
    assert len(d.keep) + len(d.delete) == 400
    assert set(d.keep).isdisjoint(d.delete)


def test_newest_is_always_kept_and_random_sets_partition() -> None:
    rnd = random.Random(5)
    for _ in range(200):
        snaps = [(f"r{i}", START + timedelta(minutes=rnd.randint(0, 200_000)))
                 for i in range(rnd.randint(1, 60))]
        policy = RetentionConfig(keep_last=rnd.randint(1, 4), keep_daily=rnd.randint(0, 8),
                                 keep_weekly=rnd.randint(0, 5), keep_monthly=rnd.randint(0, 13))
        d = select(snaps, policy)
        newest = max(snaps, key=lambda s: (s[1], s[0]))[0]
        assert newest in d.keep
        assert set(d.keep) | set(d.delete) == {s for s, _ in snaps}
        assert set(d.keep).isdisjoint(d.delete)
        assert len(d.keep) <= (policy.keep_last + policy.keep_daily + policy.keep_weekly
                               + policy.keep_monthly)


def test_calendar_buckets_follow_the_given_timezone() -> None:
    tz = timezone(timedelta(hours=-6))  # 03:00 UTC is still the previous day here
    snaps = [("a", datetime(2026, 3, 2, 3, 0, tzinfo=UTC)),
             ("b", datetime(2026, 3, 2, 7, 0, tzinfo=UTC))]
    policy = RetentionConfig(keep_last=1, keep_daily=2, keep_weekly=0, keep_monthly=0)
    assert set(select(snaps, policy, UTC).keep) == {"b"}
    assert set(select(snaps, policy, tz).keep) == {"a", "b"}


def test_a_snapshot_dated_in_the_future_does_not_count_as_the_newest() -> None:
    now = START + timedelta(days=3)
    snaps = [("old", START), ("today", now),
             ("clock-was-wrong", datetime(2099, 12, 31, tzinfo=UTC))]
    d = select(snaps, RetentionConfig(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0),
               now=now)
    assert d.future == ["clock-was-wrong"]
    assert d.keep == {"today": ["last"], "clock-was-wrong": ["future"]}
    assert d.delete == ["old"]


def test_a_day_of_clock_drift_still_counts() -> None:
    now = START
    snaps = [("old", START - timedelta(days=1)), ("a-bit-ahead", START + timedelta(hours=20))]
    d = select(snaps, RetentionConfig(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0),
               now=now)
    assert d.future == [] and d.delete == ["old"]


def test_the_snapshot_just_taken_is_always_kept() -> None:
    snaps = [("newer-by-date", START + timedelta(hours=1)), ("just-taken", START)]
    d = select(snaps, RetentionConfig(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0),
               always_keep=["just-taken", "not-there"])
    assert d.keep == {"just-taken": ["just taken"], "newer-by-date": ["last"]}
    assert d.delete == []


def test_a_kept_delta_keeps_its_base_full() -> None:
    snaps = [("f1", START), ("f2", START + timedelta(days=1)),
             ("d3", START + timedelta(days=2))]
    policy = RetentionConfig(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0)
    assert set(select(snaps, policy).keep) == {"d3"}
    d = select(snaps, policy, bases={"d3": "f2"})
    assert d.keep == {"d3": ["last"], "f2": ["base of d3"]}
    assert d.delete == ["f1"]


def test_a_delta_on_its_way_keeps_its_base_and_a_deleted_delta_does_not() -> None:
    snaps = [("f1", START), ("d2", START + timedelta(days=1)),
             ("f3", START + timedelta(days=2))]
    policy = RetentionConfig(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0)
    bases = {"d2": "f1", "d9": "f1"}
    assert select(snaps, policy, bases=bases).delete == ["f1", "d2"]
    # d9 is queued for upload here and not here yet: f1 must stay for it
    assert set(select(snaps, policy, bases=bases, waiting=["d9"]).keep) == {"f3", "f1"}


def test_a_delta_the_catalog_never_saw_is_based_on_the_newest_full_before_it() -> None:
    listed = [("f1", START, "full"), ("d2", START + timedelta(hours=1), "delta"),
              ("f3", START + timedelta(hours=2), "full"),
              ("d4", START + timedelta(hours=3), "delta"),
              ("d5", START + timedelta(hours=4), "delta")]
    assert delta_bases(listed, {}) == {"d2": "f1", "d4": "f3", "d5": "f3"}
    # what the catalog knows wins; a delta with no full before it has no base to keep
    assert delta_bases(listed, {"d5": "f1"})["d5"] == "f1"
    assert delta_bases([("d0", START, "delta")], {}) == {}
