"""A few tries with a short backoff for notifications, which must never hold a run hostage."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from watcher.retry import NO_JITTER, RetryPolicy, Stopped, wait

log = logging.getLogger("watcher.notify")

#: three tries, 5 s and then 10 s apart, so a dead mail server costs at most
#: 3 x timeout + 15 s of the run's time; no jitter: one sender, nobody to fall in step with
NOTIFY_RETRY = RetryPolicy(attempts=3, base=5.0, cap=10.0, jitter=NO_JITTER)


class NotifyError(Exception):
    """A notification that did not go out, worded as one line without secrets.

    ``retryable`` is False when trying again cannot help (wrong password, untrusted
    certificate, a refused recipient): hammering a server with a bad password can also get
    the account locked.
    """

    def __init__(self, reason: str, *, retryable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


def attempt(
    what: str,
    send: Callable[[], None],
    *,
    retry: RetryPolicy = NOTIFY_RETRY,
    stop: threading.Event | None = None,
) -> str | None:
    """Call ``send`` until it succeeds, it fails for good, or ``retry`` gives up.

    Returns None once sent, else the last reason (already logged, one line per try). Never
    raises :class:`NotifyError`; ``stop`` (the service shutting down) cuts the waiting short.
    """
    of_tries = f" of {retry.attempts}" if retry.attempts is not None else ""
    failures = 0
    while True:
        try:
            send()
        except NotifyError as exc:
            failures += 1
            if not exc.retryable:
                log.error("%s not sent: %s", what, exc.reason)
                return exc.reason
            if retry.gives_up(failures):
                log.error("%s not sent: %s (gave up after %d tries)", what, exc.reason,
                          failures)
                return exc.reason
            delay = retry.delay(failures)
            log.warning("%s not sent (try %d%s): %s; trying again in %g s",
                        what, failures, of_tries, exc.reason, delay)
            try:
                wait(delay, stop)
            except Stopped:
                log.error("%s not sent: %s (stopped while waiting to retry)", what, exc.reason)
                return exc.reason
        else:
            return None
