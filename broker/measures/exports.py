"""CSV and XLSX exports of incidents, events and a summary per place and type, for one
period and a set of districts (the caller's scope: `None` means every place, and also
incidents and events of no place, which only admins get). Times are local
(inbox.timezone); column titles and type names are in the reader's language.

Text cells that a spreadsheet would take for a formula (=, +, -, @ first) get a leading
apostrophe: zone names and notes come from nodes and people."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from sqlalchemy import Select, exists, func, select, true

from vaktpost.broker.incidents.labels import type_labels
from vaktpost.broker.incidents.tables import incident_places, incidents
from vaktpost.broker.store import Store, events, places

Kind = Literal["incidents", "events", "summary"]
KINDS: tuple[Kind, ...] = ("incidents", "events", "summary")
MAX_ROWS = 200_000  # an export is for a meeting or a spreadsheet, not a backup
Cell = str | int | float | datetime | None
Gettext = Callable[[str], str]


@dataclass
class Export:
    kind: Kind
    headers: list[str]
    rows: list[list[Cell]]
    truncated: bool  # more than MAX_ROWS matched


def _in_scope_incident(districts: Sequence[str] | None) -> Any:
    ip = incident_places.c
    if districts is None:
        return true()
    return exists().where(ip.incident_id == incidents.c.id, ip.place_id == places.c.id,
                          places.c.district.in_(list(districts)))


def _in_districts(column: Any, districts: Sequence[str] | None) -> Any:
    """`column` (a place id) is a place of `districts`; anything at all for None."""
    if districts is None:
        return true()
    return column.in_(select(places.c.id).where(places.c.district.in_(list(districts))))


def _event_places(districts: Sequence[str] | None) -> Any:
    return _in_districts(events.c.place_id, districts)


def _local(t: datetime | None, zone: ZoneInfo) -> datetime | None:
    # Spreadsheets know no zones: the local wall time, without its zone.
    return None if t is None else t.astimezone(zone).replace(tzinfo=None)


def _fetch(store: Store, q: Select[Any]) -> tuple[list[Any], bool]:
    with store.engine.connect() as conn:
        rows = conn.execute(q.limit(MAX_ROWS + 1)).mappings().all()
    return list(rows[:MAX_ROWS]), len(rows) > MAX_ROWS


def export(store: Store, kind: Kind, districts: Sequence[str] | None, start: datetime, end: datetime,
           zone: ZoneInfo, gettext: Gettext) -> Export:
    """The rows of `kind` whose time (an incident's opening, an event's start) is in [start, end)."""
    types = {t.value: label for t, label in type_labels(gettext).items()}
    if kind == "incidents":
        return _incidents(store, districts, start, end, zone, gettext, types)
    if kind == "events":
        return _events(store, districts, start, end, zone, gettext, types)
    return _summary(store, districts, start, end, gettext, types)


def _incidents(store: Store, districts: Sequence[str] | None, start: datetime, end: datetime, zone: ZoneInfo,
               gettext: Gettext, types: dict[str, str]) -> Export:
    i, ip, p = incidents.c, incident_places.c, places.c
    q = (select(incidents).where(i.opened_at >= start, i.opened_at < end, _in_scope_incident(districts))
         .order_by(i.opened_at, i.id))
    rows, truncated = _fetch(store, q)
    where: dict[int, list[tuple[str, str | None]]] = {}
    with store.engine.connect() as conn:
        ids = [r["id"] for r in rows]
        for chunk in (ids[k:k + 1000] for k in range(0, len(ids), 1000)):
            for r in conn.execute(select(ip.incident_id, p.name, p.district).join_from(
                    incident_places, places, p.id == ip.place_id).where(ip.incident_id.in_(chunk)).order_by(p.name)):
                where.setdefault(r.incident_id, []).append((r.name, r.district))
    headers = [gettext("Incident"), gettext("Type"), gettext("State"), gettext("Opened"), gettext("Ended"),
               gettext("Resolved"), gettext("Outcome"), gettext("Places"), gettext("Districts"), gettext("Node"),
               gettext("Camera"), gettext("Zone"), gettext("Events"), gettext("Owner")]
    out: list[list[Cell]] = []
    for r in rows:
        at = where.get(r["id"], [])
        out.append([r["id"], types.get(r["type"], r["type"]), gettext(r["state"]), _local(r["opened_at"], zone),
                    _local(r["ended_at"], zone), _local(r["resolved_at"], zone), r["outcome"],
                    ", ".join(n for n, _ in at), ", ".join(sorted({d for _, d in at if d})), r["node_id"],
                    r["camera_id"], r["zone"], r["event_count"], r["owner"]])
    return Export("incidents", headers, out, truncated)


def _events(store: Store, districts: Sequence[str] | None, start: datetime, end: datetime, zone: ZoneInfo,
            gettext: Gettext, types: dict[str, str]) -> Export:
    e, p = events.c, places.c
    q = (select(e.event_id, e.node_id, e.camera_id, p.name, p.district, e.type, e.subtype, e.zone, e.started_at,
                e.ended_at, e.confidence)
         .select_from(events.outerjoin(places, p.id == e.place_id))
         .where(e.started_at >= start, e.started_at < end, _event_places(districts))
         .order_by(e.started_at, e.event_id))
    rows, truncated = _fetch(store, q)
    headers = [gettext("Event"), gettext("Node"), gettext("Camera"), gettext("Place"), gettext("District"),
               gettext("Type"), gettext("Subtype"), gettext("Zone"), gettext("Started"), gettext("Ended"),
               gettext("Confidence")]
    out: list[list[Cell]] = [
        [r["event_id"], r["node_id"], r["camera_id"], r["name"], r["district"], types.get(r["type"], r["type"]),
         r["subtype"], r["zone"], _local(r["started_at"], zone), _local(r["ended_at"], zone),
         round(float(r["confidence"]), 3)] for r in rows]
    return Export("events", headers, out, truncated)


def _summary(store: Store, districts: Sequence[str] | None, start: datetime, end: datetime, gettext: Gettext,
             types: dict[str, str]) -> Export:
    """Per place and type: incidents opened and events started in the period."""
    e, i, ip, p = events.c, incidents.c, incident_places.c, places.c
    ev = (select(e.place_id, e.type, func.count().label("n")).where(e.started_at >= start, e.started_at < end,
                                                                    _event_places(districts))
          .group_by(e.place_id, e.type))
    inc = (select(ip.place_id, i.type, func.count().label("n"))
           .join_from(incidents, incident_places, ip.incident_id == i.id)
           .where(i.opened_at >= start, i.opened_at < end, _in_districts(ip.place_id, districts))
           .group_by(ip.place_id, i.type))
    with store.engine.connect() as conn:
        n_events = {(r.place_id, r.type): int(r.n) for r in conn.execute(ev)}
        n_incidents = {(r.place_id, r.type): int(r.n) for r in conn.execute(inc)}
        names = {r.id: (r.name, r.district) for r in conn.execute(select(p.id, p.name, p.district))}
    keys = sorted(set(n_events) | set(n_incidents),
                  key=lambda k: (names.get(k[0], ("~", None))[0] if k[0] else "~", k[1]))
    headers = [gettext("Place"), gettext("District"), gettext("Type"), gettext("Incidents"), gettext("Events")]
    out: list[list[Cell]] = []
    for place_id, type_ in keys:
        name, district = names.get(place_id, (None, None)) if place_id else (gettext("(no place)"), None)
        out.append([name, district, types.get(type_, type_), n_incidents.get((place_id, type_), 0),
                    n_events.get((place_id, type_), 0)])
    return Export("summary", headers, out, False)


def _safe(value: Cell) -> Cell:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _text(value: Cell) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def to_csv(table: Export) -> str:
    """UTF-8 text with a BOM (so Excel reads å, ä, ö), comma-separated."""
    buf = io.StringIO()
    buf.write("\ufeff")
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(table.headers)
    for row in table.rows:
        w.writerow([_text(_safe(v)) for v in row])
    return buf.getvalue()


def to_xlsx(table: Export, sheet_title: str) -> bytes:
    wb = Workbook(write_only=True)
    ws = wb.create_sheet(sheet_title[:31])
    ws.append(table.headers)
    for row in _rows(table):
        ws.append(row)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _rows(table: Export) -> Iterator[list[Cell]]:
    for row in table.rows:
        yield [_safe(v) for v in row]
