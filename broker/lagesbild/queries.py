"""The numbers of the situational picture, aggregated in SQL (SQLAlchemy Core over
`incidents`, `incident_places`, `camera_assignments`), the same on SQLite and PostgreSQL.

Counts are grouped in SQL by UTC hour (`epoch_hour`: hours since 1970, one
expression per dialect) and incident type; Python then files each hour into its
local week and hour of the week. An hour's rows are few (at most hours × types), so
this stays cheap with millions of events, and local weeks and weekdays come out
right across daylight saving (the zone's offsets are whole hours, as
Europe/Stockholm's are). An incident is counted once however many of the places
asked about it belongs to.

Rates need exposure (camera-hours online and armed), which `vaktpost.broker.exposure`
computes from the nodes' `config` messages and heartbeats. It comes in as an
`ExposureSource` (the inbox sets `exposure.exposure`); with `no_exposure` pages show
raw counts only.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import BigInteger, exists, func, or_, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from vaktpost.broker.exposure import CameraExposure
from vaktpost.broker.incidents.kinds import IncidentType
from vaktpost.broker.incidents.tables import incident_places, incidents
from vaktpost.broker.store import Store, camera_assignments

PEOPLE = (IncidentType.intrusion.value, IncidentType.loitering.value)  # per armed camera-hour
DAMAGE = (IncidentType.tamper.value, IncidentType.scene_change.value)  # per online camera-hour
CHART_TYPES = (*PEOPLE, *DAMAGE)  # the types the charts draw; the breakdown lists all
PER = 1000.0  # rates are per 1,000 camera-hours
DEFAULT_MONTHS = 12


class epoch_hour(FunctionElement[int]):  # lower case: an SQL function's name
    """Whole hours since 1970-01-01 UTC of a timestamp column."""

    type = BigInteger()
    name = "epoch_hour"
    inherit_cache = True


@compiles(epoch_hour, "postgresql")
def _epoch_hour_pg(element: epoch_hour, compiler: SQLCompiler, **kw: Any) -> str:
    # extract(epoch) of a timestamptz does not depend on the session's time zone.
    return f"CAST(floor(extract(epoch FROM {compiler.process(element.clauses, **kw)}) / 3600) AS BIGINT)"


@compiles(epoch_hour, "sqlite")
def _epoch_hour_sqlite(element: epoch_hour, compiler: SQLCompiler, **kw: Any) -> str:
    # Stored as naive UTC text; strftime('%s') reads it as UTC.
    return f"(CAST(strftime('%s', {compiler.process(element.clauses, **kw)}) AS INTEGER) / 3600)"


# --- the period --------------------------------------------------------------------


def _months_back(d: date, months: int) -> date:
    y, m = divmod(d.year * 12 + d.month - 1 - months, 12)
    m += 1
    for day in (d.day, 30, 29, 28):  # the same day, or the month's last
        try:
            return date(y, m, day)
        except ValueError:
            continue
    raise AssertionError("unreachable")


def monday(d: date) -> date:
    return d - timedelta(days=d.weekday())


@dataclass(frozen=True)
class Period:
    """Local calendar days `first`..`last`, both included."""

    first: date
    last: date

    @classmethod
    def ending(cls, last: date, months: int = DEFAULT_MONTHS) -> Period:
        return cls(_months_back(last, months) + timedelta(days=1), last)

    def bounds(self, zone: ZoneInfo) -> tuple[datetime, datetime]:
        """[start, end) in UTC: local midnight of `first` to local midnight after `last`."""
        start = datetime.combine(self.first, time(), zone).astimezone(UTC)
        end = datetime.combine(self.last + timedelta(days=1), time(), zone).astimezone(UTC)
        return start, end

    def year_earlier(self) -> Period:
        return Period(_months_back(self.first, 12), _months_back(self.last, 12))

    def halves(self) -> tuple[Period, Period]:
        """The earlier and later half (for trends); the later one gets the odd day."""
        days = (self.last - self.first).days + 1
        split = self.first + timedelta(days=days // 2)
        return Period(self.first, split - timedelta(days=1)), Period(split, self.last)

    def weeks(self) -> list[date]:
        """The Mondays of the weeks the period touches."""
        first, last = monday(self.first), monday(self.last)
        return [first + timedelta(weeks=k) for k in range((last - first).days // 7 + 1)]

    def week_bounds(self, week: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
        """The part of `week` (a Monday) inside the period, in UTC."""
        return Period(max(week, self.first), min(week + timedelta(days=6), self.last)).bounds(zone)


# --- exposure ----------------------------------------------------------------------


class ExposureSource(Protocol):
    def __call__(self, store: Store, start: datetime, end: datetime, *,
                 places: list[str] | None = None) -> Sequence[CameraExposure]: ...


def no_exposure(store: Store, start: datetime, end: datetime, *,
                places: list[str] | None = None) -> Sequence[CameraExposure]:
    """No coverage data (tests of counts alone): counts only."""
    return []


@dataclass(frozen=True)
class Hours:
    online: float = 0.0
    armed: float = 0.0

    def __add__(self, other: Hours) -> Hours:
        return Hours(self.online + other.online, self.armed + other.armed)


def hours_by_place(rows: Iterable[CameraExposure]) -> dict[str, Hours]:
    """Camera-hours per place. A camera reports a row per zone: it counts once, online
    for its online hours and armed for its most-armed zone's hours (a camera is armed
    while a zone of it is; the zones' schedules mostly coincide)."""
    per_camera: dict[tuple[str, str, str], Hours] = {}
    for r in rows:
        if r.place_id is None:
            continue
        key = (r.place_id, r.node_id, r.camera_id)
        seen = per_camera.get(key, Hours())
        per_camera[key] = Hours(max(seen.online, r.online_hours), max(seen.armed, r.armed_hours))
    out: dict[str, Hours] = defaultdict(Hours)
    for (place_id, _, _), h in per_camera.items():
        out[place_id] += h
    return dict(out)


