"""Send email with the standard library's smtplib: STARTTLS (587), implicit TLS (465) or a
plain local relay, AUTH when a user name is set.

Every failure becomes an :class:`EmailError` whose text is one line saying what went wrong and
what to change, with the password scrubbed out even if a server echoed it back.
"""

from __future__ import annotations

import base64
import re
import smtplib
import socket
import ssl
from email.message import EmailMessage

from watcher.config.settings import Config, ConfigError, read_secret
from watcher.notify.message import build_test_message, sender_address
from watcher.notify.retry import NotifyError
from watcher.state.catalog import utcnow

GMAIL_HOSTS = ("gmail.com", "googlemail.com")
GMAIL_HINT = ("Gmail refuses the normal account password here: create an app password "
              "(Google Account > Security > 2-Step Verification > App passwords) and use it")


class EmailError(NotifyError):
    """An email that could not be sent; ``str()`` is one line with no secret in it."""


#: the well-known ports: implicit TLS, and submission with STARTTLS
IMPLICIT_TLS_PORT = 465
SUBMISSION_PORT = 587
#: RFC 5321's transient negative replies (4yz); a 5yz reply is permanent
TRANSIENT_REPLIES = range(400, 500)


def _transient(code: int) -> bool:
    """An SMTP 4xx reply: the server asks to try again later (5xx means never)."""
    return code in TRANSIENT_REPLIES


def load_password(cfg: Config) -> str | None:
    """The SMTP password when a user name is set (None for an unauthenticated relay).

    Raises :class:`ConfigError` when it is not where the configuration says.
    """
    e = cfg.email
    if not e.username:
        return None
    return read_secret(e.password_env, e.password_file, "email")


def check_recipients(cfg: Config) -> None:
    """Raise :class:`ConfigError` unless there is someone to send to and a From address."""
    if not cfg.email.to:
        raise ConfigError("email.to is empty: add at least one recipient address")
    if not sender_address(cfg):
        raise ConfigError("email.sender is empty: set the From address (or email.username)")


def send_message(cfg: Config, msg: EmailMessage, password: str | None) -> None:
    """Deliver ``msg`` to ``email.to`` with the configured server; raise :class:`EmailError`."""
    e = cfg.email
    try:
        context = _tls_context(e.ca_file) if e.security != "none" else None
    except (OSError, ssl.SSLError) as exc:
        raise EmailError(
            f"cannot load email.ca_file {e.ca_file}: {_one_line(exc)}; point it at the relay's "
            f"CA certificate in PEM format", retryable=False) from None
    try:
        smtp: smtplib.SMTP
        if e.security == "ssl":
            smtp = smtplib.SMTP_SSL(e.smtp_host, e.smtp_port, timeout=e.timeout_seconds,
                                    context=context)
        else:
            smtp = smtplib.SMTP(e.smtp_host, e.smtp_port, timeout=e.timeout_seconds)
        with smtp:
            smtp.ehlo()
            if e.security == "starttls":
                smtp.starttls(context=context)
                smtp.ehlo()
            if e.username:
                smtp.login(e.username, password or "")
            smtp.send_message(msg, from_addr=sender_address(cfg), to_addrs=list(e.to))
    except (smtplib.SMTPException, OSError) as exc:
        # `from None`: the chained smtplib traceback adds nothing the one line does not say
        raise explain(exc, cfg, password) from None
    except UnicodeError:
        # smtplib encodes AUTH as ASCII; the UnicodeEncodeError's own text quotes the
        # offending character and its position, so neither it nor its chain is ever shown
        raise EmailError(_non_ascii(cfg, password), retryable=False) from None


def send_test(cfg: Config) -> None:
    """Send a test message with the current settings (`siip-watcher email test`).

    Raises :class:`ConfigError` for a configuration problem (recipients, missing password)
    and :class:`EmailError` when the server cannot be reached or refuses the message.
    """
    check_recipients(cfg)
    password = load_password(cfg)
    send_message(cfg, build_test_message(cfg, utcnow()), password)


def _tls_context(ca_file: str) -> ssl.SSLContext:
    # the system's trusted CAs plus, for a self-hosted relay, the one in ca_file
    return ssl.create_default_context(cafile=ca_file or None)


# --- explaining failures --------------------------------------------------------------------


def explain(exc: BaseException, cfg: Config, password: str | None = None) -> EmailError:
    """Turn an smtplib/socket/ssl exception into a one-line, secret-free :class:`EmailError`."""
    reason, retryable = _classify(exc, cfg)
    return EmailError(scrub(reason, cfg.email.username, password), retryable=retryable)


