from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from vaktpost.contract.config import ConfigError
from vaktpost.contract.schedule import ArmedSchedule, armed_intervals, hours, is_armed
from vaktpost.edge.config import load, parse
from vaktpost.edge.config.armed import public_holidays, resolve

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


# --- presets, holidays, school breaks, armed intervals (vaktpost.contract.schedule) -----------

def facade(**kw) -> ArmedSchedule:
    return resolve(ArmedSchedule(preset="school_facade", **kw), breaks=None, today=date(2026, 1, 1))


@pytest.mark.parametrize("when, armed", [
    (local(2026, 11, 23, 19, 59), False),  # Monday evening, before 20:00
    (local(2026, 11, 23, 20, 0), True),
    (local(2026, 11, 24, 5, 59), True),    # Tuesday morning: Monday's range
    (local(2026, 11, 24, 6, 0), False),
    (local(2026, 11, 28, 6, 30), False),   # Saturday: Friday's range ended at 06:00
    (local(2026, 11, 28, 16, 59), False),
    (local(2026, 11, 28, 17, 0), True),    # weekend ranges start at 17:00
    (local(2026, 11, 29, 6, 59), True),
    (local(2026, 11, 29, 7, 0), False),
    (local(2026, 11, 30, 6, 59), True),    # Monday morning: Sunday's range runs to 07:00
    (local(2026, 5, 14, 17, 30), True),    # Kristi himmelsfärdsdag (a Thursday): holiday ranges
    (local(2026, 5, 13, 17, 30), False),   # the Wednesday before: an ordinary weekday
    (local(2026, 5, 15, 6, 30), True),     # Friday morning: the holiday's range runs to 07:00
])
def test_school_facade_preset(when, armed):
    assert is_armed(facade(), when, STHLM) is armed


def test_swedish_public_holidays_from_the_holidays_library():
    days = public_holidays(range(2026, 2027))
    assert date(2026, 6, 20) in days       # midsommardagen: a public holiday
    assert date(2026, 6, 19) not in days   # midsommarafton: de facto only (holidays' `de_facto`)
    assert date(2026, 12, 24) not in days and date(2026, 12, 25) in days  # julafton / juldagen
    assert date(2026, 6, 6) in days        # nationaldagen
    assert date(2026, 6, 21) not in days   # an ordinary Sunday is not listed (weekend ranges cover it)
    assert len(days) == 13


def test_preset_and_ranges_together_are_refused():
    with pytest.raises(ConfigError, match="a preset gives the ranges"):
        parse({"node": {"id": "n1"}, "cameras": [{"id": "c1", "source": "x.mp4", "zones": [
            {"name": "z", "polygon": [[0, 0], [1, 0], [1, 1]],
             "armed": {"preset": "school_facade", "ranges": [WEEKNIGHTS]}}]}]})