def total_hours(rows: Iterable[CameraExposure]) -> Hours:
    return sum(hours_by_place(rows).values(), Hours())


def per_thousand(count: int, hours: float) -> float | None:
    """Incidents per 1,000 camera-hours; None without hours (nothing watched: no rate)."""
    return count * PER / hours if hours > 0 else None


def rate(type_: str, count: int, hours: Hours) -> float | None:
    return per_thousand(count, hours.armed if type_ in PEOPLE else hours.online)


# --- counts ------------------------------------------------------------------------


def _in_places(place_ids: Sequence[str]) -> Any:
    ip = incident_places.c
    return exists().where(ip.incident_id == incidents.c.id, ip.place_id.in_(list(place_ids)))


@dataclass
class Counts:
    """Incidents of some places in a period, by type: per week, per hour of the week, in all."""

    period: Period
    weeks: list[date]
    weekly: dict[str, list[int]]  # type -> a count per week of `weeks`
    heat: list[list[int]]  # [weekday 0=Monday][local hour]: CHART_TYPES only
    totals: dict[str, int] = field(default_factory=dict)  # every type

    def total(self, types: Iterable[str] = CHART_TYPES) -> int:
        return sum(self.totals.get(t, 0) for t in types)


def counts(store: Store, place_ids: Sequence[str], period: Period, zone: ZoneInfo) -> Counts:
    start, end = period.bounds(zone)
    weeks = period.weeks()
    index = {w: k for k, w in enumerate(weeks)}
    out = Counts(period, weeks, {t: [0] * len(weeks) for t in CHART_TYPES}, [[0] * 24 for _ in range(7)],
                 {t.value: 0 for t in IncidentType})
    if not place_ids:
        return out
    i = incidents.c
    hour = epoch_hour(i.opened_at)
    q = (select(hour.label("h"), i.type, func.count().label("n"))
         .where(i.opened_at >= start, i.opened_at < end, _in_places(place_ids))
         .group_by(hour, i.type))
    with store.engine.connect() as conn:
        rows = conn.execute(q).all()
    for h, type_, n in rows:
        local = datetime.fromtimestamp(int(h) * 3600, UTC).astimezone(zone)
        out.totals[type_] = out.totals.get(type_, 0) + n
        if type_ in out.weekly:
            out.weekly[type_][index[monday(local.date())]] += n
            out.heat[local.weekday()][local.hour] += n
    return out


