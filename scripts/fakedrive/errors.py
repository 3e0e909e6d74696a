"""Drive's error answers: the JSON body google-api-python-client parses into ``HttpError``."""

from __future__ import annotations

from typing import Any

MESSAGES = {
    "backendError": "Backend Error",
    "rateLimitExceeded": "Rate Limit Exceeded",
    "userRateLimitExceeded": "User rate limit exceeded.",
    "storageQuotaExceeded": "The user's Drive storage quota has been exceeded.",
    "teamDriveFileLimitExceeded": "The file limit for this shared drive has been exceeded.",
    "insufficientFilePermissions": "The user does not have sufficient permissions for this "
                                   "file.",
    "dailyLimitExceeded": "Daily Limit Exceeded",
    "notFound": "File not found.",
    "authError": "Request had invalid authentication credentials.",
    "badRequest": "Bad Request",
}
SA_QUOTA_MESSAGE = ("Service Accounts do not have storage quota. Leverage shared drives "
                    "(https://developers.google.com/workspace/drive/api/guides/about-shareddrives)"
                    ", or use OAuth delegation instead.")


class ApiFailure(Exception):
    """Raised anywhere while handling a request; answered as Drive's JSON error."""

    def __init__(self, status: int, reason: str, message: str | None = None) -> None:
        super().__init__(message or MESSAGES.get(reason, reason))
        self.status, self.reason = status, reason


def error_body(status: int, reason: str, message: str | None = None) -> dict[str, Any]:
    """Drive's error document, with the ``reason`` the client's error mapping reads."""
    msg = message or MESSAGES.get(reason, reason)
    return {"error": {"code": status, "message": msg,
                      "errors": [{"domain": "global", "reason": reason, "message": msg}]}}
