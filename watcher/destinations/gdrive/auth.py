"""Google credentials for the Drive destination, and the `drive login` sign-in.

Two ways in, as ``drive.auth`` says:

- ``oauth`` (the default): a personal or office Google account. ``siip-watcher drive login``
  runs the installed-app flow with the narrow ``drive.file`` scope (the app sees only the
  files it created) and stores the refreshable token in ``drive.token_file`` (mode 0600).
  It works on a headless server: it prints the address to open in any browser and accepts
  either the loopback redirect or the address pasted back from the browser.
- ``service_account``: a key file; uploads go into a shared drive (service accounts have no
  storage of their own), optionally as a user through domain-wide delegation.

Errors are one line that names the file and the next step; no secret is ever in them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import stat
import threading
import webbrowser
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from google.auth.credentials import Credentials as BaseCredentials
from google.oauth2 import credentials as user_credentials
from google.oauth2 import service_account
from google_auth_oauthlib.flow import Flow

from watcher.archive.files import write_private_atomic
from watcher.config.settings import DriveConfig
from watcher.destinations.base import DestinationError, SetupError
from watcher.destinations.gdrive.errors import one_line
from watcher.destinations.gdrive.transport import is_loopback_url

log = logging.getLogger(__name__)

SCOPE_FILE = "https://www.googleapis.com/auth/drive.file"
SCOPE_FULL = "https://www.googleapis.com/auth/drive"
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
LOGIN_HINT = "run `siip-watcher drive login`"


class LoginError(SetupError):
    """`drive login` could not finish; the message says why and what to do."""


# --- loading credentials ------------------------------------------------------------------


def load_credentials(drive: DriveConfig) -> BaseCredentials:
    """The credentials ``drive.auth`` asks for, ready to refresh on first use.

    Raises :class:`DestinationError` (not retryable) when a file is missing or malformed.
    """
    if drive.auth == "service_account":
        return _service_account(drive)
    return load_user_token(Path(drive.token_file))


def _service_account(drive: DriveConfig) -> BaseCredentials:
    path = Path(drive.credentials_file)
    info = _read_json(path, "the service-account key (drive.credentials_file)",
                      "download a JSON key for the service account")
    if info.get("type") != "service_account":
        raise DestinationError(
            f"{path} is not a service-account key (drive.auth = \"service_account\"); use the "
            f"JSON key downloaded for the service account, or set drive.auth = \"oauth\"",
            retryable=False)
    try:
        creds = service_account.Credentials.from_service_account_info(info, scopes=[SCOPE_FULL])
    except (ValueError, KeyError) as exc:
        raise DestinationError(f"{path}: the service-account key is incomplete or damaged "
                               f"({type(exc).__name__}); download a new key",
                               retryable=False) from None
    if drive.impersonate:
        creds = creds.with_subject(drive.impersonate)
    return creds


def load_user_token(path: Path) -> user_credentials.Credentials:
    """The refreshable user token `drive login` stored at ``path``.

    Built with ``Credentials(..., token_uri=...)`` because ``from_authorized_user_info``
    ignores the file's token_uri; the stored access token is not reused (refreshing costs one
    request and avoids trusting an expiry written by another clock).
    """
    if not str(path) or str(path) == ".":
        raise DestinationError(f"drive.token_file is not set; set it and {LOGIN_HINT}",
                               retryable=False)
    info = _read_json(path, "the Google sign-in (drive.token_file)", LOGIN_HINT)
    missing = [k for k in ("refresh_token", "client_id", "client_secret") if not info.get(k)]
    if missing:
        raise DestinationError(f"{path} is not a complete Google sign-in (missing "
                               f"{', '.join(missing)}); {LOGIN_HINT} again", retryable=False)
    return user_credentials.Credentials(
        token=None,
        refresh_token=info["refresh_token"],
        token_uri=info.get("token_uri") or DEFAULT_TOKEN_URI,
        client_id=info["client_id"],
        client_secret=info["client_secret"],
        scopes=info.get("scopes") or [SCOPE_FILE],
    )


def save_user_token(creds: user_credentials.Credentials, path: Path) -> None:
    """Store a user token at ``path`` with mode 0600 (its folder 0700 if created)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    data = json.loads(creds.to_json())
    data.pop("token", None)     # short-lived; a refresh gets a fresh one
    data.pop("expiry", None)
    write_private_atomic(path, (json.dumps(data, indent=2) + "\n").encode())


