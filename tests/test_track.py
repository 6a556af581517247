from collections import namedtuple
from dataclasses import dataclass

import numpy as np
import pytest
from pydantic import ValidationError

from vaktpost.edge.analysis.track import _FORBIDDEN, Tracker, assign, hidden, mahalanobis, predict, spread
from vaktpost.edge.config.track import TrackerSettings
from vaktpost.edge.geometry import iou


@dataclass(frozen=True)
class Det:
    box: tuple[float, float, float, float]
    score: float = 0.8


def person(cx: float, cy: float = 0.5, w: float = 0.08, h: float = 0.25) -> Det:
    return Det((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))


def run(tracker: Tracker, frames, fps: float = 5.0, t0: float = 0.0):
    """Feed frames (list of detections, or None = detector did not run); return outputs per frame."""
    return [tracker.update(dets, t0 + i / fps) for i, dets in enumerate(frames)]


def center_x(d) -> float:
    return (d.box[0] + d.box[2]) / 2


def ids(out) -> set[int]:
    return {tr.id for tracks in out for tr in tracks}


def test_iou_assignment_and_gate_basics():
    a = (0.0, 0.0, 0.2, 0.2)
    assert iou(a, a) == pytest.approx(1.0)
    assert iou(a, (0.1, 0.0, 0.3, 0.2)) == pytest.approx(1 / 3)
    assert iou(a, (0.5, 0.5, 0.6, 0.6)) == 0.0
    # Optimal, not greedy: the greedy best pair (0, 1) would leave row 1 with its worst choice.
    cost = np.array([[2.0, 1.0], [3.0, 10.0]])
    assert sorted(assign(cost)) == [(0, 1), (1, 0)]
    assert assign(np.array([[_FORBIDDEN, 1.0]])) == [(0, 1)]
    assert assign(np.array([[_FORBIDDEN]])) == [] and assign(np.zeros((0, 3))) == []
    # The prediction's uncertainty grows with time: the same offset is further after 0.1 s than after 1 s.
    x, p = np.array([0.5, 0.5, 0.0, 0.0]), np.diag([1e-4, 1e-4, 1e-2, 1e-2])
    z = np.array([0.6, 0.5])
    assert mahalanobis(*predict(x, p, 0.1, 0.25), z, 0.25) > mahalanobis(*predict(x, p, 1.0, 0.25), z, 0.25)
    # ... and a vague prediction pays for it in the cost (negative log-likelihood).
    assert spread(predict(x, p, 1.0, 0.25)[1], 0.25) > spread(predict(x, p, 0.1, 0.25)[1], 0.25) > 0


def test_the_person_further_away_is_hidden_behind_the_nearer():
    near, far = (0.40, 0.30, 0.50, 0.70), (0.42, 0.25, 0.50, 0.60)  # far: feet higher in the image
    assert hidden([near, far]) == [False, True]
    assert hidden([near, (0.49, 0.25, 0.60, 0.60)]) == [False, False]  # barely overlapping: both visible


def test_smooth_walk_keeps_one_id_and_is_confirmed_after_confirm_hits():
    tr = Tracker(TrackerSettings(confirm_hits=3))
    out = run(tr, [[person(0.1 + 0.01 * i)] for i in range(60)])
    assert out[0] == [] and out[1] == []  # not confirmed yet
    assert len(out[2]) == 1 and out[2][0].confirmed
    assert ids(out) == {out[2][0].id}
    assert [s[0] for s in out[2][0].sightings] == [0.0, 0.2, 0.4]  # what led to the confirmation
    last = out[-1][0]
    assert last.hits == 60 and last.missed == 0
    assert last.box == pytest.approx(person(0.1 + 0.59).box)
    assert last.first_seen == 0.0 and last.last_seen == pytest.approx(59 / 5)


def test_confirmed_on_m_of_n_runs_despite_misses():
    """A small person the detector finds in 3 of 5 runs is confirmed; with N in a row it never would be."""
    tr = Tracker(TrackerSettings(confirm_hits=3, confirm_runs=5))
    frames = [[person(0.3 + 0.01 * i)] if i in (0, 2, 4) else [] for i in range(5)]
    out = run(tr, frames)
    assert [len(o) for o in out] == [0, 0, 0, 0, 1]
    assert out[4][0].first_seen == 0.0 and len(out[4][0].sightings) == 3
    # Three misses in five runs: the candidate is forgotten before it could confirm.
    tr = Tracker(TrackerSettings(confirm_hits=3, confirm_runs=5))
    out = run(tr, [[person(0.3)], [], [], [], [person(0.3)], [person(0.3)]])
    assert all(o == [] for o in out)
    assert [t.first_seen for t in tr.tracks] == [0.8]  # a new candidate, not the old one
    with pytest.raises(ValidationError, match="confirm_hits"):
        TrackerSettings(confirm_hits=4, confirm_runs=3)


def test_has_candidates_while_a_detection_waits_for_confirmation():
    tr = Tracker(TrackerSettings(confirm_hits=2, confirm_runs=3))
    assert not tr.has_candidates
    tr.update([person(0.3)], 0.0)
    assert tr.has_candidates
    tr.update([person(0.3)], 0.2)
    assert not tr.has_candidates


