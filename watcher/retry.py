"""Truncated exponential backoff with jitter, and a wait that a stop request cuts short.

Remote services ask clients to back off exponentially and add randomness, so that many
clients failing together do not retry together. The policy is plain data so tests can use
millisecond delays and the service sensible ones.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


class Stopped(Exception):
    """The service was asked to stop while waiting to retry."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry one operation.

    ``attempts`` counts consecutive failures: progress (an accepted chunk) starts the count
    again, so a long upload over a flaky line is not abandoned for old failures.
    """

    attempts: int = 8
    base: float = 1.0
    cap: float = 64.0

    def delay(self, failure: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait after the ``failure``-th consecutive failure (1-based).

        Between half and all of ``min(cap, base * 2**(failure-1))``: the exponential part
        spaces the retries out, the random half keeps many clients from retrying in step.
        """
        ceiling = min(self.cap, self.base * 2 ** max(0, failure - 1))
        return ceiling * (0.5 + rand() / 2)

    def gives_up(self, failure: int) -> bool:
        """True once ``failure`` consecutive failures have used up the attempts."""
        return failure >= self.attempts


def wait(seconds: float, stop: threading.Event | None) -> None:
    """Sleep ``seconds``, or raise :class:`Stopped` as soon as ``stop`` is set."""
    if stop is None:
        time.sleep(seconds)
    elif stop.wait(seconds):
        raise Stopped()
