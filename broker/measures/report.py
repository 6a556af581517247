"""The situational report of one district and period, for the cooperation meeting with
police and landlords: a summary by type against the same weeks a year earlier, incidents
per week, the top places and the measures with their follow-up. HTML from Jinja
templates (`templates/`), the PDF by WeasyPrint (no JavaScript: the charts are SVG).

The follow-up block (`render_follow_up`) is shared with the inbox's measure page.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_datetime
from babel.numbers import format_decimal
from babel.support import NullTranslations
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from sqlalchemy import select

from vaktpost.broker.inbox.i18n import load_translations
from vaktpost.broker.incidents.kinds import IncidentType
from vaktpost.broker.incidents.labels import type_labels
from vaktpost.broker.incidents.tables import incident_places, incidents
from vaktpost.broker.measures import charts, labels
from vaktpost.broker.measures.exposure import ExposureSource, Hours
from vaktpost.broker.measures.service import list_measures
from vaktpost.broker.measures.stats import SERIES, YEAR, FollowUp, RateRatio, follow_up, rate, series_by_key
from vaktpost.broker.store import Store, places

HERE = Path(__file__).resolve().parent
TOP_PLACES = 10
MAX_DAYS = 2 * 366  # a report covers at most two years


class ReportError(ValueError):
    """The report cannot be made; the message says why in one line."""


@dataclass(frozen=True)
class TypeRow:
    type: IncidentType
    count: int
    year_before: int | None  # None: no camera time a year earlier


@dataclass(frozen=True)
class PlaceRow:
    id: str
    name: str
    count: int
    rate: float | None  # per 1,000 online camera-hours


@dataclass
class Report:
    district: str
    first: date
    last: date  # inclusive
    made_at: datetime
    measured_exposure: bool
    hours: Hours
    hours_year_before: Hours
    types: list[TypeRow]
    series_rates: list[tuple[str, str, float | None, float | None]]  # key, basis, rate now, a year earlier
    week_starts: list[datetime]
    weekly: dict[IncidentType, list[int]]
    top: list[PlaceRow]
    follow_ups: list[FollowUp] = field(default_factory=list)
    place_count: int = 0


def _midnight(d: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(d, time(0), zone)


def check_period(first: date, last: date) -> None:
    if last < first:
        raise ReportError("the period ends before it starts")
    if (last - first).days >= MAX_DAYS:
        raise ReportError(f"the period is longer than {MAX_DAYS} days")


def _opened(store: Store, place_ids: Sequence[str], start: datetime, end: datetime
            ) -> list[tuple[str, datetime, str]]:
    """(type, opened_at, place id) of incidents at `place_ids` opened in [start, end): once per place."""
    i, ip = incidents.c, incident_places.c
    q = (select(i.type, i.opened_at, ip.place_id).join_from(incidents, incident_places, ip.incident_id == i.id)
         .where(ip.place_id.in_(list(place_ids)), i.opened_at >= start, i.opened_at < end))
    with store.engine.connect() as conn:
        return [(r.type, r.opened_at, r.place_id) for r in conn.execute(q)]


def _distinct(rows: list[tuple[str, datetime, str]]) -> Counter[str]:
    # An incident at two places of the district counts once in the district's totals.
    return Counter(t for t, _, _ in {(t, at, "") for t, at, _ in rows})


def build(store: Store, district: str, first: date, last: date, *, now: datetime, zone: ZoneInfo,
          exposure: ExposureSource) -> Report:
    """The report's numbers (no rendering). `now` bounds the follow-ups of measures."""
    check_period(first, last)
    district_places = [p for p in store.list_places() if p.get("district") == district]
    ids = [p["id"] for p in district_places]
    start, end = _midnight(first, zone), _midnight(last + timedelta(days=1), zone)
    ago = (_midnight(first - YEAR, zone), _midnight(last + timedelta(days=1) - YEAR, zone))
    rows, rows_before = _opened(store, ids, start, end), _opened(store, ids, *ago)
    hours, hours_before = exposure.hours(store, start, end, ids), exposure.hours(store, *ago, ids)
    counts, counts_before = _distinct(rows), _distinct(rows_before)
    types = [TypeRow(t, counts.get(t.value, 0), counts_before.get(t.value, 0) if hours_before.online > 0 else None)
             for t in IncidentType if counts.get(t.value) or counts_before.get(t.value)]
    series_rates = []
    for s in SERIES:
        n = sum(counts.get(t.value, 0) for t in s.types)
        n_before = sum(counts_before.get(t.value, 0) for t in s.types)
        series_rates.append((s.key, s.basis, rate(n, hours.of(s.basis)), rate(n_before, hours_before.of(s.basis))))
    week_starts, weekly = _weekly(rows, start, end, zone)
    return Report(district, first, last, now, exposure.measured, hours, hours_before, types, series_rates,
                  week_starts, weekly, _top(store, rows, district_places, start, end, exposure),
                  _follow_ups(store, district, first, last, now, zone, exposure), len(ids))


