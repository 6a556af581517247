"""The charts of the follow-up and the report: SVG drawn on the server by pygal, so a
page and the PDF (WeasyPrint runs no JavaScript) show the same picture. No scripts are
embedded (`js=[]`; pygal's config script is removed), and the SVG scales to its container (a viewBox, no fixed size).
Every text on a chart comes from the caller, already translated."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, timedelta

import pygal
from pygal.style import Style

from vaktpost.broker.measures.stats import YEAR, FollowUp, RateRatio, Series, Week

STYLE = Style(background="white", plot_background="white", font_family="DejaVu Sans, Arial, sans-serif",
              foreground="#222", foreground_strong="#111", foreground_subtle="#888",
              colors=("#1f5fa8", "#c0392b", "#7f8c8d", "#27ae60", "#8e44ad", "#d35400", "#16a085"),
              label_font_size=13, major_label_font_size=13, legend_font_size=13, title_font_size=15,
              value_font_size=12, tooltip_font_size=12)
_COMMON = dict(style=STYLE, js=[], disable_xml_declaration=True, width=800, height=320, legend_at_bottom=True,
               legend_at_bottom_columns=3, print_values=False, show_dots=False, truncate_legend=-1,
               truncate_label=-1)
MAX_RATIO = 5.0  # the ratio chart's top; larger (and unbounded) ends are drawn there

Text = Callable[[str], str]


_SCRIPT = re.compile(r"<script\b.*?</script>", re.DOTALL)


def _svg(chart: pygal.graph.graph.Graph) -> str:
    # pygal always embeds its configuration as a script; without its JavaScript it is dead
    # weight, and the inbox's Content-Security-Policy would refuse it.
    return _SCRIPT.sub("", str(chart.render(is_unicode=True)))


def follow_up_chart(f: FollowUp, series: Series, *, title: str, labels: Mapping[str, str],
                    date_format: Callable[[date], str]) -> str:
    """Weekly rate of `series` before and after the measure, the mean of each window, the
    same weeks a year earlier (moved forward a year to line up) and the measure's start."""
    assert f.before is not None and f.after is not None
    chart = pygal.DateLine(**_COMMON, title=title, x_value_formatter=date_format, x_label_rotation=0,
                           show_minor_x_labels=False, y_title=labels["per_1000"], dots_size=2)
    points = _points(f.weeks, series)
    chart.add(labels["weekly"], points, show_dots=True)
    if f.weeks_year_before:
        chart.add(labels["year_before"], [(d + YEAR, v) for d, v in _points(f.weeks_year_before, series)],
                  stroke_style={"dasharray": "6,4"}, show_dots=True)
    row = next(r for r in f.series if r.series.key == series.key)
    for label, w, value in ((labels["mean_before"], f.before, row.now.rate0),
                            (labels["mean_after"], f.after, row.now.rate1)):
        if value is not None:
            chart.add(label, [(w.start.date(), value), (w.end.date() - timedelta(days=1), value)],
                      stroke_style={"width": 3})
    top = max([v for _, v in points if v is not None] + [row.now.rate0 or 0, row.now.rate1 or 0, 1e-9])
    start = f.after.start.date()
    chart.add(labels["start"], [(start, 0), (start, top * 1.05)], stroke_style={"width": 2, "dasharray": "2,3"})
    return _svg(chart)


def _points(weeks: Sequence[Week], series: Series) -> list[tuple[date, float | None]]:
    return [(w.start.date(), w.rate(series)) for w in weeks]


def ratio_chart(rows: Sequence[tuple[str, RateRatio | None, RateRatio | None]], *, title: str,
                labels: Mapping[str, str]) -> str:
    """Per row (a name, the ratio now, the same weeks a year earlier): the ratio as a dot on
    a vertical bar, its 95 % interval, and the line of no change (1). An interval without an
    upper bound runs to the top of the chart. (Linear: pygal's log scale drops XY lines.)"""
    ratios = [rr for row in rows for rr in row[1:] if isinstance(rr, RateRatio) and rr.ratio is not None]
    finite = [v for rr in ratios for v in (rr.ratio, rr.high) if v is not None and math.isfinite(v)]
    top = min(MAX_RATIO, max([2.0, *(1.1 * v for v in finite)]))
    n = len(rows)
    chart = pygal.XY(**_COMMON, title=title, range=(0, top), xrange=(0.5, n + 0.5), x_labels=list(range(1, n + 1)),
                     y_title=labels["ratio"], allow_interruptions=True, dots_size=5, show_x_guides=False,
                     x_value_formatter=lambda x: rows[int(round(x)) - 1][0] if 1 <= round(x) <= n else "")
    chart.add(labels["no_change"], [(0.5, 1.0), (n + 0.5, 1.0)], stroke_style={"dasharray": "6,4", "width": 2})
    for offset, which, label in ((-0.1, 1, labels["now"]), (0.1, 2, labels["year_before"])):
        points: list[tuple[float, float] | None] = []
        for i, row in enumerate(rows, start=1):
            rr = row[which]
            if isinstance(rr, RateRatio) and rr.ratio is not None and rr.low is not None and rr.high is not None:
                x = i + offset
                points += [(x, min(rr.low, top)), (x, min(rr.ratio, top)), (x, min(rr.high, top)), None]
        chart.add(label, points, show_dots=True, stroke_style={"width": 4})
    return _svg(chart)


def weekly_by_type_chart(weeks: Sequence[datetime], counts: Mapping[str, Sequence[int]], *, title: str,
                         date_format: Callable[[date], str], y_title: str) -> str:
    """Incidents per week, one stacked bar per week, a colour per type (`counts`: label → per week)."""
    chart = pygal.StackedBar(**_COMMON, title=title, y_title=y_title, x_label_rotation=0, show_minor_x_labels=False,
                             x_labels=[date_format(w.date()) for w in weeks],
                             x_labels_major_every=max(1, len(weeks) // 8))
    for label, values in counts.items():
        chart.add(label, list(values))
    return _svg(chart)


def places_chart(rows: Sequence[tuple[str, int]], *, title: str, y_title: str) -> str:
    """Incidents per place, most first (horizontal bars)."""
    chart = pygal.HorizontalBar(**{**_COMMON, "height": 60 + 34 * max(len(rows), 3), "print_values": True},
                                title=title, x_title=y_title, show_legend=False)
    chart.x_labels = [name for name, _ in reversed(rows)]
    chart.add(y_title, [n for _, n in reversed(rows)])
    return _svg(chart)
