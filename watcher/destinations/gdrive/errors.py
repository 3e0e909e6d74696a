"""What a Google Drive error answer means and what the admin should do about it.

Pure functions: an HTTP status and body in, a decision and one line of advice out. The
advice never quotes a URL (a resumable-session URI is a credential) and never a token.
"""

from __future__ import annotations

import http.client
import json
import re
from dataclasses import dataclass
from enum import Enum
from http import HTTPStatus

import httplib2
from google.auth import exceptions as auth_exceptions

#: answers that mean "slow down and try again"
RATE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
#: answers that mean the account or the drive is full
QUOTA_REASONS = frozenset({"storageQuotaExceeded", "quotaExceeded"})
#: answers that mean a daily limit is spent; trying again today is pointless
DAILY_LIMIT_REASONS = frozenset({"uploadLimitExceeded", "dailyLimitExceeded",
                                 "teamDriveFileLimitExceeded"})

#: operations, as the error text names them
OPS = {
    "initiate": "starting the upload",
    "chunk": "uploading",
    "status": "asking for the upload's progress",
    "list": "listing the backups",
    "find": "looking for the backup",
    "get": "reading the file's details",
    "media": "downloading",
    "delete": "deleting",
    "create_folder": "creating the folder",
}


class Action(Enum):
    """What to do after an error answer."""

    RETRY = "retry"              # back off, then (for uploads) ask for the offset
    NEW_SESSION = "new_session"  # the resumable session is gone: start a new one
    GONE = "gone"                # the file does not exist (fine for delete)
    FATAL = "fatal"              # stop: retrying cannot help until the admin acts


@dataclass(frozen=True)
class ApiError:
    """The useful part of a Drive error answer."""

    status: int
    reason: str = ""
    message: str = ""


@dataclass(frozen=True)
class Context:
    """What the advice needs to know about the configuration."""

    auth: str = "oauth"                # oauth | service_account
    folder: str = ""                   # the folder (or shared drive) uploads go into
    impersonate: str = ""


@dataclass(frozen=True)
class Verdict:
    action: Action
    message: str
    #: a rate limit: if it never lifts during an upload it is the daily upload limit
    rate_limited: bool = False


def parse_error(status: int, content: bytes | str | None) -> ApiError:
    """Read Drive's JSON error envelope (``{"error": {"errors": [{"reason": ...}]}}``)."""
    text = content.decode("utf-8", "replace") if isinstance(content, bytes) else (content or "")
    reason, message = "", ""
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        message = str(err.get("message") or "")
        errors = err.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            reason = str(errors[0].get("reason") or "")
            message = message or str(errors[0].get("message") or "")
        reason = reason or str(err.get("status") or "")
    elif isinstance(body, dict) and isinstance(body.get("error"), str):
        # the OAuth token endpoint's shape: {"error": "invalid_grant", "error_description": ..}
        reason = body["error"]
        message = str(body.get("error_description") or "")
    return ApiError(status=status, reason=reason, message=one_line(message))


