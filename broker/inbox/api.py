"""The inbox's JSON API under /api/v1, for programs (docs/inbox.md, "API").

A client sends `Authorization: Bearer TOKEN` with a token from `vaktpost tokens add`
(vaktpost.broker.inbox.tokens); cookies are ignored, so a browser's session cannot be
ridden by another site and CSRF does not apply. A token acts as the account
"token:NAME": the scope rules of the pages apply (an item out of scope is a 404, exactly
like a missing one, and is never listed), viewers only read and see no snapshot data,
and changes go to the audit log with that actor. Times are ISO 8601 in UTC.
The OpenAPI document is served at /api/v1/openapi.json and kept in docs/openapi.json.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cache
from typing import Annotated, Any, Literal, get_args

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from starlette.exceptions import HTTPException as StarletteHTTPException

from vaktpost.broker.inbox.accounts import Account
from vaktpost.broker.inbox.scope import district_filter, sees_district, sees_incident, sees_snapshots
from vaktpost.broker.inbox.tokens import Tokens
from vaktpost.broker.inbox.web import API_PREFIX, client, inbox_of
from vaktpost.broker.incidents import service
from vaktpost.broker.incidents.kinds import IncidentType, Outcome, State
from vaktpost.broker.incidents.service import MAX_TEXT, AuditEntry, Incident
from vaktpost.broker.store import Store
from vaktpost.contract.events import EventType

PREFIX = API_PREFIX
API_VERSION = "1"
MAX_LIMIT = 500
MAX_OFFSET = 1_000_000
MAX_ID = 2**31 - 1  # incidents.id is a 32-bit INTEGER on PostgreSQL

# Text stored or compared in the database: PostgreSQL refuses NUL characters in text.
Text = Annotated[str, StringConstraints(max_length=200, pattern=r"^[^\x00]*$")]
LongText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT, pattern=r"^[^\x00]*$")]


def _utc(t: datetime) -> datetime:
    try:
        return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    except OverflowError:
        raise ValueError("time out of range") from None


UtcTime = Annotated[datetime, AfterValidator(_utc)]

# The outcomes a person may give (auto_closed is the consumer's).
PersonOutcome = Literal["false_alarm", "damage_found", "police_report", "cleaned_or_repaired", "other"]
assert set(get_args(PersonOutcome)) == {o.value for o in Outcome} - {Outcome.auto_closed.value}


# --- models --------------------------------------------------------------------------


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not ignored


class Problem(_Out):
    detail: str


class Place(_Out):
    id: str
    name: str
    kind: str
    district: str | None
    address: str | None
    lat: float | None
    lon: float | None


class PlaceEvent(_Out):
    """An event of the place log. The snapshot fields are null for viewers."""

    event_id: str
    seq: int
    node_id: str
    camera_id: str | None
    place_id: str | None
    place_name: str | None
    type: str
    subtype: str | None
    zone: str | None
    started_at: datetime
    ended_at: datetime | None
    confidence: float
    region: list[float] | None
    received_at: datetime
    updated_at: datetime
    snapshot: str | None = Field(description="none, attached or withheld; null for viewers")
    snapshot_withheld: str | None
    has_snapshot: bool | None = Field(description="A snapshot is stored; null for viewers")


class TimelineEntry(_Out):
    event_id: str
    node_id: str
    type: str
    subtype: str | None
    zone: str | None
    started_at: datetime
    ended_at: datetime | None
    confidence: float | None
    has_snapshot: bool | None = Field(description="A snapshot is stored; null for viewers")


class IncidentDetail(_Out):
    incident: Incident
    events: list[TimelineEntry] = Field(description="Oldest first; events purged by retention are missing")
    audit: list[AuditEntry] = Field(description="Oldest first")


class Resolution(_In):
    outcome: PersonOutcome
    note: LongText | None = None


class NewComment(_In):
    text: LongText


class Assignment(_In):
    owner: Annotated[Text, StringConstraints(min_length=1)] | None = Field(
        description="User name of the new owner; null: nobody")


# --- authentication and errors -------------------------------------------------------

bearer = HTTPBearer(auto_error=False, scheme_name="token",
                    description="An API token from `vaktpost tokens add` (starts with vp_)")


def _store(request: Request) -> Store:
    return inbox_of(request).store


def token_account(request: Request,
                  credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Account:
    """The account of the request's bearer token; 401 without a valid one."""
    tokens: Tokens = request.app.state.api_tokens
    account = tokens.authenticate(credentials.credentials, now=inbox_of(request).clock()) if credentials else None
    if account is None:
        raise HTTPException(401, "a valid API token is required: Authorization: Bearer TOKEN",
                            headers={"WWW-Authenticate": "Bearer"})
    return account


