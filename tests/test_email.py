"""Email reports against a real aiosmtpd server on 127.0.0.1 (STARTTLS or implicit TLS, AUTH
required), plus the failures an admin meets: wrong password, nothing listening, a hung server,
an untrusted certificate. A failed notification must leave the run's report untouched and must
never print the password anywhere."""

from __future__ import annotations

import base64
import json
import logging
import smtplib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.smtp import (
    IGNORE_AUTH_WARNING,
    REFUSED_8BIT,
    TEST_PASSWORD,
    TEST_USER,
    SilentServer,
    SmtpTestServer,
    TlsFiles,
    closed_port,
)
from tests.helpers import make_config, toml_table, write_config
from watcher.backup.report import (
    DatabaseResult,
    DestinationResult,
    Problem,
    RunReport,
    SnapshotInfo,
)
from watcher.cli import main
from watcher.config.settings import Config, ConfigError
from watcher.notify import notify
from watcher.notify.email import EmailError, explain, send_test
from watcher.notify.message import build_report_message, build_test_message
from watcher.retry import NO_JITTER, RetryPolicy
from watcher.state.catalog import Catalog

pytestmark = pytest.mark.filterwarnings(IGNORE_AUTH_WARNING)

PASSWORD_ENV = "SIIP_TEST_SMTP_PASSWORD"
WRONG_PASSWORD = "Wr0ng-b4d1-pass-zz"
#: three tries like the real policy, almost no waiting between them
FAST = RetryPolicy(attempts=3, base=0.05, cap=0.05, jitter=NO_JITTER)
STARTED = datetime(2026, 11, 27, 18, 15, 0, tzinfo=UTC)
SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
DRIVE_LINK = "https://drive.google.com/file/d/1AbC/view?usp=drivesdk&x=<1>"


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def server(tls: TlsFiles) -> Iterator[SmtpTestServer]:
    with SmtpTestServer(tls, "starttls") as s:
        yield s


@pytest.fixture
def ssl_server(tls: TlsFiles) -> Iterator[SmtpTestServer]:
    with SmtpTestServer(tls, "ssl") as s:
        yield s


