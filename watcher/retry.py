"""Every retry in the program: truncated exponential backoff, and a wait a stop request cuts short.

One formula for all callers, each with its own numbers: the Drive client retrying a request
(seconds, jittered), the upload queue spacing out a copy's attempts (minutes to hours), the
service retrying a failed backup run (its debounce doubling up to its maximum delay), and a
notification's few tries. The delay is a pure function of the failure count and an injected
random source, so tests check a schedule without sleeping; :func:`wait` is the only place
that sleeps for a retry.

Remote services ask clients to back off exponentially and add randomness, so that many
clients failing together do not retry together. A service that says how long to wait
(``Retry-After``, read by :func:`retry_after_seconds`) is waited for at least that long:
``at_least`` in :meth:`RetryPolicy.delay`.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

#: a jitter range that leaves the delay as computed
NO_JITTER: tuple[float, float] = (1.0, 1.0)
#: between half and all of the delay ("equal jitter"): spread out, yet never much shorter
EQUAL_JITTER: tuple[float, float] = (0.5, 1.0)

# 2.0**1000 is still a float (a larger power raises OverflowError); a product with base that
# overflows is inf, which min() turns into the cap
_MAX_EXPONENT = 1000


class Stopped(Exception):
    """The service was asked to stop while waiting to retry."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry one kind of operation.

    The ``n``-th consecutive failure waits ``min(cap, base * 2**(n-1))`` seconds times a
    factor drawn uniformly from ``jitter`` (low, high). The factor applies after the cap, so a
    ``high`` above 1 may pass it by that much. ``attempts`` counts consecutive failures
    before giving up; None never gives up (the caller decides when to stop). Progress (an
    accepted chunk, a successful run) starts the count again, so a long upload over a flaky
    line is not abandoned for old failures.
    """

    attempts: int | None = 8
    base: float = 1.0
    cap: float = 64.0
    jitter: tuple[float, float] = EQUAL_JITTER

    def __post_init__(self) -> None:
        low, high = self.jitter
        if not (self.base >= 0 and self.cap >= 0 and 0 <= low <= high):
            raise ValueError(f"invalid retry policy {self}")
        if self.attempts is not None and self.attempts < 1:
            raise ValueError(f"a retry policy needs at least one attempt, not {self.attempts}")

    def delay(self, failure: int, rand: Callable[[], float] = random.random, *,
              at_least: float | None = None) -> float:
        """Seconds to wait after the ``failure``-th consecutive failure (1-based).

        ``rand`` returns a float in [0, 1); it is not called when the jitter range is a
        single point, so such a policy is deterministic. ``at_least`` is the wait the
        service asked for (``Retry-After``): the delay is never shorter, whatever the cap.
        """
        exponent = min(max(0, failure - 1), _MAX_EXPONENT)
        ceiling = min(self.cap, self.base * 2.0 ** exponent)
        low, high = self.jitter
        factor = low if low == high else low + (high - low) * rand()
        return max(ceiling * factor, at_least or 0.0)

    def gives_up(self, failure: int) -> bool:
        """True once ``failure`` consecutive failures have used up the attempts."""
        return self.attempts is not None and failure >= self.attempts


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """The wait a ``Retry-After`` header asks for, in seconds, or None if there is none.

    The header holds either a number of seconds or an HTTP date (RFC 9110, section 10.2.3);
    a date in the past means "now" (0), and anything unreadable is ignored (None) rather
    than trusted.
    """
    if not value or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def wait(seconds: float, stop: threading.Event | None) -> None:
    """Sleep ``seconds``, or raise :class:`Stopped` as soon as ``stop`` is set."""
    if stop is None:
        time.sleep(seconds)
    elif stop.wait(seconds):
        raise Stopped()
