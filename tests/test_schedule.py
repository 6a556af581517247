from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from vaktpost.edge.analysis.schedule import is_armed
from vaktpost.edge.config import ArmedSchedule

STHLM = ZoneInfo("Europe/Stockholm")
WEEKNIGHTS = {"days": ["mon", "tue", "wed", "thu", "fri"], "from": "18:00", "to": "07:00"}
WEEKEND = {"days": ["sat", "sun"], "from": "00:00", "to": "24:00"}


def sched(*ranges, **kw) -> ArmedSchedule:
    return ArmedSchedule.model_validate({"ranges": list(ranges), **kw})


def local(y, m, d, hh, mm=0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=STHLM)


@pytest.mark.parametrize("when, armed", [
    (local(2026, 11, 23, 17, 59), False),  # Monday before
    (local(2026, 11, 23, 18, 0), True),    # Monday start
    (local(2026, 11, 24, 6, 59), True),    # Tuesday early: tail of Monday's range
    (local(2026, 11, 24, 7, 0), False),    # Tuesday 07:00: ended
    (local(2026, 11, 24, 12, 0), False),   # school hours
    (local(2026, 11, 28, 12, 0), True),    # Saturday all day
    (local(2026, 11, 29, 23, 59), True),   # Sunday late
    (local(2026, 11, 30, 3, 0), False),    # Monday 03:00: Sunday's range ended at 24:00, Monday starts 18:00
    (local(2026, 11, 28, 3, 0), True),     # Saturday 03:00: Friday's overnight tail and Saturday
])
def test_weekly_overnight_ranges(when, armed):
    assert is_armed(sched(WEEKNIGHTS, WEEKEND), when, "Europe/Stockholm") is armed


def test_friday_overnight_tail_reaches_into_saturday_without_weekend_range():
    s = sched(WEEKNIGHTS)
    assert is_armed(s, local(2026, 11, 28, 6, 30), STHLM)  # Friday 18:00 → Saturday 07:00
    assert not is_armed(s, local(2026, 11, 28, 7, 30), STHLM)
    assert not is_armed(s, local(2026, 11, 30, 6, 30), STHLM)  # Sunday did not start a range


def test_utc_instants_are_judged_in_local_wall_clock():
    s = sched({"days": ["mon"], "from": "18:00", "to": "19:00"})
    # 2026-11-23 17:30 UTC is 18:30 in Stockholm (UTC+1 in winter).
    assert is_armed(s, datetime(2026, 11, 23, 17, 30, tzinfo=UTC), STHLM)
    assert not is_armed(s, datetime(2026, 11, 23, 18, 30, tzinfo=UTC), STHLM)


def test_dst_spring_forward_keeps_wall_clock_times():
    # Sunday 2026-03-29: clocks go 02:00 → 03:00 in Stockholm.
    s = sched({"days": ["sat"], "from": "22:00", "to": "06:00"})
    assert is_armed(s, datetime(2026, 3, 29, 3, 59, tzinfo=UTC), STHLM)  # 05:59 CEST
    assert not is_armed(s, datetime(2026, 3, 29, 4, 0, tzinfo=UTC), STHLM)  # 06:00 CEST
    # The same range a week earlier (no DST change) ends at 05:00 UTC.
    assert is_armed(s, datetime(2026, 3, 22, 4, 59, tzinfo=UTC), STHLM)
    assert not is_armed(s, datetime(2026, 3, 22, 5, 0, tzinfo=UTC), STHLM)


def test_dst_fall_back_repeated_hour_is_armed_both_times():
    # Sunday 2026-10-25: 03:00 CEST → 02:00 CET, so 02:30 happens twice.
    s = sched({"days": ["sun"], "from": "02:00", "to": "03:00"})
    first = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)   # 02:30 CEST
    second = datetime(2026, 10, 25, 1, 30, tzinfo=UTC)  # 02:30 CET
    assert is_armed(s, first, STHLM) and is_armed(s, second, STHLM)
    assert not is_armed(s, datetime(2026, 10, 25, 2, 0, tzinfo=UTC), STHLM)  # 03:00 CET


def test_exception_dates_disarm_and_armed_dates_arm():
    s = sched(WEEKNIGHTS, exceptions=[date(2026, 11, 25)], armed_dates=[date(2026, 11, 27)])
    assert not is_armed(s, local(2026, 11, 25, 20, 0), STHLM)  # school evening event
    assert not is_armed(s, local(2026, 11, 26, 3, 0), STHLM)   # the tail of a range that began on an exception
    assert is_armed(s, local(2026, 11, 27, 12, 0), STHLM)      # a holiday: armed all day
    assert is_armed(s, local(2026, 11, 24, 20, 0), STHLM)      # ordinary days unaffected


def test_naive_datetime_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        is_armed(sched(WEEKEND), datetime(2026, 11, 28, 12, 0), STHLM)
