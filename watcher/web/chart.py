"""The chart of the last runs' sizes and durations, as inline SVG drawn here (pure).

Bars are the snapshots' sizes (a failed run, which stored none, is a short red bar), the line
is how long each run took; each has its own scale, written at the top. Colours come from the
page's stylesheet through class names, so the strict Content-Security-Policy needs no inline
style.
"""

from __future__ import annotations

from html import escape

from watcher.notify.message import fmt_bytes, fmt_duration, local_time
from watcher.state.catalog import RunPoint
from watcher.web.texts import say

WIDTH = 600
HEIGHT = 200
TOP = 24          # room for the scales' labels
BOTTOM = 8
SIDE = 4
#: the chart has room for this many runs (watcher/web/view.py reads as many)
CHART_SLOTS = 30
#: a failed run's bar, as a share of the plot's height
FAILED_BAR = 0.08


def render_chart(runs: list[RunPoint], lang: str) -> str:
    """An ``<svg>`` element for ``runs`` (oldest first), or a sentence when there are none."""
    if not runs:
        return f'<p class="muted">{escape(say(lang, "chart_empty"))}</p>'
    plot_h = HEIGHT - TOP - BOTTOM
    # one slot per run of a full chart, newest at the right: a young service's first runs
    # look like runs, not like a wall
    slots = max(len(runs), CHART_SLOTS)
    slot = (WIDTH - 2 * SIDE) / slots
    first = SIDE + (slots - len(runs)) * slot
    max_size = max((r.size or 0 for r in runs), default=0) or 1
    max_time = max((r.duration or 0.0 for r in runs), default=0.0) or 1.0
    parts: list[str] = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(say(lang, "section_chart"))}">',
        f'<text class="scale size" x="{SIDE}" y="14">{escape(fmt_bytes(max_size, lang))}</text>',
        f'<text class="scale time" x="{WIDTH - SIDE}" y="14" text-anchor="end">'
        f'{escape(fmt_duration(max_time, lang))}</text>',
        f'<line class="axis" x1="0" y1="{HEIGHT - BOTTOM}" x2="{WIDTH}" y2="{HEIGHT - BOTTOM}"/>',
    ]
    points: list[str] = []
    for i, run in enumerate(runs):
        x = first + i * slot
        failed = run.status == "failed" or run.size is None
        share = FAILED_BAR if failed else max(run.size or 0, 1) / max_size
        h = max(share * plot_h, 1.0)
        tip = ", ".join(part for part in (
            local_time(run.started_at), say(lang, f"status_{run.status}"),
            fmt_bytes(run.size, lang) if run.size is not None else "",
            fmt_duration(run.duration, lang) if run.duration is not None else "") if part)
        parts.append(
            f'<rect class="bar {"failed" if failed else run.status}" x="{x + slot * 0.15:.1f}" '
            f'y="{HEIGHT - BOTTOM - h:.1f}" width="{slot * 0.7:.1f}" height="{h:.1f}">'
            f'<title>{escape(tip)}</title></rect>')
        if run.duration is not None:
            y = HEIGHT - BOTTOM - (run.duration / max_time) * plot_h
            points.append(f"{x + slot / 2:.1f},{y:.1f}")
    if points:
        parts.append(f'<polyline class="line" points="{" ".join(points)}"/>')
        parts.extend(f'<circle class="dot" cx="{p.split(",")[0]}" cy="{p.split(",")[1]}" r="3"/>'
                     for p in points)
    parts.append("</svg>")
    return "".join(parts)
