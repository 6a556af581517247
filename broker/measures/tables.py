"""The measures' tables, on their own MetaData (`create_tables` makes them).

- `measures`: one row per measure (kind, local start and end dates, owner, cost, note).
- `measure_places`: the places a measure was taken at (one or more).
"""

from __future__ import annotations

from sqlalchemy import Column, Date, ForeignKey, Integer, MetaData, String, Table, Text
from sqlalchemy.engine import Engine

from vaktpost.broker.store import UtcDateTime
from vaktpost.broker.store import places as places_table

metadata = MetaData()

measures = Table(
    "measures",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),  # service.MeasureKind
    Column("start_date", Date, nullable=False),  # local date (inbox.timezone) it took effect
    Column("end_date", Date),  # last local day it was in force; null: still
    Column("owner", String(200)),  # who carries it out (a unit, a landlord, a person)
    Column("cost", Integer),  # whole kronor
    Column("note", Text),
    Column("created_by", String(200), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)

measure_places = Table(
    "measure_places",
    metadata,
    Column("measure_id", Integer, ForeignKey(measures.c.id, ondelete="CASCADE"), primary_key=True),
    Column("place_id", String(63), ForeignKey(places_table.c.id), primary_key=True, index=True),
)


def create_tables(engine: Engine) -> None:
    metadata.create_all(engine)