def _weekly(rows: list[tuple[str, datetime, str]], start: datetime, end: datetime, zone: ZoneInfo
            ) -> tuple[list[datetime], dict[IncidentType, list[int]]]:
    # Weeks from the Monday on or before the first day.
    monday = start.date() - timedelta(days=start.weekday())
    starts = []
    d = monday
    while _midnight(d, zone) < end:
        starts.append(_midnight(d, zone))
        d += timedelta(weeks=1)
    weekly: dict[IncidentType, list[int]] = {}
    for t, at, _ in {(t, at, "") for t, at, _ in rows}:
        k = (at.astimezone(zone).date() - monday).days // 7
        weekly.setdefault(IncidentType(t), [0] * len(starts))[k] += 1
    return starts, dict(sorted(weekly.items(), key=lambda kv: list(IncidentType).index(kv[0])))


def _top(store: Store, rows: list[tuple[str, datetime, str]], district_places: list[dict[str, Any]],
         start: datetime, end: datetime, exposure: ExposureSource) -> list[PlaceRow]:
    """Places by incidents of the followed types (people, scene change, tamper), most first."""
    followed = {t.value for s in SERIES for t in s.types}
    per_place = Counter(p for t, _, p in rows if t in followed)
    names = {p["id"]: p["name"] for p in district_places}
    top = []
    for place_id, n in sorted(per_place.items(), key=lambda kv: (-kv[1], names.get(kv[0], kv[0])))[:TOP_PLACES]:
        h = exposure.hours(store, start, end, [place_id])
        top.append(PlaceRow(place_id, names.get(place_id, place_id), n, rate(n, h.online)))
    return top


def _follow_ups(store: Store, district: str, first: date, last: date, now: datetime, zone: ZoneInfo,
                exposure: ExposureSource) -> list[FollowUp]:
    """Measures of the district in force at some time of the period, followed up to its end."""
    as_of = min(now, _midnight(last + timedelta(days=1), zone))
    shown = [m for m in list_measures(store, districts=[district])
             if m.start_date <= last and (m.end_date is None or m.end_date >= first)]
    return [follow_up(store, m, as_of, zone, exposure) for m in reversed(shown)]


# --- rendering -------------------------------------------------------------------------


@lru_cache(maxsize=8)
def environment(lang: str, zone_name: str) -> Environment:
    """The report's templates in `lang`, times in `zone_name`."""
    translations: NullTranslations = load_translations(lang)
    zone = ZoneInfo(zone_name)
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                      extensions=["jinja2.ext.i18n"])
    env.install_gettext_translations(translations, newstyle=True)  # type: ignore[attr-defined]
    gettext = translations.gettext
    env.filters["day"] = lambda d, fmt="medium": format_date(d, format=fmt, locale=lang)
    env.filters["localtime"] = lambda t, fmt="medium": format_datetime(t.astimezone(zone), format=fmt,
                                                                      tzinfo=zone, locale=lang)
    env.filters["decimal"] = lambda v, fmt="#,##0.0": "—" if v is None else format_decimal(v, format=fmt,
                                                                                          locale=lang)
    env.filters["ratio"] = lambda v: _ratio(v, lang)
    # A window's last day (its end is the next midnight).
    env.filters["lastday"] = lambda t, fmt="medium": format_date((t - timedelta(days=1)).date(), format=fmt,
                                                                 locale=lang)
    env.globals.update(
        type_label=lambda t: type_labels(gettext).get(IncidentType(t), str(t)),
        kind_label=lambda k: labels.kind_labels(gettext)[k], series_label=lambda k: labels.series_labels(gettext)[k],
        basis_label=lambda b: labels.basis_labels(gettext)[b],
        verdict=lambda rr: labels.verdict_text(rr, gettext),
        chart=lambda f, key: Markup(_follow_up_chart(f, key, gettext, lang)),
        ratio_chart=lambda f: Markup(_ratio_chart(f, gettext)))
    return env


