"""The monitor page as HTML: pure functions of a :class:`~watcher.web.view.View`.

Everything is escaped here and nothing comes from elsewhere: the stylesheet and the script are
served by the service (``/static/``), the chart is inline SVG (:mod:`.chart`). The page's
``<main>`` is :func:`render_main`, which ``/view`` also serves alone, so the script refreshes
the page by swapping in the same HTML the first load had: one renderer, no second one in
JavaScript.
"""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Any

from watcher.backup.report import DestinationResult
from watcher.notify.message import (
    Words,
    by_severity,
    destination_words,
    fmt_bytes,
    fmt_duration,
    local_time,
    problem_words,
)
from watcher.web.chart import render_chart
from watcher.web.texts import has, say
from watcher.web.view import View

_MINUTE = 60
_HOUR = 3600
_DAY = 86400


def span(seconds: float, lang: str) -> str:
    """A rough human length of time: 40 s, 20 min, 3 h, 2 days."""
    s = abs(seconds)
    if s < 1.5 * _MINUTE:
        return say(lang, "span_seconds", n=round(s))
    if s < 1.5 * _HOUR:
        return say(lang, "span_minutes", n=round(s / _MINUTE))
    if s < 2 * _DAY:
        return say(lang, "span_hours", n=round(s / _HOUR))
    return say(lang, "span_days", n=round(s / _DAY))


def when(iso: str | None, now: datetime, lang: str) -> str:
    """Local time and how long ago (or until): ``2026-11-27 18:15 (hace 20 min)``."""
    if not iso:
        return "-"
    dt = datetime.fromisoformat(iso)
    delta = (dt - now).total_seconds()
    rel = say(lang, "in" if delta > 0 else "ago", span=span(delta, lang))
    return f"{local_time(dt)} ({rel})"


def _word(lang: str, key: str, fallback: str) -> str:
    return say(lang, key) if has(lang, key) else fallback


# --- the whole page -------------------------------------------------------------------------


def render_page(view: View, lang: str, *, csrf: str, signed_in: bool) -> str:
    """The whole page for ``lang``; ``csrf`` is the token its button sends, ``signed_in``
    adds the sign-out button (only when a token is configured)."""
    other = "en" if lang == "es" else "es"
    logout = (f'<form method="post" action="/logout"><input type="hidden" name="csrf" '
              f'value="{escape(csrf)}"><button class="link">{escape(say(lang, "logout"))}'
              f'</button></form>' if signed_in else "")
    return _document(lang, say(lang, "title", name=view.name), csrf, (
        f'<header><h1>{escape(say(lang, "title", name=view.name))}</h1>'
        f'<nav><a href="/?lang={other}" hreflang="{other}">'
        f'{escape(say(lang, "other_language"))}</a>{logout}</nav></header>'
        f'<div class="action"><button id="backup" type="button">'
        f'{escape(say(lang, "backup_now"))}</button>'
        f'<p id="backup-note" role="status" aria-live="polite"></p></div>'
        f'<main id="view">{render_main(view, lang)}</main>'))


def render_login(lang: str, *, wrong: bool) -> str:
    """The sign-in form (a token is configured and the browser has no session yet)."""
    error = f'<p class="bad">{escape(say(lang, "login_wrong"))}</p>' if wrong else ""
    return _document(lang, say(lang, "login_title"), "", (
        f'<main class="login"><h1>{escape(say(lang, "login_title"))}</h1>{error}'
        f'<form method="post" action="/login?lang={lang}"><label for="token">'
        f'{escape(say(lang, "login_prompt"))}</label>'
        f'<input id="token" name="token" type="password" autocomplete="current-password" '
        f'required autofocus><button>{escape(say(lang, "login_button"))}</button></form></main>'))


def _document(lang: str, title: str, csrf: str, body: str) -> str:
    return (f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{escape(title)}</title><link rel="icon" href="/static/favicon.svg">'
            f'<link rel="stylesheet" href="/static/monitor.css">'
            f'<script src="/static/monitor.js" defer></script></head>'
            f'<body data-lang="{lang}" data-csrf="{escape(csrf)}">{body}</body></html>')


