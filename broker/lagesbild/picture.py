"""The situational picture of some places over a period, put together from `queries`:
what the district and place pages (and the PDF report) show."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from vaktpost.broker.incidents.kinds import IncidentType
from vaktpost.broker.lagesbild.marks import Mark, current_marks
from vaktpost.broker.lagesbild.queries import (
    CHART_TYPES,
    DAMAGE,
    PEOPLE,
    Counts,
    ExposureSource,
    Hours,
    Period,
    counts,
    counts_by_place,
    hours_by_place,
    per_thousand,
    rate,
    total_hours,
)
from vaktpost.broker.store import Store

# The breakdown's order: the rated types first, then the rest.
BREAKDOWN_TYPES = (*CHART_TYPES, IncidentType.motion.value, IncidentType.health.value,
                   IncidentType.node_offline.value)


@dataclass(frozen=True)
class TypeRow:
    type: str
    count: int
    rate: float | None
    earlier_count: int
    earlier_rate: float | None


@dataclass
class Picture:
    """`hours` None: no coverage data for the period, so counts only."""

    counts: Counts
    earlier: Counts  # the same days a year earlier
    hours: Hours | None
    earlier_hours: Hours | None
    weekly_hours: list[Hours] | None

    @property
    def breakdown(self) -> list[TypeRow]:
        def r(t: str, n: int, h: Hours | None) -> float | None:
            return rate(t, n, h) if h is not None and t in CHART_TYPES else None
        return [TypeRow(t, self.counts.totals.get(t, 0), r(t, self.counts.totals.get(t, 0), self.hours),
                        self.earlier.totals.get(t, 0), r(t, self.earlier.totals.get(t, 0), self.earlier_hours))
                for t in BREAKDOWN_TYPES]

    @property
    def gaps(self) -> list[bool]:
        """Weeks nothing was online (only known with coverage data)."""
        if self.weekly_hours is None:
            return [False] * len(self.counts.weeks)
        return [h.online <= 0 for h in self.weekly_hours]

    def weekly_counts(self) -> dict[str, list[int | None]]:
        """Counts per week and type; None (a gap, not zero) where nothing was online."""
        return {t: [None if gap and n == 0 else n for n, gap in zip(ns, self.gaps, strict=True)]
                for t, ns in self.counts.weekly.items()}

    def weekly_rates(self) -> dict[str, list[float | None]] | None:
        """Rates per week: people events per 1,000 armed camera-hours, tamper and scene
        change per 1,000 online ones; None where the week had no such hours."""
        if self.weekly_hours is None:
            return None
        return {t: [rate(t, n, h) for n, h in zip(ns, self.weekly_hours, strict=True)]
                for t, ns in self.counts.weekly.items()}


def _hours(exposure: ExposureSource, store: Store, period: Period, zone: ZoneInfo, place_ids: list[str]
           ) -> Hours | None:
    start, end = period.bounds(zone)
    total = total_hours(exposure(store, start, end, places=place_ids))
    # No node of these places ever reported coverage: there is no rate, only counts.
    return total if total.online > 0 else None


def picture(store: Store, place_ids: Sequence[str], period: Period, zone: ZoneInfo,
            exposure: ExposureSource) -> Picture:
    ids = list(place_ids)
    now_counts = counts(store, ids, period, zone)
    earlier = period.year_earlier()
    hours = _hours(exposure, store, period, zone, ids) if ids else None
    weekly = None
    if hours is not None:
        weekly = [total_hours(exposure(store, *period.week_bounds(w, zone), places=ids)) for w in now_counts.weeks]
    return Picture(now_counts, counts(store, ids, earlier, zone), hours,
                   _hours(exposure, store, earlier, zone, ids) if ids else None, weekly)


# --- ranking -----------------------------------------------------------------------


@dataclass
class RankRow:
    place: Mapping[str, Any]
    counts: dict[str, int]
    hours: Hours | None
    trend: float | None  # later half vs earlier half, as a change (0.25: +25 %); None: cannot tell
    mark: Mark | None

    def count(self, types: Sequence[str]) -> int:
        return sum(self.counts.get(t, 0) for t in types)

    @property
    def people_rate(self) -> float | None:
        return per_thousand(self.count(PEOPLE), self.hours.armed) if self.hours else None

    @property
    def damage_rate(self) -> float | None:
        return per_thousand(self.count(DAMAGE), self.hours.online) if self.hours else None

    @property
    def priority(self) -> bool:
        return self.mark is not None and self.mark.priority


SORTS = ("rate", "trend", "count")


def _level(n: int, hours: Hours | None) -> float | None:
    """How much happened in a half: per online hour with coverage data, else the count."""
    if hours is None:
        return float(n)
    return per_thousand(n, hours.online)


def _trend(before: float | None, after: float | None) -> float | None:
    if before is None or after is None or before <= 0:
        return None
    return after / before - 1


def ranking(store: Store, places: Sequence[Mapping[str, Any]], period: Period, zone: ZoneInfo,
            exposure: ExposureSource, *, sort: str = "rate") -> list[RankRow]:
    """The places with their counts, rates, trend and current mark, the worst first.
    The trend compares the period's later half with its earlier half (rates of all
    charted types per online hour with coverage data, else counts)."""
    ids = [p["id"] for p in places]
    if not ids:
        return []
    start, end = period.bounds(zone)
    hours = {pid: h for pid, h in hours_by_place(exposure(store, start, end, places=ids)).items() if h.online > 0}
    first, second = period.halves()
    halves = [counts_by_place(store, ids, half, zone) for half in (first, second)]
    half_hours = [hours_by_place(exposure(store, *half.bounds(zone), places=ids)) if hours else {}
                  for half in (first, second)]
    marks = current_marks(store, ids)
    rows = []
    for p in places:
        pid = p["id"]
        total = {t: halves[0].get(pid, {}).get(t, 0) + halves[1].get(pid, {}).get(t, 0)
                 for t in {*halves[0].get(pid, {}), *halves[1].get(pid, {})}}
        levels = [_level(sum(h.get(pid, {}).get(t, 0) for t in CHART_TYPES),
                         hh.get(pid, Hours()) if hours else None) for h, hh in zip(halves, half_hours, strict=True)]
        rows.append(RankRow(p, total, hours.get(pid, Hours()) if hours else None, _trend(*levels), marks.get(pid)))
    return sorted(rows, key=_sort_key(sort))


def _sort_key(sort: str) -> Any:
    def key(r: RankRow) -> tuple[float, ...]:
        people = r.people_rate if r.hours else r.count(PEOPLE)
        damage = r.damage_rate if r.hours else r.count(DAMAGE)
        if sort == "trend":
            return (-(r.trend if r.trend is not None else -1e9), -(people or 0))
        if sort == "count":
            return (-r.count(CHART_TYPES), -(people or 0))
        return (-(people or 0), -(damage or 0), -r.count(CHART_TYPES))
    return key

