"""Priority marks of places: add one (append-only), the current mark per place, a place's history."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import func, select

from vaktpost.broker.lagesbild.tables import priority_marks
from vaktpost.broker.store import Store

NOTE_MAX = 2000


class MarkError(ValueError):
    """A mark cannot be added; the message says why in one line."""


@dataclass(frozen=True)
class Mark:
    id: int
    place_id: str
    priority: bool
    marked_on: date
    note: str
    actor: str
    created_at: datetime


def _mark(r: object) -> Mark:
    m = r._mapping  # type: ignore[attr-defined]
    return Mark(id=int(m["id"]), place_id=m["place_id"], priority=bool(m["priority"]), marked_on=m["marked_on"],
                note=m["note"], actor=m["actor"], created_at=m["created_at"])


def add_mark(store: Store, place_id: str, *, priority: bool, marked_on: date, note: str, actor: str,
             now: datetime) -> Mark:
    """Set (`priority`) or lift a place's priority from `marked_on`; a new history row."""
    note = note.strip()
    if len(note) > NOTE_MAX:
        raise MarkError(f"the note is longer than {NOTE_MAX} characters")
    row = {"place_id": place_id, "priority": priority, "marked_on": marked_on, "note": note, "actor": actor,
           "created_at": now}
    with store.engine.begin() as conn:
        new_id = conn.execute(priority_marks.insert().values(**row)).inserted_primary_key[0]  # type: ignore[index]
    return Mark(id=int(new_id), **row)  # type: ignore[arg-type]


def current_marks(store: Store, place_ids: Sequence[str]) -> dict[str, Mark]:
    """The newest mark of each place that has one (lifted marks included: `priority` False)."""
    if not place_ids:
        return {}
    pm = priority_marks.c
    newest = (select(func.max(pm.id)).where(pm.place_id.in_(list(place_ids))).group_by(pm.place_id)
              .scalar_subquery())
    with store.engine.connect() as conn:
        rows = conn.execute(select(priority_marks).where(pm.id.in_(newest))).all()
    return {m.place_id: m for m in map(_mark, rows)}


def history(store: Store, place_id: str) -> list[Mark]:
    """A place's marks, newest first."""
    pm = priority_marks.c
    with store.engine.connect() as conn:
        rows = conn.execute(select(priority_marks).where(pm.place_id == place_id).order_by(pm.id.desc())).all()
    return [_mark(r) for r in rows]