def counts_by_place(store: Store, place_ids: Sequence[str], period: Period, zone: ZoneInfo
                    ) -> dict[str, dict[str, int]]:
    """place -> type -> incidents (an incident of two places counts at each)."""
    if not place_ids:
        return {}
    start, end = period.bounds(zone)
    i, ip = incidents.c, incident_places.c
    q = (select(ip.place_id, i.type, func.count().label("n"))
         .select_from(incidents.join(incident_places, ip.incident_id == i.id))
         .where(i.opened_at >= start, i.opened_at < end, ip.place_id.in_(list(place_ids)))
         .group_by(ip.place_id, i.type))
    out: dict[str, dict[str, int]] = defaultdict(dict)
    with store.engine.connect() as conn:
        for place_id, type_, n in conn.execute(q):
            out[place_id][type_] = n
    return dict(out)


# --- tamper and offline time per camera ---------------------------------------------


@dataclass(frozen=True)
class CameraDowntime:
    place_id: str
    node_id: str
    camera_id: str
    tamper_hours: float
    offline_hours: float


def _union_hours(spans: Iterable[tuple[datetime, datetime]]) -> float:
    """Hours covered by the spans (overlaps counted once)."""
    total, reach = timedelta(), None
    for a, b in sorted(spans):
        if reach is not None and a < reach:
            a = reach
        if b > a:
            total += b - a
            reach = b if reach is None else max(reach, b)
    return total.total_seconds() / 3600


def downtime(store: Store, place_ids: Sequence[str], period: Period, zone: ZoneInfo, now: datetime
             ) -> list[CameraDowntime]:
    """Per camera of the places (assigned at some time in the period): hours under a
    tamper incident of that camera, and hours its node was offline (a node_offline
    incident), clipped to the period; an incident that still lasts, until `now`."""
    if not place_ids:
        return []
    start, end = period.bounds(zone)
    stop = min(end, now)
    i, ip, ca = incidents.c, incident_places.c, camera_assignments.c
    q = (select(ip.place_id, i.type, i.node_id, i.camera_id, i.opened_at, i.ended_at)
         .select_from(incidents.join(incident_places, ip.incident_id == i.id))
         .where(i.type.in_([IncidentType.tamper.value, IncidentType.node_offline.value]),
                ip.place_id.in_(list(place_ids)), i.opened_at < stop,
                or_(i.ended_at.is_(None), i.ended_at > start)))
    cams = (select(ca.place_id, ca.node_id, ca.camera_id).distinct()
            .where(ca.place_id.in_(list(place_ids)), ca.valid_from < end,
                   or_(ca.valid_to.is_(None), ca.valid_to > start)))
    tamper: dict[tuple[str, str, str], list[tuple[datetime, datetime]]] = defaultdict(list)
    offline: dict[tuple[str, str], list[tuple[datetime, datetime]]] = defaultdict(list)
    with store.engine.connect() as conn:
        cameras = {(p, n, c) for p, n, c in conn.execute(cams)}
        for place_id, type_, node, camera, opened, ended in conn.execute(q):
            span = (max(opened, start), min(ended or stop, stop))
            if type_ == IncidentType.tamper.value and camera:
                tamper[(place_id, node, camera)].append(span)
                cameras.add((place_id, node, camera))
            else:
                offline[(place_id, node)].append(span)
    return [CameraDowntime(p, n, c, _union_hours(tamper.get((p, n, c), [])), _union_hours(offline.get((p, n), [])))
            for p, n, c in sorted(cameras)]

