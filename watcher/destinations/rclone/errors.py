"""rclone's failures in plain words: what went wrong, what to do, and whether trying again
later can help. Pure: it reads rclone's exit code and its last log messages.

rclone's own wording differs per backend (OneDrive, Dropbox, SFTP, S3, WebDAV all say
"out of space" their way), so each cause is a list of the phrases that mean it. The first
cause whose phrase appears wins; the order puts the more specific causes first (an expired
token is also a 401). What rclone said is added, shortened and with anything that could be
a secret (a URL's query, credentials in a URL) cut out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

#: rclone's exit codes (https://rclone.org/docs/#exit-code): 3 directory not found, 4 file
#: not found
DIR_NOT_FOUND, FILE_NOT_FOUND = 3, 4
_DETAIL_CHARS = 200


@dataclass(frozen=True)
class Cause:
    """One kind of failure: the phrases that show it, and what to tell the admin."""

    key: str
    phrases: tuple[str, ...]
    what: str
    hint: str
    retryable: bool


#: the causes, most specific first; ``{remote}`` and ``{name}`` are filled in
CAUSES: tuple[Cause, ...] = (
    Cause("no_remote", ("didn't find section in config file",),
          "the remote '{name}' is not in the rclone configuration",
          "check rclone.remote and rclone.config_file (`rclone listremotes` names the remotes "
          "there), or add it with `rclone config`", retryable=False),
    Cause("config_locked", ("unable to decrypt configuration", "rclone_config_pass",
                            "failed to load config file", "couldn't decrypt"),
          "the rclone configuration file cannot be read",
          "if it is encrypted, give the service RCLONE_CONFIG_PASS in its environment "
          "(see docs/rclone.md); else check rclone.config_file", retryable=False),
    Cause("token", ("invalid_grant", "couldn't fetch token", "token expired", "expired_token",
                    "empty token found", "invalidauthenticationtoken", "refresh token",
                    "unauthorized_client", "token has been expired or revoked",
                    "expired_access_token"),
          "the sign-in saved for '{name}' has expired or was revoked",
          "renew it on a machine with a browser: `rclone config reconnect {name}:` (a server "
          "without one: see docs/rclone.md, `rclone authorize`)", retryable=False),
    Cause("quota", ("quotalimitreached", "quota exceeded", "insufficient storage",
                    "insufficient_space", "insufficientstorage", "no space left on device",
                    "storage quota", "quotaexceeded", "507 insufficient", "status code: 507",
                    "statuscode: 507", "over quota", "disk quota"),
          "{remote} is full",
          "free space there or get more; the copy stays queued and the local snapshot is "
          "kept", retryable=False),
    Cause("refused", ("401 unauthorized", "403 forbidden", "accessdenied", "access denied",
                      "invalidaccesskeyid", "signaturedoesnotmatch", "unable to authenticate",
                      "permission denied", "authentication failed", "status code: 401",
                      "statuscode: 401", "statuscode: 403", "login failed",
                      # an SFTP remote with neither password nor key falls back to an agent
                      # that a service does not have
                      "ssh agent requested"),
          "{remote} refused the credentials or the permission to write",
          "check the remote's user and password or keys, and its rights on the folder, "
          "with `rclone config`", retryable=False),
    Cause("rate", ("429 too many", "status code: 429", "statuscode: 429", "too many requests",
                   "rate limit", "ratelimit", "throttl", "slowdown", "too_many_requests"),
          "{remote} asked to slow down",
          "the copy stays queued and is tried again later", retryable=True),
    Cause("network", ("connection refused", "no such host", "i/o timeout",
                      "network is unreachable", "no route to host", "dial tcp",
                      "connection reset", "broken pipe", "unexpected eof", "tls handshake",
                      "context deadline exceeded", "temporary failure in name resolution",
                      "server misbehaving", "handshake failed: eof", "connection lost",
                      "use of closed network connection", "eof"),
          "cannot reach {remote} (the network is down or the server is off)",
          "the copy stays queued and is sent when it answers again", retryable=True),
)

_URL_QUERY = re.compile(r"(https?://[^\s\"'?]*)\?[^\s\"']*")
_URL_USERINFO = re.compile(r"(\w+://)[^/\s@\"']*@")
_TOKEN_JSON = re.compile(r"\{[^{}]*token[^{}]*\}", re.IGNORECASE)


def remote_name(remote: str) -> str:
    """The name of the remote in ``name:path`` (``onedrive`` in ``onedrive:Respaldos``)."""
    return remote.split(":", 1)[0]


def scrub(text: str) -> str:
    """``text`` without what could be a secret: URL queries (signatures), credentials in a
    URL, and JSON that mentions a token; one line, shortened."""
    text = _TOKEN_JSON.sub("{…}", text)
    text = _URL_USERINFO.sub(r"\1…@", text)
    text = _URL_QUERY.sub(r"\1?…", text)
    text = " ".join(text.split())
    return text if len(text) <= _DETAIL_CHARS else text[: _DETAIL_CHARS - 1] + "…"


@dataclass(frozen=True)
class Explained:
    """A failure in plain words: ``message`` (one line, with the hint) and ``retryable``."""

    key: str
    message: str
    retryable: bool


def explain(code: int, lines: Sequence[str], *, remote: str, doing: str) -> Explained:
    """What rclone's exit ``code`` and its last log ``lines`` mean, while ``doing`` (``"copy
    siip-....tar.zst"``) at ``remote``."""
    said = [line for line in lines if line.strip()]
    text = " ".join(said).lower()
    detail = scrub(said[-1]) if said else f"exit code {code}"
    fill = {"remote": remote, "name": remote_name(remote)}
    for cause in CAUSES:
        if any(phrase in text for phrase in cause.phrases):
            return Explained(cause.key, f"rclone could not {doing}: "
                             f"{cause.what.format(**fill)}; {cause.hint.format(**fill)} "
                             f"(rclone: {detail})", cause.retryable)
    return Explained("other", f"rclone could not {doing} at {remote} (rclone: {detail}); the "
                     f"copy stays queued and is tried again later", True)
