"""Build the report email (plain text plus an HTML alternative) from a :class:`RunReport`.

Pure: the content is first laid out as plain data (:class:`Body`), then rendered twice, so the
text and HTML versions always say the same thing. All wording comes from :mod:`.texts`, in the
admin's language (``email.language``): a problem is told from its key or its cause, never from
its English log message. The only English is text from outside that no translation can carry
(an exception's, the system's or a server's own words), shown on its own line labelled as the
technical detail for the admin. The most important concern comes first (:data:`SEVERITY`).
"""

from __future__ import annotations

import html
import socket
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid
from pathlib import Path
from urllib.parse import urlsplit

from watcher import __version__
from watcher.backup.report import (
    CAUSES,
    SEVERITY,
    DestinationResult,
    Params,
    Problem,
    RunReport,
    printable,
)
from watcher.config.settings import Config
from watcher.notify import policy
from watcher.notify.texts import SUBJECT_STATUS, TEXTS, text

# --- layout ---------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of a section: ``label: value``, or a bullet when ``label`` is None."""

    value: str
    label: str | None = None
    link: str | None = None
    hint: str | None = None
    alert: bool = False
    detail: str | None = None        # the labelled technical line, if any


@dataclass
class Section:
    title: str
    rows: list[Row] = field(default_factory=list)


@dataclass
class Body:
    """What the message says, before it becomes text or HTML."""

    language: str                    # es, en (the HTML lang attribute)
    status: str                      # ok, warning, failed (drives the HTML banner colour)
    lead: list[str]                  # the first paragraph: plain words on what happened
    sections: list[Section]
    footer: str


# --- formatting helpers (language aware) ----------------------------------------------------


def local_time(dt: datetime, *, seconds: bool = False, zone: bool = False) -> str:
    """``dt`` in the machine's local time zone, as the admin reads their clock."""
    fmt = "%Y-%m-%d %H:%M" + (":%S" if seconds else "") + (" %Z" if zone else "")
    return dt.astimezone().strftime(fmt).strip()


def fmt_number(value: float, lang: str, decimals: int = 0) -> str:
    """Thousands and decimal separators as each language writes them (1,234.5 / 1.234,5)."""
    s = f"{value:,.{decimals}f}"
    if lang == "es":
        s = s.replace(",", "\0").replace(".", ",").replace("\0", ".")
    return s


_THOUSAND = 1000  # decimal units: each is a thousand of the one below
_MINUTE = 60
_HOUR = 3600


