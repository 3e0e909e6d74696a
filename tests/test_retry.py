"""watcher/retry.py: the one backoff formula, and each caller's schedule through it.

The delays are pure (an injected random source), so nothing here sleeps except the two
checks of the stop-aware wait, which take milliseconds.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from watcher.backup.uploads import FAILED_RETRY, RETRY, retry_delay
from watcher.destinations.gdrive.destination import DEFAULT_RETRY
from watcher.notify.retry import NOTIFY_RETRY
from watcher.retry import (
    EQUAL_JITTER,
    NO_JITTER,
    RetryPolicy,
    Stopped,
    retry_after_seconds,
    wait,
)
from watcher.service.daemon import PASS_FAILED_RETRY
from watcher.service.decide import Policy

LOW, MID, HIGH = (lambda: 0.0), (lambda: 0.5), (lambda: 1.0)


def test_delay_doubles_from_base_up_to_the_cap() -> None:
    p = RetryPolicy(attempts=None, base=2.0, cap=20.0, jitter=NO_JITTER)
    assert [p.delay(n) for n in range(1, 7)] == [2, 4, 8, 16, 20, 20]


def test_a_count_below_one_waits_the_base() -> None:
    p = RetryPolicy(attempts=None, base=3.0, cap=60.0, jitter=NO_JITTER)
    assert p.delay(0) == p.delay(-5) == p.delay(1) == 3.0


def test_huge_failure_counts_stay_at_the_cap() -> None:
    p = RetryPolicy(attempts=None, base=3600.0, cap=7200.0, jitter=NO_JITTER)
    assert p.delay(10_000) == p.delay(10**9) == 7200.0


@pytest.mark.parametrize("jitter", [EQUAL_JITTER, (0.9, 1.1), (0.0, 1.0)])
def test_jitter_stays_within_its_range(jitter: tuple[float, float]) -> None:
    p = RetryPolicy(attempts=None, base=10.0, cap=1000.0, jitter=jitter)
    low, high = jitter
    assert p.delay(3, LOW) == 40.0 * low
    assert p.delay(3, HIGH) == pytest.approx(40.0 * high)
    assert p.delay(3, LOW) <= p.delay(3, MID) <= p.delay(3, HIGH)
    # and at the cap, the factor still applies
    assert p.delay(20, LOW) == 1000.0 * low
    assert p.delay(20, HIGH) == pytest.approx(1000.0 * high)


def test_without_jitter_the_random_source_is_never_asked() -> None:
    def no_rand() -> float:
        raise AssertionError("a policy without jitter asked for a random number")

    assert RetryPolicy(base=1.0, cap=8.0, jitter=NO_JITTER).delay(2, no_rand) == 2.0


def test_a_wait_the_service_asks_for_is_never_cut_short() -> None:
    p = RetryPolicy(attempts=None, base=1.0, cap=8.0, jitter=NO_JITTER)
    assert p.delay(1, at_least=30.0) == 30.0          # beyond the cap: the service knows
    assert p.delay(4, at_least=2.0) == 8.0            # shorter than the backoff: backoff
    assert p.delay(2, at_least=None) == 2.0


def test_retry_after_in_seconds_or_as_a_date() -> None:
    now = datetime(2026, 11, 27, 18, 0, tzinfo=UTC)
    assert retry_after_seconds("120") == 120.0
    assert retry_after_seconds(" 7 ") == 7.0
    assert retry_after_seconds("Fri, 27 Nov 2026 18:01:30 GMT", now) == 90.0
    assert retry_after_seconds("Fri, 27 Nov 2026 17:00:00 GMT", now) == 0.0
    for unreadable in (None, "", "soon", "-5", "1.5e9"):
        assert retry_after_seconds(unreadable, now) is None


def test_attempts_count_consecutive_failures() -> None:
    p = RetryPolicy(attempts=3, base=1.0, cap=8.0)
    assert [p.gives_up(n) for n in (1, 2, 3, 4)] == [False, False, True, True]
    never = RetryPolicy(attempts=None, base=1.0, cap=8.0)
    assert not never.gives_up(10**6)


@pytest.mark.parametrize("kwargs", [
    {"attempts": 0}, {"base": -1.0}, {"cap": -1.0}, {"jitter": (1.0, 0.5)},
    {"jitter": (-0.1, 1.0)}, {"base": float("nan")},
])
def test_a_nonsense_policy_is_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


# --- each caller's schedule, kept as it was before they shared the formula -------------------

def test_drive_requests_wait_1_2_4_8_16_s_jittered_then_give_up() -> None:
    assert [DEFAULT_RETRY.delay(n, HIGH) for n in range(1, 6)] == [1, 2, 4, 8, 16]
    assert [DEFAULT_RETRY.delay(n, LOW) for n in range(1, 6)] == [0.5, 1, 2, 4, 8]
    assert not DEFAULT_RETRY.gives_up(5) and DEFAULT_RETRY.gives_up(6)


def test_upload_queue_waits_5_min_doubling_to_6_h_plus_minus_10_percent() -> None:
    assert RETRY.attempts is None            # a queued copy is never given up
    assert retry_delay(1, retryable=True, rand=MID) == timedelta(minutes=5)
    assert retry_delay(4, retryable=True, rand=MID) == timedelta(minutes=40)
    assert retry_delay(9, retryable=True, rand=MID) == timedelta(hours=6)
    assert retry_delay(1, retryable=True, rand=LOW) == timedelta(minutes=4.5)
    assert retry_delay(1, retryable=True, rand=HIGH) == timedelta(minutes=5.5)
    assert retry_delay(7, retryable=False, rand=HIGH) == FAILED_RETRY == timedelta(hours=6)


def test_notifications_try_three_times_5_then_10_s_apart() -> None:
    assert [NOTIFY_RETRY.delay(n) for n in (1, 2)] == [5.0, 10.0]
    assert not NOTIFY_RETRY.gives_up(2) and NOTIFY_RETRY.gives_up(3)


def test_failed_runs_wait_the_debounce_doubling_up_to_the_maximum_delay() -> None:
    p = Policy(interval=timedelta(hours=1), debounce=timedelta(seconds=120),
               max_delay=timedelta(seconds=1560))
    assert [p.backoff(n).total_seconds() for n in range(6)] == [0, 120, 240, 480, 960, 1560]
    assert p.backoff(10**6) == timedelta(seconds=1560)


def test_an_upload_pass_that_could_not_read_the_queue_looks_again_30_s_doubling_to_1_h() -> None:
    assert [PASS_FAILED_RETRY.delay(n) for n in (1, 2, 3, 8)] == [30, 60, 120, 3600]
    assert not PASS_FAILED_RETRY.gives_up(10**6)


# --- the stop-aware wait -------------------------------------------------------------------------

def test_wait_returns_after_the_delay_when_not_stopped() -> None:
    start = time.monotonic()
    wait(0.01, threading.Event())
    wait(0.01, None)
    assert time.monotonic() - start >= 0.02


def test_wait_raises_stopped_at_once_when_the_stop_is_set() -> None:
    stop = threading.Event()
    stop.set()
    start = time.monotonic()
    with pytest.raises(Stopped):
        wait(60.0, stop)
    assert time.monotonic() - start < 5.0
