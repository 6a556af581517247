"""How many camera-hours a place was watched: the denominator of every rate.

The seam: an `ExposureSource` wraps a function `(store, start, end, *, places) ->
[per-camera hours]` with `online_hours` and `armed_hours`, such as
`vaktpost.broker.exposure.exposure` (from the nodes' `config` messages, status and
heartbeats). Until one is given, `calendar_source()` counts calendar time: every hour a
camera was assigned to the place counts as online and armed, and the pages say that
coverage data is missing (`measured` is False).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import or_, select

from vaktpost.broker.store import Store, as_utc, camera_assignments


class CameraHours(Protocol):
    @property
    def online_hours(self) -> float: ...

    @property
    def armed_hours(self) -> float: ...


class HoursFn(Protocol):
    def __call__(self, store: Store, start: datetime, end: datetime, *,
                 places: Collection[str] | None = None) -> Sequence[CameraHours]: ...


@dataclass(frozen=True)
class Hours:
    online: float
    armed: float

    def of(self, basis: str) -> float:
        return self.armed if basis == "armed" else self.online


@dataclass(frozen=True)
class ExposureSource:
    fn: HoursFn
    measured: bool  # False: calendar time stands in for coverage data

    def hours(self, store: Store, start: datetime, end: datetime, places: Collection[str]) -> Hours:
        """Camera-hours of `places` in [start, end), summed over their cameras."""
        if end <= start or not places:
            return Hours(0.0, 0.0)
        # In UTC: subtracting two local times of one zone would ignore a change of summer time.
        rows = self.fn(store, as_utc(start), as_utc(end), places=places)
        return Hours(sum(r.online_hours for r in rows), sum(r.armed_hours for r in rows))


@dataclass(frozen=True)
class CalendarHours:
    node_id: str
    camera_id: str
    place_id: str
    online_hours: float
    armed_hours: float


def calendar_hours(store: Store, start: datetime, end: datetime, *,
                   places: Collection[str] | None = None) -> list[CalendarHours]:
    """Per camera assignment, the hours of [start, end) it was assigned to one of `places`."""
    start, end = as_utc(start), as_utc(end)
    ca = camera_assignments.c
    q = select(camera_assignments).where(ca.valid_from < end, or_(ca.valid_to.is_(None), ca.valid_to > start))
    if places is not None:
        q = q.where(ca.place_id.in_(list(places)))
    out = []
    with store.engine.connect() as conn:
        for r in conn.execute(q).mappings():
            lo, hi = max(start, r["valid_from"]), min(end, r["valid_to"] or end)
            hours = max((hi - lo).total_seconds(), 0.0) / 3600
            out.append(CalendarHours(r["node_id"], r["camera_id"], r["place_id"], hours, hours))
    return out


def calendar_source() -> ExposureSource:
    return ExposureSource(calendar_hours, measured=False)
