"""The HTTP side of the Drive destination: an httplib2 transport and the API client.

- The client is built from the discovery document bundled with google-api-python-client,
  with its ``rootUrl`` replaced by ``drive.api_root``: no network fetch of discovery, and
  every call goes to the configured root (tests, proxies, mirrors).
- httplib2 gets an explicit timeout (its default is to wait forever), does not treat 308 as
  a redirect (a resumable upload's "go on" answer), and for a loopback root ignores proxy
  variables, which would otherwise send 127.0.0.1 traffic to a proxy (or fail without
  PySocks).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import httplib2
from google.auth.credentials import Credentials
from google_auth_httplib2 import AuthorizedHttp
from googleapiclient.discovery import build_from_document
from googleapiclient.discovery_cache import get_static_doc

from watcher.config.settings import is_loopback_host


def is_loopback_url(url: str) -> bool:
    """True for http(s)://127.x.x.x, [::1] or localhost addresses."""
    return is_loopback_host(urlsplit(url).hostname or "")


def normalise_root(api_root: str) -> str:
    """The API root with exactly one trailing slash (discovery joins paths onto it)."""
    return api_root.rstrip("/") + "/"


def build_http(api_root: str, timeout: float) -> httplib2.Http:
    """A plain httplib2 transport for ``api_root`` with the settings described above."""
    proxy: Any = None if is_loopback_url(api_root) else httplib2.proxy_info_from_environment
    http = httplib2.Http(timeout=timeout, proxy_info=proxy)
    # a 308 with a Range header means "resume from here", never "follow a redirect"
    http.redirect_codes = http.redirect_codes - {308}
    return http


def set_timeout(http: Any, seconds: float) -> None:
    """Give each socket operation of the requests ``http`` sends from now on ``seconds``
    (sending a whole chunk is one ``sendall``; waiting for its answer another).

    httplib2 hands its timeout to a connection when it makes one; an upload needs one per
    chunk, sized from the bytes in flight (see ``Pace`` in upload.py), so this sets it on the
    transport, on each connection it keeps and on the socket of an open one. ``http`` is an
    ``httplib2.Http`` or the ``AuthorizedHttp`` around one.
    """
    inner = getattr(http, "http", http)
    inner.timeout = seconds
    for conn in list(inner.connections.values()):
        conn.timeout = seconds
        sock = getattr(conn, "sock", None)
        if sock is not None:
            sock.settimeout(seconds)


def authorized_http(credentials: Credentials, api_root: str, timeout: float) -> AuthorizedHttp:
    """Sign every request with ``credentials``, refreshing them on a 401 (and retrying once).

    The token refresh goes through the same transport, so it has the same timeout.
    """
    return AuthorizedHttp(credentials, http=build_http(api_root, timeout))


def discovery_document(api_root: str) -> dict[str, Any]:
    """The bundled Drive v3 discovery document, pointed at ``api_root``."""
    text = get_static_doc("drive", "v3")
    if text is None:  # pragma: no cover - the document ships with the library
        raise RuntimeError("google-api-python-client has no bundled Drive v3 discovery "
                           "document; reinstall it")
    doc: dict[str, Any] = json.loads(text)
    root = normalise_root(api_root)
    doc["rootUrl"] = root
    doc["baseUrl"] = root + doc.get("servicePath", "drive/v3/")
    doc.pop("mtlsRootUrl", None)
    return doc


def build_service(http: AuthorizedHttp, api_root: str) -> Any:
    """A Drive v3 client (``service.files()...``) that sends everything through ``http``."""
    return build_from_document(discovery_document(api_root), http=http)
