"""A few tries with a short backoff for notifications, which must never hold a run hostage."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

log = logging.getLogger("watcher.notify")

#: waits between tries: three tries in all, so a dead mail server costs at most
#: 3 x timeout + 15 s of the run's time
DEFAULT_RETRY_DELAYS: tuple[float, ...] = (5.0, 10.0)


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
    delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
    stop: threading.Event | None = None,
) -> str | None:
    """Call ``send`` until it succeeds, it fails for good, or the tries run out.

    Returns None once sent, else the last reason (already logged, one line per try). Never
    raises :class:`NotifyError`; ``stop`` (the service shutting down) cuts the waiting short.
    """
    tries = len(delays) + 1
    for number in range(1, tries + 1):
        try:
            send()
        except NotifyError as exc:
            if not exc.retryable:
                log.error("%s not sent: %s", what, exc.reason)
                return exc.reason
            if number == tries:
                log.error("%s not sent: %s (gave up after %d tries)", what, exc.reason, tries)
                return exc.reason
            delay = delays[number - 1]
            log.warning("%s not sent (try %d of %d): %s; trying again in %g s",
                        what, number, tries, exc.reason, delay)
            if stop is not None:
                if stop.wait(delay):
                    log.error("%s not sent: %s (stopped while waiting to retry)",
                              what, exc.reason)
                    return exc.reason
            else:
                time.sleep(delay)
        else:
            return None
    raise AssertionError("unreachable")  # pragma: no cover
