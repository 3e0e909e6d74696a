"""Tell people how a run went: an email report and a heartbeat ping.

:func:`notify` is called once per finished run, and once for a service that could not start
(through :func:`watcher.backup.failure.send_notice`). It never raises and never changes the run's
result: every failure is logged in one line, retried a few times when that can help, and
recorded in the catalog (channel "email" or "heartbeat") for `siip-watcher status`.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable

from watcher.backup.report import RunReport
from watcher.config.settings import Config, ConfigError
from watcher.notify import policy
from watcher.notify.retry import NOTIFY_RETRY, attempt
from watcher.retry import RetryPolicy
from watcher.state.catalog import Catalog

log = logging.getLogger("watcher.notify")

EMAIL = "email"
HEARTBEAT = "heartbeat"


def notify(
    cfg: Config,
    report: RunReport,
    catalog: Catalog | None,
    run_id: int | None,
    *,
    email: bool = True,
    retry: RetryPolicy = NOTIFY_RETRY,
    stop: threading.Event | None = None,
) -> None:
    """Send the email report (if enabled, chosen by ``email.on`` and ``email`` is True) and the
    heartbeat (if ``heartbeat.url`` is set) for a finished run, recording each outcome.

    ``email=False`` is `once --no-email`: the heartbeat still goes. ``stop`` (the service
    shutting down) cuts retry waits short. Never raises.
    """
    if email and cfg.email.enabled:
        _guarded(EMAIL, lambda: _email(cfg, report, catalog, run_id, retry, stop),
                 catalog, run_id)
    if cfg.heartbeat.url:
        _guarded(HEARTBEAT, lambda: _heartbeat(cfg, report, catalog, run_id, retry,
                                               stop), catalog, run_id)


def _guarded(channel: str, send: Callable[[], None], catalog: Catalog | None,
             run_id: int | None) -> None:
    # The last line of defence for "a notification never changes the backup's result": a bug
    # here must cost an email, not the run, and `status` must still show that it was lost.
    # No traceback, so no frame of the SMTP conversation is printed; a UnicodeError's text
    # quotes the character it could not encode, which may be one of the password's.
    try:
        send()
    except Exception as exc:  # noqa: BLE001 - a notification must never change the run's result
        detail = "" if isinstance(exc, UnicodeError) else f": {exc}"
        reason = f"{channel} notification crashed: {type(exc).__name__}{detail}"
        log.error("%s", reason)
        _record(catalog, run_id, channel, "failed", reason)


def _email(cfg: Config, report: RunReport, catalog: Catalog | None, run_id: int | None,
           retry: RetryPolicy, stop: threading.Event | None) -> None:
    # smtplib, ssl and the message module cost 30-40 ms to import: only runs that email do
    from watcher.notify import email as smtp_email  # noqa: PLC0415
    from watcher.notify.message import build_report_message  # noqa: PLC0415

    kind = policy.choose_message(cfg.email.on, report)
    if kind is None:
        log.info("email: not sent for a %s run (email.on = %s)", report.status,
                 ", ".join(cfg.email.on) or "nothing")
        return
    try:
        smtp_email.check_recipients(cfg)
        password = smtp_email.load_password(cfg)
    except ConfigError as exc:
        log.error("email not sent: %s", exc)
        _record(catalog, run_id, EMAIL, "failed", str(exc))
        return
    msg = build_report_message(cfg, report, kind)
    reason = attempt("email", lambda: smtp_email.send_message(cfg, msg, password),
                     retry=retry, stop=stop)
    if reason is None:
        log.info("email (%s) sent to %s", kind, ", ".join(cfg.email.to))
        _record(catalog, run_id, EMAIL, "sent", None)
    else:
        _record(catalog, run_id, EMAIL, "failed", reason)


def _heartbeat(cfg: Config, report: RunReport, catalog: Catalog | None, run_id: int | None,
               retry: RetryPolicy, stop: threading.Event | None) -> None:
    from watcher.notify import heartbeat  # noqa: PLC0415 - urllib: only runs that ping

    reason = heartbeat.ping(cfg.heartbeat.url, policy.heartbeat_ok(report),
                            retry=retry, stop=stop)
    _record(catalog, run_id, HEARTBEAT, "sent" if reason is None else "failed", reason)


def _record(catalog: Catalog | None, run_id: int | None, channel: str, state: str,
            error: str | None) -> None:
    if catalog is None:
        return
    try:
        catalog.record_notification(run_id, channel, state, error)
    except sqlite3.Error as exc:  # a busy or broken catalog must not turn into a failed run
        log.warning("could not record the %s notification in the catalog: %s", channel, exc)
