"""Which message, if any, a finished run deserves. Pure: no I/O, no clock."""

from __future__ import annotations

from collections.abc import Iterable

from watcher.backup.report import RunReport

#: message kinds, also the words of ``email.on``
SUCCESS = "success"
WARNING = "warning"
FAILURE = "failure"
RECOVERY = "recovery"


def choose_message(on: Iterable[str], report: RunReport) -> str | None:
    """The kind of email to send for ``report`` given the ``email.on`` choices, or None.

    - a failed run is mailed when "failure" is chosen;
    - the first good run after failures gets the "recovery" message when it is chosen (else it
      is treated like any other good run);
    - a warning (files skipped, an upload still pending) is mailed when "warning", "failure"
      or "success" is chosen: an admin who only asked to hear about failures still needs to
      hear that the off-site copy did not happen;
    - a clean run is mailed when "success" is chosen.
    """
    chosen = set(on)
    if report.status == "failed":
        return FAILURE if FAILURE in chosen else None
    if report.recovered and RECOVERY in chosen:
        return RECOVERY
    if report.status == "warning":
        return WARNING if chosen & {WARNING, FAILURE, SUCCESS} else None
    return SUCCESS if SUCCESS in chosen else None


def heartbeat_ok(report: RunReport) -> bool:
    """Whether the heartbeat reports success: any run that stored a snapshot counts as alive."""
    return report.status != "failed"
