import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from vaktpost.contract.events import EventType
from vaktpost.edge.analysis.rules import PeopleRules
from vaktpost.edge.analysis.track import Tracker
from vaktpost.edge.config import Zone
from vaktpost.edge.config.rules import RulesSettings
from vaktpost.edge.config.track import TrackerSettings
from vaktpost.edge.geometry import foot_point, point_in_polygon

TZ = "Europe/Stockholm"
NIGHT = datetime(2026, 11, 25, 21, 0, tzinfo=UTC)  # Wednesday 22:00 local
DAY = datetime(2026, 11, 25, 11, 0, tzinfo=UTC)  # Wednesday 12:00 local
NIGHTS = [{"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "from": "18:00", "to": "06:00"}]

# Schoolyard: x 0.4..0.6 over the whole height, armed at night. Park: the right edge, never armed.
YARD = Zone(name="yard", polygon=[[0.4, 0.0], [0.6, 0.0], [0.6, 1.0], [0.4, 1.0]], armed=NIGHTS)
PARK = Zone(name="park", polygon=[[0.8, 0.0], [1.0, 0.0], [1.0, 1.0], [0.8, 1.0]])


@dataclass(frozen=True)
class Det:
    box: tuple[float, float, float, float]
    score: float = 0.8


def person(cx: float, score: float = 0.8, cy: float = 0.6) -> Det:
    return Det((cx - 0.03, cy - 0.15, cx + 0.03, cy + 0.15), score)


class Scene:
    """Tracker + rules as the pipeline wires them: one detector result (or None) per frame."""

    def __init__(self, settings: RulesSettings | None = None, zones=(YARD, PARK), t0: datetime = NIGHT,
                 fps: float = 10.0):
        self.settings = settings or RulesSettings()
        seq = itertools.count(1)
        self.tracker = Tracker(self.settings.tracker)
        self.rules = PeopleRules("node-a", "gate", list(zones), TZ, self.settings, lambda: next(seq))
        self.t0, self.fps, self.i = t0, fps, 0
        self.updates = []

    def frames(self, frames) -> "Scene":
        for dets in frames:
            s = self.i / self.fps
            tracks = self.tracker.update(dets, s)
            self.updates += self.rules.step(tracks, self.t0 + timedelta(seconds=s))
            self.i += 1
        return self

    def seconds(self, seconds: float, make) -> "Scene":
        """`make(k)` gives frame k's detections for `seconds` of video."""
        return self.frames(make(k) for k in range(round(seconds * self.fps)))

    def finish(self) -> "Scene":
        self.updates += self.rules.finish()
        return self

    def events(self, kind: EventType):
        """Final state of each event of `kind`, in order of start."""
        last = {}
        for u in self.updates:
            if u.event.type == kind:
                last[u.event.event_id] = u
        return list(last.values())

    def at(self, seconds: float) -> datetime:
        return self.t0 + timedelta(seconds=seconds)


def walk(x0: float, x1: float, seconds: float = 1.0, fps: float = 10.0):
    """`Scene.seconds` maker: from x0 to x1 at a walking pace (a person does not jump)."""
    return lambda k: [person(x0 + (x1 - x0) * k / (seconds * fps))]


def crossing(k: int, fps: float = 10.0) -> list[Det]:
    # Walks left to right at 0.05 per second: inside the yard (x 0.4..0.6) from 7 s to 11 s,
    # then on for 8 s outside it, longer than reenter_gap.
    return [person(0.05 + 0.05 * k / fps, score=0.6 if k < 90 else 0.9)]


def test_geometry_foot_point_and_polygon():
    assert foot_point((0.2, 0.1, 0.4, 0.9)) == pytest.approx((0.3, 0.9))
    tri = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]
    assert point_in_polygon(0.2, 0.2, tri)
    assert not point_in_polygon(0.6, 0.6, tri)
    # The foot decides: a box reaching into the zone with its top only is outside.
    assert not point_in_polygon(*foot_point((0.3, 0.0, 0.38, 0.5)), YARD.polygon)


def test_crossing_an_armed_zone_gives_exactly_one_intrusion():
    sc = Scene().seconds(19, crossing)
    ups = [u for u in sc.updates if u.event.type == EventType.intrusion]
    assert [u.phase for u in ups] == ["start", "end"]
    assert len({u.event.event_id for u in ups}) == 1
    ev = ups[-1].event
    assert ev.zone == "yard" and ev.subtype is None and ev.camera_id == "gate" and ev.seq == 1
    # Foot point inside from x 0.4 (t = 7 s) to x 0.6 (t = 11 s); the end is published once
    # they have been outside for reenter_gap, but ended_at is the last sighting inside.
    frame = timedelta(seconds=0.1)  # which frame lands exactly on the edge is float rounding
    assert abs(ev.started_at - sc.at(7.0)) <= frame and abs(ev.ended_at - sc.at(11.0)) <= frame
    # Region: union of the boxes while inside only, not the whole walk.
    assert ev.region == pytest.approx([0.37, 0.45, 0.63, 0.75], abs=0.011)
    assert ev.confidence == pytest.approx(0.9)  # max score while inside
    assert sc.events(EventType.loitering) == []


def test_same_crossing_when_disarmed_gives_no_intrusion():
    sc = Scene(t0=DAY).seconds(19, crossing).finish()
    assert [u.event.zone for u in sc.events(EventType.loitering)] == []
    assert sc.events(EventType.intrusion) == []


def test_crossing_a_never_armed_zone_gives_no_intrusion():
    sc = Scene().seconds(10, lambda k: [person(0.7 + 0.025 * k / 10)]).finish()  # through the park
    assert sc.tracker.tracks  # the person was tracked
    assert sc.events(EventType.intrusion) == []


def test_shorter_than_intrusion_min_seconds_is_not_reported():
    s = RulesSettings(intrusion_min_seconds=4.5)
    sc = Scene(s).seconds(19, crossing).finish()  # four seconds inside
    assert sc.events(EventType.intrusion) == []


def test_loitering_after_threshold_with_started_at_on_entry():
    s = RulesSettings(loiter_seconds=60, intrusion=False)
    sc = Scene(s).seconds(70, lambda k: [person(0.9)]).seconds(1, walk(0.9, 0.7)).seconds(9, lambda k: [person(0.7)])
    ups = [u for u in sc.updates if u.event.type == EventType.loitering]
    assert ups[0].phase == "start" and ups[-1].phase == "end"
    assert len({u.event.event_id for u in ups}) == 1
    ev = ups[-1].event
    assert ev.zone == "park"
    # Entered at the first detection (0 s), not when confirmed (0.2 s), nor when 60 s passed.
    assert ev.started_at == sc.at(0.0)
    assert ev.ended_at == sc.at(70.4)  # last sighting inside: x 0.82 on the way out
    start_frame = next(i for i, u in enumerate(sc.updates) if u.phase == "start")
    assert start_frame == 0  # nothing published before it


def test_fifty_seconds_is_not_loitering():
    s = RulesSettings(loiter_seconds=60)
    sc = Scene(s).seconds(50, lambda k: [person(0.9)]).seconds(10, lambda k: [person(0.7)]).finish()
    assert sc.events(EventType.loitering) == []


def test_event_ends_when_the_person_leaves():
    s = RulesSettings(loiter_seconds=5, intrusion=False, reenter_gap=3)
    sc = Scene(s).seconds(8, lambda k: [person(0.9)]).seconds(1, walk(0.9, 0.7))
    assert [u.phase for u in sc.updates] == ["start"]
    sc.seconds(2, lambda k: [person(0.7)])  # visible outside, within reenter_gap
    assert [u.phase for u in sc.updates] == ["start"]
    sc.seconds(2, lambda k: [person(0.7)])
    assert [u.phase for u in sc.updates] == ["start", "end"]
    assert sc.updates[-1].event.ended_at == sc.at(8.4)


def test_event_ends_when_the_track_is_lost():
    s = RulesSettings(loiter_seconds=5, intrusion=False)
    sc = Scene(s).seconds(8, lambda k: [person(0.9)]).seconds(10, lambda k: [])
    assert [u.phase for u in sc.updates] == ["start", "end"]
    assert sc.updates[-1].event.ended_at == sc.at(7.9)


def test_two_minutes_at_ten_detections_a_second_is_one_event_with_updates():
    s = RulesSettings(loiter_seconds=60, update_interval=10)
    sc = Scene(s).seconds(120, lambda k: [person(0.5 + 0.02 * ((k // 10) % 3))]).finish()
    for kind in (EventType.intrusion, EventType.loitering):
        ups = [u for u in sc.updates if u.event.type == kind]
        assert len({u.event.event_id for u in ups}) == 1
        assert [u.phase for u in ups].count("start") == 1 and ups[-1].phase == "end"
        assert "update" in [u.phase for u in ups]
        assert len(ups) <= 120 / 10 + 2  # start, one update per update_interval, end: not per frame


def test_two_people_give_two_events():
    s = RulesSettings(loiter_seconds=30)
    sc = Scene(s).seconds(40, lambda k: [person(0.45), person(0.55, score=0.7)]).finish()
    intr = sc.events(EventType.intrusion)
    loit = sc.events(EventType.loitering)
    assert len(intr) == 2 and len(loit) == 2
    assert {u.event.event_id for u in intr}.isdisjoint({u.event.event_id for u in loit})
    assert sorted(u.event.confidence for u in intr) == [0.7, 0.8]
    seqs = [u.event.seq for u in sc.updates if u.phase == "start"]
    assert len(seqs) == len(set(seqs)) == 4


def test_detector_skipping_frames_does_not_split_the_event():
    s = RulesSettings(loiter_seconds=20, intrusion=False)  # tracker forgets after 3 s, reenter_gap 5 s
    sc = Scene(s)
    for _ in range(15):  # detector runs 1 s, then idles 2.5 s, over and over
        sc.seconds(1, lambda k: [person(0.9)])
        sc.seconds(2.5, lambda k: None)
    sc.finish()
    (ev,) = sc.events(EventType.loitering)
    assert ev.event.ended_at - ev.event.started_at > timedelta(seconds=45)


def test_detector_missing_the_person_briefly_does_not_split_the_event():
    s = RulesSettings(loiter_seconds=10, intrusion=False)
    frames = [[person(0.9)] if k % 40 >= 8 else [] for k in range(300)]  # 0.8 s of misses every 4 s
    sc = Scene(s).frames(frames).finish()
    assert len(sc.events(EventType.loitering)) == 1


def test_reentering_within_gap_continues_later_is_new():
    s = RulesSettings(loiter_seconds=3, intrusion=False, reenter_gap=4)
    sc = Scene(s)
    sc.seconds(5, lambda k: [person(0.9)]).seconds(1, walk(0.9, 0.7)).seconds(2, lambda k: [person(0.7)])
    sc.seconds(1, walk(0.7, 0.9)).seconds(1, lambda k: [person(0.9)])
    assert len(sc.events(EventType.loitering)) == 1
    sc.seconds(1, walk(0.9, 0.7)).seconds(6, lambda k: [person(0.7)])
    sc.seconds(1, walk(0.7, 0.9)).seconds(5, lambda k: [person(0.9)]).finish()
    evs = sc.events(EventType.loitering)
    assert len(evs) == 2 and all(u.phase == "end" for u in evs)
    assert evs[0].event.ended_at == sc.at(10.4)  # x 0.82 on the second way out


def test_loiter_armed_only_and_per_zone_overrides():
    armed_only = RulesSettings(loiter_seconds=5, loiter_armed_only=True, intrusion=False)
    sc = Scene(armed_only).seconds(10, lambda k: [person(0.5), person(0.9)]).finish()
    assert [u.event.zone for u in sc.events(EventType.loitering)] == ["yard"]

    per_zone = RulesSettings(loiter_seconds=5, loiter_seconds_by_zone={"yard": None, "park": 8}, intrusion=False)
    sc = Scene(per_zone).seconds(7, lambda k: [person(0.5), person(0.9)]).finish()
    assert sc.events(EventType.loitering) == []  # yard off, park needs 8 s
    sc = Scene(per_zone).seconds(9, lambda k: [person(0.5), person(0.9)]).finish()
    assert [u.event.zone for u in sc.events(EventType.loitering)] == ["park"]


def test_overlapping_zones_each_get_their_event():
    inner = Zone(name="door", polygon=[[0.45, 0.5], [0.55, 0.5], [0.55, 0.9], [0.45, 0.9]], armed=NIGHTS)
    sc = Scene(zones=(YARD, inner)).seconds(3, lambda k: [person(0.5)]).finish()
    assert sorted(u.event.zone for u in sc.events(EventType.intrusion)) == ["door", "yard"]


def test_settings_are_checked():
    with pytest.raises(ValidationError, match="reenter_gap"):
        RulesSettings(reenter_gap=1.0)  # shorter than the tracker's memory
    RulesSettings(reenter_gap=1.0, tracker=TrackerSettings(max_age_seconds=1.0))
    with pytest.raises(ValidationError):
        RulesSettings(loiter_seconds_by_zone={"yard": 0})
    with pytest.raises(ValidationError):
        RulesSettings(loiter_secs=30)
    with pytest.raises(ValueError, match="nowhere"):
        PeopleRules("node-a", "gate", [YARD], TZ, RulesSettings(loiter_seconds_by_zone={"nowhere": 5}), lambda: 1)
    with pytest.raises(ValueError):
        PeopleRules("node-a", "gate", [YARD], TZ, None, lambda: 1).step([], datetime(2026, 1, 1))


def test_the_foot_point_decides_not_the_box():
    far = Zone(name="roof", polygon=[[0.0, 0.0], [1.0, 0.0], [1.0, 0.55], [0.0, 0.55]], armed=NIGHTS)
    below = Scene(zones=[far]).seconds(5, lambda k: [person(0.3, cy=0.5)]).finish()  # box 0.35..0.65
    assert below.events(EventType.intrusion) == []
    on = Scene(zones=[far]).seconds(5, lambda k: [person(0.3, cy=0.35)]).finish()  # feet at 0.5
    assert [u.event.zone for u in on.events(EventType.intrusion)] == ["roof"]