def writer(account: Annotated[Account, Depends(token_account)]) -> Account:
    """A token that may change incidents; 403 for viewers."""
    if account.role == "viewer":
        raise HTTPException(403, "a viewer token can only read")
    return account


Reader = Annotated[Account, Depends(token_account)]
Writer = Annotated[Account, Depends(writer)]
IncidentId = Annotated[int, Path(ge=1, le=MAX_ID)]


def _not_found(incident_id: int) -> HTTPException:
    return HTTPException(404, f"no incident {incident_id}")


@contextmanager
def _service_errors(incident_id: int) -> Iterator[None]:
    try:
        yield
    except service.IncidentNotFound:
        raise _not_found(incident_id) from None
    except service.InvalidTransition as e:
        raise HTTPException(409, str(e)) from None
    except service.IncidentError as e:  # bad input the schema cannot express: 422 like FastAPI's own
        raise RequestValidationError([{"loc": ("body",), "msg": str(e), "type": "value_error"}]) from None


def _detail_in_scope(store: Store, account: Account, incident_id: int) -> service.IncidentDetail:
    with _service_errors(incident_id):
        detail = service.get_incident(store, incident_id)
    if not sees_incident(account, detail.incident):
        raise _not_found(incident_id)  # out of scope looks exactly like missing
    return detail


def error_response(exc: StarletteHTTPException) -> JSONResponse:
    """An HTTP error of an API path as JSON (the app's pages answer errors with HTML)."""
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


# --- routes ----------------------------------------------------------------------------

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": Problem, "description": "No such incident in scope"}}
CHANGE: dict[int | str, dict[str, Any]] = {
    **NOT_FOUND, 403: {"model": Problem, "description": "The token is a viewer's"},
    409: {"model": Problem, "description": "Not possible in the incident's state (or someone was faster)"}}
CHANGE_WITH_BODY: dict[int | str, dict[str, Any]] = {
    **CHANGE, 400: {"model": Problem, "description": "The body is not JSON"}}

router = APIRouter(prefix=PREFIX, responses={401: {"model": Problem, "description": "No valid API token"}},
                   generate_unique_id_function=lambda route: route.name)  # operationId: the function's name


