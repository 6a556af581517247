"""Measures and their follow-up: registering (checks, scope), the windows, and the rate
ratio with its exact interval against values computed here from first principles, on
incidents seeded through the consumer's grouping with known rates."""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import pytest
from measures_data import NOW, START, ZONE, lighting, prepare, seed
from scipy.stats import beta, binom

from vaktpost.broker.inbox.accounts import Account
from vaktpost.broker.measures import service, stats
from vaktpost.broker.measures.exposure import ExposureSource, calendar_source
from vaktpost.broker.measures.service import MeasureError, MeasureInput, MeasureKind
from vaktpost.broker.store import Store


def test_rate_ratio_and_exact_interval_from_known_rates(place_store: Store) -> None:
    store = prepare(place_store)
    measure = lighting(store)
    # 8 weeks before: 30 intrusions; 8 weeks after: 12. Loitering at another camera does not
    # change the people count's exposure; Söderparken's incidents are not the measure's.
    seed(store, 30, START - timedelta(weeks=8), START)
    seed(store, 12, START, START + timedelta(weeks=8))
    seed(store, 9, START - timedelta(weeks=8), START, type="scene_change", camera="entre")
    seed(store, 7, START - timedelta(weeks=8), START + timedelta(weeks=8), node="node-b", camera="park")
    # The same weeks a year earlier (52 weeks back): 20 before, 18 after.
    seed(store, 20, START - timedelta(weeks=60), START - timedelta(weeks=52))
    seed(store, 18, START - timedelta(weeks=52), START - timedelta(weeks=44))

    f = stats.follow_up(store, measure, NOW, ZONE, calendar_source())
    assert f.before is not None and f.after is not None
    assert f.before.start == datetime(2025, 1, 6, tzinfo=ZONE) and f.after.end == datetime(2025, 4, 28, tzinfo=ZONE)
    assert not f.measured_exposure
    people = f.headline
    assert people is not None and people.series.key == "people"
    rr = people.now
    # Calendar exposure: 2 cameras × the hours of 56 days; the after window lost an hour to summer time.
    e0, e1 = 2 * 56 * 24.0, 2 * (56 * 24 - 1.0)
    assert (rr.n0, rr.n1) == (30, 12)
    assert rr.e0 == pytest.approx(e0) and rr.e1 == pytest.approx(e1)
    assert rr.ratio == pytest.approx((12 / e1) / (30 / e0))
    # Clopper-Pearson on p = n1/n, then r = p/(1-p)·E0/E1.
    n = 42
    p_low, p_high = beta.ppf(0.025, 12, n - 12 + 1), beta.ppf(0.975, 13, n - 12)
    # ... which are the p at which the binomial tails are 2.5 % (the definition of the interval):
    assert binom.sf(11, n, p_low) == pytest.approx(0.025, abs=1e-9)
    assert binom.cdf(12, n, p_high) == pytest.approx(0.025, abs=1e-9)
    assert rr.low == pytest.approx(p_low / (1 - p_low) * e0 / e1)
    assert rr.high == pytest.approx(p_high / (1 - p_high) * e0 / e1)
    assert rr.low == pytest.approx(0.1866, abs=1e-4) and rr.high == pytest.approx(0.8051, abs=1e-4)
    # By hand, the Wald interval on the log scale, exp(ln r ± 1.96·√(1/30 + 1/12)) = (0.205, 0.781),
    # lies inside: the exact interval is the wider (conservative) one.
    wald = [rr.ratio * math.exp(z * 1.96 * math.sqrt(1 / 30 + 1 / 12)) for z in (-1, 1)]
    assert wald == pytest.approx([0.205, 0.781], abs=1e-3) and rr.low < wald[0] and wald[1] < rr.high
    assert rr.verdict is stats.Verdict.fewer
    assert rr.rate0 == pytest.approx(1000 * 30 / e0)

    earlier = people.year_before
    assert earlier is not None and (earlier.n0, earlier.n1) == (20, 18)
    assert earlier.verdict is stats.Verdict.unclear and earlier.low < 1 < earlier.high  # type: ignore[operator]

    scene = next(s for s in f.series if s.series.key == "scene_change")
    assert (scene.now.n0, scene.now.n1) == (9, 0) and scene.now.verdict is stats.Verdict.too_few
    # The chart's weeks: 16 of them, with the week's counts and exposure.
    assert len(f.weeks) == 16 and sum(w.counts["people"] for w in f.weeks) == 42
    assert f.weeks[0].hours["armed"] == pytest.approx(2 * 7 * 24)


