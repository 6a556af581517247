"""The situational picture's pages (lägesbild): an overview with the ranking of places,
a page per district and a page per place (charts, type breakdown, a year earlier,
tamper and offline time per camera, priority marks).

For admins and operators only (viewers get 404, as for a page that does not exist);
scoped as the inbox: an operator sees the districts and places of their districts,
and another district's page is 404. The numbers are `vaktpost.broker.lagesbild`'s.
Rates need coverage data: the app's `state.exposure` (an `ExposureSource`) gives it;
without one the pages show counts and say so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from babel.dates import format_date
from babel.numbers import format_percent
from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from vaktpost.broker.inbox.accounts import Account
from vaktpost.broker.inbox.scope import sees_district, visible_places
from vaktpost.broker.inbox.web import current_account, inbox_of, render, tr
from vaktpost.broker.incidents.labels import type_labels
from vaktpost.broker.lagesbild import charts
from vaktpost.broker.lagesbild.marks import NOTE_MAX, MarkError, add_mark, current_marks, history
from vaktpost.broker.lagesbild.picture import SORTS, Picture, picture, ranking
from vaktpost.broker.lagesbild.queries import (
    CHART_TYPES,
    DAMAGE,
    PEOPLE,
    ExposureSource,
    Period,
    downtime,
    no_exposure,
)

router = APIRouter()
MAX_DAYS = 3 * 366  # a longer period is refused (the default is used): bounded queries

Staff = Annotated[Account, Depends(current_account)]


def _staff(account: Account) -> Account:
    # "For admins and operators": to a viewer the pages do not exist.
    if account.role not in ("admin", "operator"):
        raise HTTPException(404)
    return account


def _zone(request: Request) -> ZoneInfo:
    return ZoneInfo(inbox_of(request).settings.timezone)


def _exposure(request: Request) -> ExposureSource:
    source: ExposureSource = getattr(request.app.state, "exposure", no_exposure)
    return source


def _date(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def _period(request: Request, first: str | None, last: str | None) -> Period:
    """The chosen days, or the 12 months up to today; a bad choice (unreadable, reversed,
    longer than three years, in the future) falls back to the default, as a stale
    bookmark should still open."""
    today = inbox_of(request).clock().astimezone(_zone(request)).date()
    a, b = _date(first), _date(last) or today
    period = Period.ending(min(b, today))
    if a is not None and a <= b <= today and (b - a).days < MAX_DAYS:
        period = Period(a, b)
    return period


def _names(request: Request) -> dict[str, str]:
    gettext = inbox_of(request).translations[request.state.lang].gettext
    return {t.value: word for t, word in type_labels(gettext).items()}


def _charts(request: Request, pic: Picture) -> dict[str, str]:
    lang, names = request.state.lang, _names(request)
    weeks = pic.counts.weeks
    earlier = [sum(ns[k] for ns in pic.earlier.weekly.values()) for k in range(len(pic.earlier.weeks))]
    now = [sum(ns[k] for ns in pic.counts.weekly.values()) for k in range(len(weeks))]
    out = {
        "weekly": charts.weekly_counts(weeks, pic.weekly_counts(), names, lang, y_title=tr(request, "incidents")),
        # The year-earlier line is drawn on this period's weeks, week by week.
        "compare": charts.weekly_lines(weeks, {tr(request, "This period"): now,
                                               tr(request, "A year earlier"): earlier[:len(weeks)]},
                                       [charts.NOW_COLOUR, charts.EARLIER_COLOUR], lang,
                                       y_title=tr(request, "incidents")),
        "heat": charts.hour_of_week(pic.counts.heat, lang),
        "breakdown": charts.breakdown([(names[r.type], r.count, r.earlier_count) for r in pic.breakdown],
                                      tr(request, "This period"), tr(request, "A year earlier")),
    }
    if (rates := pic.weekly_rates()) is not None:
        out["rates"] = charts.weekly_lines(weeks, {names[t]: v for t, v in rates.items()},
                                           [charts.TYPE_COLOURS[t] for t in rates], lang,
                                           y_title=tr(request, "per 1,000 camera-hours"))
    return out


def _trend(lang: str, change: float | None) -> str:
    if change is None:
        return "—"
    return format_percent(change, "+#,##0 %;−#,##0 %", locale=lang)


def _common(request: Request, period: Period, sort: str | None = None) -> dict[str, Any]:
    lang = request.state.lang
    return {"nav": "lagesbild", "period": period, "earlier": period.year_earlier(),
            "sort": sort if sort in SORTS else "rate", "sorts": SORTS, "people": PEOPLE, "damage": DAMAGE,
            "day": lambda d: format_date(d, "medium", locale=lang), "trend": lambda t: _trend(lang, t)}


def _ranking(request: Request, places: Sequence[Mapping[str, Any]], period: Period, sort: str | None
             ) -> dict[str, Any]:
    rows = ranking(inbox_of(request).store, places, period, _zone(request), _exposure(request),
                   sort=sort if sort in SORTS else "rate")
    return {"ranking": rows, "has_rates": any(r.hours is not None for r in rows)}


@router.get("/lagesbild", response_class=HTMLResponse)
def overview(request: Request, account: Staff, sort: str | None = None, to: str | None = None) -> Response:
    _staff(account)
    period = _period(request, request.query_params.get("from"), to)
    places = visible_places(account, inbox_of(request).store.list_places())
    districts = sorted({p["district"] for p in places if p.get("district")})
    return render(request, "lagesbild.html", districts=districts, **_common(request, period, sort),
                  **_ranking(request, places, period, sort))


def _picture_context(request: Request, place_ids: list[str], period: Period) -> dict[str, Any]:
    pic = picture(inbox_of(request).store, place_ids, period, _zone(request), _exposure(request))
    return {"pic": pic, "charts": _charts(request, pic), "chart_types": CHART_TYPES}


@router.get("/lagesbild/districts/{district}", response_class=HTMLResponse)
def district_page(request: Request, district: str, account: Staff, sort: str | None = None,
                  to: str | None = None) -> Response:
    _staff(account)
    places = [p for p in visible_places(account, inbox_of(request).store.list_places())
              if p.get("district") == district]
    if not places or not sees_district(account, district):
        raise HTTPException(404)  # out of scope looks exactly like missing
    period = _period(request, request.query_params.get("from"), to)
    return render(request, "lagesbild_district.html", district=district, **_common(request, period, sort),
                  **_picture_context(request, [p["id"] for p in places], period),
                  **_ranking(request, places, period, sort))


def _place(request: Request, account: Account, place_id: str) -> Mapping[str, Any]:
    _staff(account)
    place = next((p for p in inbox_of(request).store.list_places() if p["id"] == place_id), None)
    if place is None or not sees_district(account, place.get("district")):
        raise HTTPException(404)
    return place


def _place_page(request: Request, account: Account, place: Mapping[str, Any], period: Period, *,
                error: str | None = None, status_code: int = 200) -> Response:
    inbox = inbox_of(request)
    zone = _zone(request)
    return render(request, "lagesbild_place.html", status_code, place=place, **_common(request, period),
                  **_picture_context(request, [place["id"]], period),
                  downtime=downtime(inbox.store, [place["id"]], period, zone, inbox.clock()),
                  mark=current_marks(inbox.store, [place["id"]]).get(place["id"]),
                  marks=history(inbox.store, place["id"]), today=inbox.clock().astimezone(zone).date(),
                  note_max=NOTE_MAX, error=error)


@router.get("/lagesbild/places/{place_id}", response_class=HTMLResponse)
def place_page(request: Request, place_id: str, account: Staff, to: str | None = None) -> Response:
    place = _place(request, account, place_id)
    return _place_page(request, account, place, _period(request, request.query_params.get("from"), to))


@router.post("/lagesbild/places/{place_id}/priority")
def mark_priority(request: Request, place_id: str, account: Staff, priority: Annotated[str, Form()] = "",
                  marked_on: Annotated[str, Form()] = "", note: Annotated[str, Form()] = "") -> Response:
    place = _place(request, account, place_id)
    inbox = inbox_of(request)
    day = _date(marked_on)
    try:
        if priority not in ("yes", "no"):
            raise MarkError(tr(request, "Choose whether the place is a priority."))
        if day is None:
            raise MarkError(tr(request, "Give the date of the decision."))
        if len(note.strip()) > NOTE_MAX:
            raise MarkError(tr(request, "The note is too long."))
        add_mark(inbox.store, place_id, priority=priority == "yes", marked_on=day, note=note, actor=account.name,
                 now=inbox.clock())
    except MarkError as e:
        return _place_page(request, account, place, _period(request, None, None), error=str(e), status_code=422)
    return RedirectResponse(f"/lagesbild/places/{place_id}#priority", status_code=303)

