"""Who may use the monitor: the access token, login sessions and the page's CSRF token.

Without a token the page is served to loopback clients only (the configuration refuses
anything else), and only a request carrying the page's CSRF token may start a run, so another
web site open in the same browser cannot. With a token, the page asks for it once and keeps a
random session id in an HttpOnly, SameSite=Strict cookie; scripts send
``Authorization: Bearer <token>``. The token is compared in constant time and never logged,
echoed or stored anywhere but in this process's memory.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time

from watcher.config.settings import Config, ConfigError, is_loopback_host, parse_listen, read_secret

SESSION_COOKIE = "siip_watcher_session"
CSRF_HEADER = "X-CSRF-Token"
#: a login lasts this long (then the page asks for the token again)
SESSION_SECONDS = 30 * 86_400
#: at most this many live sessions: a flood of logins cannot grow the memory without end
MAX_SESSIONS = 1000


def access_token(cfg: Config) -> str | None:
    """The configured access token (``web.token_file``, else ``$web.token_env``), or None.

    Raises :class:`ConfigError` for an unreadable or empty token file, and when ``web.listen``
    is not a loopback address and there is no token: the page would be open to the network.
    """
    w = cfg.web
    token: str | None = None
    if w.token_file:
        token = read_secret("", w.token_file, "web.token_file")
    elif w.token_env and os.environ.get(w.token_env):
        token = os.environ[w.token_env].strip() or None
    host, _ = parse_listen(w.listen)
    if token is None and not is_loopback_host(host):
        where = cfg.path or "<configuration>"
        raise ConfigError(
            f"{where}: web.listen: {w.listen} is reachable from other machines, so the page "
            f"needs an access token: set the environment variable {w.token_env or '(token_env)'}"
            f" or web.token_file, or listen on 127.0.0.1")
    return token


def same_secret(given: str, expected: str) -> bool:
    """``given == expected`` in constant time (no timing hint about the token)."""
    return hmac.compare_digest(given.encode(), expected.encode())


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


class Sessions:
    """Logged-in browsers (random ids, in memory: a restart asks for the token again) and the
    CSRF token each page gets, derived from its session so nothing else must be stored."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)
        self._ids: dict[str, float] = {}     # session id -> when it expires (monotonic)
        self._lock = threading.Lock()
        self._now = time.monotonic

    def create(self) -> str:
        """A new session id for a browser that gave the right token."""
        sid = secrets.token_urlsafe(32)
        now = self._now()
        with self._lock:
            self._ids = {k: v for k, v in self._ids.items() if v > now}
            if len(self._ids) >= MAX_SESSIONS:
                oldest = min(self._ids, key=self._ids.__getitem__)
                del self._ids[oldest]
            self._ids[sid] = now + SESSION_SECONDS
        return sid

    def valid(self, sid: str | None) -> bool:
        """The cookie names a live session."""
        if not sid:
            return False
        with self._lock:
            expires = self._ids.get(sid)
        return expires is not None and expires > self._now()

    def end(self, sid: str | None) -> None:
        """Log out."""
        with self._lock:
            self._ids.pop(sid or "", None)

    def csrf(self, sid: str | None) -> str:
        """The CSRF token of the page served to session ``sid`` (no session: the one token of
        this process's loopback pages)."""
        return hmac.new(self._key, (sid or "").encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, sid: str | None, given: str | None) -> bool:
        """``given`` is the CSRF token of ``sid``'s page."""
        return bool(given) and same_secret(given or "", self.csrf(sid))
