"""The service's scheduling rules, driven by an injected clock (no sleeping, no files)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from watcher.config.settings import ScheduleConfig
from watcher.service.decide import (
    TRIGGER_CHANGE,
    TRIGGER_INTERVAL,
    TRIGGER_START,
    ChangeTracker,
    Policy,
)

T0 = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
S = timedelta(seconds=1)


def policy(**kw: object) -> Policy:
    base: dict[str, object] = dict(interval=24 * HOUR, only_if_changed=True,
                                   debounce=300 * S, max_delay=3600 * S, heavy_change_events=200)
    base.update(kw)
    return Policy(**base)  # type: ignore[arg-type]


def tracker(last_success: datetime | None = T0, *, checked: bool = True, changed: bool = False,
            **kw: object) -> ChangeTracker:
    t = ChangeTracker(policy(**kw), last_success=last_success)
    if checked:
        t.start_check_done(changed, T0)
    return t


def test_policy_from_schedule_config() -> None:
    p = Policy.from_schedule(ScheduleConfig(interval_hours=0.5, debounce_seconds=2.5,
                                            max_delay_seconds=10, heavy_change_events=7,
                                            only_if_changed=False))
    assert p.interval == timedelta(minutes=30)
    assert p.debounce == timedelta(seconds=2.5)
    assert p.max_delay == timedelta(seconds=10)
    assert p.heavy_change_events == 7
    assert p.only_if_changed is False


# --- start ----------------------------------------------------------------------------------


def test_no_snapshot_runs_at_start_without_waiting_for_a_check() -> None:
    t = ChangeTracker(policy(), last_success=None)
    d = t.decide(T0)
    assert d.trigger == TRIGGER_START
    assert "no snapshot" in d.reason


def test_start_waits_for_the_tree_comparison() -> None:
    t = ChangeTracker(policy(), last_success=T0 - 48 * HOUR)
    d = t.decide(T0)
    assert not d.due and d.next_check is None
    t.start_check_done(True, T0)
    assert t.decide(T0).trigger == TRIGGER_START


def test_old_snapshot_and_changes_while_stopped_run_at_start() -> None:
    t = tracker(T0 - 25 * HOUR, changed=True)
    d = t.decide(T0)
    assert d.trigger == TRIGGER_START
    assert t.dirty_since == T0


def test_old_snapshot_without_changes_does_not_run_at_start() -> None:
    t = tracker(T0 - 25 * HOUR, changed=False)
    d = t.decide(T0)
    assert not d.due
    assert d.skipped_since == T0 - 25 * HOUR
    assert d.next_check == T0 - 25 * HOUR + 48 * HOUR


def test_old_snapshot_runs_at_start_when_only_if_changed_is_false() -> None:
    t = tracker(T0 - 25 * HOUR, changed=False, only_if_changed=False)
    assert t.decide(T0).trigger == TRIGGER_START


def test_recent_snapshot_with_changes_while_stopped_waits_for_the_interval() -> None:
    t = tracker(T0 - 2 * HOUR, changed=True)
    d = t.decide(T0)
    assert not d.due
    assert d.next_check == T0 + 22 * HOUR
    assert t.decide(T0 + 22 * HOUR).trigger == TRIGGER_START


def test_changes_while_stopped_do_not_count_as_heavy() -> None:
    t = tracker(T0 - HOUR, changed=True, heavy_change_events=1)
    assert t.pending_changes == 0
    assert not t.decide(T0 + 4000 * S).due


# --- interval -------------------------------------------------------------------------------


def test_interval_runs_when_something_changed() -> None:
    t = tracker()
    t.record_changes(1, T0 + HOUR)
    assert not t.decide(T0 + 23 * HOUR).due
    d = t.decide(T0 + 24 * HOUR)
    assert d.trigger == TRIGGER_START  # first run since the service started
    t.run_started(T0 + 24 * HOUR, d.trigger)
    t.run_finished(T0 + 24 * HOUR + 10 * S, ok=True, snapshot_at=T0 + 24 * HOUR)
    t.record_changes(1, T0 + 30 * HOUR)
    assert t.decide(T0 + 48 * HOUR).trigger == TRIGGER_INTERVAL


def test_idle_interval_is_skipped_and_reported_once_per_interval() -> None:
    t = tracker()
    d1 = t.decide(T0 + 24 * HOUR)
    assert not d1.due and d1.skipped_since == T0
    assert "no changes since" in d1.reason
    d2 = t.decide(T0 + 30 * HOUR)
    assert not d2.due and d2.skipped_since is None
    assert d2.next_check == T0 + 48 * HOUR
    d3 = t.decide(T0 + 48 * HOUR)
    assert d3.skipped_since == T0
    assert d3.next_check == T0 + 72 * HOUR


def test_change_after_an_idle_interval_runs_at_once() -> None:
    t = tracker()
    t.decide(T0 + 24 * HOUR)
    t.record_changes(1, T0 + 30 * HOUR)
    assert t.decide(T0 + 30 * HOUR).due


def test_only_if_changed_false_runs_every_interval() -> None:
    t = tracker(only_if_changed=False)
    assert t.decide(T0 + 24 * HOUR).due


def test_fractional_interval_of_seconds() -> None:
    t = tracker(interval=timedelta(hours=2 / 3600))
    t.record_changes(1, T0)
    assert not t.decide(T0 + S).due
    assert t.decide(T0 + 2 * S).due


def test_interval_counts_from_the_last_successful_snapshot_not_the_start() -> None:
    # restarting the service 20 h after a snapshot must not push the next one to 44 h
    t = tracker(T0 - 20 * HOUR)
    t.record_changes(1, T0)
    d = t.decide(T0)
    assert d.next_check == T0 + 4 * HOUR


# --- change (debounce / max delay) ----------------------------------------------------------


def test_light_changes_wait_for_the_interval() -> None:
    t = tracker()
    for i in range(199):
        t.record_changes(1, T0 + i * S)
    d = t.decide(T0 + 2 * HOUR)
    assert not d.due
    assert d.next_check == T0 + 24 * HOUR


def test_heavy_change_runs_after_debounce_quiet() -> None:
    t = tracker()
    for i in range(300):
        t.record_changes(1, T0 + i * 0.01 * S)
    last = T0 + 2.99 * S
    d = t.decide(last)
    assert not d.due
    assert d.next_check == last + 300 * S
    assert not t.decide(last + 299 * S).due
    d = t.decide(last + 300 * S)
    assert d.trigger == TRIGGER_CHANGE
    assert "300 changes" in d.reason


def test_each_change_pushes_the_debounce() -> None:
    t = tracker()
    t.record_changes(200, T0)
    t.record_changes(1, T0 + 200 * S)
    assert not t.decide(T0 + 300 * S).due
    assert t.decide(T0 + 500 * S).due


def test_trickle_that_never_quiets_runs_by_max_delay() -> None:
    t = tracker()
    now = T0
    due_at = None
    for i in range(10_000):
        now = T0 + i * 60 * S  # one change a minute, never 300 s quiet
        t.record_changes(50, now)
        d = t.decide(now)
        if d.due:
            due_at = now
            assert d.trigger == TRIGGER_CHANGE
            assert "still coming" in d.reason
            break
    assert due_at == T0 + 3600 * S


def test_next_check_is_the_earlier_of_quiet_and_max_delay() -> None:
    t = tracker()
    t.record_changes(250, T0)
    t.record_changes(1, T0 + 3500 * S)
    assert t.decide(T0 + 3500 * S).next_check == T0 + 3600 * S


def test_record_changes_asks_for_a_decision_only_when_it_can_matter() -> None:
    t = tracker(heavy_change_events=3)
    assert t.record_changes(1, T0) is True      # the tree became dirty
    assert t.record_changes(1, T0) is False
    assert t.record_changes(1, T0) is True      # the heavy threshold was reached
    assert t.record_changes(1, T0) is False
    assert t.record_changes(0, T0) is False


# --- runs -----------------------------------------------------------------------------------


def run(t: ChangeTracker, at: datetime, *, ok: bool = True, took: timedelta = 10 * S) -> None:
    d = t.decide(at)
    assert d.due, d.reason
    assert d.trigger is not None
    t.run_started(at, d.trigger)
    t.run_finished(at + took, ok=ok, snapshot_at=at if ok else None)


def test_nothing_is_due_while_a_run_is_in_progress() -> None:
    t = tracker(heavy_change_events=1, debounce=0 * S)
    t.record_changes(5, T0)
    t.run_started(T0, TRIGGER_CHANGE)
    t.record_changes(5, T0 + S)
    d = t.decide(T0 + HOUR)
    assert not d.due and d.next_check is None
    assert t.running and t.running_trigger == TRIGGER_CHANGE


def test_successful_run_clears_the_changes_it_took() -> None:
    t = tracker(heavy_change_events=10, debounce=5 * S)
    t.record_changes(10, T0)
    run(t, T0 + 5 * S)
    assert not t.dirty and t.pending_changes == 0
    assert t.last_success == T0 + 5 * S
    assert not t.decide(T0 + HOUR).due


def test_changes_during_a_run_stay_pending_for_the_next() -> None:
    t = tracker(heavy_change_events=10, debounce=5 * S)
    t.record_changes(10, T0)
    t.run_started(T0 + 5 * S, TRIGGER_CHANGE)
    t.record_changes(3, T0 + 6 * S)
    assert t.pending_changes == 13 and t.dirty_since == T0
    t.run_finished(T0 + 20 * S, ok=True, snapshot_at=T0 + 5 * S)
    assert t.pending_changes == 3 and t.dirty_since == T0 + 6 * S
    # light now: the interval (from the new snapshot) will take them
    d = t.decide(T0 + 30 * S)
    assert not d.due and d.next_check == T0 + 5 * S + 24 * HOUR


def test_changes_during_a_run_can_make_the_next_heavy() -> None:
    t = tracker(heavy_change_events=10, debounce=5 * S)
    t.record_changes(10, T0)
    t.run_started(T0 + 5 * S, TRIGGER_CHANGE)
    t.record_changes(10, T0 + 6 * S)
    t.run_finished(T0 + 20 * S, ok=True, snapshot_at=T0 + 5 * S)
    assert t.decide(T0 + 20 * S).trigger == TRIGGER_CHANGE


def test_failed_run_keeps_changes_and_backs_off() -> None:
    t = tracker(heavy_change_events=10, debounce=60 * S, max_delay=600 * S)
    t.record_changes(10, T0)
    run(t, T0 + 60 * S, ok=False, took=0 * S)
    assert t.dirty and t.pending_changes == 10 and t.consecutive_failures == 1
    d = t.decide(T0 + 61 * S)
    assert not d.due and "failed" in d.reason
    assert d.next_check == T0 + 120 * S
    run(t, T0 + 120 * S, ok=False, took=0 * S)
    assert t.decide(T0 + 200 * S).next_check == T0 + 240 * S   # doubled
    run(t, T0 + 240 * S, ok=False, took=0 * S)
    run(t, T0 + 480 * S, ok=False, took=0 * S)
    assert t.decide(T0 + 500 * S).next_check == T0 + 960 * S
    run(t, T0 + 960 * S, ok=False, took=0 * S)
    assert t.decide(T0 + 1000 * S).next_check == T0 + 1560 * S  # capped at max_delay
    run(t, T0 + 1560 * S)
    assert t.consecutive_failures == 0 and not t.dirty


def test_backoff_is_at_least_a_second_with_zero_debounce() -> None:
    p = policy(debounce=0 * S, max_delay=0 * S)
    assert p.backoff(1) == S
    assert p.backoff(50) == S
    assert p.backoff(0) == timedelta(0)


def test_failed_first_run_without_snapshot_retries_as_interval() -> None:
    t = ChangeTracker(policy(debounce=10 * S), last_success=None)
    run(t, T0, ok=False, took=0 * S)
    assert not t.decide(T0 + 5 * S).due
    assert t.decide(T0 + 10 * S).trigger == TRIGGER_INTERVAL


def test_run_finished_without_snapshot_time_uses_the_run_start() -> None:
    t = tracker()
    t.run_started(T0 + HOUR, TRIGGER_CHANGE)
    t.run_finished(T0 + 2 * HOUR, ok=True)
    assert t.last_success == T0 + HOUR
    assert t.next_interval_at() == T0 + 25 * HOUR


# --- snapshots made by `once` ---------------------------------------------------------------


def test_external_snapshot_covers_earlier_changes() -> None:
    t = tracker(heavy_change_events=5)
    t.record_changes(5, T0 + S)
    t.external_snapshot(T0 + 2 * S)
    assert not t.dirty and t.last_success == T0 + 2 * S


def test_external_snapshot_keeps_later_changes() -> None:
    t = tracker()
    t.record_changes(1, T0 + 3 * S)
    t.external_snapshot(T0 + 2 * S)
    assert t.dirty and t.last_success == T0 + 2 * S


def test_older_external_snapshot_is_ignored() -> None:
    t = tracker()
    t.record_changes(1, T0 + 3 * S)
    t.external_snapshot(T0 - HOUR)
    assert t.dirty and t.last_success == T0


@pytest.mark.parametrize("heavy", [1, 2, 200])
def test_exactly_one_run_for_one_burst(heavy: int) -> None:
    t = tracker(heavy_change_events=heavy, debounce=S / 2, max_delay=5 * S)
    for i in range(300):
        t.record_changes(1, T0 + i * timedelta(milliseconds=1))
    runs = 0
    now = T0
    while now < T0 + 60 * S:
        d = t.decide(now)
        if d.due:
            assert d.trigger is not None
            runs += 1
            t.run_started(now, d.trigger)
            t.run_finished(now + S, ok=True, snapshot_at=now)
            now += S
            continue
        if d.next_check is None:
            break
        now = max(d.next_check, now + timedelta(milliseconds=1))
    assert runs == 1
