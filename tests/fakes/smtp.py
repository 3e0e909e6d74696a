"""Real SMTP servers on 127.0.0.1 for the email tests (no mocks of the network).

- :class:`SmtpTestServer` runs aiosmtpd with a freshly generated certificate, in two modes:
  ``"starttls"`` (STARTTLS required, AUTH required, AUTH only after TLS, like port 587) and
  ``"ssl"`` (implicit TLS from the first byte, like port 465). Accepted messages are captured.
  ``strict_8bit`` makes it refuse 8-bit data the client did not declare with BODY=8BITMIME,
  as strict relays do (RFC 6152).
- :class:`SilentServer` accepts TCP connections and never says a word (a hung server).
- :func:`closed_port` gives a port nobody listens on (connection refused).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

#: aiosmtpd warns that implicit TLS + AUTH does not *require* TLS for AUTH; in "ssl" mode the
#: whole connection is TLS, so it is expected noise. Test modules using the "ssl" mode set
#: ``pytestmark = pytest.mark.filterwarnings(IGNORE_AUTH_WARNING)``.
IGNORE_AUTH_WARNING = "ignore:Requiring AUTH while not requiring TLS:UserWarning"

TEST_USER = "backup@example.test"
#: distinctive, so a leak of it anywhere in the output is easy to spot
TEST_PASSWORD = "Pw-7f3c9e1a-d0nt-leak-me"


@dataclass(frozen=True)
class TlsFiles:
    """A throwaway CA (trusted by the client through ``email.ca_file``) and a server cert."""

    ca_cert: Path
    cert: Path
    key: Path


def make_tls_files(folder: Path) -> TlsFiles:
    """Write a CA and a server certificate for ``IP:127.0.0.1`` / ``localhost`` into folder.

    A separate CA (rather than one self-signed leaf) keeps the chain valid under the stricter
    X.509 checks newer Pythons turn on by default.
    """
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "siip-watcher test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                       critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    files.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    return files


@dataclass
class Received:
    """One message the server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    login: str

    @property
    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.raw, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


#: a strict relay's answer to 8-bit data sent as if it were 7-bit
REFUSED_8BIT = "554 5.6.1 8-bit data without BODY=8BITMIME"


class _Handler:
    def __init__(self, strict_8bit: bool = False) -> None:
        self.received: list[Received] = []
        self.refused: list[bytes] = []
        self.lock = threading.Lock()
        self.strict_8bit = strict_8bit

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        auth = session.auth_data
        login = auth.login.decode() if isinstance(auth, LoginPassword) else ""
        raw = envelope.original_content or b""
        declared = {"BODY=8BITMIME", "SMTPUTF8"} & set(envelope.mail_options)
        if self.strict_8bit and not raw.isascii() and not declared:
            with self.lock:
                self.refused.append(raw)
            return REFUSED_8BIT
        with self.lock:
            self.received.append(Received(str(envelope.mail_from), list(envelope.rcpt_tos),
                                          raw, login))
        return "250 OK: queued"


def _authenticator(server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                   auth_data: Any) -> AuthResult:
    ok = (isinstance(auth_data, LoginPassword)
          and auth_data.login.decode() == TEST_USER
          and auth_data.password.decode() == TEST_PASSWORD)
    # handled=False on failure: aiosmtpd then answers "535 5.7.8 Authentication credentials
    # invalid" itself (with the default handled=True it would answer nothing at all)
    return AuthResult(success=ok, handled=ok, auth_data=auth_data if ok else None)


class _PortZeroController(Controller):
    """aiosmtpd's Controller with ``port=0``: learn the port the OS chose before first use."""

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class SmtpTestServer:
    """aiosmtpd on 127.0.0.1 requiring TLS (STARTTLS or implicit) and AUTH (LOGIN/PLAIN);
    with ``strict_8bit``, refusing undeclared 8-bit data (kept in :attr:`refused`)."""

    def __init__(self, tls: TlsFiles, mode: str = "starttls", *,
                 strict_8bit: bool = False) -> None:
        if mode not in ("starttls", "ssl"):
            raise ValueError(mode)
        self.mode = mode
        self.host = "127.0.0.1"
        self._handler = _Handler(strict_8bit)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(tls.cert, tls.key)
        common: dict[str, Any] = dict(hostname=self.host, port=0, auth_required=True,
                                      authenticator=_authenticator, ready_timeout=20)
        if mode == "starttls":
            self._controller = _PortZeroController(
                self._handler, tls_context=context, require_starttls=True,
                auth_require_tls=True, **common)
        else:
            # implicit TLS: aiosmtpd only offers AUTH here with auth_require_tls=False (the
            # whole connection is TLS anyway)
            self._controller = _PortZeroController(
                self._handler, ssl_context=context, auth_require_tls=False, **common)

    @property
    def port(self) -> int:
        return int(self._controller.port)

    @property
    def received(self) -> list[Received]:
        with self._handler.lock:
            return list(self._handler.received)

    @property
    def refused(self) -> list[bytes]:
        """The raw messages refused for undeclared 8-bit data."""
        with self._handler.lock:
            return list(self._handler.refused)

    def __enter__(self) -> SmtpTestServer:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()


class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never answers: the kernel completes the
    handshake from the listen backlog, then the client waits for a greeting that never comes."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self.port = int(self._sock.getsockname()[1])

    def __enter__(self) -> SilentServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self._sock.close()


def closed_port() -> int:
    """A port on 127.0.0.1 with nothing listening (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