def test_survives_two_missed_detections():
    tr = Tracker(TrackerSettings(max_missed=2))
    frames = [[person(0.2 + 0.01 * i)] for i in range(10)] + [[], []] + [[person(0.34 + 0.01 * i)] for i in range(5)]
    out = run(tr, frames)
    assert [len(o) for o in out[10:12]] == [1, 1]  # reported from memory while missed
    assert out[11][0].missed == 2
    assert len(ids(out)) == 1
    assert out[-1][0].missed == 0


def test_dropped_after_max_missed_and_comes_back_with_a_new_id():
    tr = Tracker(TrackerSettings(max_missed=2, max_age_seconds=10))
    out = run(tr, [[person(0.3)]] * 5 + [[]] * 3 + [[person(0.3)]] * 4)
    assert out[7] == []  # third miss
    first, later = out[4][0].id, out[-1][0].id
    assert first != later


def test_no_information_ages_only_by_time():
    tr = Tracker(TrackerSettings(max_missed=1, max_age_seconds=3.0))
    run(tr, [[person(0.5)]] * 5)  # t = 0 .. 0.8
    (kept,) = tr.update(None, 2.0)
    for t in (2.2, 2.4, 2.6, 3.0, 3.8):  # many frames without the detector: not misses
        assert [x.id for x in tr.update(None, t)] == [kept.id]
    assert tr.update(None, 3.81) == []  # 3 s after the last match: forgotten


def test_one_frame_false_detection_is_never_confirmed():
    tr = Tracker(TrackerSettings(confirm_hits=3, confirm_runs=5))
    frames: list = [[] for _ in range(30)]
    frames[5] = [Det((0.7, 0.1, 0.75, 0.2), 0.9)]
    for i in (10, 13, 16, 19):  # flickering in the same place, once in three runs
        frames[i] = [Det((0.4, 0.4, 0.45, 0.5), 0.6)]
    frames[20] = [Det((0.1, 0.1, 0.2, 0.3), 0.9)]
    frames[21:25] = [None] * 4  # detector then idle: no information is not a hit either
    assert all(o == [] for o in run(tr, frames))


def test_crossing_people_keep_their_ids():
    tr = Tracker()
    frames = []
    for i in range(21):  # half a box width per frame towards each other, passing between i = 10 and 11;
        # right after passing, each is nearer the other's last box: IoU alone would swap them.
        frames.append([person(0.07 + 0.04 * i, 0.5), person(0.93 - 0.04 * i, 0.52)])
    out = run(tr, frames)
    left_id, right_id = (t.id for t in sorted(out[5], key=lambda t: t.box[0]))
    assert left_id != right_id
    after = {t.id: (t.box[0] + t.box[2]) / 2 for t in out[-1]}
    assert after[left_id] > 0.8 and after[right_id] < 0.2  # each id stayed with its walker
    assert ids(out) == {left_id, right_id}


def test_people_crossing_with_one_hidden_keep_their_ids():
    """Where they overlap the detector sees only the front person; the hidden one coasts on its prediction."""
    tr = Tracker()
    frames = []
    for i in range(25):
        a, b = person(0.1 + 0.035 * i, 0.5), person(0.9 - 0.035 * i, 0.51)
        frames.append([a] if abs(center_x(a) - center_x(b)) < 0.1 else [a, b])
    out = run(tr, frames)
    left_id, right_id = (t.id for t in sorted(out[5], key=lambda t: t.box[0]))
    after = {t.id: center_x(t) for t in out[-1]}
    assert after[left_id] > 0.8 and after[right_id] < 0.2
    assert ids(out) == {left_id, right_id}


def test_fast_walker_at_low_detector_rate_stays_inside_the_growing_gate():
    frames = [[person(0.1 + 0.09 * i)] for i in range(8)]  # 0.09 per run, box only 0.08 wide: IoU 0
    assert len(ids(run(Tracker(), frames, fps=1.0))) == 1
    # The same step ten times a second is four times the walking pace the gate allows for: no match.
    assert all(o == [] for o in run(Tracker(TrackerSettings(gate=1.0)), frames, fps=10.0))


def test_a_different_size_is_someone_else():
    tr = Tracker(TrackerSettings(confirm_hits=1))
    (a,) = tr.update([person(0.5)], 0.0)
    now = tr.update([person(0.5, h=0.6)], 0.2)
    assert [(t.id == a.id, t.missed) for t in now] == [(True, 1), (False, 0)]  # a new track beside the old


def test_accepts_any_object_with_box_and_score():
    D = namedtuple("D", "box score label")
    tr = Tracker(TrackerSettings(confirm_hits=1))
    (t,) = tr.update([D([0.1, 0.1, 0.2, 0.4], 0.5, "person")], 0.0)
    assert t.box == (0.1, 0.1, 0.2, 0.4) and t.score == 0.5


def test_time_must_not_go_backwards_and_settings_are_strict():
    tr = Tracker()
    tr.update([], 5.0)
    with pytest.raises(ValueError):
        tr.update([], 4.0)
    with pytest.raises(ValidationError):
        TrackerSettings(max_gap=3)
    with pytest.raises(ValueError, match="aspect"):
        tr.update([], 6.0, aspect=0.0)
