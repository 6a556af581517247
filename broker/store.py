"""The place log: events, dead letters, places and camera assignments (SQLAlchemy Core).

Works on SQLite (one file, WAL) and PostgreSQL (psycopg 3). Times are stored as
UTC and always come back timezone-aware.

Redelivery and updates of one event (decided here, documented in docs/central.md):
a node publishes an event again while it lasts (``ended_at`` null, fresh
confidence/region) and once more when it ends; MQTT QoS 1 may also deliver any
copy twice. ``(event_id, node_id)`` is the primary key, so there is never more than
one row per event, and a node's message only ever reaches that node's own row: a node
sending another node's event id, before or after that node, neither changes nor
pre-empts the other's row (its copy is a row of its own, and the consumer logs the
clash). A later copy replaces the stored one only if the stored row has not
ended yet and the copy is *more final*: it has ended, it carries a higher ``seq``,
or it has the same ``seq`` (nodes keep one seq for all copies of an event) and a
different payload (a newer running state). An ended row is never changed again,
so a late redelivery of an older copy cannot undo the end of an event; an
identical copy changes nothing.

The place of an event is the place its camera was assigned to at ``started_at``
(``valid_from <= started_at < valid_to``; an open ``valid_to`` means "still").

Snapshots (anonymised JPEGs) live in their own table, keyed like their event by
``(event_id, node_id)`` but without a foreign key: a snapshot may arrive before its event, and
either may be purged first. Retention (``Store.purge``) deletes in small
transactions so that ingest keeps going on SQLite, whose writers take turns.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    and_,
    any_,
    bindparam,
    cast,
    column,
    create_engine,
    delete,
    event,
    exists,
    func,
    inspect,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.schema import CreateColumn
from sqlalchemy.sql.base import ReadOnlyColumnCollection
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import DateTime, TypeDecorator

from vaktpost.contract.events import BaseEvent
from vaktpost.contract.jpeg import CONTENT_TYPE as JPEG
from vaktpost.contract.messages import Heartbeat, Status
from vaktpost.contract.topics import Topic

log = logging.getLogger("vaktpost.broker.store")

SQLITE_BUSY_TIMEOUT_MS = 30_000
# Rows deleted per transaction by purge(): short transactions let the consumer's
# batches in between (SQLite has one writer at a time).
PURGE_CHUNK = 500


# What any failure of the place log's database raises: callers outside the central side
# (the CLI) catch this name and need not know the database library.
DatabaseError = SQLAlchemyError


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(t: datetime) -> datetime:
    """Aware UTC; a naive time is taken to be UTC already."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """timestamptz on PostgreSQL; naive UTC text on SQLite (which has no zones).
    Either way Python sees aware UTC datetimes, and SQLite values compare correctly
    because they all share one format and one zone."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = as_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)


# Dead letter ids grow without bound on PostgreSQL; SQLite only autoincrements INTEGER.
_BigId = BigInteger().with_variant(Integer(), "sqlite")
_Ident = String(63)

metadata = MetaData()