ICS = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//vaktpost tests//
BEGIN:VEVENT
UID:sportlov-2027
DTSTAMP:20260101T000000Z
SUMMARY:Sportlov
DTSTART;VALUE=DATE:20270222
DTEND;VALUE=DATE:20270227
END:VEVENT
BEGIN:VEVENT
UID:studiedag-2027
DTSTAMP:20260101T000000Z
SUMMARY:Studiedag
DTSTART;VALUE=DATE:20270308
END:VEVENT
BEGIN:VEVENT
UID:concert
DTSTAMP:20260101T000000Z
SUMMARY:Evening concert (has a time: not a break)
DTSTART:20270309T180000Z
DTEND:20270309T200000Z
END:VEVENT
END:VCALENDAR
"""


def _node_yaml(tmp_path: Path, **node) -> Path:
    doc = {"node": {"id": "n1", **node}, "spool": {"path": "outbox.db"},
           "cameras": [{"id": "c1", "source": "x.mp4", "zones": [
               {"name": "facade", "polygon": [[0, 0], [1, 0], [1, 1]], "armed": {"preset": "school_facade"}}]}]}
    path = tmp_path / "node.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_school_breaks_from_an_icalendar_file_are_armed_like_holidays(tmp_path: Path):
    (tmp_path / "breaks.ics").write_text(ICS)
    cfg = load(_node_yaml(tmp_path, school_breaks="breaks.ics"))  # relative to the config file
    zone = cfg.cameras[0].zones[0]
    assert zone.school_breaks == tmp_path / "breaks.ics"
    s = zone.schedule
    assert {date(2027, 2, 22), date(2027, 2, 26), date(2027, 3, 8)} <= set(s.holidays)
    assert date(2027, 2, 27) not in s.holidays  # DTEND is exclusive
    assert date(2027, 3, 9) not in s.holidays  # a timed event is no break
    assert is_armed(s, local(2027, 2, 23, 17, 30), STHLM)  # a Tuesday of sportlov: 17:00–07:00
    assert not is_armed(s, local(2027, 3, 2, 17, 30), STHLM)  # an ordinary Tuesday: from 20:00


def test_an_unreadable_school_break_file_is_one_config_error(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"school_breaks: cannot read .*missing.ics"):
        load(_node_yaml(tmp_path, school_breaks="missing.ics"))
    (tmp_path / "bad.ics").write_text("not a calendar")
    with pytest.raises(ConfigError, match=r"bad.ics is not an iCalendar file"):
        load(_node_yaml(tmp_path, school_breaks="bad.ics"))


def utc(*a) -> datetime:
    return datetime(*a, tzinfo=UTC)


def test_armed_intervals_over_the_spring_dst_change():
    # Weekend of 2026-03-28/29: clocks go 02:00 CET → 03:00 CEST on Sunday morning.
    got = armed_intervals(facade(), utc(2026, 3, 27, 12), utc(2026, 3, 30, 12), STHLM)
    assert got == [
        (utc(2026, 3, 27, 19), utc(2026, 3, 28, 5)),   # Fri 20:00 CET → Sat 06:00 CET
        (utc(2026, 3, 28, 16), utc(2026, 3, 29, 5)),   # Sat 17:00 CET → Sun 07:00 CEST: 13 hours, not 14
        (utc(2026, 3, 29, 15), utc(2026, 3, 30, 5)),   # Sun 17:00 CEST → Mon 07:00 CEST
    ]
    assert hours(got) == 10 + 13 + 14


def test_armed_intervals_over_the_autumn_dst_change():
    # 2026-10-25: 03:00 CEST → 02:00 CET; Saturday's range lasts 15 hours.
    got = armed_intervals(facade(), utc(2026, 10, 24, 12), utc(2026, 10, 25, 12), "Europe/Stockholm")
    assert got == [(utc(2026, 10, 24, 15), utc(2026, 10, 25, 6))]
    # A range ending inside the repeated hour: both 02:00–02:30 are armed, 02:30–03:00 CEST not.
    s = sched({"days": ["sat"], "from": "22:00", "to": "02:30"})
    assert armed_intervals(s, utc(2026, 10, 24, 12), utc(2026, 10, 25, 12), STHLM) == [
        (utc(2026, 10, 24, 20), utc(2026, 10, 25, 0, 30)), (utc(2026, 10, 25, 1), utc(2026, 10, 25, 1, 30))]


def test_armed_intervals_honour_exceptions_armed_dates_and_the_window():
    s = sched(WEEKNIGHTS, exceptions=[date(2026, 11, 25)], armed_dates=[date(2026, 11, 27)])
    got = armed_intervals(s, utc(2026, 11, 24, 18), utc(2026, 11, 28, 12), STHLM)
    assert got == [
        (utc(2026, 11, 24, 18), utc(2026, 11, 24, 23)),  # Tuesday's range, cut where the exception day begins
        (utc(2026, 11, 26, 17), utc(2026, 11, 28, 6)),   # Thu 18:00 → armed Friday all day → Sat 07:00
    ]


@pytest.mark.parametrize("start", [utc(2026, 3, 25), utc(2026, 10, 21), utc(2026, 5, 10)])
def test_armed_intervals_agree_with_is_armed_at_every_instant(start):
    s = facade(exceptions=[date(2026, 3, 27), date(2026, 10, 23)], armed_dates=[date(2026, 5, 12)])
    s = s.model_copy(update={"ranges": [*s.ranges, *sched({"days": ["sun"], "from": "02:15", "to": "02:45"}).ranges]})
    end = start + timedelta(days=7)
    got = armed_intervals(s, start, end, STHLM)
    t = start
    while t < end:
        inside = any(a <= t < b for a, b in got)
        assert inside is is_armed(s, t, STHLM), t
        t += timedelta(minutes=5)