def one_line(text: str, limit: int = 160) -> str:
    """Collapse whitespace, drop anything that looks like a URL, and cut to ``limit``."""
    text = re.sub(r"https?://\S+", "<url>", text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# one verdict per kind of Google answer
def classify(err: ApiError, op: str, ctx: Context) -> Verdict:  # noqa: PLR0911
    """Decide what an error answer to operation ``op`` means (see :data:`OPS`)."""
    doing = OPS.get(op, op)
    detail = f"{err.status} {err.reason}".strip() + (f": {err.message}" if err.message else "")
    s, reason = err.status, err.reason

    if s in (HTTPStatus.NOT_FOUND, HTTPStatus.GONE) and op in ("chunk", "status"):
        return Verdict(Action.NEW_SESSION, "the upload session expired; starting a new one")
    if s >= HTTPStatus.INTERNAL_SERVER_ERROR or s in (HTTPStatus.REQUEST_TIMEOUT,
                                                      HTTPStatus.TOO_MANY_REQUESTS):
        return Verdict(Action.RETRY, f"Google Drive failed while {doing} ({detail})",
                       rate_limited=s == HTTPStatus.TOO_MANY_REQUESTS)
    if s == HTTPStatus.FORBIDDEN and reason in RATE_REASONS:
        return Verdict(Action.RETRY, f"Google Drive asked to slow down while {doing} "
                       f"({detail})", rate_limited=True)
    if s == HTTPStatus.FORBIDDEN and reason in QUOTA_REASONS:
        if ctx.auth == "service_account" and not ctx.impersonate:
            return Verdict(Action.FATAL, "Google Drive refused the upload: a service account has "
                           "no storage quota of its own; set drive.shared_drive_id to a shared "
                           "drive the account is a member of, or use drive.auth = \"oauth\"")
        return Verdict(Action.FATAL, "Google Drive refused the upload: the account's Drive "
                       "storage is full; free space in Drive (or add storage), the copy stays "
                       "queued")
    if s == HTTPStatus.FORBIDDEN and reason in DAILY_LIMIT_REASONS:
        return Verdict(Action.FATAL, daily_limit_message(detail))
    if s == HTTPStatus.UNAUTHORIZED:
        return Verdict(Action.FATAL, unauthorized_message(ctx))
    if s == HTTPStatus.NOT_FOUND:
        if op in ("initiate", "list", "find", "create_folder"):
            return Verdict(Action.FATAL, f"Google Drive folder '{ctx.folder}' was not found or "
                           f"this account cannot see it; check drive.folder_id (or "
                           f"drive.shared_drive_id) and that the folder is shared with the "
                           f"account")
        return Verdict(Action.GONE, f"the file is no longer on Google Drive ({detail})")
    if s == HTTPStatus.FORBIDDEN:
        return Verdict(Action.FATAL, f"Google Drive denied access while {doing} ({detail}); "
                       f"check that the account may write to folder '{ctx.folder}'")
    return Verdict(Action.FATAL, f"Google Drive rejected the request while {doing} ({detail})")


def daily_limit_message(detail: str = "") -> str:
    """The 750 GB/day per-user upload limit (it shows up as a rate limit that never lifts)."""
    extra = f" ({detail})" if detail else ""
    return ("Google Drive refused more uploads for now: the daily upload limit (750 GB per "
            f"user per day) or a rate limit that did not lift{extra}; the copy is retried "
            "later")


def unauthorized_message(ctx: Context) -> str:
    """Credentials that still fail after a refresh."""
    if ctx.auth == "service_account":
        return ("Google Drive rejected the service-account credentials; check "
                "drive.credentials_file (the key may be deleted or disabled)"
                + (" and the domain-wide delegation for drive.impersonate"
                   if ctx.impersonate else ""))
    return ("Google Drive rejected the saved sign-in (expired or revoked); run "
            "`siip-watcher drive login` again")


def refresh_failure_message(ctx: Context, error_text: str) -> str:
    """The token endpoint refused to issue an access token."""
    why = one_line(error_text, 120)
    if ctx.auth == "service_account":
        return (f"the service account could not get a Google token ({why}); check "
                "drive.credentials_file" + (" and the domain-wide delegation for "
                                            "drive.impersonate" if ctx.impersonate else ""))
    return (f"the Google sign-in could not be refreshed ({why}); run `siip-watcher drive "
            "login` again")


# --- exceptions (no answer at all, or a token that cannot be had) ---------------------------


def exception_verdict(exc: BaseException, op: str, ctx: Context) -> Verdict | None:
    """What a transport or sign-in exception means, or None if it is none of those.

    Connection resets, refusals, timeouts and half-read answers are retried; a token
    endpoint that refuses for good is fatal with a hint on how to sign in again.
    """
    doing = OPS.get(op, op)
    if isinstance(exc, auth_exceptions.RefreshError):
        text = str(exc.args[0]) if exc.args else type(exc).__name__
        if getattr(exc, "retryable", False):
            return Verdict(Action.RETRY, f"the Google token endpoint failed while {doing} "
                           f"({one_line(text, 120)})")
        return Verdict(Action.FATAL, refresh_failure_message(ctx, text))
    if isinstance(exc, auth_exceptions.TransportError):
        return Verdict(Action.RETRY, f"cannot reach the Google token endpoint while {doing} "
                       f"({_exc_text(exc)})")
    if isinstance(exc, (OSError, http.client.HTTPException, httplib2.HttpLib2Error)):
        return Verdict(Action.RETRY, f"the connection to Google Drive failed while {doing} "
                       f"({_exc_text(exc)})")
    return None


def _exc_text(exc: BaseException) -> str:
    """The exception's kind and reason, without any address it may quote."""
    reason = getattr(exc, "strerror", None) or (str(exc.args[0]) if exc.args else "")
    name = type(exc).__name__
    return one_line(f"{name}: {reason}" if reason else name, 120)
