"""Armed schedules: when a zone is armed. One definition for the node config, the
node's `config` message and the central exposure hours (docs/config.md, "Armed
schedules"; docs/mqtt.md, "Config").

A schedule is weekly ranges in local wall-clock time ("18:00" means 18:00 on the
clock on the wall, whatever the UTC offset that day, so DST comes out right by
construction), plus dates:

- `exceptions`: never armed that day, not even the tail of the previous day's range;
- `armed_dates`: armed all day;
- `holidays`: on these dates the ranges that list the day `hol` start, instead of
  the weekday's (public holidays and school breaks, resolved by the node).

A range belongs to the day it starts on; one whose `to` is not after its `from`
runs overnight into the next day. A leaf module: pure Python and pydantic.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HOLIDAY = "hol"  # a day name: the ranges of holidays (ArmedSchedule.holidays)
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun", "hol"]
PresetName = Literal["school_facade"]
MAX_RANGES = 64
MAX_DATES = 1000  # per list of dates; a node sends about 13 months of them

Interval = tuple[datetime, datetime]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ArmedRange(_Strict):
    days: list[Day] = Field(min_length=1, max_length=8,
                            description="Days on which the range starts (mon … sun; hol: holidays)")
    from_: time = Field(alias="from", description="HH:MM local time")
    to: time | Literal["24:00"] = Field(description="HH:MM; earlier than from means overnight; 24:00 is midnight")

    @field_validator("from_", "to", mode="before")
    @classmethod
    def _parse_time(cls, v: Any) -> Any:
        if isinstance(v, int) and not isinstance(v, bool):  # YAML 1.1 reads 18:00 unquoted as sexagesimal 1080
            v = f"{v // 60:02d}:{v % 60:02d}"
        return v


Dates = Annotated[list[date], Field(max_length=MAX_DATES)]


class ArmedSchedule(_Strict):
    preset: PresetName | None = Field(
        None, description="A named schedule (school_facade); its ranges are filled in by the node")
    ranges: list[ArmedRange] = Field(default_factory=list, max_length=MAX_RANGES)
    exceptions: Dates = Field(default_factory=list, description="Dates (local) never armed, e.g. school events")
    armed_dates: Dates = Field(default_factory=list, description="Dates (local) armed all day")
    holidays: Dates = Field(
        default_factory=list,
        description="Dates (local) on which the ranges listing `hol` apply instead of the weekday's: "
        "public holidays and school breaks (resolved by the node; do not write them by hand)")

    @property
    def uses_holidays(self) -> bool:
        return any(HOLIDAY in r.days for r in self.ranges)


def _range(days: list[str], start: str, end: str) -> ArmedRange:
    return ArmedRange.model_validate({"days": days, "from": start, "to": end})


# The supervisory authority's practice for school facades: Mon–Fri 20:00–06:00, and
# weekends and public holidays 17:00–07:00 (each range runs into the next morning).
PRESETS: dict[str, list[ArmedRange]] = {
    "school_facade": [_range(["mon", "tue", "wed", "thu", "fri"], "20:00", "06:00"),
                      _range(["sat", "sun", HOLIDAY], "17:00", "07:00")],
}


# -- evaluation ----------------------------------------------------------------------

def _zone(tz: str | ZoneInfo) -> ZoneInfo:
    return tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)


def _midnight(d: date) -> datetime:
    return datetime.combine(d, time())


def _range_span(r: ArmedRange, d: date) -> Interval:
    start = datetime.combine(d, r.from_)
    if r.to == "24:00":
        return start, _midnight(d + timedelta(days=1))
    if r.to <= r.from_:  # overnight
        return start, datetime.combine(d + timedelta(days=1), r.to)
    return start, datetime.combine(d, r.to)


def merge(intervals: list[Interval]) -> list[Interval]:
    """Sorted, overlapping and touching intervals joined."""
    out: list[Interval] = []
    for a, b in sorted(i for i in intervals if i[0] < i[1]):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def intersect(xs: list[Interval], ys: list[Interval]) -> list[Interval]:
    """The intersection of two lists of intervals (each merged first)."""
    xs, ys = merge(xs), merge(ys)
    out: list[Interval] = []
    i = j = 0
    while i < len(xs) and j < len(ys):
        a, b = max(xs[i][0], ys[j][0]), min(xs[i][1], ys[j][1])
        if a < b:
            out.append((a, b))
        if xs[i][1] < ys[j][1]:
            i += 1
        else:
            j += 1
    return out


def subtract(xs: list[Interval], ys: list[Interval]) -> list[Interval]:
    """`xs` less `ys`."""
    out: list[Interval] = []
    ys = merge(ys)
    for a, b in merge(xs):
        for c, d in ys:
            if d <= a or c >= b:
                continue
            if c > a:
                out.append((a, c))
            a = max(a, d)
            if a >= b:
                break
        if a < b:
            out.append((a, b))
    return out


def local_intervals(schedule: ArmedSchedule, first: date, last: date) -> list[Interval]:
    """Armed intervals in naive local wall-clock time, of the ranges that start on the
    dates `first` … `last` and of those dates' armed dates, less exception dates."""
    exceptions = set(schedule.exceptions)
    armed_dates = set(schedule.armed_dates)
    holidays = set(schedule.holidays) if schedule.uses_holidays else set()
    spans: list[Interval] = []
    d = first
    while d <= last:
        if d not in exceptions:
            if d in armed_dates:
                spans.append((_midnight(d), _midnight(d + timedelta(days=1))))
            kind = HOLIDAY if d in holidays else DAYS[d.weekday()]
            spans += [_range_span(r, d) for r in schedule.ranges if kind in r.days]
        d += timedelta(days=1)
    # A tail that runs into an exception date is cut there too.
    cut = [(_midnight(e), _midnight(e + timedelta(days=1))) for e in exceptions
           if first <= e <= last + timedelta(days=1)]
    return subtract(spans, cut)