places = Table(
    "places",
    metadata,
    Column("id", _Ident, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("district", String(200)),
    Column("address", String(300)),
    Column("lat", Float),
    Column("lon", Float),
    Column("purpose", Text),  # the camera register's (vaktpost.broker.register)
    Column("responsible", String(300)),
)

camera_assignments = Table(
    "camera_assignments",
    metadata,
    Column("node_id", _Ident, primary_key=True),
    Column("camera_id", _Ident, primary_key=True),
    Column("valid_from", UtcDateTime(), primary_key=True),
    Column("valid_to", UtcDateTime()),
    Column("place_id", _Ident, ForeignKey("places.id"), nullable=False),
)

events = Table(
    "events",
    metadata,
    # Keyed by node too: no node can reach another's row (see above). event_id first,
    # so lookups by event id alone use the key's index.
    Column("event_id", String(36), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("node_id", _Ident, primary_key=True),
    Column("camera_id", _Ident),
    Column("place_id", _Ident, ForeignKey("places.id")),
    Column("type", String(32), nullable=False),
    Column("subtype", String(32)),
    Column("zone", String(64)),
    Column("started_at", UtcDateTime(), nullable=False),
    Column("ended_at", UtcDateTime()),
    Column("confidence", Float, nullable=False),
    Column("region", JSON(none_as_null=True)),
    Column("topic", Text, nullable=False),
    Column("received_at", UtcDateTime(), nullable=False),  # first copy
    Column("updated_at", UtcDateTime(), nullable=False),  # copy now stored
    Column("payload", JSON, nullable=False),
    # The server default lets _add_missing_columns() extend an older place log.
    Column("snapshot", String(16), nullable=False, server_default="none"),
    Column("snapshot_withheld", String(32)),
    Index("ix_events_place_started", "place_id", "started_at"),
    Index("ix_events_started", "started_at"),
    Index("ix_events_camera_started", "node_id", "camera_id", "started_at"),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("topic", Text, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("error", Text, nullable=False),
    Column("received_at", UtcDateTime(), nullable=False, index=True),
)

snapshots = Table(
    "snapshots",
    metadata,
    Column("event_id", String(36), primary_key=True),  # its event's id; no FK (see above)
    Column("node_id", _Ident, primary_key=True),  # proven by the broker ACL (the topic)
    Column("received_at", UtcDateTime(), nullable=False, index=True),
    Column("content_type", String(64), nullable=False),
    Column("bytes", LargeBinary, nullable=False),
    Column("size", Integer, nullable=False),
)

purge_log = Table(
    "purge_log",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("ran_at", UtcDateTime(), nullable=False),
    Column("snapshots_deleted", Integer, nullable=False),
    Column("events_deleted", Integer, nullable=False),
    Column("dead_letters_deleted", Integer, nullable=False),
    Column("snapshots_before", UtcDateTime(), nullable=False),  # cutoff for snapshots (received_at)
    Column("events_before", UtcDateTime(), nullable=False),  # cutoff for events (started_at), dead letters
)

nodes = Table(
    "nodes",
    metadata,
    Column("node_id", _Ident, primary_key=True),
    Column("state", String(16)),
    Column("status_at", UtcDateTime()),
    Column("heartbeat_at", UtcDateTime()),
    Column("heartbeat", JSON(none_as_null=True)),
    Column("updated_at", UtcDateTime(), nullable=False),
)

# Columns a more final copy of an event may change.
_EVENT_UPDATABLE = ("seq", "place_id", "subtype", "zone", "ended_at", "confidence", "region", "topic",
                    "updated_at", "payload", "snapshot", "snapshot_withheld")

# Columns added to tables after their first release: create_all() leaves existing
# tables alone, so Store.create_all() adds these where they are missing.
_ADDED_COLUMNS: dict[str, tuple[str, ...]] = {"events": ("snapshot", "snapshot_withheld"),
                                              "places": ("purpose", "responsible")}
# Tables first released keyed by event_id alone; Store.create_all() re-keys them.
_REKEYED = (events, snapshots)


@dataclass(frozen=True)
class PurgeResult:
    """Rows one retention purge deleted (`incidents`: by `incidents.retention.purge`)."""

    snapshots: int
    events: int
    dead_letters: int
    incidents: int = 0


def normalise_url(url: str) -> str:
    """postgresql:// and postgres:// mean psycopg 3 (the driver the central extra installs)."""
    u = make_url(url)
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    return u.render_as_string(hide_password=False)


def sqlite_file(url: str) -> Path | None:
    """The file behind a file-backed SQLite URL; None for other databases and in-memory ones."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return None if u.database.startswith("file:") else Path(u.database)


def display_url(url: str) -> str:
    """`url` fit for a message: the password hidden."""
    return make_url(url).render_as_string(hide_password=True)


def _sqlite_pragmas(busy_timeout_ms: int) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        # WAL lets readers (the CLI) run while the consumer writes; NORMAL is durable
        # against process crashes in WAL mode, which is what redelivery relies on.
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()
    return on_connect


@dataclass(frozen=True)
class _Assignment:
    valid_from: datetime
    valid_to: datetime | None
    place_id: str


def _place_of(history: list[_Assignment], t: datetime) -> str | None:
    """The place of the assignment valid at `t` (valid_from <= t < valid_to; an open
    valid_to means "still"), the latest-starting one if several overlap."""
    valid = [a for a in history if a.valid_from <= t and (a.valid_to is None or a.valid_to > t)]
    return max(valid, key=lambda a: a.valid_from).place_id if valid else None


def _more_final(new: ReadOnlyColumnCollection[str, Any]) -> ColumnElement[bool]:
    """Upsert condition: may copy `new` (the EXCLUDED row) replace the stored event?
    Nodes keep one seq for all copies of an event, so an equal seq with a different
    payload is a newer running state; an identical copy is a redelivery (no write)."""
    old = events.c
    return and_(
        old.ended_at.is_(None),
        or_(
            new.ended_at.is_not(None),
            new.seq > old.seq,
            and_(new.seq == old.seq, cast(new.payload, Text) != cast(old.payload, Text)),
        ),
    )


@dataclass
class _Copy:
    """One copy of an event on its way into the store (see StoreTx.insert_events)."""

    row: dict[str, Any]
    items: list[int]  # indices of the copies it stands for: itself and those it replaced

    def payload_text(self) -> str:
        # The text SQLAlchemy's JSON type writes, which _more_final compares in the database.
        return json.dumps(self.row["payload"])

    def more_final_than(self, old: _Copy) -> bool:
        """_more_final, in Python: between copies of one batch."""
        new_row, old_row = self.row, old.row
        return old_row["ended_at"] is None and (
            new_row["ended_at"] is not None or new_row["seq"] > old_row["seq"]
            or (new_row["seq"] == old_row["seq"] and self.payload_text() != old.payload_text()))


def _event_row(ev: BaseEvent, topic: str, now: datetime) -> dict[str, Any]:
    return {
        "event_id": ev.event_id,
        "seq": ev.seq,
        "node_id": ev.node_id,
        "camera_id": ev.camera_id,
        "type": ev.type.value,
        "subtype": ev.subtype,
        "zone": ev.zone,
        "started_at": ev.started_at,
        "ended_at": ev.ended_at,
        "confidence": ev.confidence,
        "region": ev.region,
        "topic": topic,
        "received_at": now,
        "updated_at": now,
        "payload": ev.model_dump(mode="json", by_alias=True),
        "snapshot": ev.snapshot,
        "snapshot_withheld": ev.snapshot_withheld,
    }


def _most_final_copies(items: Sequence[tuple[BaseEvent, str]], now: datetime) -> dict[tuple[str, str], _Copy]:
    """Per (event_id, node_id), the copy left after storing `items` one after another
    (a multi-row upsert may touch each row only once)."""
    out: dict[tuple[str, str], _Copy] = {}
    for i, (ev, topic) in enumerate(items):
        new = _Copy(_event_row(ev, topic, now), [i])
        key = (ev.event_id, ev.node_id)
        old = out.get(key)
        if old is None:
            out[key] = new
        elif new.more_final_than(old):
            new.items = [*old.items, i]
            out[key] = new
    return out


@functools.cache
def _upsert(insert: Callable[[Table], Any]) -> Any:
    """The events upsert with the more-final rule, for many rows at once (SQLAlchemy sends
    them as multi-row INSERTs). RETURNING yields the rows inserted or updated: the rowcount
    of an INSERT is not reliable across drivers."""
    ins = insert(events)
    return ins.on_conflict_do_update(
        index_elements=[events.c.event_id, events.c.node_id],
        set_={c: ins.excluded[c] for c in _EVENT_UPDATABLE},
        where=_more_final(ins.excluded),
    ).returning(events.c.event_id, events.c.node_id)


_TIME_COLUMNS = ("started_at", "ended_at", "received_at", "updated_at")


def _json_ready(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, **{c: None if row[c] is None else as_utc(row[c]).isoformat() for c in _TIME_COLUMNS}}


@functools.cache
def _upsert_from_json() -> Any:
    """PostgreSQL: the events upsert of _upsert, its rows from one JSON array parameter
    (`rows`, times as ISO text) through json_to_recordset."""
    cols = list(events.columns)
    rec = (func.json_to_recordset(bindparam("rows", type_=JSON))
           .table_valued(*[column(c.name, c.type) for c in cols]).render_derived(with_types=True))
    ins = postgresql.insert(events).from_select([c.name for c in cols], select(*[rec.c[c.name] for c in cols]))
    return ins.on_conflict_do_update(
        index_elements=[events.c.event_id, events.c.node_id],
        set_={c: ins.excluded[c] for c in _EVENT_UPDATABLE},
        where=_more_final(ins.excluded),
    ).returning(events.c.event_id, events.c.node_id)


def in_values(col: ColumnElement[str], values: Collection[str], dialect: str) -> ColumnElement[bool]:
    """`col IN values` for a batch's many ids; on PostgreSQL `col = ANY(array)`: one
    parameter, where psycopg would parse a statement of as many placeholders on each call."""
    if dialect == "postgresql":
        return col == any_(bindparam(None, list(values), type_=postgresql.ARRAY(String)))
    return col.in_(list(values))


def default_topic(ev: BaseEvent) -> str:
    if ev.camera_id is None:
        return f"{Topic.node_prefix(ev.node_id)}/events"
    return Topic.events(ev.node_id, ev.camera_id)


def _clean_text(s: str) -> str:
    # PostgreSQL text cannot hold NUL; error messages may quote hostile input.
    return s.replace("\x00", "\\x00")


@dataclass
class StoreTx:
    """Operations inside one transaction (from `Store.begin()`)."""

    conn: Connection
    _insert: Any  # sqlite.insert or postgresql.insert: both have on_conflict_do_*

    def insert_event(self, ev: BaseEvent, *, topic: str, received_at: datetime | None = None) -> bool:
        """Store `ev`; True if a row was added or made more final, False for a redelivery."""
        return bool(self.insert_events([(ev, topic)], received_at=received_at))

    def insert_events(self, items: Sequence[tuple[BaseEvent, str]], *,
                      received_at: datetime | None = None) -> set[int]:
        """Store events, each with the topic it came on, in one multi-row upsert; returns
        the indices (in `items`) of the copies that were stored: that added a row or made
        one more final. Copies of one event in `items` end as if stored one after another:
        the most final by the rule goes to the database, and the copies it replaced on the
        way count as stored with it if it is (a count, unlike the row, may then differ from
        one copy at a time: copies that undo each other, a stored row outranking some)."""
        if not items:
            return set()
        now = as_utc(received_at) if received_at else utcnow()
        copies = _most_final_copies(items, now)
        places = self._places([c.row for c in copies.values()])
        rows = [{**c.row, "place_id": places[i]} for i, c in enumerate(copies.values())]
        if self.conn.dialect.name == "postgresql":
            # All rows as one JSON parameter: one short statement psycopg parses once and
            # prepares, instead of a multi-row VALUES of thousands of placeholders per batch.
            result = self.conn.execute(_upsert_from_json(), {"rows": [_json_ready(r) for r in rows]})
        else:
            result = self.conn.execute(_upsert(self._insert), rows)
        changed = {(r.event_id, r.node_id) for r in result}
        return {i for key, c in copies.items() if key in changed for i in c.items}

    def _places(self, rows: list[dict[str, Any]]) -> list[str | None]:
        """The place of each event row's camera at its start, from one query."""
        cams = {(r["node_id"], r["camera_id"]) for r in rows if r["camera_id"] is not None}
        history: dict[tuple[str, str], list[_Assignment]] = {}
        if cams:
            ca = camera_assignments.c
            q = (select(ca.node_id, ca.camera_id, ca.valid_from, ca.valid_to, ca.place_id)
                 .where(tuple_(ca.node_id, ca.camera_id).in_(sorted(cams))))
            for node_id, camera_id, valid_from, valid_to, place_id in self.conn.execute(q):
                history.setdefault((node_id, camera_id), []).append(_Assignment(valid_from, valid_to, place_id))
        return [_place_of(history.get((r["node_id"], r["camera_id"]), []), as_utc(r["started_at"]))
                if r["camera_id"] is not None else None for r in rows]

    def insert_snapshot(self, event_id: str, node_id: str, data: bytes, *, content_type: str = JPEG,
                        received_at: datetime | None = None) -> bool:
        """Store the snapshot of `event_id`; True if added, False if one was already
        stored (a redelivery: the first copy stays)."""
        ins = self._insert(snapshots).values(
            event_id=event_id, node_id=node_id, received_at=as_utc(received_at) if received_at else utcnow(),
            content_type=content_type, bytes=bytes(data), size=len(data))
        stmt = ins.on_conflict_do_nothing(index_elements=[snapshots.c.event_id, snapshots.c.node_id])
        return self.conn.execute(stmt.returning(snapshots.c.event_id)).first() is not None

    def other_nodes(self, event_id: str, node_id: str) -> list[str]:
        """Nodes other than `node_id` that also sent an event or snapshot with `event_id`."""
        e, s = events.c, snapshots.c
        q = (select(e.node_id).where(e.event_id == event_id, e.node_id != node_id)
             .union(select(s.node_id).where(s.event_id == event_id, s.node_id != node_id)))
        return sorted(self.conn.execute(q).scalars())

    def senders(self, event_ids: Collection[str]) -> dict[str, set[str]]:
        """The nodes that sent an event or snapshot with each of `event_ids` (ids no one sent are left out)."""
        e, s = events.c, snapshots.c
        ids = sorted(set(event_ids))
        dialect = self.conn.dialect.name
        q = (select(e.event_id, e.node_id).where(in_values(e.event_id, ids, dialect))
             .union(select(s.event_id, s.node_id).where(in_values(s.event_id, ids, dialect))))
        out: dict[str, set[str]] = {}
        for event_id, node_id in self.conn.execute(q):
            out.setdefault(event_id, set()).add(node_id)
        return out

    def dead_letter(self, topic: str, payload: bytes, error: str, *, received_at: datetime | None = None) -> int:
        res = self.conn.execute(
            dead_letters.insert().values(topic=_clean_text(topic), payload=bytes(payload),
                                         error=_clean_text(error), received_at=received_at or utcnow())
        )
        key = res.inserted_primary_key
        assert key is not None  # an INSERT of one row
        return int(key[0])

    def record_status(self, st: Status) -> None:
        self._upsert_node(st.node_id, state=st.state, status_at=st.at or utcnow())

    def record_heartbeat(self, hb: Heartbeat) -> None:
        self._upsert_node(hb.node_id, heartbeat_at=hb.at, heartbeat=hb.model_dump(mode="json"))

    def _upsert_node(self, node_id: str, **values: Any) -> None:
        values["updated_at"] = utcnow()
        ins = self._insert(nodes).values(node_id=node_id, **values)
        self.conn.execute(ins.on_conflict_do_update(index_elements=[nodes.c.node_id], set_=values))

    def upsert_place(self, row: dict[str, Any]) -> None:
        ins = self._insert(places).values(**row)
        self.conn.execute(ins.on_conflict_do_update(
            index_elements=[places.c.id], set_={k: v for k, v in row.items() if k != "id"}))

    def replace_assignments(self, node_id: str, camera_id: str, rows: list[dict[str, Any]]) -> None:
        """The camera's whole assignment history becomes `rows` (valid_from, valid_to, place_id)."""
        ca = camera_assignments.c
        self.conn.execute(delete(camera_assignments).where(ca.node_id == node_id, ca.camera_id == camera_id))
        if rows:
            self.conn.execute(camera_assignments.insert(),
                              [{"node_id": node_id, "camera_id": camera_id, **r} for r in rows])

    def reassign_places(self) -> int:
        """Recompute every event's place from the assignments; returns rows changed."""
        e, ca = events.c, camera_assignments.c
        place = (
            select(ca.place_id)
            .where(ca.node_id == e.node_id, ca.camera_id == e.camera_id, ca.valid_from <= e.started_at,
                   or_(ca.valid_to.is_(None), ca.valid_to > e.started_at))
            .order_by(ca.valid_from.desc())
            .limit(1)
            .scalar_subquery()
        )
        # Only rows whose place differs, so re-importing an unchanged registry writes nothing.
        differs = or_(
            and_(e.place_id.is_(None), place.is_not(None)),
            and_(e.place_id.is_not(None), or_(place.is_(None), e.place_id != place)),
        )
        return self.conn.execute(update(events).where(differs).values(place_id=place)).rowcount


class Store:
    """The place log behind a SQLAlchemy URL (sqlite or postgresql)."""

    def __init__(self, url: str, *, echo: bool = False,
                 sqlite_busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS) -> None:
        self.url = normalise_url(url)
        u = make_url(self.url)
        self._insert: Callable[[Table], Any]
        if u.get_backend_name() == "sqlite":
            self._insert = sqlite.insert
            self.engine: Engine = create_engine(self.url, echo=echo)
            event.listen(self.engine, "connect", _sqlite_pragmas(sqlite_busy_timeout_ms))
        elif u.get_backend_name() == "postgresql":
            self._insert = postgresql.insert
            # pre_ping: after a database restart the pool hands out live connections again.
            # A connect timeout so an unreachable server fails the batch (retried)
            # instead of hanging the consumer; a URL's own connect_timeout wins.
            args = {} if "connect_timeout" in u.query else {"connect_timeout": 10}
            self.engine = create_engine(self.url, echo=echo, pool_pre_ping=True, connect_args=args)
        else:
            raise ValueError(f"database {u.get_backend_name()!r} is not supported: use sqlite or postgresql")

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def create_all(self) -> None:
        """Create missing tables, and missing columns of tables that have grown."""
        metadata.create_all(self.engine)
        self._add_missing_columns()
        self._rekey_by_node()
        self._add_missing_indexes()

    def _add_missing_columns(self) -> None:
        insp = inspect(self.engine)
        with self.engine.begin() as conn:
            for name, columns in _ADDED_COLUMNS.items():
                have = {c["name"] for c in insp.get_columns(name)}
                for col in columns:
                    if col not in have:
                        ddl = CreateColumn(metadata.tables[name].c[col]).compile(dialect=self.engine.dialect)
                        conn.execute(text(f"ALTER TABLE {name} ADD COLUMN {ddl}"))
                        log.info("place log: added column %s.%s", name, col)

    def index_names(self) -> set[str]:
        """Names of the indexes in the database (SQLAlchemy's reflection leaves out
        expression indexes on SQLite)."""
        q = ("SELECT name FROM sqlite_master WHERE type = 'index'" if self.dialect == "sqlite"
             else "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()")
        with self.engine.connect() as conn:
            return set(conn.execute(text(q)).scalars())

    def _add_missing_indexes(self) -> None:
        """Indexes added to existing tables after their first release (create_all makes
        indexes only with their table)."""
        have = self.index_names()
        for table in metadata.sorted_tables:
            for index in table.indexes:
                if index.name not in have:
                    with self.engine.begin() as conn:
                        index.create(conn)
                    log.info("place log: added index %s", index.name)

    def _rekey_by_node(self) -> None:
        """Give tables of an older place log their key (event_id, node_id)."""
        for table in _REKEYED:
            pk = inspect(self.engine).get_pk_constraint(table.name)
            if pk["constrained_columns"] == [c.name for c in table.primary_key.columns]:
                continue
            with self.engine.begin() as conn:
                if self.dialect == "postgresql":
                    conn.execute(text(f'ALTER TABLE {table.name} DROP CONSTRAINT "{pk["name"]}", '
                                      "ADD PRIMARY KEY (event_id, node_id)"))
                else:  # SQLite cannot change a key: copy into a new table
                    old = f"_{table.name}_old"
                    conn.execute(text(f"ALTER TABLE {table.name} RENAME TO {old}"))
                    for index in inspect(conn).get_indexes(old):
                        conn.execute(text(f'DROP INDEX "{index["name"]}"'))
                    table.create(conn)
                    cols = ", ".join(c.name for c in table.columns)
                    conn.execute(text(f"INSERT INTO {table.name} ({cols}) SELECT {cols} FROM {old}"))
                    conn.execute(text(f"DROP TABLE {old}"))
            log.info("place log: %s now keyed by (event_id, node_id)", table.name)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def begin(self) -> Iterator[StoreTx]:
        """One transaction: committed when the block ends, rolled back on an exception."""
        with self.engine.begin() as conn:
            yield StoreTx(conn, self._insert)

    # --- writes (each its own transaction) ----------------------------------------

    def insert_event(self, ev: BaseEvent, *, topic: str, received_at: datetime | None = None) -> bool:
        with self.begin() as tx:
            return tx.insert_event(ev, topic=topic, received_at=received_at)

    def insert_many(self, items: Iterable[BaseEvent | tuple[BaseEvent, str]]) -> int:
        """Store events, or (event, topic) pairs, in one transaction; returns how many
        rows changed. A bare event is filed under the topic its node publishes it on."""
        pairs = [item if isinstance(item, tuple) else (item, default_topic(item)) for item in items]
        with self.begin() as tx:
            return len(tx.insert_events(pairs))

    def dead_letter(self, topic: str, payload: bytes, error: str) -> int:
        with self.begin() as tx:
            return tx.dead_letter(topic, payload, error)

    def insert_snapshot(self, event_id: str, node_id: str, data: bytes, *, content_type: str = JPEG,
                        received_at: datetime | None = None) -> bool:
        with self.begin() as tx:
            return tx.insert_snapshot(event_id, node_id, data, content_type=content_type, received_at=received_at)

    # --- retention ---------------------------------------------------------------

    def purge(self, now: datetime, keep_snapshots: timedelta, keep_events: timedelta, *,
              cancel: Callable[[], bool] | None = None) -> PurgeResult:
        """Delete snapshots received more than `keep_snapshots` before `now`, events
        started more than `keep_events` before it (with their snapshots) and dead
        letters received more than `keep_events` before it. Records the run in
        `purge_log` and logs it. Deletes in chunks of PURGE_CHUNK rows, one short
        transaction each, so concurrent ingest is never held up for long; `cancel`
        is asked between chunks (a stopping consumer), and the run so far is recorded."""
        now = as_utc(now)
        snap_cut = now - keep_snapshots
        ev_cut = now - keep_events
        s, e, d = snapshots.c, events.c, dead_letters.c
        stop = cancel or (lambda: False)
        n_snap = self._delete_chunked(snapshots, s.event_id, s.received_at < snap_cut, stop)
        n_ev = 0
        while not stop():
            with self.begin() as tx:
                old = select(e.event_id, e.node_id).where(e.started_at < ev_cut).limit(PURGE_CHUNK)
                keys = [tuple(r) for r in tx.conn.execute(old)]
                if keys:
                    n_snap += tx.conn.execute(
                        delete(snapshots).where(tuple_(s.event_id, s.node_id).in_(keys))).rowcount
                    n_ev += tx.conn.execute(delete(events).where(tuple_(e.event_id, e.node_id).in_(keys))).rowcount
            if len(keys) < PURGE_CHUNK:
                break
        n_dead = self._delete_chunked(dead_letters, d.id, d.received_at < ev_cut, stop)
        with self.begin() as tx:
            tx.conn.execute(purge_log.insert().values(
                ran_at=now, snapshots_deleted=n_snap, events_deleted=n_ev, dead_letters_deleted=n_dead,
                snapshots_before=snap_cut, events_before=ev_cut))
        log.info("retention purge%s: deleted %d snapshots received before %s, %d events started before %s "
                 "and %d dead letters", " (interrupted)" if stop() else "", n_snap,
                 snap_cut.isoformat(timespec="seconds"), n_ev, ev_cut.isoformat(timespec="seconds"), n_dead)
        return PurgeResult(snapshots=n_snap, events=n_ev, dead_letters=n_dead)

    def _delete_chunked(self, table: Table, key: Column[Any], condition: Any, stop: Callable[[], bool]) -> int:
        deleted = 0
        while not stop():
            with self.begin() as tx:
                ids = tx.conn.execute(select(key).where(condition).limit(PURGE_CHUNK)).scalars().all()
                if ids:
                    deleted += tx.conn.execute(delete(table).where(key.in_(ids))).rowcount
            if len(ids) < PURGE_CHUNK:
                break
        return deleted

    # --- reads -------------------------------------------------------------------

    def query_events(
        self,
        place: str | Collection[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        type: str | None = None,
        node: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Newest first, with the place's name and `has_snapshot` (a snapshot of the
        event is stored). `place` is one place id or several (any of them); `since`/`until`
        bound started_at (since inclusive, until exclusive); naive times are taken as UTC."""
        e = events.c
        q = (
            select(e.event_id, e.seq, e.node_id, e.camera_id, e.place_id, places.c.name.label("place_name"),
                   e.type, e.subtype, e.zone, e.started_at, e.ended_at, e.confidence, e.region,
                   e.received_at, e.updated_at, e.snapshot, e.snapshot_withheld,
                   # Linked only if the snapshot came from the event's own node.
                   exists().where(snapshots.c.event_id == e.event_id, snapshots.c.node_id == e.node_id)
                   .label("has_snapshot"))
            .select_from(events.outerjoin(places, places.c.id == e.place_id))
            .order_by(e.started_at.desc(), e.event_id.desc())
            .limit(limit)
        )
        if isinstance(place, str):
            q = q.where(e.place_id == place)
        elif place is not None:
            q = q.where(e.place_id.in_(list(place)))
        if since is not None:
            q = q.where(e.started_at >= since)
        if until is not None:
            q = q.where(e.started_at < until)
        if type is not None:
            q = q.where(e.type == type)
        if node is not None:
            q = q.where(e.node_id == node)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def summary_by_place(self, since: datetime | None = None, until: datetime | None = None) -> list[dict[str, Any]]:
        """Event counts per (place, type); events of unassigned cameras have place_id None."""
        e = events.c
        q = (
            select(e.place_id, places.c.name.label("place_name"), e.type, func.count().label("count"))
            .select_from(events.outerjoin(places, places.c.id == e.place_id))
            .group_by(e.place_id, places.c.name, e.type)
            .order_by(places.c.name.is_(None), places.c.name, e.type)
        )
        if since is not None:
            q = q.where(e.started_at >= since)
        if until is not None:
            q = q.where(e.started_at < until)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def query_dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        d = dead_letters.c
        q = select(dead_letters).order_by(d.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def list_places(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(places).order_by(places.c.id))]

    def list_assignments(self) -> list[dict[str, Any]]:
        ca = camera_assignments.c
        q = select(camera_assignments).order_by(ca.node_id, ca.camera_id, ca.valid_from)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def list_nodes(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(nodes).order_by(nodes.c.node_id))]

    def count_events(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(events)).scalar_one()

    def count_snapshots(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(snapshots)).scalar_one()

    def get_snapshot(self, event_id: str, node_id: str | None = None) -> bytes | None:
        """The JPEG stored for `event_id` by `node_id`, or None. Without `node_id`: the
        one of the node whose event has this id (then the first received)."""
        s, e = snapshots.c, events.c
        q = select(s.bytes).where(s.event_id == event_id)
        if node_id is not None:
            q = q.where(s.node_id == node_id)
        own = exists().where(e.event_id == s.event_id, e.node_id == s.node_id)
        q = q.order_by(own.desc(), s.received_at, s.node_id).limit(1)
        with self.engine.connect() as conn:
            data = conn.execute(q).scalar()
        return None if data is None else bytes(data)

    def query_purge_log(self, limit: int = 100) -> list[dict[str, Any]]:
        """Retention runs, newest first."""
        q = select(purge_log).order_by(purge_log.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]


# --- incidents (vaktpost.broker.incidents), coverage (vaktpost.broker.coverage) -----------
# Their tables share `metadata`, so create_all() makes them wherever a Store is made.
# Imported last: the modules read `metadata` and the column types defined above.
# (coverage: node configs and online intervals, for the exposure hours.)
from vaktpost.broker import coverage as _coverage_tables  # noqa: E402, F401
from vaktpost.broker.incidents import tables as _incident_tables  # noqa: E402, F401