def _read_json(path: Path, what: str, fix: str) -> dict[str, Any]:
    try:
        st = path.stat()
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DestinationError(f"{what} {path} does not exist; {fix}", retryable=False) from None
    except OSError as exc:
        raise DestinationError(f"cannot read {what} {path}: {exc.strerror or exc}",
                               retryable=False) from None
    if os.name == "posix" and st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s is readable by other users; run `chmod 600 %s`", path, path)
    try:
        data = json.loads(text)
    except ValueError:
        raise DestinationError(f"{what} {path} is not valid JSON; {fix}",
                               retryable=False) from None
    if not isinstance(data, dict):
        raise DestinationError(f"{what} {path} is not a JSON object; {fix}", retryable=False)
    return data


# --- drive login ----------------------------------------------------------------------------


def parse_pasted(value: str, state: str) -> str:
    """The authorization code in what came back: a redirect address, a query, or the code.

    Refuses an address from another sign-in attempt (its ``state`` differs) and reports a
    sign-in that was cancelled or refused.
    """
    value = value.strip()
    if not value:
        raise LoginError("nothing was pasted; run `siip-watcher drive login` again")
    if "code=" not in value and "error=" not in value:
        return value                          # the bare code
    query = urlsplit(value).query if "://" in value else value.lstrip("/?")
    if "?" in query:
        query = query.split("?", 1)[1]
    params = parse_qs(query)
    if "error" in params:
        raise LoginError(f"Google sign-in was not completed ({params['error'][0]}); run "
                         f"`siip-watcher drive login` again and allow access")
    if params.get("state", [state])[0] != state:
        raise LoginError("that address belongs to another sign-in attempt; paste the address "
                         "from this attempt, or run `siip-watcher drive login` again")
    code = params.get("code", [""])[0]
    if not code:
        raise LoginError("the pasted address holds no code; copy the whole address from the "
                         "browser's address bar")
    return code


class _RedirectCatcher(HTTPServer):
    """A one-shot loopback server that hands the redirect's address to ``results``."""

    def __init__(self, results: queue.Queue[str], port: int) -> None:
        self.results = results
        super().__init__(("127.0.0.1", port), _RedirectHandler)


class _RedirectHandler(BaseHTTPRequestHandler):
    server: _RedirectCatcher

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        params = parse_qs(urlsplit(self.path).query)
        if "code" not in params and "error" not in params:
            self.send_error(404)
            return
        body = (b"<html><body><h2>siip-watcher: sign-in received.</h2>"
                b"<p>You can close this window and return to the terminal.</p></body></html>")
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.server.results.put(self.path)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """The query holds the authorization code: never log requests."""


@contextlib.contextmanager
def _insecure_transport_for_loopback(*urls: str) -> Iterator[None]:
    """oauthlib refuses plain-http OAuth endpoints; allow them only on loopback (tests)."""
    if not all(is_loopback_url(u) for u in urls):
        yield
        return
    old = os.environ.get("OAUTHLIB_INSECURE_TRANSPORT")
    os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("OAUTHLIB_INSECURE_TRANSPORT", None)
        else:
            os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = old


