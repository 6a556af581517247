"""A zone's armed schedule as the node evaluates it: presets filled in, Swedish public
holidays from the `holidays` library and school breaks from an iCalendar file
(docs/config.md, "Armed schedules"), so a schedule does not go stale each year.

Holidays: `holidays.Sweden`'s `public` category, the allmänna helgdagar of the law
(1989:253) that are not Sundays: nyårsdagen, trettondedag jul, långfredagen,
påskdagen, annandag påsk, första maj, Kristi himmelsfärdsdag, pingstdagen,
nationaldagen, midsommardagen, alla helgons dag, juldagen, annandag jul. The eves
(midsommarafton, julafton, nyårsafton) are days off in practice but not public
holidays (`holidays` files them as `de_facto`), so they are not included; they fall
in the school breaks (summer and Christmas), which a school's calendar supplies.

School breaks: every all-day VEVENT of the file (DTSTART a date) marks its dates,
DTSTART up to but not including DTEND (one day without DTEND), as holidays: the
building stands empty as on a public holiday, so the holiday ranges apply. Events
with a time of day are ignored (a school event in the evening is an exception,
written as one). Recurrence rules are not expanded: list each break.
"""

from __future__ import annotations

import functools
from datetime import date, datetime, timedelta
from pathlib import Path

import holidays as holidays_lib
import icalendar

from vaktpost.contract.config import ConfigError
from vaktpost.contract.schedule import PRESETS, ArmedSchedule

# Public holidays are computed for these years around the year the node resolves its
# schedules in (a node runs for years between restarts).
YEARS_BEFORE, YEARS_AFTER = 1, 10
MAX_BREAK_DAYS = 400  # one all-day event longer than this is a mistake in the file


def public_holidays(years: range) -> list[date]:
    """Swedish public holidays (the `public` category, no Sundays) in `years`."""
    return sorted(holidays_lib.Sweden(years=list(years), categories=("public",)).keys())


def school_breaks(path: Path) -> list[date]:
    """The dates of the all-day events of the iCalendar file `path`; ConfigError naming
    the file when it cannot be read or parsed."""
    try:
        stat = path.stat()
    except OSError as e:
        raise ConfigError(f"school_breaks: cannot read {path}: {e.strerror}") from None
    return list(_breaks_cached(str(path), stat.st_mtime_ns))


@functools.lru_cache(maxsize=32)
def _breaks_cached(path: str, _mtime_ns: int) -> tuple[date, ...]:
    try:
        cal = icalendar.Calendar.from_ical(Path(path).read_bytes())
    except OSError as e:
        raise ConfigError(f"school_breaks: cannot read {path}: {e.strerror}") from None
    except ValueError as e:
        raise ConfigError(f"school_breaks: {path} is not an iCalendar file: {e}") from None
    found: set[date] = set()
    for ev in cal.walk("VEVENT"):
        start = ev.get("dtstart")
        first = getattr(start, "dt", None)
        if not isinstance(first, date) or isinstance(first, datetime):
            continue  # not all-day
        end = getattr(ev.get("dtend"), "dt", None)
        last = end if isinstance(end, date) and not isinstance(end, datetime) else first + timedelta(days=1)
        if (last - first).days > MAX_BREAK_DAYS:
            raise ConfigError(f"school_breaks: {path}: event {ev.get('summary', '')!s} from {first} to {last} "
                              f"is longer than {MAX_BREAK_DAYS} days")
        found.update(first + timedelta(days=i) for i in range((last - first).days))
    return tuple(sorted(found))


def resolve(armed: ArmedSchedule, *, breaks: Path | None, today: date) -> ArmedSchedule:
    """`armed` with a preset's ranges filled in and, when a range lists `hol`, the
    holidays: public holidays of the years around `today`, the school breaks of
    `breaks` and any written by hand."""
    ranges = list(PRESETS[armed.preset]) if armed.preset is not None else armed.ranges
    schedule = armed.model_copy(update={"ranges": ranges})
    if not schedule.uses_holidays:
        return schedule
    years = range(today.year - YEARS_BEFORE, today.year + YEARS_AFTER + 1)
    days = set(armed.holidays) | set(public_holidays(years))
    if breaks is not None:
        days |= set(school_breaks(breaks))
    # model_copy: the node's own list may be longer than the message's bound (MAX_DATES).
    return schedule.model_copy(update={"holidays": sorted(days)})
