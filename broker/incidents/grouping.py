"""The consumer's side of incidents: stored events, node status and heartbeats become
incidents, inside the consumer's batch transaction (so a redelivery after a crash
finds them exactly as committed with the events).

Rules (docs/central.md, "Incidents"):

- An event joins the open incident of its *group* (type, node, camera, place; and
  zone for people events) if it starts within `gap` of the incident: no earlier
  than `opened_at - gap`, and no later than `last_event_at + gap` or while an event
  of the incident is still running. Otherwise it opens a new incident. Tamper uses a
  gap of zero: one incident per outage (overlapping or touching tamper events).
- A resolved incident takes no more events; the next one opens a new incident.
- An event is linked once (`incident_events` is keyed by event id and node): a redelivery or a
  later phase of it only updates its end. A batch is grouped in order of start, so
  events that arrive out of order within a batch group as if they had not.
- `node_offline`: opened by an `offline` status (retained, or the Last Will) or by
  `offline_after_heartbeats` missed heartbeat intervals (`check_heartbeats`), for
  every place the node's cameras cover; closed (resolved by `system`) by an
  `online` status or a new heartbeat. While its condition lasts (`ended_at` null) no
  second one opens, even if staff resolved the first.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, RowMapping

from vaktpost.broker.config import IncidentsSection
from vaktpost.broker.incidents.kinds import OPEN_STATES, PEOPLE_TYPES, SYSTEM, Action, IncidentType, Outcome, State
from vaktpost.broker.incidents.tables import audit_log, incident_events, incident_places, incidents, node_liveness
from vaktpost.broker.store import as_utc, camera_assignments, events, utcnow
from vaktpost.contract.events import BaseEvent
from vaktpost.contract.messages import Heartbeat, Status

# Heartbeat intervals remembered per node; their median is the learnt interval, so
# one lost heartbeat (a doubled interval) does not change it.
KEEP_INTERVALS = 5


def group_key(type_: str, node_id: str, camera_id: str | None, zone: str | None, place_id: str | None) -> str:
    """The group an event joins; zone only counts for people events."""
    z = zone if IncidentType(type_) in PEOPLE_TYPES else None
    return "|".join((type_, node_id, camera_id or "", z or "", place_id or ""))


def _offline_key(node_id: str) -> str:
    return f"{IncidentType.node_offline}|{node_id}"


def _audit(conn: Connection, now: datetime, action: Action, incident_id: int, **detail: Any) -> None:
    conn.execute(audit_log.insert().values(at=now, actor=SYSTEM, client=None, action=action.value,
                                           incident_id=incident_id, detail=detail or None))


def _open(conn: Connection, cfg: IncidentsSection, now: datetime, *, type_: IncidentType, key: str, node_id: str,
          camera_id: str | None, zone: str | None, at: datetime, places: Iterable[str], **detail: Any) -> int:
    inc_id = int(conn.execute(incidents.insert().values(
        type=type_.value, group_key=key, node_id=node_id, camera_id=camera_id, zone=zone,
        priority=int(cfg.priority_of(type_)), state=State.new.value, opened_at=at, last_event_at=at,
        ongoing=0, event_count=0, created_at=now, updated_at=now).returning(incidents.c.id)).scalar_one())
    place_ids = sorted(set(places))
    if place_ids:
        conn.execute(incident_places.insert(), [{"incident_id": inc_id, "place_id": p} for p in place_ids])
    _audit(conn, now, Action.opened, inc_id, **detail)
    return inc_id


# --- events --------------------------------------------------------------------------


def _find_open(conn: Connection, key: str, started: datetime, gap: timedelta) -> int | None:
    i = incidents.c
    q = (select(i.id)
         .where(i.group_key == key, i.state.in_([s.value for s in OPEN_STATES]), i.opened_at <= started + gap,
                or_(i.ongoing > 0, i.last_event_at >= started - gap))
         .order_by(i.last_event_at.desc(), i.id.desc())
         .limit(1))
    found = conn.execute(q).scalar()
    return None if found is None else int(found)


def _refresh(conn: Connection, inc_id: int, now: datetime) -> None:
    """The incident's times and counts from its linked events."""
    ie = incident_events.c
    running = func.sum(case((ie.ended_at.is_(None), 1), else_=0))
    first, last, count, ongoing = conn.execute(
        select(func.min(ie.started_at), func.max(func.coalesce(ie.ended_at, ie.started_at)), func.count(), running)
        .where(ie.incident_id == inc_id)).one()
    ongoing = int(ongoing or 0)
    conn.execute(update(incidents).where(incidents.c.id == inc_id).values(
        opened_at=first, last_event_at=last, event_count=count, ongoing=ongoing,
        ended_at=None if ongoing else last, updated_at=now))


