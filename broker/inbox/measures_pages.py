"""Measures, their follow-up, the situational report and the exports, in the inbox.

- /measures: the measures of the account's districts; /measures/new registers one
  (admins, and operators of every district of its places); /measures/{id} is its
  follow-up; /measures/{id}/edit changes it and /measures/{id}/delete removes it.
- /reports: per district and period, the report as PDF and the exports (CSV, XLSX).

Scope as in the inbox (`scope.py`): a measure is seen through any of its places, a
district's report and exports only by its operators and viewers (and admins); anything
else is 404, as if missing. Rates use `app.state.exposure` (an `ExposureSource`) when
set, else calendar time (`measures.exposure.calendar_source`).
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from vaktpost.broker.inbox.accounts import Account
from vaktpost.broker.inbox.scope import district_filter, sees_district, visible_places
from vaktpost.broker.inbox.web import current_account, inbox_of, render, tr
from vaktpost.broker.measures import exports, report, service, stats
from vaktpost.broker.measures.exposure import ExposureSource, calendar_source
from vaktpost.broker.measures.labels import kind_labels
from vaktpost.broker.measures.service import Measure, MeasureError, MeasureInput, MeasureKind
from vaktpost.broker.measures.tables import create_tables
from vaktpost.broker.store import Store

router = APIRouter()
Me = Annotated[Account, Depends(current_account)]
DEFAULT_REPORT_DAYS = 91


def include(app: FastAPI, store: Store) -> None:
    """Add these pages to `app` (the measures' tables created if missing)."""
    create_tables(store.engine)
    app.include_router(router)


def exposure_of(request: Request) -> ExposureSource:
    """The app's exposure (`vaktpost.broker.exposure.exposure`, set by `create_app`, the same
    the situational picture uses), else calendar time."""
    source = getattr(request.app.state, "exposure", None)
    if isinstance(source, ExposureSource):
        return source
    return calendar_source() if source is None else ExposureSource(source, measured=True)


def _zone(request: Request) -> ZoneInfo:
    return ZoneInfo(inbox_of(request).settings.timezone)


def _gettext(request: Request) -> Any:
    return inbox_of(request).translations[request.state.lang].gettext


def _measure(request: Request, account: Account, measure_id: int) -> Measure:
    try:
        m = service.get_measure(inbox_of(request).store, measure_id)
    except MeasureError:
        raise HTTPException(404) from None
    if not service.can_see(account, m):
        raise HTTPException(404)  # out of scope looks exactly like missing
    return m


def _may_register_any(account: Account) -> bool:
    return account.is_admin or account.role == "operator"


@router.get("/measures", response_class=HTMLResponse)
def measures_page(request: Request, account: Me) -> Response:
    store = inbox_of(request).store
    shown = service.list_measures(store, districts=district_filter(account))
    return render(request, "measures.html", nav="measures", measures=shown,
                  kinds=kind_labels(_gettext(request)), can_register=_may_register_any(account),
                  can_change={m.id: service.can_change(account, m) for m in shown})


def _form_page(request: Request, account: Account, *, form: dict[str, Any], measure: Measure | None = None,
               error: str | None = None, status_code: int = 200) -> Response:
    store = inbox_of(request).store
    places = [p for p in visible_places(account, store.list_places())
              if service.may_register(account, [p.get("district")])]
    places.sort(key=lambda p: (p.get("district") or "", p["name"]))
    return render(request, "measure_form.html", status_code, nav="measures", form=form, measure=measure,
                  places=places, kinds=kind_labels(_gettext(request)), error=error)


def _blank() -> dict[str, Any]:
    return {"place": [], "kind": "", "start_date": "", "end_date": "", "owner": "", "cost": "", "note": ""}


def _form_of(m: Measure) -> dict[str, Any]:
    return {"place": list(m.places), "kind": m.kind.value, "start_date": m.start_date.isoformat(),
            "end_date": m.end_date.isoformat() if m.end_date else "", "owner": m.owner or "",
            "cost": "" if m.cost is None else str(m.cost), "note": m.note or ""}


@router.get("/measures/new", response_class=HTMLResponse)
def new_measure(request: Request, account: Me) -> Response:
    if not _may_register_any(account):
        raise HTTPException(403)
    return _form_page(request, account, form=_blank())


def _parse(request: Request, form: dict[str, Any]) -> MeasureInput:
    def day(value: str, what: str) -> date | None:
        if not value.strip():
            return None
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            raise MeasureError(f"{what}: not a date (YYYY-MM-DD)") from None

    if form["kind"] not in MeasureKind.__members__:
        raise MeasureError("choose the kind of measure")
    start = day(form["start_date"], "start")
    if start is None:
        raise MeasureError("give the start date")
    cost_text = re.sub(r"[\s\u00a0]", "", form["cost"])
    if cost_text and not cost_text.isdigit():
        raise MeasureError("the cost must be a whole number of kronor, 0 or more")
    return MeasureInput(places=tuple(form["place"]), kind=MeasureKind(form["kind"]), start_date=start,
                        end_date=day(form["end_date"], "end"), owner=form["owner"],
                        cost=int(cost_text) if cost_text else None, note=form["note"])


def _save(request: Request, account: Account, form: dict[str, Any], measure: Measure | None) -> Response:
    store = inbox_of(request).store
    known = {p["id"]: p for p in store.list_places()}
    try:
        spec = _parse(request, form)
        districts = [known[p].get("district") for p in spec.places if p in known]
        if not service.may_register(account, districts) or any(p not in known for p in spec.places):
            raise MeasureError(tr(request, "You may register measures only at places of your districts."))
        if measure is None:
            measure = service.add_measure(store, spec, actor=account.name, now=inbox_of(request).clock())
        else:
            measure = service.change_measure(store, measure.id, spec, now=inbox_of(request).clock())
    except MeasureError as e:
        message = tr(request, "The measure was not saved. Check the fields and try again.")
        return _form_page(request, account, form=form, measure=measure, error=f"{message} ({e})", status_code=400)
    return RedirectResponse(f"/measures/{measure.id}", status_code=303)


FormText = Annotated[str, Form()]


@router.post("/measures", response_class=HTMLResponse)
def add_measure(request: Request, account: Me, place: Annotated[list[str] | None, Form()] = None,
                kind: FormText = "", start_date: FormText = "", end_date: FormText = "", owner: FormText = "",
                cost: FormText = "", note: FormText = "") -> Response:
    if not _may_register_any(account):
        raise HTTPException(403)
    form = {"place": place or [], "kind": kind, "start_date": start_date, "end_date": end_date, "owner": owner,
            "cost": cost, "note": note}
    return _save(request, account, form, None)


@router.get("/measures/{measure_id}", response_class=HTMLResponse)
def measure_page(request: Request, measure_id: int, account: Me, weeks: int = stats.DEFAULT_WEEKS) -> Response:
    m = _measure(request, account, measure_id)
    inbox = inbox_of(request)
    weeks = max(1, min(weeks, stats.MAX_WEEKS))
    f = stats.follow_up(inbox.store, m, inbox.clock(), _zone(request), exposure_of(request), weeks=weeks)
    return render(request, "measure.html", nav="measures", m=m, kinds=kind_labels(_gettext(request)),
                  follow_up=report.render_follow_up(f, request.state.lang, _zone(request)), weeks=weeks,
                  can_change=service.can_change(account, m))


def _changeable(request: Request, account: Account, measure_id: int) -> Measure:
    m = _measure(request, account, measure_id)
    if not service.can_change(account, m):
        raise HTTPException(403)
    return m


@router.get("/measures/{measure_id}/edit", response_class=HTMLResponse)
def edit_measure(request: Request, measure_id: int, account: Me) -> Response:
    m = _changeable(request, account, measure_id)
    return _form_page(request, account, form=_form_of(m), measure=m)


@router.post("/measures/{measure_id}/edit", response_class=HTMLResponse)
def change_measure(request: Request, measure_id: int, account: Me,
                   place: Annotated[list[str] | None, Form()] = None, kind: FormText = "",
                   start_date: FormText = "", end_date: FormText = "", owner: FormText = "", cost: FormText = "",
                   note: FormText = "") -> Response:
    m = _changeable(request, account, measure_id)
    form = {"place": place or [], "kind": kind, "start_date": start_date, "end_date": end_date, "owner": owner,
            "cost": cost, "note": note}
    return _save(request, account, form, m)


@router.post("/measures/{measure_id}/delete")
def delete_measure(request: Request, measure_id: int, account: Me) -> Response:
    _changeable(request, account, measure_id)
    service.remove_measure(inbox_of(request).store, measure_id)
    return RedirectResponse("/measures", status_code=303)


# --- reports and exports ---------------------------------------------------------------


def _districts(request: Request, account: Account) -> list[str]:
    """The districts whose report and exports `account` may have."""
    return [d for d in report.districts(inbox_of(request).store) if sees_district(account, d)]


def _period(request: Request, first: str | None, last: str | None) -> tuple[date, date]:
    """The period asked for; by default the last DEFAULT_REPORT_DAYS whole days."""
    today = inbox_of(request).clock().astimezone(_zone(request)).date()
    try:
        end = date.fromisoformat(last) if last else today - timedelta(days=1)
        start = date.fromisoformat(first) if first else end - timedelta(days=DEFAULT_REPORT_DAYS - 1)
        report.check_period(start, end)
    except (ValueError, report.ReportError):
        raise HTTPException(400, tr(request, "The period is not valid: give two dates, the first not after the "
                                             "last, at most two years apart.")) from None
    return start, end


@router.get("/reports", response_class=HTMLResponse)
def reports_page(request: Request, account: Me) -> Response:
    start, end = _period(request, request.query_params.get("from"), request.query_params.get("to"))
    return render(request, "reports.html", nav="reports", districts=_districts(request, account),
                  first=start.isoformat(), last=end.isoformat(), kinds=exports.KINDS,
                  all_places=account.is_admin)


def _scope(request: Request, account: Account, district: str) -> list[str] | None:
    """The districts an export covers: one district in scope, or (empty) all of the account's."""
    if district:
        if district not in _districts(request, account):
            raise HTTPException(404)
        return [district]
    return district_filter(account)


@router.get("/reports/{district}.pdf")
def report_pdf(request: Request, district: str, account: Me) -> Response:
    if district not in _districts(request, account):
        raise HTTPException(404)
    start, end = _period(request, request.query_params.get("from"), request.query_params.get("to"))
    inbox = inbox_of(request)
    pdf = report.district_report_pdf(inbox.store, district, start, end, now=inbox.clock(), zone=_zone(request),
                                     exposure=exposure_of(request), lang=request.state.lang)
    name = f"lagesrapport-{_slug(district)}-{start.isoformat()}-{end.isoformat()}.pdf"
    return Response(pdf, media_type="application/pdf", headers=_download(name))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text.translate(str.maketrans("åäöÅÄÖéÉ", "aaoAAOeE"))).strip("-").lower()


def _download(name: str) -> dict[str, str]:
    return {"Content-Disposition": f"attachment; filename=\"{name}\"; filename*=UTF-8''{quote(name)}",
            "Cache-Control": "no-store"}


@router.get("/exports/{kind}.{fmt}")
def export_file(request: Request, kind: str, fmt: str, account: Me, district: str = "") -> Response:
    if kind not in exports.KINDS or fmt not in ("csv", "xlsx"):
        raise HTTPException(404)
    districts = _scope(request, account, district)
    start, end = _period(request, request.query_params.get("from"), request.query_params.get("to"))
    zone = _zone(request)
    table = exports.export(inbox_of(request).store, kind, districts,
                           datetime.combine(start, time(0), zone),
                           datetime.combine(end + timedelta(days=1), time(0), zone), zone, _gettext(request))
    name = f"{kind}-{_slug(district) or 'alla'}-{start.isoformat()}-{end.isoformat()}.{fmt}"
    if fmt == "csv":
        return Response(exports.to_csv(table).encode(), media_type="text/csv; charset=utf-8",
                        headers=_download(name))
    return Response(exports.to_xlsx(table, kind),
                    media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    headers=_download(name))
