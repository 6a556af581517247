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
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, case, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, RowMapping

from vaktpost.broker.config import IncidentsSection
from vaktpost.broker.incidents.kinds import OPEN_STATES, PEOPLE_TYPES, SYSTEM, Action, IncidentType, Outcome, State
from vaktpost.broker.incidents.tables import audit_log, incident_events, incident_places, incidents, node_liveness
from vaktpost.broker.store import as_utc, camera_assignments, events, in_values, utcnow
from vaktpost.contract.events import BaseEvent
from vaktpost.contract.messages import Heartbeat, Status

# Heartbeat intervals remembered per node; their median is the learnt interval, so
# one lost heartbeat (a doubled interval) does not change it.
KEEP_INTERVALS = 5


# Statements built once (SQLAlchemy caches their compiled form; building costs more than running).
_INSERT_AUDIT = audit_log.insert()
_INSERT_INCIDENT = incidents.insert().returning(incidents.c.id)
_ie = incident_events.c
_AGGREGATE_LINKS = (
    select(_ie.incident_id, func.min(_ie.started_at), func.max(func.coalesce(_ie.ended_at, _ie.started_at)),
           func.count(), func.sum(case((_ie.ended_at.is_(None), 1), else_=0)))
    .where(_ie.incident_id.in_(bindparam("ids", expanding=True)))
    .group_by(_ie.incident_id))
_UPDATE_FROM_LINKS = (
    update(incidents).where(incidents.c.id == bindparam("k_id"))
    .values({c: bindparam(f"k_{c}") for c in ("opened_at", "last_event_at", "event_count", "ongoing", "ended_at",
                                              "updated_at")}))


def group_key(type_: str, node_id: str, camera_id: str | None, zone: str | None, place_id: str | None) -> str:
    """The group an event joins; zone only counts for people events."""
    z = zone if IncidentType(type_) in PEOPLE_TYPES else None
    return "|".join((type_, node_id, camera_id or "", z or "", place_id or ""))


def _offline_key(node_id: str) -> str:
    return f"{IncidentType.node_offline}|{node_id}"


def _audit(conn: Connection, now: datetime, action: Action, incident_id: int, **detail: Any) -> None:
    conn.execute(_INSERT_AUDIT, {"at": now, "actor": SYSTEM, "client": None, "action": action.value,
                                 "incident_id": incident_id, "detail": detail or None})


def _open(conn: Connection, cfg: IncidentsSection, now: datetime, *, type_: IncidentType, key: str, node_id: str,
          camera_id: str | None, zone: str | None, at: datetime, places: Iterable[str], **detail: Any) -> int:
    inc_id = int(conn.execute(_INSERT_INCIDENT, {
        "type": type_.value, "group_key": key, "node_id": node_id, "camera_id": camera_id, "zone": zone,
        "priority": int(cfg.priority_of(type_)), "state": State.new.value, "opened_at": at, "last_event_at": at,
        "ongoing": 0, "event_count": 0, "created_at": now, "updated_at": now}).scalar_one())
    place_ids = sorted(set(places))
    if place_ids:
        conn.execute(incident_places.insert(), [{"incident_id": inc_id, "place_id": p} for p in place_ids])
    _audit(conn, now, Action.opened, inc_id, **detail)
    return inc_id


# --- events --------------------------------------------------------------------------


@dataclass
class _Candidate:
    """An open incident as the search for an event's incident sees it: the columns
    `_refresh` writes, kept up to date in memory while a batch joins it."""

    id: int
    opened_at: datetime
    last_event_at: datetime
    ongoing: int

    def takes(self, started: datetime, gap: timedelta) -> bool:
        return self.opened_at <= started + gap and (self.ongoing > 0 or self.last_event_at >= started - gap)

    def link(self, started: datetime, ended: datetime | None) -> None:
        self.opened_at = min(self.opened_at, started)
        self.last_event_at = max(self.last_event_at, ended or started)
        self.ongoing += ended is None

    def end(self, ended: datetime) -> None:
        self.ongoing -= 1
        self.last_event_at = max(self.last_event_at, ended)


def _candidates(conn: Connection, keys: set[str], first: datetime, last: datetime,
                gap: timedelta) -> dict[str, list[_Candidate]]:
    """Open incidents of the group `keys` that an event starting between `first` and
    `last` may join (`gap` the widest of the groups'). Others cannot become candidates
    within the batch: opened_at only moves earlier as events join, and an incident
    whose events all ended only changes if an event joins it."""
    if not keys:
        return {}
    i = incidents.c
    q = (select(i.group_key, i.id, i.opened_at, i.last_event_at, i.ongoing)
         .where(i.group_key.in_(sorted(keys)), i.state.in_([s.value for s in OPEN_STATES]),
                i.opened_at <= last + gap, or_(i.ongoing > 0, i.last_event_at >= first - gap)))
    out: dict[str, list[_Candidate]] = {}
    for key, inc_id, opened_at, last_event_at, ongoing in conn.execute(q):
        out.setdefault(key, []).append(_Candidate(int(inc_id), opened_at, last_event_at, int(ongoing)))
    return out