def test_interval_at_the_edges_by_hand() -> None:
    # No incident after (n1 = 0): the upper bound of p solves (1 - p)^n = 2.5 %.
    n0, e0, e1 = 20, 1000.0, 500.0
    ratio, low, high = stats.rate_ratio_ci(0, e1, n0, e0)
    p_high = 1 - 0.025 ** (1 / 20)
    assert ratio == 0 and low == 0
    assert high == pytest.approx(p_high / (1 - p_high) * e0 / e1)
    # By hand: 0.025^(1/20) = exp(-3.6889/20) = 0.83157, p = 0.16843, r = 0.16843/0.83157 · 2
    assert high == pytest.approx(0.4051, abs=1e-4)
    # None before: the ratio and its upper bound are unbounded; p's lower bound solves p^n = 2.5 %.
    ratio, low, high = stats.rate_ratio_ci(15, e1, 0, e0)
    p_low = 0.025 ** (1 / 15)
    assert ratio == math.inf and high == math.inf
    assert low == pytest.approx(p_low / (1 - p_low) * e0 / e1)
    # Nothing at all, or no exposure: no ratio.
    assert stats.rate_ratio_ci(0, e1, 0, e0) == (None, None, None)
    assert stats.rate_ratio_ci(3, 0.0, 4, e0) == (None, None, None)


def test_verdicts_say_when_the_data_cannot_tell() -> None:
    week = 168.0
    assert stats.compare(0, 10 * week, 0, 10 * week).verdict is stats.Verdict.no_incidents
    assert stats.compare(40, 10.0, 5, 10.0).verdict is stats.Verdict.little_exposure
    assert stats.compare(5, 10 * week, 2, 10 * week).verdict is stats.Verdict.too_few
    assert stats.compare(20, 10 * week, 17, 10 * week).verdict is stats.Verdict.unclear
    assert stats.compare(10, 10 * week, 40, 10 * week).verdict is stats.Verdict.more
    assert stats.compare(40, 10 * week, 10, 10 * week).verdict is stats.Verdict.fewer
    assert stats.compare(40, 10 * week, 10, 10 * week).change_percent[0] == pytest.approx(-75)  # type: ignore[index]


@dataclass(frozen=True)
class Hours:
    online_hours: float
    armed_hours: float


def test_measured_exposure_through_the_seam(place_store: Store) -> None:
    """A coverage source (here: armed only nights, 10 of 24 hours) replaces calendar time."""
    store = prepare(place_store)
    measure = lighting(store)
    seed(store, 30, START - timedelta(weeks=8), START)
    seed(store, 12, START, START + timedelta(weeks=8))
    calls: list[tuple[datetime, datetime, Collection[str] | None]] = []

    def nights(_store: Store, start: datetime, end: datetime, *, places: Collection[str] | None = None
               ) -> list[Hours]:
        calls.append((start, end, places))
        hours = (end - start).total_seconds() / 3600
        return [Hours(hours, hours * 10 / 24)]

    f = stats.follow_up(store, measure, NOW, ZONE, ExposureSource(nights, measured=True))
    rr = f.series[0].now
    assert f.measured_exposure and rr.e0 == pytest.approx(56 * 10) and rr.e1 == pytest.approx((56 * 24 - 1) * 10 / 24)
    assert all(places == ("norrskolan",) for _, _, places in calls)


def test_windows_follow_the_end_date_and_a_measure_not_yet_started(place_store: Store) -> None:
    store = prepare(place_store)
    m = lighting(store, end_date=START + timedelta(days=13))
    before, after = stats.windows(m, NOW, ZONE)  # type: ignore[misc]
    assert after.end == datetime(2025, 3, 17, tzinfo=ZONE) and before.start == datetime(2025, 2, 17, tzinfo=ZONE)
    future = lighting(store).model_copy(update={"start_date": date(2025, 4, 28)})
    assert stats.windows(future, NOW, ZONE) is None
    assert stats.follow_up(store, future, NOW, ZONE, calendar_source()).series == []


def test_register_checks_and_scope(place_store: Store) -> None:
    store = prepare(place_store)
    anna = Account(name="anna", role="operator", districts=frozenset({"Norr"}))
    bo = Account(name="bo", role="operator", districts=frozenset({"Söder"}))
    vera = Account(name="vera", role="viewer", districts=frozenset({"Norr"}))
    m = lighting(store)
    assert service.can_see(anna, m) and service.can_change(anna, m)
    assert not service.can_see(bo, m) and not service.can_change(bo, m)
    assert service.can_see(vera, m) and not service.can_change(vera, m)
    both = service.add_measure(store, MeasureInput(places=("norrskolan", "soderparken"), kind=MeasureKind.patrol,
                                                   start_date=START), actor="admin")
    assert service.can_see(bo, both) and not service.can_change(bo, both)
    assert [x.id for x in service.list_measures(store, districts=["Söder"])] == [both.id]
    for bad, why in ((dict(places=()), "at least one place"), (dict(places=("nowhere",)), "unknown place"),
                     (dict(end_date=START - timedelta(days=1)), "before the start"), (dict(cost=-1), "cost")):
        spec = MeasureInput(**{"places": ("norrskolan",), "kind": "fencing", "start_date": START, **bad})
        with pytest.raises(MeasureError, match=why):
            service.add_measure(store, spec, actor="anna")
    changed = service.change_measure(store, m.id, m.model_copy(update={"end_date": date(2025, 6, 1), "note": " "}))
    assert changed.end_date == date(2025, 6, 1) and changed.note is None and changed.created_by == "anna"
    service.remove_measure(store, m.id)
    with pytest.raises(MeasureError):
        service.get_measure(store, m.id)