# --- the part that refreshes ----------------------------------------------------------------


def render_main(view: View, lang: str) -> str:
    """The page's data: status, what to check, destinations, chart, snapshots."""
    return "".join((_now(view, lang), _warnings(view, lang), _destinations(view, lang),
                    _chart(view, lang), _snapshots(view, lang),
                    f'<p class="muted updated">'
                    f'{escape(say(lang, "updated", when=local_time(view.now, seconds=True)))}'
                    f'</p>'))


def _now(view: View, lang: str) -> str:
    st = view.status
    run = st.get("last_run")
    busy = st.get("backup_running")
    state = run["result"] if run else "none"
    rows: list[tuple[str, str]] = []
    if run:
        trigger_key = f"trigger_{run['trigger']}"
        parts = [_word(lang, f"status_{run['result']}", run["result"]),
                 when(run["started_at"], view.now, lang),
                 _word(lang, trigger_key, run["trigger"])]
        if run.get("kind"):
            parts.append(_word(lang, f"kind_{run['kind']}", run["kind"]))
        if run.get("size") is not None:
            parts.append(fmt_bytes(run["size"], lang))
        if run.get("duration_seconds") is not None:
            parts.append(fmt_duration(run["duration_seconds"], lang))
        rows.append((say(lang, "last_run"), " · ".join(parts)))
    else:
        rows.append((say(lang, "last_run"), say(lang, "last_run_none")))
    nxt = st.get("next_interval_run")
    if nxt:
        text = when(nxt, view.now, lang)
        rows.append((say(lang, "next_run"), say(lang, "next_run_if_changed", when=text)
                     if st.get("only_if_changed") else text))
    else:
        rows.append((say(lang, "next_run"), say(lang, "next_run_asap")))
    ch = st["changes"]
    if not ch["known"]:
        changes = say(lang, "changes_unknown")
    elif ch["pending_since"]:
        changes = say(lang, "changes_pending", events=ch["events"],
                      since=when(ch["pending_since"], view.now, lang))
    else:
        changes = say(lang, "changes_none")
    rows.append((say(lang, "changes"), changes))

    service = "service_running" if st["running"] else "service_stopped"
    progress = ""
    if busy:
        since = datetime.fromisoformat(busy["since"])
        line = say(lang, "backup_running", since=local_time(since, seconds=True),
                   elapsed=span((view.now - since).total_seconds(), lang))
        progress = (f'<p class="progress">{escape(line)}</p>'
                    f'<div class="bar-track"><div class="bar-run"></div></div>')
    started = escape(run["started_at"]) if run else ""
    result = escape(f"{rows[0][0]}: {rows[0][1]}") if run else ""
    return (f'<section class="card now {escape(state)}" data-running="{1 if busy else 0}" '
            f'data-run="{started}" data-result="{result}">'
            f'<h2 class="{"up" if st["running"] else "down"}">{escape(say(lang, service))}'
            f'</h2>{progress}<dl>'
            + "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in rows)
            + "</dl></section>")


def concerns(view: View, lang: str) -> list[Words]:
    """What to check, most important first, in ``lang``: a data-loss alert, the service not
    running, a failed run and its causes, copies waiting at a destination, then the last
    run's warnings. Each in the email's words where the email has them."""
    st = view.status
    found: list[Words] = []
    alert = st.get("alert")
    if alert:
        found.append(Words(say(lang, "warn_alert", since=when(alert["raised_at"], view.now,
                                                                lang)),
                           say(lang, "problem_data_loss_database_empty_hint"),
                           "; ".join(alert.get("reasons", [])) or None))
    if not st["running"]:
        found.append(Words(say(lang, "warn_service_stopped"),
                           say(lang, "warn_service_stopped_hint")))
    run = st.get("last_run")
    if run and run["result"] == "failed":
        found.append(Words(say(lang, "warn_last_failed",
                               when=when(run["started_at"], view.now, lang))))
    current = (st.get("last_snapshot") or {}).get("id")
    for item in st["uploads"]["items"]:
        retry = when(item.get("next_try_at"), view.now, lang)
        copy = DestinationResult(
            name=item["destination"], state=item["state"], error=item.get("last_error"),
            snapshot_id=item["snapshot"],
            key="retry_at" if item["state"] == "pending" else "fix_cause",
            params={"when": retry})
        found.append(destination_words(lang, copy, current))
    found.extend(problem_words(lang, p) for p in by_severity(view.problems))
    return found