@router.get("/incidents", summary="List incidents in scope")
def list_incidents(
    request: Request, account: Reader,
    district: Annotated[list[Text] | None, Query(description="District (repeat: any of them)")] = None,
    place: Annotated[list[Text] | None, Query(description="Place id (repeat: any of them)")] = None,
    type: Annotated[list[IncidentType] | None, Query(description="Incident type (repeat)")] = None,
    state: Annotated[list[State] | None, Query(description="State (repeat)")] = None,
    owner: Annotated[Text | None, Query(description="Owner's user name")] = None,
    open: Annotated[bool, Query(description="Only new or acknowledged incidents")] = False,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> list[Incident]:
    """Open ones first, then highest priority, then newest."""
    scope = district_filter(account)
    districts = district if scope is None else [d for d in (district or scope) if d in scope]
    if districts == []:
        return []
    return service.list_incidents(_store(request), district=districts, place=place, type=type, state=state,
                                  owner=owner, open_only=open, limit=limit, offset=offset)


@router.get("/incidents/{incident_id}", summary="One incident with its events and audit trail",
            responses=NOT_FOUND)
def get_incident(request: Request, account: Reader, incident_id: IncidentId) -> IncidentDetail:
    detail = _detail_in_scope(_store(request), account, incident_id)
    shown = sees_snapshots(account)
    return IncidentDetail(
        incident=detail.incident, audit=detail.audit,
        events=[TimelineEntry(**{**e.model_dump(), "has_snapshot": e.has_snapshot if shown else None})
                for e in detail.events])


@router.post("/incidents/{incident_id}/acknowledge", summary="Acknowledge a new incident", responses=CHANGE)
def acknowledge(request: Request, account: Writer, incident_id: IncidentId) -> Incident:
    store = _store(request)
    _detail_in_scope(store, account, incident_id)
    with _service_errors(incident_id):
        return service.acknowledge(store, incident_id, actor=account.name, client=client(request))


@router.post("/incidents/{incident_id}/resolve", summary="Resolve an open incident", responses=CHANGE_WITH_BODY)
def resolve(request: Request, account: Writer, incident_id: IncidentId, body: Resolution) -> Incident:
    store = _store(request)
    _detail_in_scope(store, account, incident_id)
    with _service_errors(incident_id):
        return service.resolve(store, incident_id, body.outcome, body.note, actor=account.name,
                               client=client(request))


@router.post("/incidents/{incident_id}/reopen", summary="Reopen a resolved incident", responses=CHANGE)
def reopen(request: Request, account: Writer, incident_id: IncidentId) -> Incident:
    store = _store(request)
    _detail_in_scope(store, account, incident_id)
    with _service_errors(incident_id):
        return service.reopen(store, incident_id, actor=account.name, client=client(request))


@router.post("/incidents/{incident_id}/comment", summary="Comment on an incident", status_code=201,
             responses=CHANGE_WITH_BODY)
def comment(request: Request, account: Writer, incident_id: IncidentId, body: NewComment) -> AuditEntry:
    store = _store(request)
    _detail_in_scope(store, account, incident_id)
    with _service_errors(incident_id):
        return service.comment(store, incident_id, body.text, actor=account.name, client=client(request))


@router.post("/incidents/{incident_id}/assign", summary="Set or clear an incident's owner",
             responses=CHANGE_WITH_BODY)
def assign(request: Request, account: Writer, incident_id: IncidentId, body: Assignment) -> Incident:
    store = _store(request)
    _detail_in_scope(store, account, incident_id)
    with _service_errors(incident_id):
        return service.assign(store, incident_id, body.owner, actor=account.name, client=client(request))


@router.get("/events", summary="Events of the place log in scope, newest first")
def list_events(
    request: Request, account: Reader,
    place: Annotated[Text | None, Query(description="Place id")] = None,
    type: Annotated[EventType | None, Query(description="Event type")] = None,
    since: Annotated[UtcTime | None, Query(description="Started at or after (ISO 8601; no offset: UTC)")] = None,
    until: Annotated[UtcTime | None, Query(description="Started before (ISO 8601; no offset: UTC)")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
) -> list[PlaceEvent]:
    store = _store(request)
    places: str | list[str] | None = place
    if not account.is_admin:  # events of unassigned cameras (no place) are the admins' only
        visible = [p["id"] for p in store.list_places() if sees_district(account, p.get("district"))]
        places = [p for p in visible if p == place] if place is not None else visible
        if not places:
            return []
    rows = store.query_events(place=places, type=type, since=since, until=until, limit=limit)
    hidden = {} if sees_snapshots(account) else {"snapshot": None, "snapshot_withheld": None, "has_snapshot": None}
    return [PlaceEvent(**{**r, **hidden}) for r in rows]


@router.get("/places", summary="Places in scope")
def list_places(request: Request, account: Reader) -> list[Place]:
    return [Place(**p) for p in _store(request).list_places() if sees_district(account, p.get("district"))]


@router.get("/openapi.json", include_in_schema=False)
def openapi_json() -> dict[str, Any]:
    return openapi_document()


@cache
def openapi_document() -> dict[str, Any]:
    """The API's OpenAPI document: its routes only, not the inbox's pages."""
    return get_openapi(
        title="Vaktpost inbox API", version=API_VERSION, routes=router.routes,
        description="Incidents, events and places of the Vaktpost inbox, for programs. Every request needs "
                    "`Authorization: Bearer TOKEN` with a token from `vaktpost tokens add`; a token sees what "
                    "its role and districts allow (docs/inbox.md, \"API\"). Times are ISO 8601 in UTC.")


def include_api(app: FastAPI, store: Store) -> None:
    """Add the API to the inbox `app` over `store` (its token table created if missing)."""
    tokens = Tokens(store.engine)
    tokens.create_tables()
    app.state.api_tokens = tokens
    app.include_router(router)
