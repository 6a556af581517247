"""The situational picture's numbers (vaktpost.broker.lagesbild) on SQLite and PostgreSQL:
local weeks and hours of the week across daylight saving, an incident of two places
counted once, the year-earlier comparison, rates and gaps from exposure hours,
tamper and offline time per camera, the ranking's trend, the append-only priority marks,
and the charts' SVG."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from vaktpost.broker.incidents.tables import incident_places, incidents
from vaktpost.broker.lagesbild import charts
from vaktpost.broker.lagesbild.marks import add_mark, current_marks, history
from vaktpost.broker.lagesbild.picture import picture, ranking
from vaktpost.broker.lagesbild.queries import (
    Hours,
    Period,
    counts,
    counts_by_place,
    downtime,
    hours_by_place,
    no_exposure,
)
from vaktpost.broker.places import parse_places, write_registry
from vaktpost.broker.store import Store

ZONE = ZoneInfo("Europe/Stockholm")
T = datetime(2025, 1, 1, tzinfo=UTC)
REGISTRY = {
    "timezone": "Europe/Stockholm",
    "places": [{"id": "skolan", "name": "Skolan", "kind": "school", "district": "Norr"},
               {"id": "parken", "name": "Parken", "kind": "park", "district": "Norr"},
               {"id": "torget", "name": "Torget", "kind": "square", "district": "Söder"}],
    "cameras": [{"node": "node-a", "camera": "gard", "place": "skolan", "from": "2024-01-01"},
                {"node": "node-a", "camera": "entre", "place": "skolan", "from": "2024-01-01"},
                {"node": "node-b", "camera": "park", "place": "parken", "from": "2024-01-01"}],
}


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def add(store: Store, type_: str, opened: datetime, places: Sequence[str], *, ended: datetime | None = None,
        node: str = "node-a", camera: str | None = "gard") -> int:
    row = {"type": type_, "group_key": f"{type_}|{opened.isoformat()}", "node_id": node, "camera_id": camera,
           "priority": 2, "state": "resolved", "opened_at": opened, "last_event_at": ended or opened,
           "ended_at": ended, "created_at": opened, "updated_at": opened}
    with store.engine.begin() as conn:
        new_id = conn.execute(incidents.insert().values(**row)).inserted_primary_key[0]
        conn.execute(incident_places.insert(), [{"incident_id": new_id, "place_id": p} for p in places])
    return int(new_id)


@pytest.fixture
def store(place_store: Store) -> Store:
    write_registry(place_store, parse_places(REGISTRY))
    return place_store


def test_the_period_and_its_weeks() -> None:
    p = Period.ending(date(2025, 3, 31))
    assert p == Period(date(2024, 4, 1), date(2025, 3, 31))
    assert Period.ending(date(2024, 2, 29)).first == date(2023, 3, 1)
    assert p.year_earlier() == Period(date(2023, 4, 1), date(2024, 3, 31))
    assert p.bounds(ZONE) == (utc(2024, 3, 31, 22), utc(2025, 3, 31, 22))  # CEST both ends
    first, second = Period(date(2025, 1, 1), date(2025, 1, 10)).halves()
    assert (first.last, second.first) == (date(2025, 1, 5), date(2025, 1, 6))
    weeks = Period(date(2025, 1, 1), date(2025, 1, 13)).weeks()
    assert weeks == [date(2024, 12, 30), date(2025, 1, 6), date(2025, 1, 13)]


def test_weeks_and_hours_of_the_week_are_local(store: Store) -> None:
    # Sunday 30 March 2025: clocks go from 02:00 CET to 03:00 CEST (01:00 UTC).
    add(store, "intrusion", utc(2025, 3, 30, 0, 30), ["skolan"])  # 01:30 CET, Sunday
    add(store, "intrusion", utc(2025, 3, 30, 1, 30), ["skolan"])  # 03:30 CEST, Sunday
    add(store, "tamper", utc(2025, 3, 30, 22, 30), ["skolan"])  # 00:30 Monday 31 March: the next week
    add(store, "loitering", utc(2025, 1, 5, 23, 15), ["skolan", "parken"])  # 00:15 Monday 6 Jan, two places
    add(store, "motion", utc(2025, 2, 1, 12), ["skolan"])  # counted in the breakdown, not charted
    add(store, "intrusion", utc(2024, 3, 2, 12), ["skolan"])  # a year earlier
    add(store, "intrusion", utc(2025, 3, 1, 12), ["torget"])  # another district
    period = Period(date(2024, 12, 30), date(2025, 4, 6))
    c = counts(store, ["skolan", "parken"], period, ZONE)
    assert c.totals["intrusion"] == 2 and c.totals["tamper"] == 1 and c.totals["motion"] == 1
    assert c.totals["loitering"] == 1, "an incident of two places counts once"
    week = {w: k for k, w in enumerate(c.weeks)}
    assert c.weekly["intrusion"][week[date(2025, 3, 24)]] == 2
    assert c.weekly["tamper"][week[date(2025, 3, 31)]] == 1
    assert c.weekly["loitering"][week[date(2025, 1, 6)]] == 1
    assert c.heat[6][1] == 1 and c.heat[6][3] == 1, "Sunday 01 and 03 local"
    assert c.heat[0][0] == 2, "Monday 00 local (tamper, loitering)"
    assert sum(map(sum, c.heat)) == 4, "motion is not on the map"
    earlier = counts(store, ["skolan"], period.year_earlier(), ZONE)
    assert earlier.totals["intrusion"] == 1
    by_place = counts_by_place(store, ["skolan", "parken", "torget"], period, ZONE)
    assert by_place["parken"] == {"loitering": 1}
    assert by_place["skolan"] == {"intrusion": 2, "tamper": 1, "loitering": 1, "motion": 1}
    assert by_place["torget"] == {"intrusion": 1}


@dataclass(frozen=True)
class Exposure:
    node_id: str
    camera_id: str
    place_id: str | None
    zone: str | None
    online_hours: float
    armed_hours: float


class WeeklyExposure:
    """Coverage of node-a's cameras at `skolan`: every hour online, armed half of them,
    except in the weeks of `dark` (offline all week)."""

    def __init__(self, dark: set[date]) -> None:
        self.dark = dark

    def __call__(self, store: Store, start: datetime, end: datetime, *,
                 places: list[str] | None = None) -> Sequence[Exposure]:
        hours = 0.0
        t = start
        while t < end:  # hour by hour: simple and exact for the test's weeks
            if t.astimezone(ZONE).date() - timedelta(days=t.astimezone(ZONE).weekday()) not in self.dark:
                hours += 1
            t += timedelta(hours=1)
        rows = [Exposure("node-a", cam, "skolan", zone, hours, hours / 2)
                for cam in ("gard", "entre") for zone in ("gard", "dorr")]
        return [r for r in rows if places is None or r.place_id in places]


def test_camera_hours_count_a_camera_once_across_its_zones() -> None:
    rows = [Exposure("n", "c1", "p", "z1", 100, 40), Exposure("n", "c1", "p", "z2", 100, 60),
            Exposure("n", "c2", "p", None, 50, 0), Exposure("n", "c3", None, None, 70, 70)]
    assert hours_by_place(rows) == {"p": Hours(150, 60)}


def test_rates_and_gaps_from_exposure(store: Store) -> None:
    period = Period(date(2025, 1, 6), date(2025, 1, 26))  # three whole weeks
    add(store, "intrusion", utc(2025, 1, 7, 12), ["skolan"])
    add(store, "intrusion", utc(2025, 1, 8, 12), ["skolan"])
    add(store, "tamper", utc(2025, 1, 21, 12), ["skolan"])
    pic = picture(store, ["skolan"], period, ZONE, WeeklyExposure(dark={date(2025, 1, 13)}))
    assert pic.hours == Hours(2 * 14 * 24, 14 * 24), "two cameras, two weeks online, half of it armed"
    rates = pic.weekly_rates()
    assert rates is not None
    assert rates["intrusion"] == [pytest.approx(2 * 1000 / (7 * 24)), None, 0.0]
    assert rates["tamper"] == [0.0, None, pytest.approx(1000 / (2 * 7 * 24))]
    assert pic.weekly_counts()["intrusion"] == [2, None, 0], "the dark week is a gap, not zero"
    row = next(r for r in pic.breakdown if r.type == "intrusion")
    assert row.count == 2 and row.rate == pytest.approx(2 * 1000 / (14 * 24)) and row.earlier_rate == 0.0
    bare = picture(store, ["skolan"], period, ZONE, no_exposure)
    assert bare.hours is None and bare.weekly_rates() is None
    assert bare.weekly_counts()["intrusion"] == [2, 0, 0]


def test_tamper_and_offline_time_per_camera(store: Store) -> None:
    period = Period(date(2025, 1, 6), date(2025, 1, 12))
    start, _ = period.bounds(ZONE)
    add(store, "tamper", start + timedelta(hours=1), ["skolan"], ended=start + timedelta(hours=4))
    add(store, "tamper", start + timedelta(hours=3), ["skolan"], ended=start + timedelta(hours=5))  # overlaps
    add(store, "tamper", start - timedelta(hours=2), ["skolan"], ended=start + timedelta(hours=1),
        camera="entre")  # began before the period
    add(store, "node_offline", start + timedelta(days=6), ["skolan", "parken"], camera=None)  # still lasts
    now = start + timedelta(days=6, hours=10)
    rows = {(d.node_id, d.camera_id): d for d in downtime(store, ["skolan"], period, ZONE, now)}
    assert set(rows) == {("node-a", "gard"), ("node-a", "entre")}
    assert rows["node-a", "gard"].tamper_hours == pytest.approx(4)
    assert rows["node-a", "entre"].tamper_hours == pytest.approx(1)
    assert rows["node-a", "gard"].offline_hours == pytest.approx(10) == rows["node-a", "entre"].offline_hours


def test_ranking_by_rate_and_trend_with_marks(store: Store) -> None:
    period = Period(date(2025, 1, 6), date(2025, 2, 2))  # four weeks: halves of two
    for day in (7, 8, 21, 22, 23, 28):  # two early, four late: +100 %
        add(store, "intrusion", utc(2025, 1, day, 12), ["parken"], node="node-b", camera="park")
    add(store, "tamper", utc(2025, 1, 7, 12), ["skolan"])
    add(store, "tamper", utc(2025, 1, 29, 12), ["skolan"])
    places = store.list_places()
    rows = ranking(store, places, period, ZONE, no_exposure)
    assert [r.place["id"] for r in rows] == ["parken", "skolan", "torget"]
    assert rows[0].trend == pytest.approx(1.0) and rows[1].trend == pytest.approx(0.0)
    assert rows[2].trend is None, "nothing before: the data cannot tell"
    add_mark(store, "skolan", priority=True, marked_on=date(2025, 2, 3), note="Skadegörelse", actor="anna",
             now=T)
    by_trend = ranking(store, places, period, ZONE, no_exposure, sort="trend")
    assert [r.place["id"] for r in by_trend][:2] == ["parken", "skolan"]
    assert next(r for r in by_trend if r.place["id"] == "skolan").priority
    rated = ranking(store, places, period, ZONE, WeeklyExposure(dark=set()))
    assert rated[0].place["id"] == "skolan", "only skolan has coverage: its tamper rate ranks first"


def test_priority_marks_are_history(store: Store) -> None:
    add_mark(store, "skolan", priority=True, marked_on=date(2025, 2, 3), note="Klotter varje helg", actor="anna",
             now=T)
    add_mark(store, "skolan", priority=False, marked_on=date(2025, 6, 1), note="Lugnt sedan belysningen",
             actor="admin", now=T + timedelta(days=120))
    add_mark(store, "parken", priority=True, marked_on=date(2025, 3, 1), note="", actor="anna", now=T)
    current = current_marks(store, ["skolan", "parken", "torget"])
    assert set(current) == {"skolan", "parken"}
    assert not current["skolan"].priority and current["skolan"].note == "Lugnt sedan belysningen"
    assert [m.priority for m in history(store, "skolan")] == [False, True]
    assert history(store, "skolan")[1].marked_on == date(2025, 2, 3)


def test_charts_are_svg_without_script_with_gaps() -> None:
    weeks = Period(date(2025, 1, 6), date(2025, 3, 30)).weeks()
    series = {"intrusion": [1, None, *([2] * (len(weeks) - 2))], "tamper": [0, None, *([1] * (len(weeks) - 2))]}
    names = {"intrusion": "Intrång", "tamper": "Sabotage"}
    svgs = [charts.weekly_counts(weeks, series, names, "sv"),
            charts.weekly_lines(weeks, {"Intrång": [0.5, None, *([1.0] * (len(weeks) - 2))]}, ["#000"], "sv"),
            charts.hour_of_week([[h % 3 for h in range(24)] for _ in range(7)], "sv"),
            charts.breakdown([("Intrång", 3, 1), ("Sabotage", 0, 2)], "Perioden", "Ett år tidigare")]
    for svg in svgs:
        root = ET.fromstring(svg)
        assert root.tag.endswith("svg") and root.get("viewBox")
        assert "<script" not in svg, "no script: the PDF runs none, the CSP allows none"
    assert "Intrång" in svgs[0] and ">feb.<" in svgs[0]
    assert "mån" in svgs[2].lower()
