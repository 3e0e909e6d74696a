"""Injected misbehaviour: which request misbehaves, how, and whether it really happened.

A fault that never fires leaves its test testing nothing (an operation renamed in the handler,
a ``skip`` past the last request), so the server reports every fault that did not fire as often
as it was told to; :meth:`fakedrive.DriveServer.check` turns that into a failure.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

#: the operations the handler names its requests by (see ``DriveHandler._route``)
OPS = frozenset({"token", "initiate", "chunk", "status", "list", "get", "media", "create",
                 "update", "delete", "bench", "any"})
ACTIONS = frozenset({"error", "drop", "lost", "short", "corrupt", "expire_session",
                     "expire_token", "delay", "relocate"})


@dataclass
class Fault:
    """One injected misbehaviour, consumed by the next matching requests.

    ``op``: one of :data:`OPS` (``any`` matches every request). ``action``: error, drop, lost,
    short (chunks only), corrupt, expire_session, expire_token, delay, relocate (a chunk's or
    status query's 308 gives the session a new address in ``Location``; the old one then
    answers 404). ``skip`` lets that many
    matching requests pass first; ``times`` is how many it hits, None for every matching
    request from then on (until :meth:`Faults.stop`). ``optional``: the test accepts that it
    may not fire (it must say why); otherwise an unfired fault fails the test. An error may
    carry its own ``message`` (Google's words, which sometimes say more than the reason) and
    a ``retry_after`` header (seconds).
    """

    op: str
    action: str
    status: int = 500
    reason: str = "backendError"
    times: int | None = 1
    skip: int = 0
    keep: int | None = None
    delay: float = 0.0
    message: str | None = None
    retry_after: int | None = None
    optional: bool = False
    used: int = 0
    passed: int = 0            # matching requests let through because of ``skip``
    stopped: bool = False

    def __post_init__(self) -> None:
        # a typo here would otherwise only show as a fault that never fires
        if self.op not in OPS:
            raise ValueError(f"unknown operation {self.op!r}; one of {sorted(OPS)}")
        if self.action not in ACTIONS:
            raise ValueError(f"unknown action {self.action!r}; one of {sorted(ACTIONS)}")
        if self.action == "short" and self.op != "chunk":
            raise ValueError("a short answer exists only for chunks")
        if self.action == "relocate" and self.op not in ("chunk", "status"):
            raise ValueError("only a resumable session's 308 moves it")

    @property
    def spent(self) -> bool:
        """No further request will be hit."""
        return self.stopped or (self.times is not None and self.used >= self.times)

    def shortfall(self) -> str | None:
        """What this fault failed to do, or None if it fired as often as it was told to."""
        wanted = 1 if self.times is None else self.times
        if self.optional or self.used >= wanted:
            return None
        told = "every matching request" if self.times is None else f"{self.times} time(s)"
        return (f"fault {self.action} on {self.op} (skip {self.skip}, {told}) fired "
                f"{self.used} time(s)")


class Faults:
    """The injected faults of one server, in injection order."""

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, op: str) -> Fault | None:
        """The fault that hits this request, if any (and count it)."""
        with self._lock:
            for fault in self._faults:
                if fault.op not in (op, "any") or fault.spent:
                    continue
                if fault.passed < fault.skip:
                    # the first live match decides, even while it is still letting requests
                    # through: a later fault for the same op waits its turn
                    fault.passed += 1
                    return None
                fault.used += 1
                return fault
        return None

    def stop(self) -> None:
        """Stop every fault (the service is healthy again); each is still checked."""
        with self._lock:
            for fault in self._faults:
                fault.stopped = True

    def shortfalls(self) -> list[str]:
        """A line for each fault that did not fire as often as it was told to."""
        with self._lock:
            return [s for s in (f.shortfall() for f in self._faults) if s]
