"""When a zone is armed: weekly ranges in local wall-clock time, plus exception dates.

Wall-clock comparison makes DST changes come out right by construction: "18:00"
means 18:00 on the clock on the wall, whatever the UTC offset is that day.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from vaktpost.edge.config import DAYS, ArmedRange, ArmedSchedule

_END_OF_DAY = time.max


def _end(r: ArmedRange) -> time:
    return _END_OF_DAY if r.to == "24:00" else r.to


def _overnight(r: ArmedRange) -> bool:
    return r.to != "24:00" and r.to <= r.from_


def is_armed(schedule: ArmedSchedule, when: datetime, tz: str | ZoneInfo) -> bool:
    """True when `when` (timezone-aware) falls inside an armed range."""
    if when.tzinfo is None:
        raise ValueError("is_armed needs a timezone-aware datetime")
    zone = tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)
    local = when.astimezone(zone)
    today = local.date()
    if today in schedule.exceptions:
        return False
    if today in schedule.armed_dates:
        return True
    now = local.time()
    day = DAYS[local.weekday()]
    yesterday = DAYS[(local.weekday() - 1) % 7]
    for r in schedule.ranges:
        if day in r.days:
            if _overnight(r):
                if now >= r.from_:
                    return True
            elif r.from_ <= now < _end(r) or (r.to == "24:00" and now >= r.from_):
                return True
        # The tail of an overnight range that started yesterday.
        if (yesterday in r.days and _overnight(r) and now < r.to  # type: ignore[operator]
                and (today - timedelta(days=1)) not in schedule.exceptions):
            return True
    return False