def _warnings(view: View, lang: str) -> str:
    items = concerns(view, lang)
    if not items:
        body = f'<p class="good">{escape(say(lang, "all_well"))}</p>'
    else:
        body = "<ul class=\"warnings\">" + "".join(
            f"<li><strong>{escape(w.message)}</strong>"
            + (f'<span class="hint">{escape(say(lang, "what_to_do", hint=w.hint))}</span>'
               if w.hint else "")
            + (f'<span class="detail">{escape(say(lang, "detail", detail=w.detail))}</span>'
               if w.detail else "") + "</li>" for w in items) + "</ul>"
    return (f'<section class="card warnings-card"><h2>{escape(say(lang, "section_warnings"))}'
            f'</h2>{body}</section>')


def _destinations(view: View, lang: str) -> str:
    if not view.destinations:
        body = f'<p>{escape(say(lang, "dest_none"))}</p>'
    else:
        rows = []
        for d in view.destinations:
            if d.pending or d.failed:
                state = say(lang, "dest_queue", pending=d.pending, failed=d.failed)
                cls = "bad" if d.failed else "warn"
            else:
                state, cls = say(lang, "dest_up_to_date"), "good"
            rows.append(f'<tr data-destination="{escape(d.name)}"><th>{escape(d.name)}</th>'
                        f'<td class="{cls}">{escape(state)}</td></tr>')
        body = f'<table class="destinations">{"".join(rows)}</table>'
    return (f'<section class="card"><h2>{escape(say(lang, "section_destinations"))}</h2>'
            f'{body}</section>')


def _chart(view: View, lang: str) -> str:
    caption = (f'<p class="muted">{escape(say(lang, "chart_caption", n=len(view.runs)))}</p>'
               if view.runs else "")
    return (f'<section class="card"><h2>{escape(say(lang, "section_chart"))}</h2>'
            f'{render_chart(view.runs, lang)}{caption}</section>')


def _where(names: list[str], lang: str) -> str:
    return ", ".join(say(lang, "dest_local") if n == "local" else n for n in names) or "-"


def _snapshots(view: View, lang: str) -> str:
    if not view.snapshots:
        body = f'<p>{escape(say(lang, "snapshots_none"))}</p>'
    else:
        head = "".join(f"<th>{escape(say(lang, k))}</th>"
                       for k in ("col_id", "col_kind", "col_size", "col_where"))
        rows = "".join(
            f'<tr data-id="{escape(s.id)}"><td class="id">{escape(s.id)}</td>'
            f'<td>{escape(_word(lang, f"kind_{s.kind}", s.kind))}</td>'
            f'<td class="num">{escape(fmt_bytes(s.size, lang))}</td>'
            f'<td>{escape(_where(s.where, lang))}</td></tr>' for s in view.snapshots)
        more = view.snapshot_total - len(view.snapshots)
        tail = (f'<p class="muted">{escape(say(lang, "snapshots_more", n=more))}</p>'
                if more > 0 else "")
        body = (f'<div class="scroll"><table class="snapshots"><thead><tr>{head}</tr></thead>'
                f'<tbody>{rows}</tbody></table></div>{tail}')
    return (f'<section class="card"><h2>{escape(say(lang, "section_snapshots"))}</h2>'
            f'{body}</section>')


def backup_answer(lang: str, answer: dict[str, Any]) -> str:
    """What the page says after its button was pressed (:meth:`Service.request_backup`)."""
    key = {"started": "backup_started", "running": "backup_already", "busy": "backup_busy",
           "stopping": "backup_stopping"}.get(answer.get("state", ""), "backup_error")
    return say(lang, key)
