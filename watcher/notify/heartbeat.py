"""Healthchecks-style heartbeat: GET the URL after a good run, URL + ``/fail`` after a failed
one, so someone outside notices when the service goes quiet.

The URL embeds a secret check id, so it never appears in a log line or an error: only
:func:`watcher.config.settings.redacted_heartbeat` of it does.
"""

from __future__ import annotations

import logging
import threading
import urllib.error
import urllib.request
from http import HTTPStatus
from urllib.parse import urlsplit, urlunsplit

from watcher import __version__
from watcher.config.settings import redacted_heartbeat
from watcher.notify.retry import NOTIFY_RETRY, NotifyError, attempt
from watcher.retry import RetryPolicy

log = logging.getLogger("watcher.notify")


class HeartbeatError(NotifyError):
    """A ping that did not get through; the text never contains the URL."""


def ping_url(url: str, ok: bool) -> str:
    """The URL to GET: ``url`` itself on success, ``url/fail`` on failure (query kept)."""
    if ok:
        return url
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/fail"))


def send_ping(url: str, ok: bool, timeout: float = 10) -> None:
    """One GET of the heartbeat URL; raises :class:`HeartbeatError` (URL-free) on failure."""
    target = ping_url(url, ok)
    request = urllib.request.Request(
        target, headers={"User-Agent": f"siip-watcher/{__version__}"}, method="GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read(1024)  # Healthchecks answers "OK"; the body is not needed
    except urllib.error.HTTPError as exc:
        # 4xx means the URL is wrong (a deleted check, a typo): trying again will not help
        retryable = exc.code >= HTTPStatus.INTERNAL_SERVER_ERROR or \
            exc.code == HTTPStatus.TOO_MANY_REQUESTS
        raise HeartbeatError(f"the server answered HTTP {exc.code} {exc.reason}; check "
                             f"heartbeat.url", retryable=retryable) from None
    except urllib.error.URLError as exc:
        raise HeartbeatError(_reason(exc.reason, url), retryable=True) from None
    except (OSError, ValueError) as exc:
        raise HeartbeatError(_reason(exc, url), retryable=True) from None


def _reason(exc: object, url: str) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout: no answer from the heartbeat server"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused by the heartbeat server"
    text = str(getattr(exc, "strerror", None) or exc)
    # some errors quote the URL (an invalid one, say); the check id must not leak through them
    parts = urlsplit(url)
    for secret in (url, parts.path, parts.query):
        if secret and secret != "/":
            text = text.replace(secret, "…")
    return f"cannot reach the heartbeat server: {text}"


def ping(url: str, ok: bool, timeout: float = 10, *,
         retry: RetryPolicy = NOTIFY_RETRY,
         stop: threading.Event | None = None) -> str | None:
    """Ping the heartbeat, a few tries with backoff; never raises.

    Returns None when it got through, else the reason (already logged, URL redacted).
    """
    shown = redacted_heartbeat(url)
    outcome = "success" if ok else "failure"
    reason = attempt(f"heartbeat ({outcome}) to {shown}",
                     lambda: send_ping(url, ok, timeout), retry=retry, stop=stop)
    if reason is None:
        log.info("heartbeat (%s) sent to %s", outcome, shown)
    return reason