@pytest.fixture(autouse=True)
def password(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(PASSWORD_ENV, TEST_PASSWORD)
    return TEST_PASSWORD


def email_settings(port: int, tls: TlsFiles | None) -> dict[str, Any]:
    """The [email] settings for the test server, trusting its CA when ``tls`` is given."""
    return {"enabled": True, "smtp_host": "127.0.0.1", "smtp_port": port,
            "username": TEST_USER, "password_env": PASSWORD_ENV,
            "sender": "watcher@example.test", "to": ["admin@example.test"],
            "timeout_seconds": 10, "ca_file": str(tls.ca_cert) if tls else ""}


def make_cfg(tmp_path: Path, port: int, *, tls: TlsFiles | None, security: str = "starttls",
             language: str = "es", on: list[str] | None = None, timeout: float = 10,
             **email: Any) -> Config:
    section = {**email_settings(port, tls), "security": security, "language": language,
               "to": ["admin@example.test", "boss@example.test"], "timeout_seconds": timeout}
    if on is not None:
        section["on"] = on
    section.update(email)
    (tmp_path / "backups").mkdir(exist_ok=True)
    return make_config(tmp_path / "src", tmp_path / "backups", check_paths=False,
                       email=section)


def good_report(**changes: Any) -> RunReport:
    snap = SnapshotInfo(
        id="siip-20261127T181500Z", file="/var/backups/siip/siip-20261127T181500Z.tar.zst",
        created_at=STARTED, size=48_200_000, sha256=SHA, files=15_234, bytes_in=131_000_000,
        databases=[DatabaseResult("siip_database.db", "databases/siip_database.db", 78_125,
                                  4096, 320_000_000, "ok", "quick_check")])
    report = RunReport(
        name="siip", trigger="change", started_at=STARTED,
        snapshot=snap,
        destinations=[DestinationResult("drive", "uploaded", link=DRIVE_LINK,
                                        snapshot_id=snap.id)],
        kept=["siip-20261127T181500Z", "siip-20261126T181500Z", "siip-20261125T181500Z"],
        pruned=["siip-20261101T181500Z"],
        free_bytes=123_400_000_000,
        next_run=STARTED + timedelta(hours=24),
    )
    for key, value in changes.items():
        setattr(report, key, value)
    report.finish(STARTED + timedelta(seconds=83))
    return report


def failed_report(**changes: Any) -> RunReport:
    report = RunReport(name="siip", trigger="interval", started_at=STARTED,
                       errors=[Problem("database siip_database.db stayed locked by pid 4242 "
                                       "for 60 s; end the transaction or process holding it",
                                       cause="database_unreadable")],
                       free_bytes=2_000_000, next_run=STARTED + timedelta(hours=24))
    for key, value in changes.items():
        setattr(report, key, value)
    report.finish(STARTED + timedelta(seconds=4))
    return report


def local(dt: datetime) -> str:
    return dt.astimezone().strftime("%Y-%m-%d %H:%M")


def parts(received: Any) -> tuple[str, str]:
    msg = received.message
    plain = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    return plain, html


# --- the report arrives -----------------------------------------------------------------------


def test_report_arrives_in_spanish_over_starttls(tmp_path: Path, server: SmtpTestServer,
                                                 tls: TlsFiles) -> None:
    cfg = make_cfg(tmp_path, server.port, tls=tls)
    catalog = Catalog(cfg.local.dir)
    run_id = catalog.start_run("change", STARTED)

    notify(cfg, good_report(), catalog, run_id, retry=FAST)

    [got] = server.received
    assert got.login == TEST_USER
    assert sorted(got.rcpt_tos) == ["admin@example.test", "boss@example.test"]
    assert got.mail_from == "watcher@example.test"
    msg = got.message
    assert msg["Subject"] == f"[SIIP Backup] OK siip {local(STARTED)}"
    assert "admin@example.test" in msg["To"] and "boss@example.test" in msg["To"]
    plain, html = parts(got)
    assert plain.startswith('La copia de seguridad de "siip" terminó correctamente.')
    for expected in ("Estado: Correcta", "Motivo: cambios detectados en los datos",
                     "Duración: 1 min 23 s", "siip-20261127T181500Z.tar.zst", "48,2 MB",
                     "2,72 veces más pequeño (131,0 MB sin comprimir)", SHA,
                     "15.234 archivos, 131,0 MB en total",
                     "siip_database.db: íntegra (quick_check: ok)",
                     "drive: subida", DRIVE_LINK, "123,4 GB", local(STARTED + timedelta(hours=24)),
                     "Copias conservadas tras la limpieza: 3 (siip-20261127T181500Z",
                     "siip-20261101T181500Z"):
        assert expected in plain, expected
    # the HTML alternative says the same, escaped, with the Drive link clickable
    assert "Correcta" in html and SHA in html
    assert 'href="https://drive.google.com/file/d/1AbC/view?usp=drivesdk&amp;x=&lt;1&gt;"' in html
    assert "<1>" not in html
    note = catalog.last_notifications()["email"]
    assert (note.run_id, note.state, note.error) == (run_id, "sent", None)


def test_warning_in_english_over_implicit_tls_even_when_only_failures_are_chosen(
        tmp_path: Path, ssl_server: SmtpTestServer, tls: TlsFiles) -> None:
    cfg = make_cfg(tmp_path, ssl_server.port, tls=tls, security="ssl", language="en",
                   on=["failure"])
    report = good_report(
        trigger="start",
        warnings=[Problem("/srv/siip/app.log changed while being read; this snapshot may "
                          "hold a mix", "the next snapshot will hold it whole",
                          key="file_changed", params={"path": "/srv/siip/app.log"})],
        destinations=[DestinationResult("drive", "pending", error="HTTP 503 from Google",
                                        hint="the copy stays queued; next try at 18:20 UTC",
                                        snapshot_id="siip-20261127T181500Z", key="retry_at",
                                        params={"when": "2026-11-27 18:20 UTC"})])
    assert report.status == "warning"

    notify(cfg, report, None, None, retry=FAST)

    [got] = ssl_server.received
    assert got.message["Subject"] == f"[SIIP Backup] WARNING siip {local(STARTED)}"
    plain, html = parts(got)
    lines = plain.splitlines()
    assert lines[0] == 'The backup of "siip" was stored, but something needs a look.'
    # the upload still pending matters more than a file read while it changed
    assert lines[1] == "What to check: drive: pending (will be retried automatically)"
    assert lines[2] == ("What to do: the local backup is kept and the copy stays queued; next "
                        "try at 2026-11-27 18:20 UTC (or run `siip-watcher once`).")
    assert "Trigger: service start" in plain
    assert "  - /srv/siip/app.log changed while being read; this snapshot may hold" in plain
    assert "Technical detail: HTTP 503 from Google" in plain
    assert "With warnings" in html


def test_failed_run_says_first_what_failed(tmp_path: Path, server: SmtpTestServer,
                                           tls: TlsFiles) -> None:
    for language, lead, what in (
            ("es", 'La copia de seguridad de "siip" FALLÓ: no se creó ninguna copia nueva.',
             "Qué falló: no se pudo leer la base de datos."),
            ("en", 'The backup of "siip" FAILED: no new backup was made.',
             "What failed: the database could not be read.")):
        cfg = make_cfg(tmp_path, server.port, tls=tls, language=language)
        notify(cfg, failed_report(), None, None, retry=FAST)
        got = server.received[-1]
        assert got.message["Subject"] == f"[SIIP Backup] FAILED siip {local(STARTED)}"
        plain, _ = parts(got)
        assert plain.splitlines()[:2] == [lead, what]
        assert "siip-watcher once" in plain.splitlines()[2]
        # the program's own words, labelled, for whoever looks into it
        assert "stayed locked by pid 4242 for 60 s" in plain
    assert len(server.received) == 2


def test_recovery_message_after_a_failure(tmp_path: Path, server: SmtpTestServer,
                                          tls: TlsFiles) -> None:
    # only failures and recoveries: the ordinary good run that follows is not mailed
    cfg = make_cfg(tmp_path, server.port, tls=tls, on=["failure", "recovery"])
    notify(cfg, failed_report(), None, None, retry=FAST)
    notify(cfg, good_report(previous_status="failed"), None, None, retry=FAST)
    notify(cfg, good_report(previous_status="ok"), None, None, retry=FAST)

    subjects = [r.message["Subject"] for r in server.received]
    assert subjects == [f"[SIIP Backup] FAILED siip {local(STARTED)}",
                        f"[SIIP Backup] OK siip {local(STARTED)} (recuperada tras fallos)"]
    plain, _ = parts(server.received[1])
    assert plain.startswith('Las copias de seguridad de "siip" vuelven a funcionar')


def test_nothing_is_sent_when_the_run_is_not_chosen(tmp_path: Path, server: SmtpTestServer,
                                                    tls: TlsFiles) -> None:
    cfg = make_cfg(tmp_path, server.port, tls=tls, on=["failure"])
    catalog = Catalog(cfg.local.dir)
    notify(cfg, good_report(), catalog, 1, retry=FAST)
    notify(make_cfg(tmp_path, server.port, tls=tls), good_report(), catalog, 2, email=False,
           retry=FAST)
    assert server.received == []
    assert "email" not in catalog.last_notifications()


def test_html_escapes_what_the_run_reports(tmp_path: Path, server: SmtpTestServer,
                                           tls: TlsFiles) -> None:
    cfg = make_cfg(tmp_path, server.port, tls=tls, language="en")
    name = "<script>alert(1)</script> & co"
    report = failed_report(errors=[Problem(f"could not read {name}", "a<b", key="read_failed",
                                           params={"path": name}, detail="a<b")])
    notify(cfg, report, None, None, retry=FAST)
    plain, html = parts(server.received[0])
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in html
    assert "Technical detail: a&lt;b" in html
    assert "<script>" not in html and "a<b" not in html
    assert f"  - could not read {name}; it is not in this snapshot." in plain


# --- failures never get in the way, and never show the password ---------------------------


def assert_no_secret(*texts: str) -> None:
    forms = [TEST_PASSWORD, WRONG_PASSWORD]
    for pw in list(forms):
        forms.append(base64.b64encode(pw.encode()).decode())
        forms.append(base64.b64encode(f"\0{TEST_USER}\0{pw}".encode()).decode())
    for text in texts:
        for form in forms:
            assert form not in text


def notify_and_capture(cfg: Config, caplog: pytest.LogCaptureFixture,
                       capsys: pytest.CaptureFixture[str]) -> tuple[RunReport, dict[str, Any],
                                                                    Catalog, str]:
    """Run notify on a good report; return the report, its dict before, the catalog and
    every piece of output (logs, stdout, stderr, catalog rows)."""
    caplog.set_level(logging.DEBUG, logger="watcher")
    catalog = Catalog(cfg.local.dir)
    report = good_report()
    before = report.to_dict()
    notify(cfg, report, catalog, 7, retry=FAST)
    out, err = capsys.readouterr()
    recorded = str(catalog.last_notifications().get("email"))
    return report, before, catalog, "\n".join([caplog.text, out, err, recorded])


@pytest.mark.parametrize("case", ["wrong_password", "refused", "silent"])
def test_a_failed_email_leaves_the_run_intact(
        case: str, tmp_path: Path, tls: TlsFiles, server: SmtpTestServer,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    if case == "wrong_password":
        monkeypatch.setenv(PASSWORD_ENV, WRONG_PASSWORD)
        cfg = make_cfg(tmp_path, server.port, tls=tls)
        expected, tries = "authentication failed at 127.0.0.1", 1
    elif case == "refused":
        cfg = make_cfg(tmp_path, closed_port(), tls=tls)
        expected, tries = "connection refused by 127.0.0.1", 3
    else:
        silent = SilentServer()
        cfg = make_cfg(tmp_path, silent.port, tls=tls, timeout=0.5)
        expected, tries = "timeout: no answer from 127.0.0.1", 3

    try:
        report, before, catalog, output = notify_and_capture(cfg, caplog, capsys)
    finally:
        if case == "silent":
            silent.__exit__(None, None, None)

    assert report.to_dict() == before and report.exit_code == 0
    assert server.received == []
    failures = [r for r in caplog.records if "email not sent" in r.getMessage()]
    assert len(failures) == tries  # a wrong password is not retried: it could lock the account
    final = failures[-1].getMessage()
    assert expected in final and "\n" not in final
    if tries > 1:
        assert "gave up after 3 tries" in final
    row = catalog.last_notifications().get("email")
    assert row is not None and row.state == "failed" and expected in row.error
    assert row.run_id == 7
    assert_no_secret(output)


def test_an_untrusted_certificate_is_named_with_what_to_do(
        tmp_path: Path, server: SmtpTestServer, caplog: pytest.LogCaptureFixture) -> None:
    cfg = make_cfg(tmp_path, server.port, tls=None)  # no ca_file: the test CA is unknown
    notify(cfg, good_report(), None, None, retry=FAST)
    assert server.received == []
    assert "TLS certificate of 127.0.0.1 is not trusted" in caplog.text
    assert "email.ca_file" in caplog.text


def test_a_missing_password_is_reported_not_raised(
        tmp_path: Path, server: SmtpTestServer, tls: TlsFiles,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv(PASSWORD_ENV)
    cfg = make_cfg(tmp_path, server.port, tls=tls)
    catalog = Catalog(cfg.local.dir)
    notify(cfg, good_report(), catalog, 3, retry=FAST)
    assert f"environment variable {PASSWORD_ENV} is not set" in caplog.text
    assert catalog.last_notifications()["email"].state == "failed"


def test_the_message_itself_never_carries_the_password(
        tmp_path: Path, server: SmtpTestServer, tls: TlsFiles) -> None:
    cfg = make_cfg(tmp_path, server.port, tls=tls)
    notify(cfg, failed_report(), None, None, retry=FAST)
    notify(cfg, good_report(), None, None, retry=FAST)
    assert len(server.received) == 2
    assert_no_secret(*(r.raw.decode("utf-8", "replace") for r in server.received))


def test_gmail_535_explains_the_app_password(tmp_path: Path, tls: TlsFiles) -> None:
    cfg = make_cfg(tmp_path, 587, tls=tls, smtp_host="smtp.gmail.com")
    answer = (b"5.7.8 Username and Password not accepted. For more information, go to\n"
              b"5.7.8  https://support.google.com/mail/?p=BadCredentials x1-20020a gsmtp")
    err = explain(smtplib.SMTPAuthenticationError(535, answer), cfg, TEST_PASSWORD)
    assert not err.retryable
    assert "authentication failed at smtp.gmail.com:587" in str(err)
    assert "app password" in str(err) and "\n" not in str(err)
    other = explain(smtplib.SMTPAuthenticationError(535, b"5.7.8 bad credentials"),
                    make_cfg(tmp_path, 587, tls=tls), TEST_PASSWORD)
    assert "app password" not in str(other) and f"${PASSWORD_ENV}" in str(other)


# --- Spanish through a strict relay -------------------------------------------------------


@pytest.fixture
def strict_server(tls: TlsFiles) -> Iterator[SmtpTestServer]:
    with SmtpTestServer(tls, "starttls", strict_8bit=True) as s:
        yield s


def test_the_strict_server_really_refuses_undeclared_8bit_data(
        strict_server: SmtpTestServer, tls: TlsFiles) -> None:
    # what smtplib's send_message does with an 8-bit body: no BODY=8BITMIME on MAIL FROM
    raw = "Subject: x\r\n\r\nLa copia FALLÓ.\r\n".encode()
    with smtplib.SMTP(strict_server.host, strict_server.port, timeout=10) as smtp:
        smtp.starttls(context=__import__("ssl").create_default_context(
            cafile=str(tls.ca_cert)))
        smtp.login(TEST_USER, TEST_PASSWORD)
        with pytest.raises(smtplib.SMTPDataError) as refused:
            smtp.sendmail("a@example.test", ["b@example.test"], raw)
        assert f"{refused.value.smtp_code} {refused.value.smtp_error.decode()}" == REFUSED_8BIT
        smtp.sendmail("a@example.test", ["b@example.test"], raw,
                      mail_options=["BODY=8BITMIME"])
    assert len(strict_server.refused) == 1 and len(strict_server.received) == 1


def test_a_spanish_report_passes_a_strict_relay_and_reads_the_same(
        tmp_path: Path, strict_server: SmtpTestServer, tls: TlsFiles) -> None:
    cfg = make_cfg(tmp_path, strict_server.port, tls=tls, language="es")
    report = failed_report()
    sent = build_report_message(cfg, report, "failure")
    notify(cfg, report, None, None, retry=FAST)
    send_test(cfg)

    assert strict_server.refused == []
    [got, test] = strict_server.received
    # SMTP carries lines ending in CRLF; the text is the same once a reader undoes that
    plain, html = (part.replace("\r\n", "\n") for part in parts(got))
    assert plain == sent.get_body(("plain",)).get_content()
    assert html == sent.get_body(("html",)).get_content()
    assert "FALLÓ" in plain and "FALLÓ" in html
    test_plain = parts(test)[0].replace("\r\n", "\n")
    assert test_plain == build_test_message(cfg, STARTED).get_body(("plain",)).get_content()
    assert "está leyendo" in test_plain


# --- `siip-watcher email test` ----------------------------------------------------------------


def test_send_test_delivers_a_test_message(tmp_path: Path, server: SmtpTestServer,
                                           tls: TlsFiles) -> None:
    send_test(make_cfg(tmp_path, server.port, tls=tls, language="en"))
    [got] = server.received
    assert got.message["Subject"].startswith("[SIIP Backup] TEST siip ")
    plain, _ = parts(got)
    assert "If you are reading it, email reports work" in plain


def test_send_test_raises_one_clean_line(tmp_path: Path, server: SmtpTestServer, tls: TlsFiles,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, WRONG_PASSWORD)
    with pytest.raises(EmailError) as caught:
        send_test(make_cfg(tmp_path, server.port, tls=tls))
    assert str(caught.value).startswith("authentication failed")
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert_no_secret(str(caught.value), repr(caught.value))

    monkeypatch.delenv(PASSWORD_ENV)
    with pytest.raises(ConfigError, match=PASSWORD_ENV):
        send_test(make_cfg(tmp_path, server.port, tls=tls))
    with pytest.raises(ConfigError, match="email.to"):
        send_test(make_cfg(tmp_path, server.port, tls=tls, enabled=False, to=[]))


def write_email_config(tmp_path: Path, port: int, tls: TlsFiles) -> Path:
    """A configuration file with email to the test server, in English."""
    return write_config(tmp_path / "siip-watcher.toml", tmp_path / "not-created-yet",
                        tmp_path / "backups",
                        toml_table("email", {**email_settings(port, tls), "language": "en"}))


def test_cli_email_test_exit_codes(tmp_path: Path, server: SmtpTestServer, tls: TlsFiles,
                                   monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    config = str(write_email_config(tmp_path, server.port, tls))
    assert main(["-c", config, "email", "test"]) == 0
    assert len(server.received) == 1
    assert "test email sent to admin@example.test" in capsys.readouterr().out

    monkeypatch.setenv(PASSWORD_ENV, WRONG_PASSWORD)
    assert main(["-c", config, "email", "test"]) == 1
    out, err = capsys.readouterr()
    assert "test email not sent: authentication failed" in err
    assert_no_secret(out, err)

    monkeypatch.delenv(PASSWORD_ENV)
    assert main(["-c", config, "email", "test"]) == 2
    assert PASSWORD_ENV in capsys.readouterr().err

    closed = write_email_config(tmp_path, closed_port(), tls)
    monkeypatch.setenv(PASSWORD_ENV, TEST_PASSWORD)
    assert main(["-c", str(closed), "email", "test"]) == 1
    assert "connection refused" in capsys.readouterr().err
    assert len(server.received) == 1


def test_notify_never_raises_even_on_a_report_it_cannot_describe(
        tmp_path: Path, server: SmtpTestServer, tls: TlsFiles,
        caplog: pytest.LogCaptureFixture) -> None:
    # a report that was never finished has no status to mail: a bug upstream must cost the
    # email, not the run
    unfinished = RunReport(name="siip", trigger="manual", started_at=STARTED)
    notify(make_cfg(tmp_path, server.port, tls=tls), unfinished, None, None, retry=FAST)
    assert server.received == []
    assert "email notification crashed" in caplog.text


# --- a password smtplib cannot send --------------------------------------------------------

NON_ASCII_PASSWORD = "Contraseña"


def assert_no_piece_of(password: str, text: str) -> None:
    """Neither the password, a 5-character piece of it, any non-ASCII character of it (as
    itself or escaped), nor the position a UnicodeEncodeError would give, is in ``text``."""
    pieces = {password[i:i + 5] for i in range(len(password) - 4)}
    for ch in (c for c in password if not c.isascii()):
        pieces |= {ch, ascii(ch).strip("'"), ch.encode().hex(), repr(ch.encode())[2:-1]}
    pieces |= {base64.b64encode(password.encode()).decode(), "position", "codec"}
    found = sorted(piece for piece in pieces if piece in text)
    assert not found, f"{found} in {text!r}"


def test_cli_email_test_with_a_non_ascii_password_says_so_in_one_line(
        tmp_path: Path, server: SmtpTestServer, tls: TlsFiles, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv(PASSWORD_ENV, NON_ASCII_PASSWORD)
    caplog.set_level(logging.DEBUG)
    assert main(["-c", str(write_email_config(tmp_path, server.port, tls)), "email", "test"]) == 1
    out, err = capsys.readouterr()
    [line] = err.splitlines()
    assert line.startswith("siip-watcher: test email not sent: the password in "
                           f"${PASSWORD_ENV} has non-ASCII characters"), line
    assert "ASCII only" in line and "Traceback" not in err
    assert server.received == []
    assert_no_piece_of(NON_ASCII_PASSWORD, "\n".join([out, err, caplog.text]))


def test_a_run_with_a_non_ascii_password_records_the_failure_for_status(
        tmp_path: Path, siip: Path, server: SmtpTestServer, tls: TlsFiles,
        cli: Any) -> None:
    log_file = tmp_path / "watcher.log"
    config = write_config(tmp_path / "c.toml", siip, tmp_path / "backups",
                          toml_table("email", email_settings(server.port, tls)) +
                          toml_table("log", {"file": str(log_file), "level": "debug"}))
    env = {PASSWORD_ENV: NON_ASCII_PASSWORD}
    once = cli("-c", str(config), "once", env=env)
    assert once.returncode == 0, once.stderr  # the email failing never fails the backup
    assert server.received == []
    status_json = cli("-c", str(config), "status", "--json", env=env, check=True).stdout
    email = json.loads(status_json)["notifications"]["email"]
    assert email["state"] == "failed"
    assert "non-ASCII characters" in email["error"] and f"${PASSWORD_ENV}" in email["error"]
    status_text = cli("-c", str(config), "status", env=env, check=True).stdout
    assert "last failed" in status_text
    assert_no_piece_of(NON_ASCII_PASSWORD, "\n".join([
        once.stdout, once.stderr, status_json, status_text,
        log_file.read_text(encoding="utf-8")]))


def test_a_crashed_notification_is_still_recorded_for_status(
        tmp_path: Path, server: SmtpTestServer, tls: TlsFiles) -> None:
    cfg = make_cfg(tmp_path, server.port, tls=tls)
    catalog = Catalog(cfg.local.dir)
    unfinished = RunReport(name="siip", trigger="manual", started_at=STARTED)
    notify(cfg, unfinished, catalog, 5, retry=FAST)
    row = catalog.last_notifications().get("email")
    assert row is not None and row.state == "failed" and row.run_id == 5
    assert row.error.startswith("email notification crashed: ")
