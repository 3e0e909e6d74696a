"""What each command does, as functions that return data and print nothing.

:mod:`watcher.cli` parses the arguments, calls one of these, prints what it returns and maps
it to an exit code. ``once`` and ``status`` need no module here: their work is
:func:`watcher.backup.run.run_backup` and :func:`watcher.service.status.collect_status`, which
already return a report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

Tick = Callable[[int], None]
"""Called with a number of bytes: done since the last call, or the total to expect."""

ProgressBars = Callable[[str], AbstractContextManager[tuple[Tick | None, Tick | None]]]
"""Opens a progress display named by its argument; yields ``(update, total)``, either None
when nothing is shown."""


class UsageError(Exception):
    """Wrong arguments or a state that makes the command impossible (exit 2)."""


@contextmanager
def no_progress(desc: str) -> Iterator[tuple[Tick | None, Tick | None]]:
    """The :data:`ProgressBars` that shows nothing."""
    yield None, None