# the sign-in steps in the order the admin sees them
def login(  # noqa: PLR0915
    drive: DriveConfig,
    *,
    ask: Callable[[str], str] = input,
    say: Callable[[str], None] = print,
    open_browser: bool = False,
    port: int = 0,
    timeout: float = 900.0,
) -> user_credentials.Credentials:
    """Run the installed-app sign-in and store the token in ``drive.token_file``.

    Prints the address to open; then takes whichever comes first: the browser's redirect to
    the loopback port (same machine, or an SSH tunnel) or the address pasted back (headless).
    """
    if drive.auth != "oauth":
        raise LoginError("drive.auth is \"service_account\": the key file is the sign-in; "
                         "`drive login` is only for drive.auth = \"oauth\"")
    if not drive.token_file:
        raise LoginError("drive.token_file is not set; set where the sign-in is kept, e.g. "
                         "token_file = \"/etc/siip-watcher/drive-token.json\"")
    client_file = Path(drive.credentials_file)
    client = _read_client_config(client_file)

    results: queue.Queue[str] = queue.Queue()
    try:
        catcher = _RedirectCatcher(results, port)
    except OSError as exc:
        raise LoginError(f"cannot listen on 127.0.0.1:{port} for the sign-in redirect "
                         f"({exc.strerror or exc}); try another --port") from None
    redirect_uri = f"http://127.0.0.1:{catcher.server_address[1]}/"
    endpoints = (client["installed"].get("auth_uri") or "https://accounts.google.com/",
                 client["installed"].get("token_uri") or DEFAULT_TOKEN_URI)
    flow = Flow.from_client_config(client, scopes=[SCOPE_FILE], redirect_uri=redirect_uri)
    with _insecure_transport_for_loopback(*endpoints):
        auth_url, state = flow.authorization_url(access_type="offline", prompt="consent")

    serving = threading.Thread(target=catcher.serve_forever, kwargs={"poll_interval": 0.1},
                               name="drive-login-redirect", daemon=True)
    serving.start()

    def read_paste() -> None:
        # no terminal (EOF): only the loopback redirect can finish the sign-in
        with contextlib.suppress(EOFError, OSError):
            results.put(ask("Paste the address (or the code) here and press Enter: "))

    say("Open this address in a browser, sign in and allow access to the files siip-watcher "
        "creates:")
    say("")
    say(f"    {auth_url}")
    say("")
    say("If the browser is on another machine it will end on an address that does not load "
        "(127.0.0.1:...): copy that whole address from the address bar and paste it here.")
    if open_browser:
        with contextlib.suppress(webbrowser.Error):
            webbrowser.open(auth_url)
    threading.Thread(target=read_paste, name="drive-login-paste", daemon=True).start()
    try:
        try:
            answer = results.get(timeout=timeout)
        except queue.Empty:
            raise LoginError(f"no sign-in arrived within {timeout:.0f} s; run "
                             f"`siip-watcher drive login` again") from None
    finally:
        catcher.shutdown()
        catcher.server_close()

    code = parse_pasted(answer, state)
    try:
        with _insecure_transport_for_loopback(*endpoints):
            flow.fetch_token(code=code)
    # oauthlib and requests raise many types; all mean the same here
    except Exception as exc:  # noqa: BLE001
        desc = getattr(exc, "description", "") or (exc.args[0] if exc.args else "")
        raise LoginError(f"Google did not accept the sign-in ({type(exc).__name__}: "
                         f"{one_line(str(desc), 120)}); run `siip-watcher drive login` "
                         f"again") from None
    creds = flow.credentials
    if not creds.refresh_token:
        raise LoginError("Google returned no refresh token; remove siip-watcher's access at "
                         "myaccount.google.com/permissions and run `siip-watcher drive login` "
                         "again")
    save_user_token(creds, Path(drive.token_file))
    return creds


def _read_client_config(path: Path) -> dict[str, Any]:
    if not str(path) or str(path) == ".":
        raise LoginError("drive.credentials_file is not set; download the OAuth client JSON "
                         "(type \"Desktop app\") from Google Cloud Console and name it there")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LoginError(f"the OAuth client file {path} (drive.credentials_file) does not "
                         f"exist; download it from Google Cloud Console") from None
    except (OSError, ValueError) as exc:
        raise LoginError(f"cannot read the OAuth client file {path}: "
                         f"{getattr(exc, 'strerror', None) or type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise LoginError(f"{path} is not an OAuth client file")
    if data.get("type") == "service_account":
        raise LoginError(f"{path} is a service-account key; set drive.auth = "
                         f"\"service_account\" (no login needed) or use an OAuth client file")
    if "installed" not in data:
        kind = "a \"Web application\" client" if "web" in data else "not an OAuth client file"
        raise LoginError(f"{path} is {kind}; create an OAuth client of type \"Desktop app\" "
                         f"and download its JSON")
    return data
