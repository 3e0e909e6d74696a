"""The pure parts of the Drive destination: error meaning, ranges, chunk rounding, hashing,
backoff, the factory's choices and the discovery document."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httplib2
import pytest
from google.auth.exceptions import RefreshError, TransportError

from watcher.config.settings import ConfigError, from_mapping
from watcher.destinations.base import DestinationError
from watcher.destinations.gdrive.destination import GoogleDriveDestination
from watcher.destinations.gdrive.errors import (
    Action,
    Backoff,
    Context,
    Verdict,
    classify,
    exception_verdict,
    one_line,
    parse_error,
)
from watcher.destinations.gdrive.transport import build_http, discovery_document
from watcher.destinations.gdrive.upload import PrefixHasher, parse_range, round_chunk
from watcher.destinations.registry import enabled_destinations, open_destination
from watcher.retry import RetryPolicy

SA = Context(auth="service_account", folder="F1")
USER = Context(auth="oauth", folder="F1")


def envelope(status: int, reason: str, message: str = "m") -> bytes:
    return json.dumps({"error": {"code": status, "message": message,
                                 "errors": [{"reason": reason, "message": message}]}}).encode()


@pytest.mark.parametrize("status,reason,op,action", [
    (500, "backendError", "chunk", Action.RETRY),
    (503, "", "list", Action.RETRY),
    (429, "rateLimitExceeded", "initiate", Action.RETRY),
    (403, "userRateLimitExceeded", "chunk", Action.RETRY),
    (404, "notFound", "chunk", Action.NEW_SESSION),
    (410, "", "status", Action.NEW_SESSION),
    (404, "notFound", "initiate", Action.FATAL),
    (404, "notFound", "delete", Action.GONE),
    (403, "storageQuotaExceeded", "initiate", Action.FATAL),
    (403, "insufficientFilePermissions", "initiate", Action.FATAL),
    (403, "insufficientFilePermissions", "delete", Action.TRASH),
    (403, "insufficientFilePermissions", "trash", Action.FATAL),
    (403, "rateLimitExceeded", "list", Action.RETRY),
    (403, "dailyLimitExceeded", "chunk", Action.FATAL),
    (403, "teamDriveFileLimitExceeded", "initiate", Action.FATAL),
    (401, "authError", "list", Action.FATAL),
    (400, "invalid", "list", Action.FATAL),
])
def test_classify(status: int, reason: str, op: str, action: Action) -> None:
    assert classify(parse_error(status, envelope(status, reason)), op, USER).action is action


def test_quota_advice_depends_on_the_account() -> None:
    err = parse_error(403, envelope(403, "storageQuotaExceeded"))
    assert "shared_drive_id" in classify(err, "initiate", SA).message
    assert "storage is full" in classify(err, "initiate", USER).message
    delegated = Context(auth="service_account", folder="F1", impersonate="a@b.c")
    assert "storage is full" in classify(err, "initiate", delegated).message


def test_quota_advice_matches_the_configuration() -> None:
    err = parse_error(403, envelope(403, "storageQuotaExceeded"))
    for ctx in (Context(auth="service_account", folder="F1", shared_drive="0AsD"),
                Context(auth="oauth", folder="F1", shared_drive="0AsD")):
        message = classify(err, "initiate", ctx).message
        assert "shared drive 0AsD is out of storage" in message
        assert "set drive.shared_drive_id" not in message
    delegated = Context(auth="service_account", folder="F1", impersonate="a@b.c")
    assert "a@b.c" in classify(err, "initiate", delegated).message


def test_only_google_s_own_words_make_a_daily_limit() -> None:
    def verdict(reason: str, message: str) -> Verdict:
        return classify(parse_error(403, envelope(403, reason, message)), "chunk", USER)

    assert verdict("userRateLimitExceeded", "User rate limit exceeded.").action is Action.RETRY
    assert verdict("rateLimitExceeded", "Rate Limit Exceeded").rate_limited
    for reason, message in [("dailyLimitExceeded", "Daily Limit Exceeded"),
                            ("userRateLimitExceeded", "Daily limit for uploads exceeded"),
                            ("uploadLimitExceeded", "m")]:
        daily = verdict(reason, message)
        assert daily.action is Action.FATAL and "daily limit" in daily.message
    shared = verdict("teamDriveFileLimitExceeded", "The file limit ... has been exceeded.")
    assert "400,000" in shared.message and "daily" not in shared.message


def test_retry_after_reaches_the_verdict_and_the_wait() -> None:
    err = parse_error(429, envelope(429, "rateLimitExceeded"), {"retry-after": "30"})
    verdict = classify(err, "list", USER)
    assert verdict.retry_after == 30.0 and verdict.rate_limited
    fast = RetryPolicy(attempts=5, base=0.01, cap=60.0)
    assert Backoff(fast, fast).wait(verdict, 1) >= 30.0
    with pytest.raises(DestinationError, match="asked to wait 30 s") as err_info:
        Backoff(fast, fast, longest_wait=10.0).wait(verdict, 1)
    assert err_info.value.retryable and err_info.value.retry_after == 30.0


def test_rate_limits_have_their_own_longer_schedule() -> None:
    errors = RetryPolicy(attempts=2, base=0.01, cap=0.02)
    limits = RetryPolicy(attempts=4, base=0.01, cap=0.02)
    slow_down = Verdict(Action.RETRY, "slow down", rate_limited=True)
    failed = Verdict(Action.RETRY, "503")
    backoff = Backoff(errors, limits)
    assert backoff.wait(slow_down, 3) <= 0.02
    with pytest.raises(DestinationError, match="gave up after 2 tries"):
        backoff.wait(failed, 2)


def test_unauthorized_advice() -> None:
    err = parse_error(401, envelope(401, "authError"))
    assert "drive login" in classify(err, "list", USER).message
    assert "credentials_file" in classify(err, "list", SA).message


def test_parse_error_shapes() -> None:
    assert parse_error(500, b"<html>oops</html>").reason == ""
    token = parse_error(400, b'{"error": "invalid_grant", "error_description": "revoked"}')
    assert (token.reason, token.message) == ("invalid_grant", "revoked")


def test_messages_are_one_line_without_addresses() -> None:
    text = one_line("failed at\nhttps://x.test/upload?upload_id=SECRET   now")
    assert text == "failed at <url> now"
    err = parse_error(400, envelope(400, "badRequest", "see https://a.b/c?upload_id=S\nx"))
    assert "upload_id" not in classify(err, "chunk", USER).message


def test_exception_verdicts() -> None:
    assert exception_verdict(ConnectionResetError(104, "reset"), "chunk", USER).action \
        is Action.RETRY  # type: ignore[union-attr]
    assert exception_verdict(TimeoutError("timed out"), "chunk", USER).action \
        is Action.RETRY  # type: ignore[union-attr]
    assert exception_verdict(httplib2.ServerNotFoundError("x"), "list", USER).action \
        is Action.RETRY  # type: ignore[union-attr]
    assert exception_verdict(TransportError("down"), "list", USER).action \
        is Action.RETRY  # type: ignore[union-attr]
    fatal = exception_verdict(RefreshError("invalid_grant: revoked", retryable=False), "list",
                              USER)
    assert fatal is not None and fatal.action is Action.FATAL
    assert "drive login" in fatal.message
    assert exception_verdict(RefreshError("x", retryable=True), "list", USER).action \
        is Action.RETRY  # type: ignore[union-attr]
    assert exception_verdict(ValueError("bug"), "list", USER) is None


def test_parse_range_and_round_chunk() -> None:
    assert parse_range(None) == 0
    assert parse_range("bytes=0-262143") == 262144
    with pytest.raises(ValueError):
        parse_range("bytes=5-9")
    assert round_chunk(16 * 1024 * 1024) == 16 * 1024 * 1024
    assert round_chunk(300_000) == 262_144
    assert round_chunk(1) == 262_144


def test_prefix_hasher_resumes_and_skips_resent_bytes(tmp_path: Path) -> None:
    data = bytes(range(256)) * 4000
    path = tmp_path / "a"
    path.write_bytes(data)
    h = PrefixHasher(path)
    h.feed(300_000, data[300_000:400_000])      # resumed: catches up from disk first
    h.feed(350_000, data[350_000:500_000])      # a re-send overlapping what was hashed
    assert h.finish(len(data)) == hashlib.md5(data).hexdigest()


def test_retry_policy_is_exponential_jittered_and_capped() -> None:
    p = RetryPolicy(attempts=4, base=1.0, cap=8.0)
    assert [p.delay(n, rand=lambda: 1.0) for n in (1, 2, 3, 4, 5)] == [1, 2, 4, 8, 8]
    assert p.delay(3, rand=lambda: 0.0) == 2.0
    assert not p.gives_up(3) and p.gives_up(4)


def test_factory(tmp_path: Path) -> None:
    base = {"source": {"root": str(tmp_path)}, "local": {"dir": str(tmp_path / "b")}}
    off = from_mapping(base, environ={}, check_paths=False)
    assert enabled_destinations(off) == []
    with pytest.raises(ConfigError, match="folder_id"):
        open_destination(off, "drive")
    with pytest.raises(ConfigError, match="unknown destination"):
        open_destination(off, "s3")
    on = from_mapping({**base, "drive": {"enabled": True, "folder_id": "F",
                                         "credentials_file": "/nonexistent/client.json",
                                         "token_file": "/nonexistent/token.json"}},
                      environ={}, check_paths=False)
    [drive] = enabled_destinations(on)
    assert isinstance(drive, GoogleDriveDestination) and drive.name == "drive"
    assert drive.chunk_size == 16 * 1024 * 1024
    # nothing is read until it is used; then one clear line
    with pytest.raises(Exception, match="drive login"):
        drive.list()


def test_discovery_document_points_everything_at_the_root() -> None:
    doc = discovery_document("http://127.0.0.1:9/")
    assert doc["rootUrl"] == "http://127.0.0.1:9/"
    assert doc["baseUrl"] == "http://127.0.0.1:9/drive/v3/"
    assert "mtlsRootUrl" not in doc


def test_transport_timeouts_308_and_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("http_proxy", "http://proxy.invalid:3128")
    local = build_http("http://127.0.0.1:9/", timeout=7)
    assert local.timeout == 7 and 308 not in local.redirect_codes
    assert local.proxy_info is None
    remote = build_http("https://www.googleapis.com/", timeout=7)
    assert remote.proxy_info is not None
