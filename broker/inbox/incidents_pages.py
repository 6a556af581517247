"""The incident pages: the inbox (open incidents, filtered; refreshed in place every few
seconds by htmx), one incident (timeline, snapshots, actions, audit trail), and a
snapshot, whose every view is an audit row.

Scope (`scope.py`): an incident is listed and opened only through a place of the
account's districts (404 otherwise, as if missing); viewers read but neither act nor
see snapshots. The changes themselves are `vaktpost.broker.incidents.service`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from vaktpost.broker.inbox.accounts import Account
from vaktpost.broker.inbox.scope import district_filter, sees_district, sees_incident, sees_snapshots, visible_places
from vaktpost.broker.inbox.web import client, current_account, inbox_of, render, tr
from vaktpost.broker.incidents import service
from vaktpost.broker.incidents.kinds import OPEN_STATES, IncidentType, Outcome, State
from vaktpost.broker.incidents.service import Incident, IncidentDetail, IncidentError

router = APIRouter()
PAGE_SIZE = 50
# The state filter's choices: open (the default) is new or acknowledged.
STATE_CHOICES = ("open", *[s.value for s in State], "all")
OUTCOMES = [o for o in Outcome if o is not Outcome.auto_closed]

Viewer = Annotated[Account, Depends(current_account)]


def _states(choice: str) -> list[str] | None:
    if choice == "all":
        return None
    if choice in State.__members__:
        return [choice]
    return [s.value for s in OPEN_STATES]


def _one_of(value: str | None, allowed: Sequence[str]) -> str | None:
    # Unknown filter values are ignored rather than refused: a stale bookmark still opens.
    return value if value in allowed else None


@router.get("/", response_class=HTMLResponse)
def inbox_page(request: Request, account: Viewer, district: str | None = None, place: str | None = None,
               type: str | None = None, state: str = "open", owner: str | None = None, page: int = 0
               ) -> Response:
    inbox = inbox_of(request)
    places = visible_places(account, inbox.store.list_places())
    districts = sorted({p["district"] for p in places if p.get("district")})
    district = _one_of(district, districts)
    place = _one_of(place, [p["id"] for p in places])
    type_ = _one_of(type, [t.value for t in IncidentType])
    state = state if state in STATE_CHOICES else "open"
    owner_name = account.name if owner == "me" else None
    page = max(page, 0)
    scope = district_filter(account)
    shown = service.list_incidents(
        inbox.store, district=[district] if district else scope, place=place, type=type_, state=_states(state),
        owner=owner_name, limit=PAGE_SIZE + 1, offset=page * PAGE_SIZE)
    filters = {"district": district, "place": place, "type": type_, "state": state,
               "owner": "me" if owner_name else None}
    query = urlencode({k: v for k, v in filters.items() if v and not (k == "state" and v == "open")})
    return render(request, "incidents.html", nav="inbox", incidents=shown[:PAGE_SIZE],
                  more=len(shown) > PAGE_SIZE, page=page, filters=filters, query=query, districts=districts,
                  places=places, types=list(IncidentType), states=STATE_CHOICES, now=inbox.clock())


def _detail(request: Request, account: Account, incident_id: int) -> IncidentDetail:
    try:
        detail = service.get_incident(inbox_of(request).store, incident_id)
    except service.IncidentNotFound:
        raise HTTPException(404) from None
    if not sees_incident(account, detail.incident):
        raise HTTPException(404)  # out of scope looks exactly like missing
    return detail


def _assignees(request: Request, incident: Incident) -> list[str]:
    """Who may own `incident`: admins, and operators of one of its districts."""
    districts = {p.district for p in incident.places if p.district}
    return [a.name for a in inbox_of(request).accounts.list()
            if a.is_admin or (a.role == "operator" and a.districts & districts)]


def _incident_page(request: Request, account: Account, detail: IncidentDetail, *, error: str | None = None,
                   status_code: int = 200) -> Response:
    return render(request, "incident.html", status_code, nav="inbox", d=detail, i=detail.incident,
                  can_act=account.role != "viewer", can_see_snapshots=sees_snapshots(account),
                  assignees=_assignees(request, detail.incident), outcomes=OUTCOMES, error=error,
                  open=detail.incident.state in OPEN_STATES)


@router.get("/incidents/{incident_id}", response_class=HTMLResponse)
def incident_page(request: Request, incident_id: int, account: Viewer) -> Response:
    return _incident_page(request, account, _detail(request, account, incident_id))


def _act(request: Request, account: Account, incident_id: int, action: str, form: dict[str, str]) -> Response:
    """Run one action on an incident in scope; back to its page, or the page with why not."""
    detail = _detail(request, account, incident_id)
    if account.role == "viewer":
        raise HTTPException(403)
    store, who, where = inbox_of(request).store, account.name, client(request)
    try:
        if action == "acknowledge":
            service.acknowledge(store, incident_id, actor=who, client=where)
        elif action == "resolve":
            service.resolve(store, incident_id, form.get("outcome", ""), form.get("note") or None, actor=who,
                            client=where)
        elif action == "reopen":
            service.reopen(store, incident_id, actor=who, client=where)
        elif action == "assign":
            owner = form.get("owner") or None
            if owner is not None and owner not in _assignees(request, detail.incident):
                raise IncidentError(tr(request, "That person cannot own this incident."))
            service.assign(store, incident_id, owner, actor=who, client=where)
        elif action == "comment":
            service.comment(store, incident_id, form.get("text", ""), actor=who, client=where)
        else:
            raise HTTPException(404)
    except service.InvalidTransition:
        message = tr(request, "Someone changed the incident at the same time; see its state now.")
        return _incident_page(request, account, _detail(request, account, incident_id), error=message,
                              status_code=409)
    except IncidentError as e:
        return _incident_page(request, account, detail, error=str(e), status_code=422)
    return RedirectResponse(f"/incidents/{incident_id}", status_code=303)


@router.post("/incidents/{incident_id}/{action}")
def incident_action(request: Request, incident_id: int, action: str, account: Viewer,
                    outcome: Annotated[str, Form()] = "", note: Annotated[str, Form()] = "",
                    owner: Annotated[str, Form()] = "", text: Annotated[str, Form()] = "") -> Response:
    return _act(request, account, incident_id, action,
                {"outcome": outcome, "note": note, "owner": owner, "text": text})


@router.get("/incidents/{incident_id}/snapshots/{node_id}/{event_id}.jpg")
def snapshot(request: Request, incident_id: int, node_id: str, event_id: str, account: Viewer) -> Response:
    """One anonymised snapshot of an event of the incident; each view is an audit row."""
    detail = _detail(request, account, incident_id)
    if not sees_snapshots(account):
        raise HTTPException(404)
    if not any(e.event_id == event_id and e.node_id == node_id and e.has_snapshot for e in detail.events):
        raise HTTPException(404)
    store = inbox_of(request).store
    data = store.get_snapshot(event_id, node_id)
    if data is None:  # purged between the two reads
        raise HTTPException(404)
    service.log_snapshot_viewed(store, event_id, node_id=node_id, actor=account.name, client=client(request))
    return Response(data, media_type="image/jpeg",
                    headers={"Cache-Control": "no-store", "Content-Disposition": "inline"})


def place_incidents(request: Request, account: Account, place_id: str) -> list[Incident]:
    """The open incidents of one place (for the place page)."""
    place = next((p for p in inbox_of(request).store.list_places() if p["id"] == place_id), None)
    if place is None or not sees_district(account, place.get("district")):
        return []
    return service.list_incidents(inbox_of(request).store, place=place_id, open_only=True, limit=PAGE_SIZE)
