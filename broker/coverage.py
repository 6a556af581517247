"""What the nodes watched and when they were online: the consumer's records for the
exposure hours (vaktpost.broker.exposure; docs/central.md, "Exposure").

- `node_setups`: every change of a node's `config` message (NodeSetup), in force from
  `valid_from` (the message's `at`) until `valid_to` (the next change; null: still).
  The current one is the row with `valid_to` null. A message with the same content
  (a reconnect, a redelivery of the retained copy) adds nothing.
- `node_online`: the intervals a node was online, from its status and heartbeats (node
  clock). A heartbeat or an `online` status extends the node's open interval when it
  comes at most `gap` after the interval's end (the inbox's `node_offline_after`),
  and otherwise starts a new one; an `offline` status closes it (at its `at`, at most
  `gap` after the last sign of life; a Last Will, which has no `at`, at the last sign).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Boolean, Column, String, Table, and_, insert, select, update
from sqlalchemy.engine import Connection

from vaktpost.broker.store import UtcDateTime, metadata
from vaktpost.contract.messages import Heartbeat, NodeSetup, Status

_Ident = String(63)

node_setups = Table(
    "node_setups",
    metadata,
    Column("node_id", _Ident, primary_key=True),
    Column("valid_from", UtcDateTime(), primary_key=True),
    Column("valid_to", UtcDateTime()),
    Column("received_at", UtcDateTime(), nullable=False),
    Column("setup", JSON, nullable=False),  # the NodeSetup as received (by alias)
)

node_online = Table(
    "node_online",
    metadata,
    Column("node_id", _Ident, primary_key=True),
    Column("started_at", UtcDateTime(), primary_key=True),
    Column("ended_at", UtcDateTime(), nullable=False),  # the last sign of life so far
    Column("open", Boolean, nullable=False),  # may still be extended by the next heartbeat
)


def _content(setup: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in setup.items() if k != "at"}


def record_setup(conn: Connection, setup: NodeSetup, now: datetime) -> bool:
    """Keep `setup` if it changes what the node watches; True if a history row was added."""
    ns = node_setups.c
    current = conn.execute(select(ns.valid_from, ns.setup)
                           .where(ns.node_id == setup.node_id, ns.valid_to.is_(None))).first()
    if current is not None:
        if setup.at <= current.valid_from or _content(current.setup) == setup.content():
            return False  # older than the one in force, or the same again
        conn.execute(update(node_setups).where(ns.node_id == setup.node_id, ns.valid_from == current.valid_from)
                     .values(valid_to=setup.at))
    conn.execute(insert(node_setups).values(node_id=setup.node_id, valid_from=setup.at, valid_to=None,
                                            received_at=now, setup=setup.model_dump(mode="json", by_alias=True)))
    return True


def _latest(conn: Connection, node_id: str) -> Any:
    no = node_online.c
    return conn.execute(select(no.started_at, no.ended_at, no.open).where(no.node_id == node_id)
                        .order_by(no.started_at.desc()).limit(1)).first()


def _set(conn: Connection, node_id: str, started_at: datetime, **values: Any) -> None:
    no = node_online.c
    conn.execute(update(node_online).where(and_(no.node_id == node_id, no.started_at == started_at))
                 .values(**values))


def alive(conn: Connection, node_id: str, at: datetime, gap: timedelta) -> None:
    """A sign of life of `node_id` at `at` (a heartbeat or an `online` status)."""
    last = _latest(conn, node_id)
    if last is not None:
        if last.started_at <= at <= last.ended_at or at < last.started_at:
            return  # known already, or older than the latest interval (a late redelivery)
        if last.open and at - last.ended_at <= gap:
            _set(conn, node_id, last.started_at, ended_at=at)
            return
        if last.open:
            _set(conn, node_id, last.started_at, open=False)
    conn.execute(insert(node_online).values(node_id=node_id, started_at=at, ended_at=at, open=True))


def went_offline(conn: Connection, node_id: str, at: datetime | None, gap: timedelta) -> None:
    """`offline` status: close the open interval (at `at`, at most `gap` after its end)."""
    last = _latest(conn, node_id)
    if last is None or not last.open:
        return
    end = last.ended_at if at is None else max(last.ended_at, min(at, last.ended_at + gap))
    _set(conn, node_id, last.started_at, ended_at=end, open=False)


def record_status(conn: Connection, st: Status, now: datetime, gap: timedelta) -> None:
    if st.state == "online":
        alive(conn, st.node_id, st.at or now, gap)
    else:
        went_offline(conn, st.node_id, st.at, gap)


def record_heartbeat(conn: Connection, hb: Heartbeat, gap: timedelta) -> None:
    alive(conn, hb.node_id, hb.at, gap)
