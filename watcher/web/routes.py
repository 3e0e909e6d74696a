"""The monitor's WSGI application (werkzeug parses requests and builds responses).

``/`` the page, ``/view`` its refreshing part, ``/api/status`` the same JSON as
`siip-watcher status --json`, ``POST /api/backup`` the button, ``/metrics`` for Prometheus,
``/login`` and ``/logout`` when a token is configured, ``/static/`` the page's stylesheet and
script. Every answer carries the security headers: a Content-Security-Policy that allows only
this service's own script, style and requests and no framing, ``nosniff``, no referrer, no
caching.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from importlib import resources
from typing import Any

from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from watcher.config.settings import Config, is_loopback_host
from watcher.jsontext import json_text
from watcher.service.status import StatusError, collect_status
from watcher.web import page
from watcher.web.auth import (
    CSRF_HEADER,
    SESSION_COOKIE,
    SESSION_SECONDS,
    Sessions,
    bearer,
    same_secret,
)
from watcher.web.metrics import exposition
from watcher.web.texts import say
from watcher.web.view import View, collect_view

log = logging.getLogger("watcher.web")

RequestBackup = Callable[[], dict[str, Any]]

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
STATIC = {"monitor.css": "text/css; charset=utf-8",
          "monitor.js": "text/javascript; charset=utf-8",
          "favicon.svg": "image/svg+xml"}
LANGUAGES = ("es", "en")

_URLS = Map([
    Rule("/", endpoint="page", methods=["GET"]),
    Rule("/view", endpoint="view", methods=["GET"]),
    Rule("/api/status", endpoint="status", methods=["GET"]),
    Rule("/api/backup", endpoint="backup", methods=["POST"]),
    Rule("/metrics", endpoint="metrics", methods=["GET"]),
    Rule("/login", endpoint="login", methods=["POST"]),
    Rule("/logout", endpoint="logout", methods=["POST"]),
    Rule("/static/<name>", endpoint="static", methods=["GET"]),
])


def _static_files() -> dict[str, bytes]:
    folder = resources.files("watcher.web") / "static"
    return {name: (folder / name).read_bytes() for name in STATIC}


class MonitorApp:
    """The WSGI application. ``token``: the access token, or None (loopback only, no login);
    ``request_backup`` asks the service for a run; ``read_view`` reads the page's data."""

    def __init__(self, cfg: Config, token: str | None, *, request_backup: RequestBackup,
                 read_view: Callable[[], View] | None = None) -> None:
        self.cfg = cfg
        self.token = token
        self.request_backup = request_backup
        self.read_view = read_view or (lambda: collect_view(cfg))
        self.sessions = Sessions()
        self.default_language = cfg.web.page_language(cfg.email.language)
        self.static = _static_files()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        """WSGI entry point."""
        request = Request(environ)
        try:
            response = self.dispatch(request)
        except HTTPException as exc:
            response = _json({"error": exc.description or exc.name}, exc.code or 500)
        except StatusError as exc:
            response = _json({"error": str(exc)}, 503)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response(environ, start_response)

    # --- who is asking --------------------------------------------------------------------

    def _sid(self, request: Request) -> str | None:
        sid = request.cookies.get(SESSION_COOKIE)
        return sid if self.sessions.valid(sid) else None

    def _has_bearer(self, request: Request) -> bool:
        given = bearer(request.headers.get("Authorization"))
        return self.token is not None and given is not None and same_secret(given, self.token)

    def _may_read(self, request: Request) -> bool:
        return self.token is None or self._has_bearer(request) or self._sid(request) is not None

    def _host_allowed(self, request: Request) -> bool:
        """Without a token the page answers loopback names only: a web site that points its
        own name at 127.0.0.1 (DNS rebinding) cannot read it through the browser."""
        if self.token is not None:
            return True
        return is_loopback_host(_host_name(request.host))

    def _lang(self, request: Request) -> str:
        lang = request.args.get("lang", "")
        return lang if lang in LANGUAGES else self.default_language

    # --- routes ---------------------------------------------------------------------------

    def dispatch(self, request: Request) -> Response:
        """Route ``request`` to its handler."""
        if not self._host_allowed(request):
            return _json({"error": "this address only answers as 127.0.0.1 or localhost"}, 403)
        endpoint, args = _URLS.bind_to_environ(request.environ).match()
        handler = getattr(self, f"on_{endpoint}")
        return handler(request, **args)  # type: ignore[no-any-return]

    def on_page(self, request: Request) -> Response:
        lang = self._lang(request)
        if not self._may_read(request):
            return _html(page.render_login(lang, wrong=False))
        sid = self._sid(request)
        return _html(page.render_page(self.read_view(), lang, csrf=self.sessions.csrf(sid),
                                      signed_in=sid is not None))

    def on_view(self, request: Request) -> Response:
        if not self._may_read(request):
            return _unauthorized()
        return _html(page.render_main(self.read_view(), self._lang(request)))

    def on_status(self, request: Request) -> Response:
        if not self._may_read(request):
            return _unauthorized()
        return Response(json_text(collect_status(self.cfg)),
                        content_type="application/json; charset=utf-8")

    def on_metrics(self, request: Request) -> Response:
        if not self._may_read(request):
            return _unauthorized()
        return Response(exposition(self.read_view),
                        content_type="text/plain; version=0.0.4; charset=utf-8")

    def on_backup(self, request: Request) -> Response:
        lang = self._lang(request)
        allowed = self._has_bearer(request) or (
            (self.token is None or self._sid(request) is not None)
            and self.sessions.csrf_ok(self._sid(request), request.headers.get(CSRF_HEADER)))
        if not allowed:
            log.warning("monitor: a backup request without a valid CSRF or access token was "
                        "refused (from %s)", request.remote_addr)
            return _json({"error": say(lang, "forbidden")}, 403)
        answer = self.request_backup()
        answer["message"] = page.backup_answer(lang, answer)
        return _json(answer, 202 if answer["state"] == "started" else 409)

    def on_login(self, request: Request) -> Response:
        lang = self._lang(request)
        if self.token is None:
            return _redirect(f"/?lang={lang}")
        given = request.form.get("token", "")
        if not given or not same_secret(given.strip(), self.token):
            log.warning("monitor: a sign-in with a wrong token was refused (from %s)",
                        request.remote_addr)
            return _html(page.render_login(lang, wrong=True), 403)
        response = _redirect(f"/?lang={lang}")
        response.set_cookie(SESSION_COOKIE, self.sessions.create(), max_age=SESSION_SECONDS,
                            path="/", httponly=True, samesite="Strict",
                            secure=request.is_secure)
        return response

    def on_logout(self, request: Request) -> Response:
        sid = self._sid(request)
        if not self.sessions.csrf_ok(sid, request.form.get("csrf")):
            return _json({"error": say(self._lang(request), "forbidden")}, 403)
        self.sessions.end(sid)
        response = _redirect(f"/?lang={self._lang(request)}")
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="Strict")
        return response

    def on_static(self, request: Request, name: str) -> Response:
        if name not in self.static:
            raise NotFound()
        response = Response(self.static[name], content_type=STATIC[name])
        response.headers["Cache-Control"] = "no-cache"
        return response


def _host_name(host: str) -> str:
    """The name in a Host header, without its port (``[::1]:8765`` is ``::1``)."""
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _html(text: str, status: int = 200) -> Response:
    return Response(text, status=status, content_type="text/html; charset=utf-8")


def _json(data: dict[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(data, ensure_ascii=False, default=str), status=status,
                    content_type="application/json; charset=utf-8")


def _unauthorized() -> Response:
    response = _json({"error": "sign in on the page, or send Authorization: Bearer <token>"},
                     401)
    response.headers["WWW-Authenticate"] = 'Bearer realm="siip-watcher"'
    return response


def _redirect(location: str) -> Response:
    return Response("", status=303, headers={"Location": location})
