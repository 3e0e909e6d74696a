"""The OAuth side: the token endpoint's three grants and the access tokens it hands out.

- service-account JWT grant: the signature is checked against the registered public key;
  ``sub`` (domain-wide delegation) only for accounts allowed to impersonate;
- ``refresh_token`` grant, for a stored user sign-in;
- ``authorization_code`` grant, with the PKCE S256 check, for ``drive login``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from typing import Any
from urllib.parse import parse_qs, unquote

from .state import DriveState, Principal

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: google-auth always addresses Google's endpoint, whatever token_uri it posts to
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"


def issue_access_token(state: DriveState, principal: Principal) -> str:
    """A bearer token for ``principal``, valid for ``state.token_lifetime`` seconds."""
    token = "ya29.test-" + secrets.token_urlsafe(24)
    with state.lock:
        state.tokens[token] = (principal, time.time() + state.token_lifetime)
    return token


def principal_for(state: DriveState, header: str | None) -> Principal | None:
    """Who an ``Authorization`` header speaks for; None if missing, unknown or expired."""
    if not header or not header.startswith("Bearer "):
        return None
    with state.lock:
        found = state.tokens.get(header[7:])
    if not found or found[1] < time.time():
        return None
    return found[0]


def token_form(body: bytes, authorization: str) -> dict[str, str]:
    """The token request's form; client credentials may also come as HTTP Basic auth."""
    form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
    if authorization.startswith("Basic "):
        cid, _, secret = base64.b64decode(authorization[6:]).decode().partition(":")
        form.setdefault("client_id", unquote(cid))
        form.setdefault("client_secret", unquote(secret))
    return form


def grant(state: DriveState, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """The token endpoint's answer (status, JSON body) to one token request."""
    kind = form.get("grant_type", "")
    with state.lock:
        if kind == JWT_GRANT:
            who = verify_jwt(state, form.get("assertion", ""))
        elif kind == "refresh_token":
            who = state.refresh_tokens.get(form.get("refresh_token", ""))
            if who is None or not _client_ok(state, form) or \
                    who.client_id != form.get("client_id"):
                return 400, {"error": "invalid_grant",
                             "error_description": "Token has been expired or revoked."}
        elif kind == "authorization_code":
            return _code_grant(state, form)
        else:
            return 400, {"error": "unsupported_grant_type"}
        if who is None:
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        reply: dict[str, Any] = {"access_token": issue_access_token(state, who),
                                 "expires_in": state.token_lifetime, "token_type": "Bearer"}
        if kind == "refresh_token":
            reply["scope"] = who.scope
        return 200, reply


def _client_ok(state: DriveState, form: dict[str, str]) -> bool:
    return state.clients.get(form.get("client_id", "")) == form.get("client_secret")


def _code_grant(state: DriveState, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
    entry = state.codes.pop(form.get("code", ""), None)
    if entry is None or not _client_ok(state, form) or entry[0] != form.get("client_id") or \
            entry[1] != form.get("redirect_uri"):
        return 400, {"error": "invalid_grant", "error_description": "Malformed auth code."}
    challenge = entry[2]
    if challenge and _s256(form.get("code_verifier", "")) != challenge:
        return 400, {"error": "invalid_grant", "error_description": "Invalid code verifier."}
    who = entry[3]
    rt = "1//rt-" + secrets.token_urlsafe(24)
    state.refresh_tokens[rt] = who
    return 200, {"access_token": issue_access_token(state, who),
                 "expires_in": state.token_lifetime, "token_type": "Bearer",
                 "scope": who.scope, "refresh_token": rt}


def verify_jwt(state: DriveState, assertion: str) -> Principal | None:
    """The principal a service account's signed JWT stands for; None if it is not valid."""
    # cryptography is a test extra: imported here so that `python -m fakedrive` (the upload
    # benchmark, user sign-ins only) starts without it
    from cryptography.exceptions import InvalidSignature  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import padding  # noqa: PLC0415

    try:
        head, body, sig = assertion.split(".")
        claims = json.loads(_b64(body))
        key = state.service_accounts.get(claims.get("iss", ""))
        if key is None:
            return None
        key.verify(_b64(sig), f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    except (ValueError, InvalidSignature):
        return None
    if claims.get("aud") not in (state.base_url + "token", GOOGLE_TOKEN_URI) or \
            claims.get("exp", 0) < time.time():
        return None
    scope = claims.get("scope", "")
    if claims.get("sub"):
        if claims["iss"] not in state.delegation:
            return None
        return Principal("user", claims["sub"], "", scope)
    return Principal("service_account", claims["iss"], "", scope)


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode() \
        .rstrip("=")
