"""Incidents for people: list, read, change, and the audit log. Plain functions over a
`Store`, called by the CLI now and by the web inbox and the JSON API later.

Every change is one transaction that also appends its `audit_log` row (who, when,
what, client address). State changes are conditional updates, so two people
acting at once cannot both win: the loser gets `InvalidTransition`.

States: new → acknowledged → resolved (with an `Outcome` and a note); a new
incident may also be resolved directly (a plain false alarm); resolved → reopened
(state acknowledged, outcome cleared). Assigning and commenting work in any state.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import and_, exists, select, update
from sqlalchemy.engine import Connection

from vaktpost.broker.incidents.kinds import OPEN_STATES, Action, IncidentType, Outcome, Priority, State
from vaktpost.broker.incidents.tables import LIST_ORDER, audit_log, incident_events, incident_places, incidents
from vaktpost.broker.store import Store, as_utc, events, places, snapshots, utcnow

MAX_TEXT = 4000  # a comment or resolution note, characters


class IncidentError(Exception):
    """Base of the errors the service raises; the message is one line for people."""


class IncidentNotFound(IncidentError, LookupError):
    pass


class InvalidTransition(IncidentError, ValueError):
    pass


class _View(BaseModel):
    model_config = ConfigDict(frozen=True)


class PlaceRef(_View):
    id: str
    name: str
    district: str | None
    address: str | None


class Incident(_View):
    id: int
    type: IncidentType
    priority: Priority
    state: State
    owner: str | None
    outcome: Outcome | None
    outcome_note: str | None
    node_id: str
    camera_id: str | None
    zone: str | None
    opened_at: datetime
    last_event_at: datetime
    ended_at: datetime | None  # the condition is over (events ended, node back)
    resolved_at: datetime | None
    event_count: int
    places: list[PlaceRef]


class TimelineEvent(_View):
    event_id: str
    node_id: str
    type: str
    subtype: str | None
    zone: str | None
    started_at: datetime
    ended_at: datetime | None
    confidence: float | None
    has_snapshot: bool


class AuditEntry(_View):
    id: int
    at: datetime
    actor: str
    client: str | None
    action: Action
    incident_id: int | None
    event_id: str | None
    detail: dict[str, Any] | None


class IncidentDetail(_View):
    incident: Incident
    events: list[TimelineEvent]  # oldest first; events purged by retention are missing
    audit: list[AuditEntry]  # oldest first


# --- reads ---------------------------------------------------------------------------


def _places_of(conn: Connection, ids: Sequence[int]) -> dict[int, list[PlaceRef]]:
    if not ids:
        return {}
    ip, p = incident_places.c, places.c
    q = (select(ip.incident_id, p.id, p.name, p.district, p.address)
         .join_from(incident_places, places, p.id == ip.place_id)
         .where(ip.incident_id.in_(ids)).order_by(p.name))
    out: dict[int, list[PlaceRef]] = defaultdict(list)
    for r in conn.execute(q).mappings():
        out[int(r["incident_id"])].append(PlaceRef(id=r["id"], name=r["name"], district=r["district"],
                                                   address=r["address"]))
    return out


def _incident(r: Any, place_refs: list[PlaceRef]) -> Incident:
    return Incident(
        id=r["id"], type=IncidentType(r["type"]), priority=Priority(r["priority"]), state=State(r["state"]),
        owner=r["owner"], outcome=Outcome(r["outcome"]) if r["outcome"] else None, outcome_note=r["outcome_note"],
        node_id=r["node_id"], camera_id=r["camera_id"], zone=r["zone"], opened_at=r["opened_at"],
        last_event_at=r["last_event_at"], ended_at=r["ended_at"], resolved_at=r["resolved_at"],
        event_count=r["event_count"], places=place_refs)


def _values(v: str | Sequence[str] | None) -> list[str] | None:
    return None if v is None else [v] if isinstance(v, str) else list(v)


def list_incidents(
    store: Store, *, district: str | Sequence[str] | None = None, place: str | Sequence[str] | None = None,
    type: str | Sequence[str] | None = None, state: str | Sequence[str] | None = None,
    owner: str | None = None, open_only: bool = False, limit: int = 100, offset: int = 0,
) -> list[Incident]:
    """Incidents matching every filter given (a filter of several values matches any),
    open ones first, then highest priority, then newest."""
    i, ip = incidents.c, incident_places.c
    open_ = i.state.in_([s.value for s in OPEN_STATES])
    q = select(incidents).order_by(*LIST_ORDER).limit(limit).offset(offset)
    if (districts := _values(district)) is not None:
        q = q.where(exists().where(ip.incident_id == i.id, ip.place_id == places.c.id,
                                   places.c.district.in_(districts)))
    if (place_ids := _values(place)) is not None:
        q = q.where(exists().where(ip.incident_id == i.id, ip.place_id.in_(place_ids)))
    if (types := _values(type)) is not None:
        q = q.where(i.type.in_(types))
    if (states := _values(state)) is not None:
        q = q.where(i.state.in_(states))
    if owner is not None:
        q = q.where(i.owner == owner)
    if open_only:
        q = q.where(open_)
    with store.engine.connect() as conn:
        rows = conn.execute(q).mappings().all()
        refs = _places_of(conn, [int(r["id"]) for r in rows])
    return [_incident(r, refs.get(int(r["id"]), [])) for r in rows]


def _get(conn: Connection, incident_id: int) -> Incident:
    r = conn.execute(select(incidents).where(incidents.c.id == incident_id)).mappings().first()
    if r is None:
        raise IncidentNotFound(f"no incident {incident_id}")
    return _incident(r, _places_of(conn, [incident_id]).get(incident_id, []))


def _audit_entry(r: Any) -> AuditEntry:
    return AuditEntry(id=r["id"], at=r["at"], actor=r["actor"], client=r["client"], action=Action(r["action"]),
                      incident_id=r["incident_id"], event_id=r["event_id"], detail=r["detail"])


def _audit_rows(conn: Connection, incident_id: int) -> list[AuditEntry]:
    a = audit_log.c
    rows = conn.execute(select(audit_log).where(a.incident_id == incident_id).order_by(a.id)).mappings()
    return [_audit_entry(r) for r in rows]


def get_incident(store: Store, incident_id: int) -> IncidentDetail:
    """One incident with its events (the timeline) and its audit trail."""
    e, ie = events.c, incident_events.c
    has_snapshot = exists().where(snapshots.c.event_id == e.event_id, snapshots.c.node_id == e.node_id)
    q = (select(e.event_id, e.node_id, e.type, e.subtype, e.zone, e.started_at, e.ended_at, e.confidence,
                has_snapshot.label("has_snapshot"))
         .join_from(incident_events, events, (e.event_id == ie.event_id) & (e.node_id == ie.node_id))
         .where(ie.incident_id == incident_id).order_by(e.started_at, e.event_id))
    with store.engine.connect() as conn:
        inc = _get(conn, incident_id)
        timeline = [TimelineEvent(**dict(r)) for r in conn.execute(q).mappings()]
        audit = _audit_rows(conn, incident_id)
    return IncidentDetail(incident=inc, events=timeline, audit=audit)


def audit_trail(store: Store, incident_id: int) -> list[AuditEntry]:
    with store.engine.connect() as conn:
        _get(conn, incident_id)
        return _audit_rows(conn, incident_id)


# --- changes -------------------------------------------------------------------------


def _log(conn: Connection, *, at: datetime, actor: str, client: str | None, action: Action,
         incident_id: int | None = None, event_id: str | None = None, **detail: Any) -> None:
    conn.execute(audit_log.insert().values(at=at, actor=actor, client=client, action=action.value,
                                           incident_id=incident_id, event_id=event_id, detail=detail or None))


def _actor(actor: str) -> str:
    actor = actor.strip()
    if not actor or len(actor) > 200:
        raise IncidentError("actor must be a name of 1 to 200 characters")
    return actor


def _text(text: str | None, what: str) -> str | None:
    if text is not None and len(text) > MAX_TEXT:
        raise IncidentError(f"{what} is longer than {MAX_TEXT} characters")
    return text


def _transition(store: Store, incident_id: int, *, allowed: Sequence[State], action: Action, actor: str,
                client: str | None, now: datetime | None, values: dict[str, Any], **detail: Any) -> Incident:
    actor = _actor(actor)
    at = as_utc(now) if now else utcnow()
    i = incidents.c
    with store.begin() as tx:
        before = _get(tx.conn, incident_id)
        changed = tx.conn.execute(
            update(incidents)
            .where(and_(i.id == incident_id, i.state.in_([s.value for s in allowed])))
            .values(updated_at=at, **values)).rowcount
        if not changed:
            raise InvalidTransition(f"incident {incident_id} is {before.state}: cannot be {action.value} "
                                    f"(only when {' or '.join(s.value for s in allowed)})")
        _log(tx.conn, at=at, actor=actor, client=client, action=action, incident_id=incident_id,
             from_state=before.state.value, **detail)
        return _get(tx.conn, incident_id)


def acknowledge(store: Store, incident_id: int, *, actor: str, client: str | None = None,
                now: datetime | None = None) -> Incident:
    return _transition(store, incident_id, allowed=[State.new], action=Action.acknowledged, actor=actor,
                       client=client, now=now, values={"state": State.acknowledged.value})


def resolve(store: Store, incident_id: int, outcome: Outcome | str, note: str | None = None, *, actor: str,
            client: str | None = None, now: datetime | None = None) -> Incident:
    try:
        outcome = Outcome(outcome)
    except ValueError:
        raise IncidentError(f"unknown outcome {outcome!r}") from None
    if outcome is Outcome.auto_closed:
        raise IncidentError("auto_closed is the consumer's outcome, not a person's")
    note = _text(note, "note")
    at = as_utc(now) if now else utcnow()
    return _transition(store, incident_id, allowed=OPEN_STATES, action=Action.resolved, actor=actor, client=client,
                       now=at, values={"state": State.resolved.value, "outcome": outcome.value,
                                       "outcome_note": note, "resolved_at": at},
                       outcome=outcome.value, note=note)


def reopen(store: Store, incident_id: int, *, actor: str, client: str | None = None,
           now: datetime | None = None) -> Incident:
    return _transition(store, incident_id, allowed=[State.resolved], action=Action.reopened, actor=actor,
                       client=client, now=now, values={"state": State.acknowledged.value, "outcome": None,
                                                       "outcome_note": None, "resolved_at": None})


def assign(store: Store, incident_id: int, owner: str | None, *, actor: str, client: str | None = None,
           now: datetime | None = None) -> Incident:
    """Make `owner` (a user name; `actor` for "assign to me"; None: nobody) the owner."""
    if owner is not None:
        owner = _actor(owner)
    return _transition(store, incident_id, allowed=list(State), action=Action.assigned, actor=actor,
                       client=client, now=now, values={"owner": owner}, owner=owner)


def comment(store: Store, incident_id: int, text: str, *, actor: str, client: str | None = None,
            now: datetime | None = None) -> AuditEntry:
    """Add a comment (an audit row of action `commented`, the text in `detail`)."""
    actor = _actor(actor)
    if not text.strip():
        raise IncidentError("a comment needs some text")
    _text(text, "comment")
    at = as_utc(now) if now else utcnow()
    with store.begin() as tx:
        _get(tx.conn, incident_id)
        _log(tx.conn, at=at, actor=actor, client=client, action=Action.commented, incident_id=incident_id,
             text=text)
        tx.conn.execute(update(incidents).where(incidents.c.id == incident_id).values(updated_at=at))
        return _audit_rows(tx.conn, incident_id)[-1]


def log_admin_change(store: Store, action: Action, *, actor: str, client: str | None = None,
                     now: datetime | None = None, **detail: Any) -> None:
    """Record an admin's change of users, tokens or places (an audit row of no incident)."""
    at = as_utc(now) if now else utcnow()
    with store.begin() as tx:
        _log(tx.conn, at=at, actor=_actor(actor), client=client, action=action, **detail)


def admin_changes(store: Store, limit: int = 50) -> list[AuditEntry]:
    """The latest audit rows of no incident, newest first."""
    a = audit_log.c
    q = select(audit_log).where(a.incident_id.is_(None), a.action != Action.snapshot_viewed.value)
    with store.engine.connect() as conn:
        rows = conn.execute(q.order_by(a.id.desc()).limit(limit)).mappings()
        return [_audit_entry(r) for r in rows]


def log_snapshot_viewed(store: Store, event_id: str, *, node_id: str, actor: str, client: str | None = None,
                        now: datetime | None = None) -> None:
    """Record that `actor` looked at the snapshot of `node_id`'s event `event_id` (with its
    incident, if any)."""
    actor = _actor(actor)
    at = as_utc(now) if now else utcnow()
    with store.begin() as tx:
        inc = tx.conn.execute(select(incident_events.c.incident_id)
                              .where(incident_events.c.event_id == event_id,
                                     incident_events.c.node_id == node_id)).scalar()
        _log(tx.conn, at=at, actor=actor, client=client, action=Action.snapshot_viewed,
             incident_id=None if inc is None else int(inc), event_id=event_id)