def is_armed(schedule: ArmedSchedule, when: datetime, tz: str | ZoneInfo) -> bool:
    """True when `when` (timezone-aware) falls inside an armed range."""
    if when.tzinfo is None:
        raise ValueError("is_armed needs a timezone-aware datetime")
    local = when.astimezone(_zone(tz)).replace(tzinfo=None)
    today = local.date()
    return any(a <= local < b for a, b in local_intervals(schedule, today - timedelta(days=1), today))


def _offset(u: datetime, zone: ZoneInfo) -> timedelta:
    off = u.astimezone(zone).utcoffset()
    assert off is not None  # a ZoneInfo always knows its offset
    return off


def _offset_pieces(start: datetime, end: datetime, zone: ZoneInfo) -> list[tuple[datetime, datetime, timedelta]]:
    """[start, end) cut where the zone's UTC offset changes: (from, to, offset) pieces.
    Steps a day at a time and bisects to the second where the offset differs (a zone
    changes its offset at most once a day)."""
    pieces: list[tuple[datetime, datetime, timedelta]] = []
    a, off, t = start, _offset(start, zone), start
    while t < end:
        nxt = min(t + timedelta(days=1), end)
        if _offset(nxt, zone) == off:
            t = nxt
            continue
        lo, hi = math.floor(t.timestamp()), math.ceil(nxt.timestamp())  # offset(lo) == off != offset(hi)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if _offset(datetime.fromtimestamp(mid, UTC), zone) == off else (lo, mid)
        change = max(datetime.fromtimestamp(hi, UTC), t)
        pieces.append((a, change, off))
        a, off, t = change, _offset(change, zone), change
    pieces.append((a, end, off))
    return [p for p in pieces if p[0] < p[1]]


def armed_intervals(schedule: ArmedSchedule, start: datetime, end: datetime,
                    tz: str | ZoneInfo) -> list[Interval]:
    """The armed time within [start, end) as sorted, disjoint UTC intervals: exactly
    the instants at which `is_armed` is true (a repeated hour of a DST change counts
    both times, a skipped one not at all)."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("armed_intervals needs timezone-aware datetimes")
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if end <= start:
        return []
    zone = _zone(tz)
    first = start.astimezone(zone).date() - timedelta(days=1)
    last = end.astimezone(zone).date()
    local = local_intervals(schedule, first, last)
    out: list[Interval] = []
    for p0, p1, off in _offset_pieces(start, end, zone):
        # Within a piece local time is UTC + off, so a wall-clock interval maps by shifting.
        for a, b in local:
            ua, ub = a.replace(tzinfo=UTC) - off, b.replace(tzinfo=UTC) - off
            lo, hi = max(ua, p0), min(ub, p1)
            if lo < hi:
                out.append((lo, hi))
    return merge(out)


def hours(intervals: list[Interval]) -> float:
    """Total length of disjoint intervals, in hours."""
    return sum((b - a).total_seconds() for a, b in intervals) / 3600.0
