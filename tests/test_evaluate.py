"""Scoring analysis events against clip ground truth: matching, counts, rates, files."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from vaktpost.contract.events import Event, EventType, uuid7
from vaktpost.evaluate import (
    Observed,
    Report,
    TypeStats,
    evaluate,
    fits,
    load_clip,
    match,
    score_clip,
)
from vaktpost.scenarios import Expected, node_config
from vaktpost.scenes import Scene, write_video

T0 = datetime(2024, 5, 14, 21, 0, tzinfo=timezone(timedelta(hours=2)))


def ev(type_: str, start_s: float, subtype: str | None = None, zone: str | None = None) -> Observed:
    return Observed(type=type_, start_s=start_s, subtype=subtype, zone=zone)


# --- fits and match ---------------------------------------------------------------------


def test_fits_checks_type_subtype_zone_and_window_edges() -> None:
    e = Expected("tamper", 8.0, 16.0, subtype="covered")
    assert fits(e, ev("tamper", 8.0, "covered")) and fits(e, ev("tamper", 16.0, "covered"))  # edges count
    assert not fits(e, ev("tamper", 7.99, "covered")) and not fits(e, ev("tamper", 16.01, "covered"))
    assert not fits(e, ev("tamper", 10.0, "moved")) and not fits(e, ev("tamper", 10.0))
    assert not fits(e, ev("scene_change", 10.0, "covered"))
    anything = Expected("tamper", 8.0, 16.0)  # no subtype given: any subtype will do
    assert fits(anything, ev("tamper", 9.0, "moved")) and fits(anything, ev("tamper", 9.0))
    zoned = Expected("intrusion", 0.0, 5.0, zone="yard")
    assert fits(zoned, ev("intrusion", 1.0, zone="yard"))
    assert not fits(zoned, ev("intrusion", 1.0, zone="gate")) and not fits(zoned, ev("intrusion", 1.0))


def test_match_is_one_to_one() -> None:
    two = [Expected("intrusion", 0.0, 10.0), Expected("intrusion", 0.0, 10.0)]
    assert match(two, [ev("intrusion", 3.0)]) == {0: 0}  # one event satisfies one expectation only
    assert match(two[:1], [ev("intrusion", 3.0), ev("intrusion", 4.0)]) == {0: 0}  # earliest event
    assert match(two, [ev("intrusion", 4.0), ev("intrusion", 3.0)]) == {0: 1, 1: 0}


def test_match_is_maximal_where_greedy_would_miss() -> None:
    # Greedy (each expectation takes its earliest fitting event) gives the wide window
    # the 1 s event and leaves the narrow window empty; both can be satisfied.
    wide, narrow = Expected("tamper", 0.0, 10.0), Expected("tamper", 0.0, 3.0)
    assert match([wide, narrow], [ev("tamper", 1.0), ev("tamper", 8.0)]) == {0: 1, 1: 0}


def test_required_expectations_are_matched_before_optional_ones() -> None:
    optional = Expected("intrusion", 0.0, 10.0, must=False)
    required = Expected("intrusion", 2.0, 4.0)
    assert match([optional, required], [ev("intrusion", 3.0)]) == {1: 0}
    # With a second event the optional one gets it, and the required keeps its own.
    assert match([optional, required], [ev("intrusion", 3.0), ev("intrusion", 9.0)]) == {0: 1, 1: 0}


# --- per clip -----------------------------------------------------------------------------


def test_score_clip_counts_tp_fn_fp_and_forbidden() -> None:
    expected = [Expected("intrusion", 2.0, 9.0, zone="yard"), Expected("intrusion", 13.0, 20.0, zone="yard")]
    events = [
        ev("motion", 1.0), ev("motion", 12.0),  # not scored
        ev("intrusion", 3.5, zone="yard"),  # TP
        ev("intrusion", 5.0, zone="yard"),  # duplicate of the first person: FP
        ev("intrusion", 21.0, zone="yard"),  # second person, but too late: FP, and that one is an FN
        ev("tamper", 10.0, "covered"),  # forbidden: FP
    ]
    clip = score_clip("x", 25.0, expected, ["tamper", "scene_change"], events)
    counts = clip.counts()
    assert counts["tp"] == {"intrusion": 1} and counts["fn"] == {"intrusion": 1}
    assert counts["fp"] == {"intrusion": 2, "tamper": 1} and counts["forbidden"] == {"tamper": 1}
    assert clip.motion_events == 2 and not clip.passed
    assert [e.from_s for e in clip.missed] == [13.0]
    summary = clip.summary()
    assert "FAIL" in summary and "missed intrusion@yard [13-20 s]" in summary
    assert "tamper/covered at 10.0 s (forbidden)" in summary


def test_optional_expectation_absorbs_without_counting() -> None:
    optional = [Expected("scene_change", 0.0, 30.0, must=False)]
    with_event = score_clip("x", 30.0, optional, [], [ev("scene_change", 12.0)])
    without = score_clip("x", 30.0, optional, [], [])
    for clip in (with_event, without):
        assert clip.passed and not any(clip.counts().values())


def test_silent_clip_passes_only_when_silent() -> None:
    quiet = score_clip("lights_on", 25.0, [], ["tamper", "scene_change"], [ev("motion", 3.0)])
    assert quiet.passed and quiet.motion_events == 1
    noisy = score_clip("lights_on", 25.0, [], ["tamper", "scene_change"], [ev("scene_change", 10.2)])
    assert not noisy.passed and len(noisy.forbidden_hits) == 1


# --- the report ---------------------------------------------------------------------------


def _report() -> Report:
    half_hour = 1800.0
    a = score_clip("a", half_hour, [Expected("tamper", 8.0, 16.0, subtype="covered")], ["scene_change"],
                   [ev("tamper", 9.0, "covered"), ev("scene_change", 12.0)])
    b = score_clip("b", half_hour, [Expected("loitering", 2.0, 12.0, zone="yard")], [],
                   [ev("tamper", 100.0, "moved"), ev("tamper", 900.0, "moved")])
    return Report([a, b])


def test_report_per_type_precision_recall_and_false_alarms_per_hour() -> None:
    report = _report()
    assert report.hours == pytest.approx(1.0)
    rows = {r.type: r for r in report.per_type()}
    assert list(rows) == ["loitering", "scene_change", "tamper"]  # EventType order, only types that occurred
    tamper = rows["tamper"]
    assert (tamper.tp, tamper.fn, tamper.fp) == (1, 0, 2)
    assert tamper.precision == pytest.approx(1 / 3) and tamper.recall == 1.0
    assert tamper.false_alarms_per_hour == pytest.approx(2.0)
    loiter = rows["loitering"]
    assert (loiter.tp, loiter.fn, loiter.fp) == (0, 1, 0)
    assert loiter.precision is None and loiter.recall == 0.0 and loiter.false_alarms_per_hour == 0.0
    scene = rows["scene_change"]
    assert (scene.fp, scene.forbidden, scene.recall) == (1, 1, None)
    overall = report.overall()
    assert (overall.tp, overall.fn, overall.fp, overall.forbidden) == (1, 1, 3, 1)
    assert overall.false_alarms_per_hour == pytest.approx(3.0)
    assert overall.precision == pytest.approx(0.25) and overall.recall == pytest.approx(0.5)


def test_report_table_and_json() -> None:
    report = _report()
    text = report.table()
    assert "2 clips, 60.0 min of video, 0 passed" in text
    tamper_line = next(line for line in text.splitlines() if line.startswith("| tamper "))
    assert [c.strip() for c in tamper_line.strip("|").split("|")] == ["tamper", "1", "0", "2", "0", "33 %",
                                                                       "100 %", "2.0"]
    assert "| a " in text and "false alarm scene_change at 12.0 s (forbidden)" in text
    data = json.loads(json.dumps(report.to_json()))  # plain JSON types only
    assert data["overall"]["fp"] == 3 and data["passed"] == 0 and len(data["clips"]) == 2
    assert data["clips"][1]["missed"] == [{"type": "loitering", "zone": "yard", "from_s": 2.0, "to_s": 12.0,
                                           "must": True}]


def test_empty_report_has_no_rates() -> None:
    assert TypeStats("all", 0, 0, 0, 0, 0.0).false_alarms_per_hour is None
    assert Report().per_type() == [] and "0 clips" in Report().table()


# --- events and files -------------------------------------------------------------------------


def test_observed_times_are_relative_to_the_clip_start_across_time_zones() -> None:
    event = Event(event_id=uuid7(), seq=1, node_id="n", camera_id="cam", type=EventType.tamper, subtype="moved",
                  started_at=T0 + timedelta(seconds=9.25), ended_at=T0 + timedelta(seconds=20), confidence=0.8,
                  phase="end")
    obs = Observed.from_event(event, T0)  # the event is in UTC, the clip start in +02:00
    assert (obs.type, obs.subtype, obs.start_s, obs.end_s, obs.confidence) == ("tamper", "moved", 9.25, 20.0, 0.8)


def _clip_json(**kw) -> dict:
    base = {"name": "c", "description": "", "video": "c.avi", "start_time": T0.isoformat(), "duration_s": 4.0,
            "config": node_config("c.avi"), "expected": [], "forbidden": []}
    base.update(kw)
    return base


@pytest.mark.parametrize("bad, message", [
    ({"start_time": "2024-05-14T21:00:00"}, "time zone"),
    ({"expected": [{"type": "tamper", "from_s": 1, "to_s": 2}], "forbidden": ["tamper"]},
     "both expected and forbidden"),
    ({"expected": [{"type": "vandalism", "from_s": 1, "to_s": 2}]}, "unknown event type"),
    ({"forbidden": ["motion"]}, "not scored"),
    ({"expected": [{"type": "tamper", "from_s": 5, "to_s": 2}]}, "ends before it starts"),
    ({"expected": [{"type": "tamper", "from_s": 1}]}, "missing key 'to_s'"),
    ({"expected": [{"type": "tamper", "from_s": 1, "to_s": 2, "when": 3}]}, "unknown keys"),
])
def test_load_clip_rejects_bad_ground_truth(tmp_path: Path, bad: dict, message: str) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps(_clip_json(**bad)))
    with pytest.raises(ValueError, match=message) as info:
        load_clip(path)
    assert str(path) in str(info.value)


def test_evaluate_refuses_an_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no clip .json files"):
        evaluate(tmp_path)


def test_evaluate_runs_the_pipeline_over_a_clip(tmp_path: Path) -> None:
    """End to end on a tiny clip whose config uses only keys edge/config/__init__.py takes today."""
    write_video(Scene(width=320, height=180, fps=10.0, duration_s=4.0, seed=2, noise_sigma=2.0, lights_on_at=2.0),
                tmp_path / "c.avi")
    config = node_config("c.avi")
    config["cameras"][0] = {k: v for k, v in config["cameras"][0].items() if k not in ("tamper", "scene_change")}
    config["cameras"][0]["detector"] = {"kind": "none"}  # nothing here needs the model: keep it fast
    (tmp_path / "c.json").write_text(json.dumps(_clip_json(config=config, forbidden=["intrusion"])))
    seen = []
    report = evaluate(tmp_path, on_clip=seen.append)
    assert [c.name for c in report.clips] == [c.name for c in seen] == ["c"]
    clip = report.clips[0]
    assert clip.duration_s == 4.0 and clip.analysis_s is not None and clip.analysis_s > 0
    assert all(e.type != "motion" for e in clip.events)  # motion is counted, not scored
    # No detector, so no people: the forbidden intrusion cannot happen (other analysers may speak).
    assert clip.forbidden_hits == [] and clip.missed == []
    assert "| c " in report.table()
