"""The priority marks' table, on the place log's `metadata` (so `Store.create_all`
creates it once this module is imported; the inbox imports it).

`place_priority_marks` is append-only: setting or lifting a place's priority adds a
row, and the newest row of a place (highest id) is its current mark. The rows are
its history.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Date, ForeignKey, Integer, String, Table, Text

from vaktpost.broker.store import UtcDateTime, metadata

_BigId = BigInteger().with_variant(Integer(), "sqlite")  # SQLite only autoincrements INTEGER

priority_marks = Table(
    "place_priority_marks",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("place_id", String(63), ForeignKey("places.id"), nullable=False, index=True),
    Column("priority", Boolean, nullable=False),  # false: the priority was lifted
    Column("marked_on", Date, nullable=False),  # the date the person gave (a decision's date)
    Column("note", Text, nullable=False, server_default=""),
    Column("actor", String(200), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)
