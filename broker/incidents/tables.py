"""The incidents' tables, on the place log's `metadata` (so `Store.create_all` creates them).

- `incidents`: one row per incident; `group_key` finds the open incident an event joins;
  `ix_incidents_list` serves the inbox's order (`LIST_ORDER`).
- `incident_places`: the places an incident belongs to (one for an event incident,
  every place the node's cameras cover for `node_offline`, none for an unassigned camera).
- `incident_events`: which event belongs to which incident. `(event_id, node_id)` is the
  primary key, as in `events`, so an event joins one incident once, however often it is
  delivered, and another node's copy of its id is an event of its own. No foreign
  key to `events` (retention may purge events of a kept incident).
- `node_liveness`: per node, the last heartbeat (node clock and central receipt) and
  the recent heartbeat intervals, for the missing-heartbeat check.
- `audit_log`: append-only; every change of an incident, every comment, every snapshot view.
"""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, ForeignKey, Index, Integer, SmallInteger, String, Table, Text, case
from sqlalchemy.sql.elements import Grouping

from vaktpost.broker.incidents.kinds import OPEN_STATES
from vaktpost.broker.store import UtcDateTime, metadata

_Ident = String(63)
# The audit log grows without bound on PostgreSQL; SQLite only autoincrements INTEGER.
_BigId = BigInteger().with_variant(Integer(), "sqlite")

incidents = Table(
    "incidents",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("type", String(32), nullable=False),
    Column("group_key", String(300), nullable=False),
    Column("node_id", _Ident, nullable=False),
    Column("camera_id", _Ident),
    Column("zone", String(64)),
    Column("priority", SmallInteger, nullable=False),  # kinds.Priority: 3 high, 2 normal, 1 low
    Column("state", String(16), nullable=False),
    Column("owner", String(200)),
    Column("outcome", String(32)),
    Column("outcome_note", Text),
    Column("opened_at", UtcDateTime(), nullable=False),  # first event's start / node went silent
    Column("last_event_at", UtcDateTime(), nullable=False),  # latest start or end of its events
    Column("ended_at", UtcDateTime()),  # all its events ended / node back; null while it lasts
    Column("ongoing", Integer, nullable=False, server_default="0"),  # its events not ended yet
    Column("event_count", Integer, nullable=False, server_default="0"),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("resolved_at", UtcDateTime()),
    Index("ix_incidents_group", "group_key", "state"),
    Index("ix_incidents_inbox", "state", "priority", "opened_at"),
)

# The inbox's order: open ones first, then highest priority, then newest. Listings sort by
# this very expression, so PostgreSQL reads a page (even at an offset, even filtered) off
# ix_incidents_list instead of sorting every incident per request.
OPEN_FIRST = case((incidents.c.state.in_([s.value for s in OPEN_STATES]), 0), else_=1)
LIST_ORDER = (OPEN_FIRST, incidents.c.priority.desc(), incidents.c.opened_at.desc(), incidents.c.id.desc())
# PostgreSQL wants an expression of an index in parentheses of its own.
Index("ix_incidents_list", Grouping(OPEN_FIRST), *LIST_ORDER[1:])

incident_places = Table(
    "incident_places",
    metadata,
    Column("incident_id", Integer, ForeignKey("incidents.id"), primary_key=True),
    Column("place_id", _Ident, ForeignKey("places.id"), primary_key=True),
    Index("ix_incident_places_place", "place_id"),
)

incident_events = Table(
    "incident_events",
    metadata,
    Column("event_id", String(36), primary_key=True),
    Column("node_id", _Ident, primary_key=True),
    Column("incident_id", Integer, ForeignKey("incidents.id"), nullable=False, index=True),
    Column("started_at", UtcDateTime(), nullable=False),
    Column("ended_at", UtcDateTime()),
)

node_liveness = Table(
    "node_liveness",
    metadata,
    Column("node_id", _Ident, primary_key=True),
    Column("heartbeat_at", UtcDateTime()),  # node clock: learns the interval
    Column("seen_at", UtcDateTime()),  # central clock: the missing-heartbeat deadline
    Column("intervals", JSON(none_as_null=True)),  # the last few heartbeat intervals, seconds
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime(), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("client", String(100)),  # client address of the request; null for the consumer
    Column("action", String(32), nullable=False),
    Column("incident_id", Integer, ForeignKey("incidents.id"), index=True),
    Column("event_id", String(36)),
    Column("detail", JSON(none_as_null=True)),
)