def _find_open(candidates: list[_Candidate], started: datetime, gap: timedelta) -> _Candidate | None:
    """The incident an event starting at `started` joins: the one with the latest event."""
    fits = [c for c in candidates if c.takes(started, gap)]
    return max(fits, key=lambda c: (c.last_event_at, c.id)) if fits else None


def _refresh(conn: Connection, inc_ids: Collection[int], now: datetime) -> None:
    """The incidents' times and counts from their linked events."""
    if not inc_ids:
        return
    rows = [{"k_id": inc_id, "k_opened_at": first, "k_last_event_at": last, "k_event_count": count,
             "k_ongoing": int(ongoing or 0), "k_ended_at": None if ongoing else last, "k_updated_at": now}
            for inc_id, first, last, count, ongoing in conn.execute(_AGGREGATE_LINKS, {"ids": sorted(inc_ids)})]
    if rows:
        conn.execute(_UPDATE_FROM_LINKS, rows)


def group_events(conn: Connection, keys: Iterable[tuple[str, str]], cfg: IncidentsSection,
                 now: datetime | None = None) -> set[int]:
    """File the stored events `keys` ((event_id, node_id), as the place log keys them) into
    incidents; returns the incidents touched. Reads the events as stored (the place
    computed, the most final copy). Set-based: the events, their links and the open
    incidents they may join are read once, each event is filed in memory in order of
    start exactly as if the incidents were refreshed after each, and every touched
    incident is refreshed from its links once at the end."""
    now = as_utc(now) if now else utcnow()
    wanted = set(keys)
    if not wanted:
        return set()
    ids = sorted({event_id for event_id, _ in wanted})
    e, ie = events.c, incident_events.c
    dialect = conn.dialect.name
    rows = [r for r in conn.execute(
        select(e.event_id, e.node_id, e.camera_id, e.place_id, e.type, e.zone, e.started_at, e.ended_at)
        .where(in_values(e.event_id, ids, dialect)).order_by(e.started_at, e.event_id, e.node_id)).mappings().all()
        if (r["event_id"], r["node_id"]) in wanted]
    linked = {(r.event_id, r.node_id): r for r in conn.execute(
        select(ie.event_id, ie.node_id, ie.incident_id, ie.ended_at).where(in_values(ie.event_id, ids, dialect))).all()}
    new = [r for r in rows if (r["event_id"], r["node_id"]) not in linked]
    candidates = _candidates(conn, {_key(r) for r in new}, min((r["started_at"] for r in new), default=now),
                             max((r["started_at"] for r in new), default=now), timedelta(seconds=cfg.gap))
    by_id = {c.id: c for cs in candidates.values() for c in cs}
    links: list[dict[str, Any]] = []
    ends: list[dict[str, Any]] = []
    touched: set[int] = set()
    for r in rows:
        link = linked.get((r["event_id"], r["node_id"]))
        if link is None:
            inc = _file_event(conn, r, cfg, now, candidates)
            by_id[inc.id] = inc
            inc.link(r["started_at"], r["ended_at"])
            links.append({"event_id": r["event_id"], "node_id": r["node_id"], "incident_id": inc.id,
                          "started_at": r["started_at"], "ended_at": r["ended_at"]})
            touched.add(inc.id)
        elif link.ended_at is None and r["ended_at"] is not None:  # a later phase: only its end counts
            ends.append({"k_event_id": r["event_id"], "k_node_id": r["node_id"], "k_ended_at": r["ended_at"]})
            if (c := by_id.get(int(link.incident_id))) is not None:
                c.end(r["ended_at"])
            touched.add(int(link.incident_id))
    if links:
        conn.execute(incident_events.insert(), links)
    if ends:
        conn.execute(update(incident_events)
                     .where(ie.event_id == bindparam("k_event_id"), ie.node_id == bindparam("k_node_id"))
                     .values(ended_at=bindparam("k_ended_at")), ends)
    _refresh(conn, touched, now)
    return touched


def _key(r: RowMapping) -> str:
    return group_key(r["type"], r["node_id"], r["camera_id"], r["zone"], r["place_id"])


def _file_event(conn: Connection, r: RowMapping, cfg: IncidentsSection, now: datetime,
                candidates: dict[str, list[_Candidate]]) -> _Candidate:
    """The incident the event joins, opened if none fits (added to `candidates` then)."""
    type_ = IncidentType(r["type"])
    key = _key(r)
    gap = timedelta(0) if type_ is IncidentType.tamper else timedelta(seconds=cfg.gap)
    found = _find_open(candidates.get(key, []), r["started_at"], gap)
    if found is not None:
        return found
    zone = r["zone"] if type_ in PEOPLE_TYPES else None
    inc_id = _open(conn, cfg, now, type_=type_, key=key, node_id=r["node_id"], camera_id=r["camera_id"], zone=zone,
                   at=r["started_at"], places=[r["place_id"]] if r["place_id"] else [], event_id=r["event_id"])
    inc = _Candidate(inc_id, r["started_at"], r["started_at"], 0)
    candidates.setdefault(key, []).append(inc)
    return inc


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

