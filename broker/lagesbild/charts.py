"""The situational picture's charts as SVG, drawn on the server by pygal (pure Python,
no JavaScript), so pages and the PDF report (WeasyPrint) show the same charts.

Each function takes numbers and the words to show (already in the reader's
language) and returns one `<svg>` element to put into HTML as it is. Values of None
are gaps (weeks nothing was online): no bar and a break in a line, never a zero.
The charts are 640×360 user units and scale to their container's width (viewBox),
with fonts large enough to read on a phone.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

import pygal
from babel.dates import format_date, get_day_names
from pygal.style import Style

from vaktpost.broker.incidents.kinds import IncidentType

# One colour per type on every chart; distinguishable in greyscale print as well.
TYPE_COLOURS: Mapping[str, str] = {
    IncidentType.intrusion.value: "#b3261e",
    IncidentType.loitering.value: "#e59b2f",
    IncidentType.scene_change.value: "#0b5cad",
    IncidentType.tamper.value: "#5b3a8e",
    IncidentType.motion.value: "#7a8591",
    IncidentType.health.value: "#2e7d6b",
    IncidentType.node_offline.value: "#1b1f24",
}
NOW_COLOUR, EARLIER_COLOUR, DOT_COLOUR = "#0b5cad", "#9aa3ad", "#b3261e"
WIDTH, HEIGHT = 640, 360


def _style(colours: Sequence[str]) -> Style:
    return Style(background="#ffffff", plot_background="#ffffff", foreground="#1b1f24",
                 foreground_strong="#1b1f24", foreground_subtle="#d5dae0", opacity="0.9", opacity_hover="1",
                 colors=tuple(colours), font_family="system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
                 label_font_size=15, major_label_font_size=15, legend_font_size=15, value_font_size=13,
                 title_font_size=16, tooltip_font_size=13)


def _config(colours: Sequence[str], **extra: Any) -> dict[str, Any]:
    # js=[]: no script (pygal's default loads its tooltips from the web; the PDF runs none).
    return {"style": _style(colours), "js": [], "width": WIDTH, "height": HEIGHT, "legend_at_bottom": True,
            "legend_at_bottom_columns": 2, "truncate_legend": -1, "truncate_label": -1,
            "show_minor_x_labels": False, "margin": 8, "spacing": 8, "print_values": False, **extra}


def _svg(chart: Any) -> str:
    # pygal always adds a script with its config for its tooltips; drop it (no script
    # runs in the PDF, and the inbox's Content-Security-Policy allows none).
    root = chart.render_tree()
    for parent in list(root.iter()):
        for child in list(parent):
            if child.tag == "script":
                parent.remove(child)
    return ET.tostring(root, encoding="unicode")


def week_labels(weeks: Sequence[date], lang: str) -> tuple[list[str], list[str]]:
    """(a label per week, the ones to show): the month's short name at its first Monday
    (the page says the period's dates), the week number elsewhere."""
    labels: list[str] = []
    major: list[str] = []
    for w in weeks:
        if w.day <= 7:
            text = format_date(w, "MMM", locale=lang)
            major.append(text)
        else:
            text = f"{w.isocalendar().week}"
        labels.append(text)
    return labels, major


def weekly_counts(weeks: Sequence[date], series: Mapping[str, Sequence[int | None]],
                  names: Mapping[str, str], lang: str, *, y_title: str = "") -> str:
    """Stacked bars: incidents per week, a layer per type (`series` type -> counts)."""
    labels, major = week_labels(weeks, lang)
    types = list(series)
    chart = pygal.StackedBar(**_config([TYPE_COLOURS.get(t, "#555") for t in types], y_title=y_title,
                                       x_labels=labels, x_labels_major=major, min_scale=2, max_scale=6))
    for t in types:
        chart.add(names.get(t, t), list(series[t]))
    return _svg(chart)


def weekly_lines(weeks: Sequence[date], series: Mapping[str, Sequence[float | int | None]],
                 colours: Sequence[str], lang: str, *, y_title: str = "") -> str:
    """Lines per week (`series` name -> values), broken where a value is None: rates
    per type, or this period beside a year earlier."""
    labels, major = week_labels(weeks, lang)
    chart = pygal.Line(**_config(colours, y_title=y_title, x_labels=labels, x_labels_major=major,
                                 allow_interruptions=True, show_dots=False, stroke_style={"width": 3},
                                 min_scale=2, max_scale=6))
    for name, values in series.items():
        chart.add(name, list(values))
    return _svg(chart)


def hour_of_week(heat: Sequence[Sequence[int]], lang: str) -> str:
    """The hour-of-week map (7 × 24, local time): a row per weekday, a dot per hour whose
    size is the number of incidents (a punch card)."""
    days = get_day_names("abbreviated", locale=lang)
    chart = pygal.Dot(**_config([DOT_COLOUR] * 7, x_labels=[str(h) for h in range(24)],
                                x_labels_major=[str(h) for h in range(0, 24, 3)], show_legend=False,
                                show_y_guides=False, height=300))
    for day in range(7):
        # pygal draws a zero as a dot too; an empty hour draws none.
        chart.add(days[day].capitalize(), [n or None for n in heat[day]])
    return _svg(chart)


def breakdown(rows: Sequence[tuple[str, int, int]], now_name: str, earlier_name: str) -> str:
    """Horizontal bars per type: this period and the same days a year earlier
    (`rows`: (label, count, earlier count))."""
    rows = list(reversed(rows))  # pygal draws the first at the bottom; the first should be on top
    chart = pygal.HorizontalBar(**_config([NOW_COLOUR, EARLIER_COLOUR], x_labels=[r[0] for r in rows],
                                          show_minor_x_labels=True, height=80 + 44 * len(rows)))
    chart.add(now_name, [r[1] for r in rows])
    chart.add(earlier_name, [r[2] for r in rows])
    return _svg(chart)