def group_events(conn: Connection, keys: Iterable[tuple[str, str]], cfg: IncidentsSection,
                 now: datetime | None = None) -> set[int]:
    """File the stored events `keys` ((event_id, node_id), as the place log keys them) into
    incidents; returns the incidents touched. Reads the events as stored (the place
    computed, the most final copy)."""
    now = as_utc(now) if now else utcnow()
    wanted = set(keys)
    if not wanted:
        return set()
    ids = sorted({event_id for event_id, _ in wanted})
    e, ie = events.c, incident_events.c
    rows = [r for r in conn.execute(
        select(e.event_id, e.node_id, e.camera_id, e.place_id, e.type, e.zone, e.started_at, e.ended_at)
        .where(e.event_id.in_(ids)).order_by(e.started_at, e.event_id, e.node_id)).mappings().all()
        if (r["event_id"], r["node_id"]) in wanted]
    linked = {(r.event_id, r.node_id): r for r in conn.execute(
        select(ie.event_id, ie.node_id, ie.incident_id, ie.ended_at).where(ie.event_id.in_(ids))).all()}
    touched: set[int] = set()
    for r in rows:
        link = linked.get((r["event_id"], r["node_id"]))
        if link is not None:
            if link.ended_at is None and r["ended_at"] is not None:  # a later phase: only its end counts
                conn.execute(update(incident_events)
                             .where(ie.event_id == r["event_id"], ie.node_id == r["node_id"])
                             .values(ended_at=r["ended_at"]))
                _refresh(conn, int(link.incident_id), now)
                touched.add(int(link.incident_id))
            continue
        inc_id = _file_event(conn, r, cfg, now)
        conn.execute(incident_events.insert().values(event_id=r["event_id"], node_id=r["node_id"], incident_id=inc_id,
                                                     started_at=r["started_at"], ended_at=r["ended_at"]))
        _refresh(conn, inc_id, now)  # before the next event looks for its incident
        touched.add(inc_id)
    return touched


def _file_event(conn: Connection, r: RowMapping, cfg: IncidentsSection, now: datetime) -> int:
    type_ = IncidentType(r["type"])
    key = group_key(r["type"], r["node_id"], r["camera_id"], r["zone"], r["place_id"])
    gap = timedelta(0) if type_ is IncidentType.tamper else timedelta(seconds=cfg.gap)
    inc_id = _find_open(conn, key, r["started_at"], gap)
    if inc_id is not None:
        return inc_id
    zone = r["zone"] if type_ in PEOPLE_TYPES else None
    return _open(conn, cfg, now, type_=type_, key=key, node_id=r["node_id"], camera_id=r["camera_id"], zone=zone,
                 at=r["started_at"], places=[r["place_id"]] if r["place_id"] else [], event_id=r["event_id"])


# --- nodes ---------------------------------------------------------------------------


def _node_places(conn: Connection, node_id: str, at: datetime) -> list[str]:
    """Places the node's cameras were assigned to at `at`."""
    ca = camera_assignments.c
    q = select(ca.place_id).distinct().where(ca.node_id == node_id, ca.valid_from <= at,
                                              or_(ca.valid_to.is_(None), ca.valid_to > at))
    return list(conn.execute(q).scalars())


def _offline_incident(conn: Connection, node_id: str) -> RowMapping | None:
    """The node_offline incident whose condition still lasts, if any."""
    i = incidents.c
    return conn.execute(select(i.id, i.state).where(i.group_key == _offline_key(node_id), i.ended_at.is_(None))
                        .order_by(i.id.desc()).limit(1)).mappings().first()


def node_offline(conn: Connection, node_id: str, at: datetime, cfg: IncidentsSection, now: datetime,
                 reason: str) -> int | None:
    """Open a node_offline incident for `node_id` unless one lasts; returns its id if opened."""
    if _offline_incident(conn, node_id) is not None:
        return None
    return _open(conn, cfg, now, type_=IncidentType.node_offline, key=_offline_key(node_id), node_id=node_id,
                 camera_id=None, zone=None, at=at, places=_node_places(conn, node_id, at), reason=reason)