def _ratio(v: float | None, lang: str) -> str:
    if v is None:
        return "—"
    if v == float("inf"):
        return "∞"
    return format_decimal(v, format="#,##0.00", locale=lang)


def _short_date(lang: str) -> Callable[[date], str]:
    return lambda d: format_date(d, format="d MMM yy", locale=lang)


def _follow_up_chart(f: FollowUp, key: str, gettext: Callable[[str], str], lang: str) -> str:
    s = series_by_key(key)
    names = {"per_1000": labels.basis_labels(gettext)[s.basis], "weekly": gettext("Per week"),
             "year_before": gettext("The same weeks a year earlier"), "mean_before": gettext("Mean before"),
             "mean_after": gettext("Mean after"), "start": gettext("The measure starts")}
    return charts.follow_up_chart(f, s, title=labels.series_labels(gettext)[key], labels=names,
                                  date_format=_short_date(lang))


def _ratio_chart(f: FollowUp, gettext: Callable[[str], str]) -> str:
    names = {"ratio": gettext("Rate after / before"), "no_change": gettext("No change"),
             "now": gettext("Now"), "year_before": gettext("The same weeks a year earlier")}
    rows: list[tuple[str, RateRatio | None, RateRatio | None]] = [
        (labels.series_labels(gettext)[r.series.key], r.now, r.year_before) for r in f.series]
    return charts.ratio_chart(rows, title=gettext("Rate ratio with 95 % interval"), labels=names)


def render_follow_up(f: FollowUp, lang: str, zone: ZoneInfo, *, heading_level: int = 2) -> Markup:
    """The follow-up block of one measure (numbers, verdict, charts) as HTML."""
    html = environment(lang, str(zone)).get_template("_follow_up.html").render(f=f, h=heading_level, lang=lang)
    return Markup(html)


def render_html(report: Report, lang: str, zone: ZoneInfo) -> str:
    env = environment(lang, str(zone))
    gettext = load_translations(lang).gettext
    weekly = charts.weekly_by_type_chart(
        report.week_starts, {type_labels(gettext)[t]: v for t, v in report.weekly.items()},
        title=gettext("Incidents per week"), date_format=_short_date(lang), y_title=gettext("Incidents"))
    top = charts.places_chart([(p.name, p.count) for p in report.top], title=gettext("Top places"),
                              y_title=gettext("Incidents")) if report.top else ""
    follow = [render_follow_up(f, lang, zone, heading_level=3) for f in report.follow_ups]
    return env.get_template("report.html").render(r=report, lang=lang, weekly_chart=Markup(weekly),
                                                  top_chart=Markup(top), follow_ups=follow)


def render_pdf(html: str) -> bytes:
    from weasyprint import HTML  # imported when used: it loads Pango
    pdf: bytes = HTML(string=html, base_url=str(HERE)).write_pdf()
    return pdf


def district_report_pdf(store: Store, district: str, first: date, last: date, *, now: datetime, zone: ZoneInfo,
                        exposure: ExposureSource, lang: str) -> bytes:
    return render_pdf(render_html(build(store, district, first, last, now=now, zone=zone, exposure=exposure),
                                  lang, zone))


def districts(store: Store) -> list[str]:
    with store.engine.connect() as conn:
        q = select(places.c.district).where(places.c.district.is_not(None)).distinct()
        return sorted(d for d in conn.execute(q).scalars() if d)

