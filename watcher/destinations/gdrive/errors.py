"""What a Google Drive error answer means and what the admin should do about it.

Pure functions: an HTTP status and body in, a decision and one line of advice out; and
:class:`Backoff`, how long to wait before the next try. The advice never quotes a URL (a
resumable-session URI is a credential) and never a token.
"""

from __future__ import annotations

import http.client
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from http import HTTPStatus

import httplib2
from google.auth import exceptions as auth_exceptions

from watcher.destinations.base import DestinationError
from watcher.retry import RetryPolicy, retry_after_seconds

#: answers that mean "slow down and try again" (with 429, whatever its reason)
RATE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
#: answers that mean the account or the drive is full
QUOTA_REASONS = frozenset({"storageQuotaExceeded", "quotaExceeded"})
#: answers that say a daily limit is spent; trying again today is pointless
DAILY_LIMIT_REASONS = frozenset({"dailyLimitExceeded", "dailyLimitExceededUnreg",
                                 "uploadLimitExceeded"})
#: a rate-limit answer whose own words name a daily limit
DAILY_WORDS = re.compile(r"\bdaily\b|\bper day\b|upload limit", re.IGNORECASE)
#: the shared drive holds as many items as Google allows
SHARED_DRIVE_FULL = "teamDriveFileLimitExceeded"
#: the account's role does not allow this on this file (a Content manager deleting)
NOT_ALLOWED = "insufficientFilePermissions"

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
    "trash": "moving the file to the trash",
    "create_folder": "creating the folder",
}


class Action(Enum):
    """What to do after an error answer."""

    RETRY = "retry"              # back off, then (for uploads) ask for the offset
    NEW_SESSION = "new_session"  # the resumable session is gone: start a new one
    GONE = "gone"                # the file does not exist (fine for delete)
    TRASH = "trash"              # may not delete it for good: move it to the trash instead
    FATAL = "fatal"              # stop: retrying cannot help until the admin acts


@dataclass(frozen=True)
class ApiError:
    """The useful part of a Drive error answer."""

    status: int
    reason: str = ""
    message: str = ""
    #: seconds the answer's Retry-After header asks to wait, if it has one
    retry_after: float | None = None


@dataclass(frozen=True)
class Context:
    """What the advice needs to know about the configuration."""

    auth: str = "oauth"                # oauth | service_account
    folder: str = ""                   # the folder (or shared drive) uploads go into
    impersonate: str = ""
    #: the shared drive the folder is in (configured, or found from the folder), else ""
    shared_drive: str = ""


@dataclass(frozen=True)
class Verdict:
    action: Action
    message: str
    #: Google asked to slow down: retried on the longer rate-limit schedule
    rate_limited: bool = False
    #: seconds Google asked to wait (Retry-After), if it said
    retry_after: float | None = None


def parse_error(status: int, content: bytes | str | None,
                headers: Mapping[str, str] | None = None) -> ApiError:
    """Read Drive's JSON error envelope (``{"error": {"errors": [{"reason": ...}]}}``) and
    the answer's ``Retry-After`` header (``headers`` as httplib2 gives them, lower-case)."""
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
    wait = retry_after_seconds(headers.get("retry-after")) if headers else None
    return ApiError(status=status, reason=reason, message=one_line(message), retry_after=wait)


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
    if s in (HTTPStatus.FORBIDDEN, HTTPStatus.TOO_MANY_REQUESTS) and is_daily_limit(err):
        return Verdict(Action.FATAL, daily_limit_message(detail))
    if s >= HTTPStatus.INTERNAL_SERVER_ERROR or s in (HTTPStatus.REQUEST_TIMEOUT,
                                                      HTTPStatus.TOO_MANY_REQUESTS):
        return Verdict(Action.RETRY, f"Google Drive failed while {doing} ({detail})",
                       rate_limited=s == HTTPStatus.TOO_MANY_REQUESTS, retry_after=err.retry_after)
    if s == HTTPStatus.FORBIDDEN and reason in RATE_REASONS:
        return Verdict(Action.RETRY, f"Google Drive asked to slow down while {doing} "
                       f"({detail})", rate_limited=True, retry_after=err.retry_after)
    if s == HTTPStatus.FORBIDDEN and reason == SHARED_DRIVE_FULL:
        return Verdict(Action.FATAL, shared_drive_full_message(ctx, detail))
    if s == HTTPStatus.FORBIDDEN and reason in QUOTA_REASONS:
        return Verdict(Action.FATAL, storage_full_message(ctx))
    if s == HTTPStatus.FORBIDDEN and reason == NOT_ALLOWED and op == "delete":
        return Verdict(Action.TRASH, f"Google Drive does not let this account delete files "
                       f"for good ({detail})")
    if s == HTTPStatus.FORBIDDEN and reason == NOT_ALLOWED and op == "trash":
        return Verdict(Action.FATAL, f"Google Drive let this account neither delete nor trash "
                       f"the file ({detail}); make it a Manager of the shared drive")
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


