import itertools
from datetime import UTC, datetime, timedelta

from vaktpost.contract.events import EventType
from vaktpost.edge.events.factory import EventIdentity
from vaktpost.edge.events.lifecycle import Lifecycle

T0 = datetime(2026, 11, 26, 20, 0, tzinfo=UTC)


def make(min_duration=1.0, merge_gap=3.0, update_interval=10.0) -> Lifecycle:
    seq = itertools.count(1)
    return Lifecycle(EventIdentity("node-a", "yard", EventType.motion), lambda: next(seq),
                     min_duration, merge_gap, update_interval)


def feed(lc: Lifecycle, pattern: list[bool], fps: float = 5.0):
    out = []
    for i, active in enumerate(pattern):
        out += lc.step(T0 + timedelta(seconds=i / fps), active, region=(0.1, 0.2, 0.3, 0.4), confidence=0.5)
    return out


def test_short_blip_is_not_an_event():
    lc = make()
    assert feed(lc, [True] * 3 + [False] * 30) == []  # 0.4 s of motion < min_duration
    assert lc.finish() == []


def test_start_update_end_share_one_id():
    lc = make(update_interval=2.0)
    ups = feed(lc, [True] * 30 + [False] * 30)  # 6 s motion, then quiet
    phases = [u.phase for u in ups]
    assert phases[0] == "start" and phases[-1] == "end" and "update" in phases
    assert len({u.event.event_id for u in ups}) == 1
    end = ups[-1].event
    assert end.ended_at == T0 + timedelta(seconds=29 / 5)
    assert end.started_at == T0 and end.seq == 1
    assert ups[0].event.ended_at is None


def test_gap_shorter_than_merge_gap_merges_bursts():
    lc = make(merge_gap=3.0)
    ups = feed(lc, [True] * 10 + [False] * 10 + [True] * 10 + [False] * 20)  # 2 s pause
    ends = [u for u in ups if u.phase == "end"]
    assert len(ends) == 1


def test_gap_longer_than_merge_gap_splits():
    lc = make(merge_gap=1.0)
    ups = feed(lc, [True] * 10 + [False] * 10 + [True] * 10 + [False] * 10)  # 2 s pause
    ends = [u for u in ups if u.phase == "end"]
    assert len(ends) == 2
    assert ends[0].event.seq < ends[1].event.seq
    assert ends[0].event.event_id != ends[1].event.event_id


def test_region_is_the_union_and_finish_closes():
    lc = make()
    lc.step(T0, True, region=(0.1, 0.1, 0.2, 0.2), confidence=0.3)
    lc.step(T0 + timedelta(seconds=2), True, region=(0.5, 0.5, 0.6, 0.7), confidence=0.9)
    (end,) = lc.finish()
    assert end.event.region == [0.1, 0.1, 0.6, 0.7]
    assert end.event.confidence == 0.9
