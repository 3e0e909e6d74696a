"""When is a backup due? The service's scheduling rules as pure logic with an injected clock.

Nothing here reads files, sleeps or looks at the wall clock: every method takes ``now``. The
daemon feeds a :class:`ChangeTracker` with change events and run results and asks it
:meth:`~ChangeTracker.decide` whenever something happened or the time it named has come.

The rules (``[schedule]`` in config/siip-watcher.example.toml):

* **start**: at service start, with no snapshot yet, or with the last one older than the
  interval and changes since it (or ``only_if_changed = false``), run promptly.
* **interval**: ``interval_hours`` have passed since the last *successful* snapshot and something
  changed since it (or ``only_if_changed = false``). An interval that passes with no change is
  skipped and reported once, so the log says "no changes since ...".
* **change**: ``heavy_change_events`` changes have arrived since the last run began, and then
  the tree has been quiet for ``debounce_seconds``; if changes keep coming, never later than
  ``max_delay_seconds`` after the first change not yet backed up (a debounce timer alone never
  fires under a steady trickle).
* **manual**: someone asked for a run now (the monitor page's button): it starts at the next
  decision, whatever the rules above say, unless a run is already in progress (then the
  request is that run, not a second one).
* after a failed run, the next attempt waits a growing back-off (``debounce_seconds`` doubling,
  capped at ``max_delay_seconds``, at least one second), so a broken destination disk does not
  turn into a tight loop.

Changes that arrive while a run is in progress are not credited to that run: the snapshot may
have read those files before they changed, so they stay pending for the next one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from watcher.config.settings import ScheduleConfig
from watcher.retry import NO_JITTER, RetryPolicy

TRIGGER_START = "start"
TRIGGER_INTERVAL = "interval"
TRIGGER_CHANGE = "change"
#: a person asked for a run (the monitor page's button); the same word `once` records
TRIGGER_MANUAL = "manual"

MIN_BACKOFF = timedelta(seconds=1)


@dataclass(frozen=True)
class Policy:
    """The ``[schedule]`` numbers the rules need, as durations."""

    interval: timedelta
    only_if_changed: bool = True
    debounce: timedelta = timedelta(seconds=300)
    max_delay: timedelta = timedelta(seconds=3600)
    heavy_change_events: int = 200

    @classmethod
    def from_schedule(cls, schedule: ScheduleConfig) -> Policy:
        """Build the policy from the validated ``[schedule]`` section."""
        return cls(
            interval=timedelta(hours=schedule.interval_hours),
            only_if_changed=schedule.only_if_changed,
            debounce=timedelta(seconds=schedule.debounce_seconds),
            max_delay=timedelta(seconds=schedule.max_delay_seconds),
            heavy_change_events=schedule.heavy_change_events,
        )

    def backoff(self, failures: int) -> timedelta:
        """How long to wait after ``failures`` consecutive failed runs before trying again."""
        if failures <= 0:
            return timedelta(0)
        # no jitter: one service, one schedule, and the wait shown in the log is the real one
        retry = RetryPolicy(attempts=None, jitter=NO_JITTER,
                            base=max(self.debounce, MIN_BACKOFF).total_seconds(),
                            cap=max(self.max_delay, MIN_BACKOFF).total_seconds())
        return timedelta(seconds=retry.delay(failures))


@dataclass(frozen=True)
class Decision:
    """The answer to "is a run due now?"."""

    #: ``start``, ``interval`` or ``change`` when a run is due now; None otherwise
    trigger: str | None
    #: one line for the log: why the run is due, or what the service is waiting for
    reason: str
    #: when to ask again if no change arrives meanwhile; None while a run is in progress (ask
    #: when it ends) or while the start check has not reported yet
    next_check: datetime | None
    #: set (once per interval) when an interval passed with nothing to back up: the time of
    #: the last snapshot, for the "no changes since ..." log line
    skipped_since: datetime | None = None

    @property
    def due(self) -> bool:
        """True when a run should start now."""
        return self.trigger is not None


@dataclass
class _Changes:
    """A batch of change events: how many, first and last time seen."""

    count: int = 0
    first: datetime | None = None
    last: datetime | None = None

    def add(self, count: int, at: datetime) -> None:
        self.count += count
        self.first = at if self.first is None else min(self.first, at)
        self.last = at if self.last is None else max(self.last, at)

    def merge(self, other: _Changes) -> None:
        if other.first is not None and other.last is not None:
            self.add(other.count, other.first)
            self.last = max(self.last or other.last, other.last)

    @property
    def any(self) -> bool:
        return self.first is not None


class ChangeTracker:
    """Everything the service knows about changes and runs, and the rules over it.

    Not thread-safe by itself: the daemon serialises calls with one lock.
    """

    def __init__(self, policy: Policy, *, last_success: datetime | None,
                 start_check_needed: bool = True) -> None:
        """``last_success``: time of the newest snapshot in the catalog (None: none yet).

        ``start_check_needed``: the daemon will report, through :meth:`start_check_done`,
        whether the tree differs from the last snapshot (changes made while the service was
        stopped). Until then the start/interval rule waits, so a stale "no change" is never
        assumed. With no snapshot at all there is nothing to compare and no need to wait.
        """
        self.policy = policy
        self.last_success = last_success
        self._start_checked = not start_check_needed or last_success is None
        self._pending = _Changes()       # changes not yet handed to a run
        self._in_flight = _Changes()     # changes the running run is backing up
        self._running_since: datetime | None = None
        self._running_trigger: str | None = None
        self._runs = 0                   # runs finished since the service started
        self._failures = 0               # consecutive failed runs
        self._last_failure: datetime | None = None
        self._skipped_slot = 0           # last interval slot reported as skipped
        self._requested = False          # a person asked for a run that has not started yet

    # --- feeding ------------------------------------------------------------------------

    def record_changes(self, count: int, at: datetime) -> bool:
        """Note ``count`` change events seen at ``at``.

        Returns True when this may bring a run forward (the tree just became dirty, or the
        heavy-change threshold was just reached), so the caller should :meth:`decide` again
        soon; other events only push the debounce further out and need no new decision.
        """
        if count <= 0:
            return False
        was_dirty = self.dirty
        before = self._pending.count
        self._pending.add(count, at)
        heavy = self.policy.heavy_change_events
        return not was_dirty or (before < heavy <= self._pending.count)

    def start_check_done(self, changed: bool, at: datetime) -> None:
        """Report whether the tree differs from the last snapshot (changes while stopped).

        The time of such changes is unknown; ``at`` (the start) stands in for it. They are not
        counted toward the heavy-change threshold: their size is unknown too.
        """
        self._start_checked = True
        if changed and not self._pending.any:
            self._pending.first = self._pending.last = at

    def external_snapshot(self, at: datetime) -> None:
        """Another process (``siip-watcher once``) stored a snapshot taken at ``at``.

        Changes seen before it are covered; later ones stay pending.
        """
        if self.last_success is not None and at <= self.last_success:
            return
        self.last_success = at
        self._skipped_slot = 0
        if self._pending.last is not None and self._pending.last <= at:
            self._pending = _Changes()

    def request_run(self) -> bool:
        """A person asks for a run now. False when one is already running or asked for:
        that one answers the request, so runs are never doubled."""
        if self.running or self._requested:
            return False
        self._requested = True
        return True

    def run_started(self, at: datetime, trigger: str) -> None:
        """A run begins: the changes seen so far are what it backs up."""
        self._requested = False
        self._running_since = at
        self._running_trigger = trigger
        self._in_flight = self._pending
        self._pending = _Changes()

    def run_finished(self, at: datetime, *, ok: bool, snapshot_at: datetime | None = None) -> None:
        """A run ended. ``ok``: a snapshot was stored; ``snapshot_at``: its time (else ``at``)."""
        started = self._running_since
        self._running_since = None
        self._running_trigger = None
        self._runs += 1
        if ok:
            self.last_success = snapshot_at or started or at
            self._failures = 0
            self._last_failure = None
            self._skipped_slot = 0
            self._in_flight = _Changes()
        else:
            # nothing was backed up: the changes the run was meant to take are pending again
            self._in_flight.merge(self._pending)
            self._pending = self._in_flight
            self._in_flight = _Changes()
            self._failures += 1
            self._last_failure = at

    # --- reading ------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True while a run is in progress."""
        return self._running_since is not None

    @property
    def running_since(self) -> datetime | None:
        """When the run in progress began."""
        return self._running_since

    @property
    def running_trigger(self) -> str | None:
        """The trigger of the run in progress."""
        return self._running_trigger

    @property
    def requested(self) -> bool:
        """A person asked for a run that has not started yet."""
        return self._requested

    @property
    def dirty(self) -> bool:
        """Something changed that no successful snapshot holds yet (the run in progress may)."""
        return self._pending.any or self._in_flight.any

    @property
    def dirty_since(self) -> datetime | None:
        """The first change not yet backed up."""
        times = [t for t in (self._pending.first, self._in_flight.first) if t is not None]
        return min(times) if times else None

    @property
    def pending_changes(self) -> int:
        """Change events not yet backed up (including those the running run is taking)."""
        return self._pending.count + self._in_flight.count

    @property
    def consecutive_failures(self) -> int:
        """Failed runs in a row (0 after a success)."""
        return self._failures

    def next_interval_at(self) -> datetime | None:
        """When the interval since the last successful snapshot ends (None: no snapshot yet)."""
        if self.last_success is None:
            return None
        return self.last_success + self.policy.interval

    # --- deciding -----------------------------------------------------------------------

    # the scheduling rules in priority order, as the module docstring lists them
    def decide(self, now: datetime) -> Decision:  # noqa: PLR0912
        """Is a run due at ``now``, with which trigger, and when to look again.

        Calling it marks an interval with no change as reported (``skipped_since`` is set only
        once per interval), so the daemon logs each skipped interval exactly once.
        """
        if self.running:
            return Decision(None, "a run is in progress", None)
        if self._requested:
            # asked for by a person, who is watching for it: no back-off, no interval
            return Decision(TRIGGER_MANUAL, "asked for on the monitor page", None)

        trigger: str | None = None
        reason = "nothing to do"
        skipped: datetime | None = None
        wake: list[datetime] = []
        p = self.policy

        # the start / interval rule
        if not self._start_checked:
            reason = "comparing the tree with the last snapshot"
        elif self.last_success is None:
            trigger = self._interval_trigger()
            reason = "no snapshot yet"
        else:
            due_at = self.last_success + p.interval
            if now < due_at:
                wake.append(due_at)
                reason = f"next interval at {_fmt(due_at)}"
            elif self._pending.any or not p.only_if_changed:
                trigger = self._interval_trigger()
                why = (f"changes since {_fmt(self._pending.first)}" if self._pending.any
                       else "only_if_changed = false")
                reason = f"{_hours(p.interval)} since the snapshot of " \
                         f"{_fmt(self.last_success)}, {why}"
            else:
                slot = math.floor((now - self.last_success) / p.interval)
                if slot > self._skipped_slot:
                    self._skipped_slot = slot
                    skipped = self.last_success
                # wake at the next interval boundary only to report the next skip
                wake.append(self.last_success + p.interval * (slot + 1))
                reason = f"no changes since {_fmt(self.last_success)}"

        # the heavy-change rule: debounce, capped by the maximum delay
        if trigger is None and self._pending.count >= p.heavy_change_events:
            assert self._pending.first is not None and self._pending.last is not None
            quiet_at = self._pending.last + p.debounce
            cap_at = self._pending.first + p.max_delay
            if now >= quiet_at:
                trigger = TRIGGER_CHANGE
                reason = (f"{self._pending.count} changes, then "
                          f"{p.debounce.total_seconds():g} s quiet")
            elif now >= cap_at:
                trigger = TRIGGER_CHANGE
                reason = (f"{self._pending.count} changes still coming; "
                          f"{p.max_delay.total_seconds():g} s since the first "
                          f"at {_fmt(self._pending.first)}")
            else:
                wake.append(min(quiet_at, cap_at))
                reason = f"{self._pending.count} changes; waiting for quiet"

        # back-off after failed runs
        if trigger is not None and self._last_failure is not None:
            retry_at = self._last_failure + p.backoff(self._failures)
            if now < retry_at:
                return Decision(None, f"retrying after {self._failures} failed run(s) at "
                                f"{_fmt(retry_at)}", retry_at, skipped)

        return Decision(trigger, reason, min(wake) if wake else None, skipped)

    def _interval_trigger(self) -> str:
        return TRIGGER_START if self._runs == 0 else TRIGGER_INTERVAL


def _fmt(dt: datetime | None) -> str:
    return dt.strftime("%Y-%m-%d %H:%M:%S %Z").strip() if dt else "-"


_MINUTE = 60
_HOUR = 3600


def _hours(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    if seconds < 2 * _MINUTE:
        return f"{seconds:g} s"
    if seconds < 2 * _HOUR:
        return f"{seconds / _MINUTE:g} min"
    return f"{seconds / _HOUR:g} h"