# one plain line per kind of SMTP failure
def _classify(exc: BaseException, cfg: Config) -> tuple[str, bool]:  # noqa: PLR0911,PLR0912
    e = cfg.email
    server = f"{e.smtp_host}:{e.smtp_port}"
    mismatch = _security_hint(cfg)
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        answer = _answer(exc.smtp_code, exc.smtp_error)
        if _is_gmail(e.smtp_host, exc.smtp_error) and exc.smtp_code in (534, 535):
            return (f"authentication failed at {server} for {e.username} ({answer}); "
                    f"{GMAIL_HINT}", False)
        return (f"authentication failed at {server} for {e.username} ({answer}); check "
                f"email.username and the password in {_password_source(cfg)}", False)
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return (f"{server} does not offer what is needed: {_one_line(exc)}; {mismatch}", False)
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        refused = "; ".join(f"{addr} ({_answer(code, text)})"
                            for addr, (code, text) in exc.recipients.items())
        temporary = all(_transient(code) for code, _ in exc.recipients.values())
        return f"{server} refused the recipients {refused}; check email.to", temporary
    if isinstance(exc, smtplib.SMTPSenderRefused):
        answer = _answer(exc.smtp_code, exc.smtp_error)
        return (f"{server} refused the sender {exc.sender} ({answer}); "
                f"set email.sender to an address this account may send from",
                _transient(exc.smtp_code))
    if isinstance(exc, smtplib.SMTPResponseException):
        return (f"{server} answered {_answer(exc.smtp_code, exc.smtp_error)}",
                _transient(exc.smtp_code))
    if _caused_by(exc, TimeoutError):
        return (f"timeout: no answer from {server} within {e.timeout_seconds:g} s; check "
                f"email.smtp_host, email.smtp_port and the firewall; {mismatch}", True)
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return (f"{server} closed the connection unexpectedly ({_one_line(exc)}); "
                f"{mismatch}", True)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"TLS certificate of {e.smtp_host} is not trusted "
                f"({exc.verify_message or _one_line(exc)}); for a self-hosted relay set "
                f"email.ca_file to its CA certificate", False)
    if isinstance(exc, ssl.SSLError):
        return (f"TLS handshake with {server} failed ({exc.reason or _one_line(exc)}); "
                f"{mismatch}", False)
    if isinstance(exc, ConnectionRefusedError):
        return (f"connection refused by {server}; check email.smtp_host and email.smtp_port "
                f"and that the mail server is running", True)
    if isinstance(exc, socket.gaierror):
        return (f"cannot resolve the mail server name {e.smtp_host} ({exc.strerror}); check "
                f"email.smtp_host and the network", True)
    if isinstance(exc, OSError) and not isinstance(exc, smtplib.SMTPException):
        return f"network error talking to {server}: {exc.strerror or _one_line(exc)}", True
    return f"SMTP error from {server}: {_one_line(exc)}", True


def _non_ascii(cfg: Config, password: str | None) -> str:
    """Which setting holds characters the SMTP conversation cannot carry, and what to do."""
    e = cfg.email
    server = f"{e.smtp_host}:{e.smtp_port}"
    if password and not password.isascii():
        return (f"the password in {_password_source(cfg)} has non-ASCII characters and the "
                f"AUTH login at {server} sends ASCII only; use an ASCII-only password (for "
                f"Gmail, an app password) or store it in the form the server expects")
    if not e.username.isascii():
        return (f"email.username has non-ASCII characters and the AUTH login at {server} "
                f"sends ASCII only; use the ASCII form of the account name")
    return (f"an address or header has non-ASCII characters that {server} cannot take; use "
            f"ASCII addresses in email.sender and email.to")


def _security_hint(cfg: Config) -> str:
    e = cfg.email
    if e.smtp_port == IMPLICIT_TLS_PORT and e.security != "ssl":
        return 'port 465 needs email.security = "ssl"'
    if e.smtp_port == SUBMISSION_PORT and e.security != "starttls":
        return 'port 587 needs email.security = "starttls"'
    return 'check email.security: "starttls" for port 587, "ssl" for port 465'


def _password_source(cfg: Config) -> str:
    e = cfg.email
    return f"the file {e.password_file}" if e.password_file else f"${e.password_env}"


def _is_gmail(host: str, answer: bytes | str) -> bool:
    host = host.lower().rstrip(".")
    if any(host == h or host.endswith("." + h) for h in GMAIL_HOSTS):
        return True
    text = answer.decode("utf-8", "replace") if isinstance(answer, bytes) else str(answer)
    return "gsmtp" in text or "support.google.com" in text


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    # smtplib turns a read timeout into SMTPServerDisconnected raised while handling it
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _answer(code: int, text: bytes | str) -> str:
    decoded = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return f"{code} {_squash(decoded)}".strip()


def _one_line(exc: BaseException) -> str:
    return _squash(str(exc)) or type(exc).__name__


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def scrub(text: str, username: str, password: str | None) -> str:
    """``text`` with the password, and the base64 forms AUTH sends it in, replaced by ***."""
    if not password:
        return text
    forms = {
        password,
        base64.b64encode(password.encode()).decode(),
        base64.b64encode(f"\0{username}\0{password}".encode()).decode(),
    }
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, "***")
    return text