def fmt_bytes(n: int, lang: str) -> str:
    """Decimal units (1 MB = 1,000,000 bytes), one decimal above bytes."""
    if n < _THOUSAND:
        return f"{n} B"
    value = float(n)
    for unit in ("KB", "MB", "GB", "TB", "PB"):
        value /= _THOUSAND
        if value < _THOUSAND or unit == "PB":
            return f"{fmt_number(value, lang, 1)} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def fmt_duration(seconds: float, lang: str) -> str:
    """A short human duration: 42 s, 3 min 5 s, 2 h 10 min."""
    total = max(0, round(seconds))
    if total < _MINUTE:
        return text(lang, "seconds", n=fmt_number(max(seconds, 0), lang, 1))
    if total < _HOUR:
        return text(lang, "minutes", m=total // _MINUTE, s=total % _MINUTE)
    return text(lang, "hours", h=total // _HOUR, m=(total % _HOUR) // _MINUTE)


def _safe_link(link: str | None) -> str | None:
    """Only web links become clickable; anything else is shown as text."""
    if link and urlsplit(link).scheme in ("http", "https"):
        return link
    return None


# --- the report -----------------------------------------------------------------------------


# one branch per part of the email, in reading order
def report_body(cfg: Config, report: RunReport, kind: str, *, host: str) -> Body:  # noqa: PLR0912
    """Lay out what the email for ``report`` says (``kind`` from :func:`policy.choose_message`)."""
    lang = cfg.email.language
    name = cfg.name
    lead: list[str] = []
    if report.status == "failed":
        lead.append(text(lang, "lead_start_failed" if report.phase == "start" else "lead_failed",
                         name=name))
        errors = by_severity(report.errors)
        if errors:
            words = problem_words(lang, errors[0])
            # the cause's plain words when known; the problem's own under "Errores"
            plain = (text(lang, f"cause_{errors[0].cause}") if errors[0].cause in CAUSES
                     else words.message)
            lead.append(text(lang, "what_failed", message=plain))
            if words.hint:
                lead.append(text(lang, "what_to_do", hint=words.hint))
        else:
            lead.append(text(lang, "what_failed", message=text(lang, "failed_unknown")))
    else:
        key = "lead_recovery" if kind == policy.RECOVERY else f"lead_{report.status}"
        lead.append(text(lang, key, name=name))
        if _alert_raised(report):
            assert report.alert is not None
            reasons = "; ".join(text(lang, f"alert_{kind}") for kind in report.alert["kinds"])
            lead.append(text(lang, "lead_alert", reasons=reasons))
        if report.status == "warning":
            ranked = concerns(lang, report)
            if ranked:
                lead.append(text(lang, "what_to_check", message=ranked[0].message))
                if ranked[0].hint:
                    lead.append(text(lang, "what_to_do", hint=ranked[0].hint))

    sections = [_summary(cfg, report, host)]
    if report.errors:
        sections.append(_problems(lang, "section_errors", report.errors, alert=True))
    if report.warnings:
        sections.append(_problems(lang, "section_warnings", report.warnings, alert=False))
    sections.append(_archive(lang, report))
    if report.snapshot and report.snapshot.databases:
        sections.append(_databases(lang, report))
    if report.destinations:
        sections.append(_destinations(lang, report))
    sections.append(_storage(cfg, report))
    footer = text(lang, "footer", version=__version__, host=host)
    return Body(language=lang, status=report.status, lead=lead, sections=sections, footer=footer)


@dataclass
class Words:
    """A concern in the admin's language: what happened, what to do, and the technical
    detail (English, from outside) when there is one."""

    message: str
    hint: str | None = None
    detail: str | None = None


def fill(lang: str, key: str, params: Params) -> str:
    """The text ``key`` filled from ``params``, counts written the language's way."""
    values = {k: fmt_number(v, lang) if isinstance(v, int) else v for k, v in params.items()}
    return text(lang, key, **values)


def problem_words(lang: str, p: Problem) -> Words:
    """``p`` in ``lang``: the words of its key, else of its cause (its English message then
    being the technical detail); a problem with neither is shown as technical detail only."""
    if p.key:
        message, detail = fill(lang, f"problem_{p.key}", p.params), p.detail
    elif p.cause in CAUSES:
        message, detail = text(lang, f"cause_{p.cause}"), p.detail or p.message
    else:
        detail = "; ".join(part for part in (p.detail or p.message, p.hint) if part)
        return Words(text(lang, "problem_untranslated"), None, detail)
    own_hint = f"problem_{p.key}_hint"
    if p.key and own_hint in TEXTS[lang]:
        hint: str | None = fill(lang, own_hint, p.params)
    elif p.cause in CAUSES:
        hint = text(lang, f"cause_{p.cause}_hint")
    else:
        hint = None
    return Words(message, hint, detail or None)


def destination_words(lang: str, d: DestinationResult, current: str | None) -> Words:
    """A copy's state in ``lang``, naming the snapshot when it is not this run's (a queued
    older copy); the destination's own error is the technical detail."""
    name = d.name
    if d.snapshot_id and current and d.snapshot_id != current:
        name = text(lang, "dest_older", dest=d.name, sid=d.snapshot_id)
    key = f"dest_{d.state}"
    state = text(lang, key) if key in TEXTS[lang] else d.state
    hint = fill(lang, f"dest_hint_{d.key}", d.params) if d.key else None
    # an English hint with no words of its own can only be shown as technical detail
    untranslated = d.hint if d.hint and not d.key else None
    detail = "; ".join(part for part in (d.error, untranslated) if part)
    return Words(f"{name}: {state}", hint, detail or None)


def by_severity(problems: list[Problem]) -> list[Problem]:
    """``problems``, most important first (:data:`SEVERITY`), in their order otherwise."""
    return sorted(problems, key=lambda p: p.severity)


def concerns(lang: str, report: RunReport) -> list[Words]:
    """Everything a warning run asks the admin to look at, most important first: a data-loss
    alert, then a failed copy or step, a pending copy, a snapshot missing files, upkeep (a
    failed upload thus comes before a prune listing that failed)."""
    current = report.snapshot.id if report.snapshot else None
    ranked: list[tuple[int, int, Words]] = [
        (p.severity, i, problem_words(lang, p)) for i, p in enumerate(report.warnings)]
    for i, d in enumerate(report.destinations, start=len(ranked)):
        if d.state in ("failed", "pending"):   # a copy's state names its SEVERITY level
            ranked.append((SEVERITY.index(d.state), i, destination_words(lang, d, current)))
    return [words for _, _, words in sorted(ranked, key=lambda r: (r[0], r[1]))]


def _summary(cfg: Config, report: RunReport, host: str) -> Section:
    lang = cfg.email.language
    trigger_key = f"trigger_{report.trigger}"
    trigger = text(lang, trigger_key) if trigger_key in TEXTS[lang] else report.trigger
    return Section(text(lang, "section_summary"), [
        Row(text(lang, f"status_{report.status}"), text(lang, "status"),
            alert=report.status == "failed"),
        Row(trigger, text(lang, "trigger")),
        Row(local_time(report.started_at, seconds=True, zone=True), text(lang, "started")),
        Row(fmt_duration(report.duration, lang), text(lang, "duration")),
        Row(host, text(lang, "host")),
    ])


def _row(lang: str, words: Words, *, alert: bool, link: str | None = None) -> Row:
    return Row(words.message, link=link, alert=alert,
               hint=text(lang, "what_to_do", hint=words.hint) if words.hint else None,
               detail=text(lang, "detail", detail=words.detail) if words.detail else None)


def _problems(lang: str, title_key: str, problems: list[Problem], *, alert: bool) -> Section:
    return Section(text(lang, title_key), [
        _row(lang, problem_words(lang, p), alert=alert) for p in by_severity(problems)])


def _archive(lang: str, report: RunReport) -> Section:
    s = report.snapshot
    section = Section(text(lang, "section_archive"))
    if s is None:
        section.rows.append(Row(text(lang, "no_archive"), alert=True))
        return section
    kind = (text(lang, "kind_delta", base=s.base) if s.is_delta else
            text(lang, "kind_full"))
    # a delta's size against the whole tree says how much it saved, not how well it packs
    packed = (text(lang, "stored_value", stored=fmt_bytes(s.size, lang),
                   original=fmt_bytes(s.bytes_in, lang), base=s.base) if s.is_delta else
              text(lang, "ratio_value", ratio=fmt_number(s.ratio, lang, 2),
                   original=fmt_bytes(s.bytes_in, lang)))
    section.rows += [
        Row(Path(s.file).name or s.id, text(lang, "archive")),
        Row(kind, text(lang, "kind")),
        Row(fmt_bytes(s.size, lang), text(lang, "size")),
        Row(packed, text(lang, "ratio")),
        Row(s.sha256, text(lang, "sha256")),
        Row(text(lang, "files_value", files=fmt_number(s.files, lang),
                 bytes=fmt_bytes(s.bytes_in, lang)), text(lang, "files")),
    ]
    return section


def _databases(lang: str, report: RunReport) -> Section:
    assert report.snapshot is not None
    rows = []
    for db in report.snapshot.databases:
        ok = db.check == "ok"
        state = (text(lang, "db_ok", pragma=db.check_pragma) if ok else
                 text(lang, "db_bad", pragma=db.check_pragma))
        detail = text(lang, "db_detail", size=fmt_bytes(db.size, lang),
                      pages=fmt_number(db.pages, lang))
        if db.changed_pages is not None:
            detail += "; " + text(lang, "db_pages", changed=fmt_number(db.changed_pages, lang),
                                  base=report.snapshot.base)
        if db.discovered:
            detail += "; " + text(lang, "db_found")
        # what SQLite said about a damaged copy is its own English
        said = None if ok else text(lang, "detail", detail=db.check)
        rows.append(Row(f"{printable(db.path)}: {state}; {detail}", alert=not ok,
                        detail=said))
    return Section(text(lang, "section_databases"), rows)


def _destinations(lang: str, report: RunReport) -> Section:
    current = report.snapshot.id if report.snapshot else None
    return Section(text(lang, "section_destinations"), [
        _row(lang, destination_words(lang, d, current), alert=d.state == "failed", link=d.link)
        for d in report.destinations])


def _storage(cfg: Config, report: RunReport) -> Section:
    lang = cfg.email.language
    free = (fmt_bytes(report.free_bytes, lang) if report.free_bytes is not None
            else text(lang, "unknown"))
    next_run = (local_time(report.next_run, zone=True) if report.next_run
                else text(lang, "next_run_none"))
    rows = [
        Row(free, text(lang, "free", dir=str(cfg.local.dir))),
        Row(next_run, text(lang, "next_run")),
    ]
    if report.kept:
        rows.append(Row(text(lang, "kept_value", count=len(report.kept),
                             ids=", ".join(report.kept)), text(lang, "kept")))
    if report.pruned:
        rows.append(Row(", ".join(report.pruned), text(lang, "pruned")))
    return Section(text(lang, "section_storage"), rows)


# --- rendering ------------------------------------------------------------------------------


def render_text(body: Body) -> str:
    """The plain-text version."""
    out = [*body.lead, ""]
    for section in body.sections:
        out.append(section.title)
        out.append("-" * len(section.title))
        for row in section.rows:
            line = f"{row.label}: {row.value}" if row.label else f"  - {row.value}"
            out.append(line)
            indent = "    " if row.label is None else "  "
            if row.link:
                out.append(f"{indent}{row.link}")
            if row.hint:
                out.append(f"{indent}{row.hint}")
            if row.detail:
                out.append(f"{indent}{row.detail}")
        out.append("")
    out.append("-- ")
    out.append(body.footer)
    return "\n".join(out) + "\n"


_BANNER = {"ok": "#1e7e34", "warning": "#b36b00", "failed": "#b00020"}


def render_html(body: Body) -> str:
    """The HTML version: the same content, every value escaped, links only for http(s)."""
    e = html.escape
    colour = _BANNER.get(body.status, "#444")
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="{e(body.language)}"><head><meta charset="utf-8"></head>',
        '<body style="font-family:Arial,Helvetica,sans-serif;font-size:14px;color:#222">',
        f'<div style="border-left:6px solid {colour};padding:8px 12px;margin-bottom:12px">',
    ]
    for i, paragraph in enumerate(body.lead):
        style = f' style="font-weight:bold;color:{colour}"' if i == 0 else ""
        parts.append(f"<p{style}>{e(paragraph)}</p>")
    parts.append("</div>")
    for section in body.sections:
        parts.append(f'<h3 style="margin:16px 0 6px">{e(section.title)}</h3>')
        labelled = [r for r in section.rows if r.label is not None]
        bullets = [r for r in section.rows if r.label is None]
        if labelled:
            parts.append('<table style="border-collapse:collapse">')
            for row in labelled:
                parts.append(
                    f'<tr><td style="padding:2px 12px 2px 0;color:#555;vertical-align:top">'
                    f"{e(row.label or '')}</td><td style=\"padding:2px 0\">"
                    f"{_html_value(row)}</td></tr>")
            parts.append("</table>")
        if bullets:
            parts.append("<ul>")
            parts.extend(f"<li>{_html_value(row)}</li>" for row in bullets)
            parts.append("</ul>")
    parts.append(f'<p style="color:#777;font-size:12px">{e(body.footer)}</p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _html_value(row: Row) -> str:
    e = html.escape
    value = e(row.value)
    if row.alert:
        value = f'<strong style="color:#b00020">{value}</strong>'
    link = _safe_link(row.link)
    if link:
        value += f' &mdash; <a href="{e(link, quote=True)}">{e(link)}</a>'
    elif row.link:
        value += f" &mdash; {e(row.link)}"
    if row.hint:
        value += f'<br><span style="color:#555">{e(row.hint)}</span>'
    if row.detail:
        value += f'<br><span style="color:#777;font-size:12px">{e(row.detail)}</span>'
    return value


# --- messages -------------------------------------------------------------------------------


def sender_address(cfg: Config) -> str:
    """The From address: ``email.sender``, else the SMTP user name (often the same mailbox)."""
    return cfg.email.sender or cfg.email.username


def _envelope(cfg: Config, subject: str) -> EmailMessage:
    sender = sender_address(cfg)
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = formataddr(("siip-watcher", sender))
    msg["To"] = ", ".join(cfg.email.to)
    msg["Date"] = formatdate(localtime=True)
    domain = sender.rpartition("@")[2] or None
    msg["Message-ID"] = make_msgid(domain=domain)
    msg["X-Mailer"] = f"siip-watcher {__version__}"
    return msg


def _alert_raised(report: RunReport) -> bool:
    """This run raised (or raised again) a data-loss alert: the office must see it first."""
    return bool(report.alert and report.alert.get("event") in ("raised", "raised again"))


def subject_for(cfg: Config, report: RunReport, kind: str) -> str:
    """``[SIIP Backup] <OK|WARNING|FAILED> <name> <local time>``, recovery marked as such."""
    if _alert_raised(report):
        return text(cfg.email.language, "subject_alert", name=cfg.name,
                    when=local_time(report.started_at))
    key = "subject_recovery" if kind == policy.RECOVERY else "subject"
    return text(cfg.email.language, key, status=SUBJECT_STATUS[report.status], name=cfg.name,
                when=local_time(report.started_at))


def build_report_message(cfg: Config, report: RunReport, kind: str,
                         *, host: str | None = None) -> EmailMessage:
    """The complete email for a finished run (plain text with an HTML alternative)."""
    body = report_body(cfg, report, kind, host=host or socket.gethostname())
    msg = _envelope(cfg, subject_for(cfg, report, kind))
    _set_body(msg, body)
    return msg


def _set_body(msg: EmailMessage, body: Body) -> None:
    """The plain text and its HTML alternative, quoted-printable: pure 7-bit on the wire.

    Left to itself the email package sends short-lined UTF-8 as raw 8-bit, and smtplib
    declares BODY=8BITMIME only for SMTPUTF8 messages, so a strict relay refuses a Spanish
    report ("FALLÓ") or mangles it. Quoted-printable needs nothing from the server.
    """
    msg.set_content(render_text(body), cte="quoted-printable")
    msg.add_alternative(render_html(body), subtype="html", cte="quoted-printable")


def build_test_message(cfg: Config, now: datetime, *, host: str | None = None) -> EmailMessage:
    """The message `siip-watcher email test` sends."""
    lang = cfg.email.language
    host = host or socket.gethostname()
    e = cfg.email
    body = Body(
        language=lang,
        status="ok",
        lead=[text(lang, "test_lead", name=cfg.name),
              text(lang, "test_body", server=f"{e.smtp_host}:{e.smtp_port}",
                   security=text(lang, f"security_{e.security}"))],
        sections=[],
        footer=text(lang, "footer", version=__version__, host=host),
    )
    msg = _envelope(cfg, text(lang, "subject_test", name=cfg.name, when=local_time(now)))
    _set_body(msg, body)
    return msg