@dataclass(frozen=True)
class Backoff:
    """The two retry schedules of Drive requests: one for errors (5xx, resets, timeouts),
    one, longer, for Google asking to slow down (403 rate limits, 429), whose quotas are
    counted per minute or per 100 seconds and lift by themselves."""

    errors: RetryPolicy
    rate_limits: RetryPolicy
    #: the longest ``Retry-After`` waited for within an attempt: a longer one ends the
    #: attempt, and the queue (which would otherwise try again after 5 minutes) waits it
    longest_wait: float = 120.0

    def wait(self, verdict: Verdict, failures: int, *, then: str = "") -> float:
        """Seconds to wait before trying again after ``failures`` consecutive failures, the
        last of which ``verdict`` describes.

        Raises :class:`DestinationError` (retryable: the queue tries again later) once the
        schedule is used up, or when Google asks for a longer wait (``Retry-After``) than
        :attr:`longest_wait`, which the error carries to the queue. ``then`` ends the
        error's message (what happens next, for the admin).
        """
        policy = self.rate_limits if verdict.rate_limited else self.errors
        asked = verdict.retry_after
        tail = f", {then}" if then else ""
        if asked is not None and asked > self.longest_wait:
            raise DestinationError(f"{verdict.message}; Google asked to wait {asked:.0f} s"
                                   f"{tail}", retry_after=asked)
        if policy.gives_up(failures):
            raise DestinationError(f"{verdict.message}; gave up after {failures} tries{tail}",
                                   retry_after=asked)
        return policy.delay(failures, at_least=asked)


def is_daily_limit(err: ApiError) -> bool:
    """Google's own reason or words say a daily limit is spent.

    A plain ``userRateLimitExceeded`` is not one: it also answers a burst of requests, and
    lifts within minutes, so treating it as "wait until tomorrow" loses a day of copies.
    """
    if err.reason in DAILY_LIMIT_REASONS:
        return True
    return err.reason in RATE_REASONS | {""} and bool(DAILY_WORDS.search(err.message))


def daily_limit_message(detail: str = "") -> str:
    """A daily limit Google named (the 750 GB per user per day of uploads, or the project's
    daily request quota)."""
    extra = f" ({detail})" if detail else ""
    return ("Google Drive refused more uploads for today: a daily limit is spent (uploads are "
            f"limited to 750 GB per user per day){extra}; the copy is retried later")


def storage_full_message(ctx: Context) -> str:
    """``storageQuotaExceeded``: whose storage is full depends on where the files go."""
    if ctx.shared_drive:
        return (f"Google Drive refused the upload: the shared drive {ctx.shared_drive} is out "
                f"of storage (it uses the organization's Workspace storage); free space in it "
                f"or ask the Workspace admin for more storage, the copy stays queued")
    if ctx.auth == "service_account" and not ctx.impersonate:
        return ("Google Drive refused the upload: a service account has no storage quota of "
                "its own; set drive.shared_drive_id to a shared drive the account is a member "
                "of, or use drive.auth = \"oauth\"")
    whose = (f"{ctx.impersonate}'s (drive.impersonate)" if ctx.impersonate
             else "the account's")
    return (f"Google Drive refused the upload: {whose} Drive storage is full; free space in "
            f"Drive (or add storage), the copy stays queued")


def shared_drive_full_message(ctx: Context, detail: str) -> str:
    """``teamDriveFileLimitExceeded``: a shared drive holds at most 400,000 items."""
    where = f"the shared drive {ctx.shared_drive}" if ctx.shared_drive else "the shared drive"
    return (f"Google Drive refused the upload: {where} holds as many files and folders as "
            f"Google allows (400,000, its trash included; {detail}); delete files from it and "
            f"empty its trash, or set drive.shared_drive_id to another shared drive")


def shared_drive_advice(folder_id: str, configured: str, found: str) -> str | None:
    """What to set when drive.shared_drive_id (``configured``) does not name the shared drive
    the folder lies in (``found``, "" for My Drive); None when they agree."""
    if found == configured:
        return None
    folder = f'drive.folder_id "{folder_id}"'
    if found and not configured:
        return (f"{folder} is a folder in the shared drive {found} but drive.shared_drive_id "
                f"is not set: set shared_drive_id = \"{found}\" under [drive] (meanwhile "
                f"siip-watcher finds the shared drive from the folder each time)")
    if found:
        return (f"{folder} is in the shared drive {found}, not in drive.shared_drive_id "
                f"{configured}: set shared_drive_id = \"{found}\" under [drive]")
    return (f"{folder} is not in a shared drive but drive.shared_drive_id is {configured}: "
            f"remove shared_drive_id from [drive], or set folder_id to a folder in that "
            f"shared drive")


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
