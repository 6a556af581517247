"""The follow-up of a measure: incident rates before and after it, and their ratio.

Windows: the *after* window runs from the measure's start (local midnight) to today's
local midnight, its end date or `weeks` weeks, whichever comes first; the *before*
window is as long and ends where the measure starts. The same windows 52 weeks earlier
(the same weekdays) are the seasonal comparison, shown where there was exposure then.

Rate ratio r = (n1/E1) / (n0/E0) with an exact 95 % interval from the conditional
binomial: given n = n0 + n1, n1 ~ Bin(n, p) with p = E1 r / (E1 r + E0). The
Clopper-Pearson interval of p (beta quantiles) is mapped to r = p/(1-p) · E0/E1.

Incidents counted: those opened in the window at one of the measure's places, per
series: people (intrusion, loitering; per armed camera-hour), scene change and tamper
(per online camera-hour). Motion, camera faults and offline nodes are not counted.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from scipy.stats import beta
from sqlalchemy import select

from vaktpost.broker.incidents.kinds import IncidentType
from vaktpost.broker.incidents.tables import incident_places, incidents
from vaktpost.broker.measures.exposure import ExposureSource
from vaktpost.broker.measures.service import Measure, MeasureKind
from vaktpost.broker.store import Store

LEVEL = 0.95
MIN_INCIDENTS = 10  # fewer in both windows together: too few to tell
MIN_HOURS = 168.0  # camera-hours in a window: one camera for a week
DEFAULT_WEEKS = 26
MAX_WEEKS = 104
YEAR = timedelta(weeks=52)  # "a year earlier": the same weekdays


@dataclass(frozen=True)
class Series:
    key: str
    types: tuple[IncidentType, ...]
    basis: str  # "armed" or "online" camera-hours


SERIES = (
    Series("people", (IncidentType.intrusion, IncidentType.loitering), "armed"),
    Series("scene_change", (IncidentType.scene_change,), "online"),
    Series("tamper", (IncidentType.tamper,), "online"),
)
# The series a measure of each kind is judged by first (the others are shown too).
PRIMARY = {MeasureKind.graffiti_removal: "scene_change"}


class Verdict(StrEnum):
    no_incidents = "no_incidents"  # none in either window
    little_exposure = "little_exposure"  # a window has less than MIN_HOURS
    too_few = "too_few"  # fewer than MIN_INCIDENTS
    unclear = "unclear"  # the interval includes 1
    fewer = "fewer"  # the whole interval is below 1
    more = "more"  # the whole interval is above 1


@dataclass(frozen=True)
class RateRatio:
    n0: int  # before
    e0: float  # camera-hours before
    n1: int  # after
    e1: float
    ratio: float | None  # None when it cannot be computed (no exposure, no incidents before)
    low: float | None
    high: float | None  # math.inf when unbounded
    verdict: Verdict

    @property
    def rate0(self) -> float | None:
        return rate(self.n0, self.e0)

    @property
    def rate1(self) -> float | None:
        return rate(self.n1, self.e1)

    @property
    def change_percent(self) -> tuple[float, float, float] | None:
        """(change, low, high) in per cent, e.g. -40 for a ratio of 0.6; None without a ratio."""
        if self.ratio is None or self.low is None or self.high is None:
            return None
        return (100 * (self.ratio - 1), 100 * (self.low - 1), 100 * (self.high - 1))


def rate(n: int, hours: float) -> float | None:
    """Incidents per 1,000 camera-hours; None without exposure."""
    return 1000 * n / hours if hours > 0 else None


def rate_ratio_ci(n1: int, e1: float, n0: int, e0: float, level: float = LEVEL
                  ) -> tuple[float | None, float | None, float | None]:
    """(ratio, low, high) of the rate after (n1 in e1 hours) to before (n0 in e0)."""
    n = n0 + n1
    if e0 <= 0 or e1 <= 0 or n == 0:
        return None, None, None
    alpha = 1 - level
    # Clopper-Pearson bounds of p = n1/n; 0 and 1 at the edges.
    p_low = 0.0 if n1 == 0 else float(beta.ppf(alpha / 2, n1, n - n1 + 1))
    p_high = 1.0 if n1 == n else float(beta.ppf(1 - alpha / 2, n1 + 1, n - n1))

    def to_ratio(p: float) -> float:
        return math.inf if p >= 1 else p / (1 - p) * e0 / e1

    ratio = math.inf if n0 == 0 else (n1 / e1) / (n0 / e0)
    return ratio, to_ratio(p_low), to_ratio(p_high)


def compare(n0: int, e0: float, n1: int, e1: float) -> RateRatio:
    ratio, low, high = rate_ratio_ci(n1, e1, n0, e0)
    if n0 + n1 == 0:
        verdict = Verdict.no_incidents
    elif e0 < MIN_HOURS or e1 < MIN_HOURS:
        verdict = Verdict.little_exposure
    elif n0 + n1 < MIN_INCIDENTS:
        verdict = Verdict.too_few
    elif low is not None and high is not None and high < 1:
        verdict = Verdict.fewer
    elif low is not None and low > 1:
        verdict = Verdict.more
    else:
        verdict = Verdict.unclear
    return RateRatio(n0, e0, n1, e1, ratio, low, high, verdict)


@dataclass(frozen=True)
class Window:
    start: datetime  # aware, inbox time zone
    end: datetime

    def shifted(self, by: timedelta) -> Window:
        # Local wall times, so a window a year earlier starts at midnight too.
        zone = self.start.tzinfo
        return Window(_local(self.start.date() - by, zone), _local(self.end.date() - by, zone))


def _local(d: date, zone: object) -> datetime:
    assert isinstance(zone, ZoneInfo)
    return datetime.combine(d, time(0), zone)


@dataclass(frozen=True)
class SeriesFollowUp:
    series: Series
    now: RateRatio
    year_before: RateRatio | None  # None: no exposure a year earlier


@dataclass(frozen=True)
class Week:
    start: datetime
    counts: dict[str, int]
    hours: dict[str, float]  # by basis

    def rate(self, series: Series) -> float | None:
        return rate(self.counts.get(series.key, 0), self.hours.get(series.basis, 0.0))


@dataclass(frozen=True)
class FollowUp:
    measure: Measure
    measured_exposure: bool
    before: Window | None  # None: the measure has not been in force for a whole day yet
    after: Window | None
    series: list[SeriesFollowUp] = field(default_factory=list)
    primary: str = "people"
    weeks: list[Week] = field(default_factory=list)  # before and after, for the chart
    weeks_year_before: list[Week] = field(default_factory=list)

    @property
    def headline(self) -> SeriesFollowUp | None:
        return next((s for s in self.series if s.series.key == self.primary), None)


def opened_times(store: Store, places: Collection[str], types: Collection[IncidentType],
                 start: datetime, end: datetime) -> list[datetime]:
    """When each incident of `types` at any of `places` opened in [start, end)."""
    i, ip = incidents.c, incident_places.c
    q = (select(i.opened_at).where(i.id.in_(select(ip.incident_id).where(ip.place_id.in_(list(places)))),
                                   i.type.in_([t.value for t in types]), i.opened_at >= start, i.opened_at < end))
    with store.engine.connect() as conn:
        return list(conn.execute(q).scalars())


def count(store: Store, places: Collection[str], series: Series, w: Window) -> int:
    return len(opened_times(store, places, series.types, w.start, w.end))


def windows(measure: Measure, now: datetime, zone: ZoneInfo, weeks: int = DEFAULT_WEEKS
            ) -> tuple[Window, Window] | None:
    """(before, after) in whole local days; None if the measure has not been in force a day."""
    start_day = measure.start_date
    last = now.astimezone(zone).date()  # today is not complete: it ends the after window
    if measure.end_date is not None:
        last = min(last, measure.end_date + timedelta(days=1))
    last = min(last, start_day + timedelta(weeks=max(1, min(weeks, MAX_WEEKS))))
    days = (last - start_day).days
    if days < 1:
        return None
    before = Window(_local(start_day - timedelta(days=days), zone), _local(start_day, zone))
    return before, Window(_local(start_day, zone), _local(last, zone))


def _weeks(store: Store, places: Collection[str], span: Window, exposure: ExposureSource) -> list[Week]:
    zone = span.start.tzinfo
    day, last = span.start.date(), span.end.date()
    counted = {s.key: opened_times(store, places, s.types, span.start, span.end) for s in SERIES}
    out = []
    while day < last:
        w = Window(_local(day, zone), _local(min(day + timedelta(weeks=1), last), zone))
        h = exposure.hours(store, w.start, w.end, places)
        out.append(Week(w.start, {k: sum(w.start <= t < w.end for t in ts) for k, ts in counted.items()},
                        {"armed": h.armed, "online": h.online}))
        day += timedelta(weeks=1)
    return out


def follow_up(store: Store, measure: Measure, now: datetime, zone: ZoneInfo, exposure: ExposureSource, *,
              weeks: int = DEFAULT_WEEKS) -> FollowUp:
    primary = PRIMARY.get(measure.kind, "people")
    spans = windows(measure, now, zone, weeks)
    if spans is None:
        return FollowUp(measure, exposure.measured, None, None, primary=primary)
    before, after = spans
    places = measure.places
    earlier = (before.shifted(YEAR), after.shifted(YEAR))
    hours = [exposure.hours(store, w.start, w.end, places) for w in (before, after, *earlier)]
    rows = []
    for s in SERIES:
        e = [h.of(s.basis) for h in hours]
        n = [count(store, places, s, w) for w in (before, after)]
        now_ratio = compare(n[0], e[0], n[1], e[1])
        year_before = None
        if e[2] > 0 and e[3] > 0:
            year_before = compare(count(store, places, s, earlier[0]), e[2], count(store, places, s, earlier[1]), e[3])
        rows.append(SeriesFollowUp(s, now_ratio, year_before))
    span = Window(before.start, after.end)
    year_span = Window(earlier[0].start, earlier[1].end)
    weeks_before = _weeks(store, places, year_span, exposure) if any(r.year_before for r in rows) else []
    return FollowUp(measure, exposure.measured, before, after, rows, primary, _weeks(store, places, span, exposure),
                    weeks_before)


def series_by_key(key: str) -> Series:
    return next(s for s in SERIES if s.key == key)


def follow_ups(store: Store, measures: Sequence[Measure], now: datetime, zone: ZoneInfo,
               exposure: ExposureSource) -> list[FollowUp]:
    return [follow_up(store, m, now, zone, exposure) for m in measures]