def node_back(conn: Connection, node_id: str, at: datetime, now: datetime, reason: str) -> int | None:
    """End the node's lasting node_offline incident (resolving it if still open); returns its id."""
    inc = _offline_incident(conn, node_id)
    if inc is None:
        return None
    inc_id = int(inc["id"])
    values: dict[str, Any] = {"ended_at": at, "last_event_at": at, "updated_at": now}
    if inc["state"] != State.resolved:
        values.update(state=State.resolved.value, outcome=Outcome.auto_closed.value, resolved_at=now)
    conn.execute(update(incidents).where(incidents.c.id == inc_id).values(**values))
    _audit(conn, now, Action.auto_closed, inc_id, reason=reason)
    return inc_id


def record_status(conn: Connection, st: Status, cfg: IncidentsSection, now: datetime | None = None) -> None:
    now = as_utc(now) if now else utcnow()
    at = st.at or now  # a Last Will carries no time: it fired when it arrived
    if st.state == "offline":
        node_offline(conn, st.node_id, at, cfg, now, reason="status offline" if st.at else "last will")
    else:
        node_back(conn, st.node_id, at, now, reason="status online")


def _insert(conn: Connection) -> Any:
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


def record_heartbeat(conn: Connection, hb: Heartbeat, cfg: IncidentsSection, now: datetime | None = None) -> None:
    """Remember the heartbeat and learn the interval; a new one ends a node_offline incident.
    An older or repeated heartbeat (redelivery) changes nothing."""
    now = as_utc(now) if now else utcnow()
    nl = node_liveness.c
    prev = conn.execute(select(nl.heartbeat_at, nl.intervals).where(nl.node_id == hb.node_id)).first()
    if prev is not None and prev.heartbeat_at is not None and hb.at <= prev.heartbeat_at:
        return
    intervals: list[float] = list(prev.intervals or []) if prev is not None else []
    if prev is not None and prev.heartbeat_at is not None:
        intervals = [*intervals, (hb.at - prev.heartbeat_at).total_seconds()][-KEEP_INTERVALS:]
    values = {"heartbeat_at": hb.at, "seen_at": now, "intervals": intervals}
    ins = _insert(conn)(node_liveness).values(node_id=hb.node_id, **values)
    conn.execute(ins.on_conflict_do_update(index_elements=[nl.node_id], set_=values))
    node_back(conn, hb.node_id, hb.at, now, reason="heartbeat")


def heartbeat_interval(intervals: list[float] | None, cfg: IncidentsSection) -> float | None:
    """The configured interval, else the median of the learnt ones, else unknown (None)."""
    if cfg.heartbeat_interval is not None:
        return cfg.heartbeat_interval
    return statistics.median(intervals) if intervals else None


def check_heartbeats(conn: Connection, cfg: IncidentsSection, now: datetime,
                     since: datetime | None = None) -> list[int]:
    """Open node_offline for every node silent for `offline_after_heartbeats` intervals.
    `since` (the consumer's start) counts as a heartbeat of every node: heartbeats
    queued while the consumer was down must not look missed. Returns incidents opened."""
    now = as_utc(now)
    opened = []
    for node_id, seen_at, intervals in conn.execute(
            select(node_liveness.c.node_id, node_liveness.c.seen_at, node_liveness.c.intervals)).all():
        interval = heartbeat_interval(intervals, cfg)
        if interval is None or seen_at is None:
            continue
        deadline = max(seen_at, as_utc(since) if since else seen_at) + timedelta(
            seconds=interval * cfg.offline_after_heartbeats)
        if now >= deadline:
            inc = node_offline(conn, node_id, seen_at, cfg, now, reason="missed heartbeats")
            if inc is not None:
                opened.append(inc)
    return opened


# --- the consumer's entry --------------------------------------------------------------


@dataclass
class Grouper:
    """What the consumer holds: the settings and its start time (see check_heartbeats)."""

    cfg: IncidentsSection
    started_at: datetime = field(default_factory=utcnow)

    def record(self, conn: Connection, messages: Iterable[object], now: datetime | None = None) -> None:
        """Incidents for one committed-together batch of parsed messages (others are ignored).
        Status and heartbeats first, in arrival order; then the batch's events by start."""
        now = as_utc(now) if now else utcnow()
        keys = []
        for m in messages:
            if isinstance(m, BaseEvent):
                keys.append((m.event_id, m.node_id))
            elif isinstance(m, Status):
                record_status(conn, m, self.cfg, now)
            elif isinstance(m, Heartbeat):
                record_heartbeat(conn, m, self.cfg, now)
        group_events(conn, keys, self.cfg, now)

    def check(self, conn: Connection, now: datetime | None = None) -> list[int]:
        return check_heartbeats(conn, self.cfg, now or utcnow(), since=self.started_at)

