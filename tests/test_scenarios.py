"""The labelled scenario set: deterministic clips whose ground truth agrees with what the scenes show."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("skimage", reason="photo figures need scikit-image (dev extra)")

from vaktpost.contract.schedule import is_armed
from vaktpost.edge.config import Camera, parse
from vaktpost.edge.geometry import point_in_polygon
from vaktpost.evaluate import load_clip
from vaktpost.scenarios import LOITER_SECONDS, QUICK, Scenario, generate, scenarios
from vaktpost.scenes import (
    CameraTurn,
    Figure,
    Graffiti,
    LensCover,
    LensSmear,
    Prop,
    Scene,
    person_matte,
    photo_cutout,
    render_frame,
)

# Camera sections the analysers bring, and the model that validates each until edge/config/__init__.py has it.
SECTION_MODELS = {
    "detector": ("vaktpost.edge.config.detectors", "DetectorSettings"),
    "rules": ("vaktpost.edge.config.rules", "RulesSettings"),
    "tamper": ("vaktpost.edge.config.tamper", "TamperSettings"),
    "scene_change": ("vaktpost.edge.config.scene_change", "SceneChangeSettings"),
}


def validate_config(config: dict) -> None:
    """vaktpost.edge.config.parse the config; sections edge/config/__init__.py does not take yet
    are checked by their own model."""
    config = json.loads(json.dumps(config))  # deep copy
    for cam in config["cameras"]:
        for key in [k for k in cam if k not in Camera.model_fields]:
            module, name = SECTION_MODELS[key]  # any other unknown key is a mistake: KeyError
            model = getattr(pytest.importorskip(module), name)
            model.model_validate(cam.pop(key))
    parse(config)


@pytest.fixture(scope="module")
def quick_set(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return generate(tmp_path_factory.mktemp("scenarios"), quick=True)


# --- the generated files -----------------------------------------------------------


def test_quick_set_files_parse_and_videos_match(quick_set: list[Path]) -> None:
    assert [p.stem for p in quick_set] == list(QUICK)
    for path in quick_set:
        data = json.loads(path.read_text())
        assert set(data) == {"name", "description", "video", "start_time", "duration_s", "config",
                             "expected", "forbidden"}
        clip = load_clip(path)  # the evaluator's own checks
        assert clip.video == path.with_suffix(".avi") and clip.start_time.tzinfo is not None
        assert data["config"]["cameras"][0]["source"] == data["video"]
        validate_config(data["config"])
        cap = cv2.VideoCapture(str(clip.video))
        try:
            assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == clip.duration_s * 10
            assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (640, 360)
            assert cap.get(cv2.CAP_PROP_FPS) == 10
        finally:
            cap.release()
    # The armed and disarmed crossings are one video analysed at two times of day.
    armed, disarmed = (quick_set[0].parent / f"{n}.avi" for n in ("intrusion_armed", "intrusion_disarmed"))
    assert armed.read_bytes() == disarmed.read_bytes()
    a, d = (json.loads(p.read_text()) for p in quick_set[:2])
    assert a["start_time"] != d["start_time"]
    assert a["config"]["cameras"][0]["zones"] == d["config"]["cameras"][0]["zones"]


def test_generated_video_shows_the_scene(quick_set: list[Path]) -> None:
    clip = load_clip(quick_set[QUICK.index("lens_covered")])
    (sc,) = [s for s in scenarios(quick=True) if s.name == "lens_covered"]
    cap = cv2.VideoCapture(str(clip.video))
    try:
        for index in (0, 120):  # before and during the cover
            cap.set(cv2.CAP_PROP_POS_FRAMES, index)
            ok, frame = cap.read()
            assert ok
            ref = render_frame(sc.scene, index / 10).astype(int)
            assert np.abs(frame.astype(int) - ref).mean() < 8  # MJPG is lossy, nothing more
    finally:
        cap.release()


def test_full_set_json_is_deterministic_and_complete() -> None:
    a, b = scenarios(), scenarios()
    assert [s.to_json() for s in a] == [s.to_json() for s in b]
    names = [s.name for s in a]
    assert len(names) == len(set(names)) == 21 and set(QUICK) <= set(names)
    for sc in a:
        validate_config(sc.config())
        assert 15 <= sc.scene.duration_s <= 80 and (sc.scene.width, sc.scene.height, sc.scene.fps) == (640, 360, 10)
        for e in sc.expected:
            assert 0 <= e.from_s < e.to_s <= sc.scene.duration_s
        assert not {e.type for e in sc.expected} & set(sc.forbidden)
    # Every kind of situation the brief lists is there, and the set has both kinds of clips.
    covered = {(e.type, e.subtype) for sc in a for e in sc.expected}
    assert covered == {("intrusion", None), ("loitering", None), ("scene_change", None), ("tamper", "covered"),
                       ("tamper", "defocused"), ("tamper", "moved")}
    assert sum(not sc.expected for sc in a) >= 6  # clips where the only right answer is silence


def test_photo_scenarios_render_the_same_frames_twice() -> None:
    for name, t in (("intrusion_armed", 6.0), ("graffiti", 12.0), ("rain", 3.3)):
        (x,) = [s for s in scenarios() if s.name == name]
        (y,) = [s for s in scenarios() if s.name == name]
        assert np.array_equal(render_frame(x.scene, t), render_frame(y.scene, t))


# --- ground truth agrees with the scenes -------------------------------------------------


def _times(sc: Scenario) -> np.ndarray:
    return np.arange(0.0, sc.scene.duration_s, 0.1)


def _in_zone(sc: Scenario, fig: Figure, t: float) -> bool:
    pos = fig.position(t)
    zone = sc.config()["cameras"][0]["zones"][0]["polygon"]
    return pos is not None and point_in_polygon(pos[0], pos[1], zone)


def _armed(sc: Scenario) -> Callable[[float], bool]:
    """Whether the clip's zone is armed t seconds into it, by vaktpost.edge.analysis.schedule."""
    raw = sc.config()
    cfg = parse({**raw, "cameras": [{k: v for k, v in raw["cameras"][0].items() if k in Camera.model_fields}]})
    schedule = cfg.cameras[0].zones[0].schedule
    return lambda t: is_armed(schedule, sc.start_time + timedelta(seconds=t), cfg.node.timezone)


def _stays(sc: Scenario, fig: Figure) -> list[tuple[float, float]]:
    """(entry, exit) times of a figure's continuous stays in the zone."""
    out: list[tuple[float, float]] = []
    inside_since = None
    for t in _times(sc):
        inside = _in_zone(sc, fig, t)
        if inside and inside_since is None:
            inside_since = t
        if not inside and inside_since is not None:
            out.append((inside_since, t))
            inside_since = None
    if inside_since is not None:
        out.append((inside_since, sc.scene.duration_s))
    return out


@pytest.mark.parametrize("sc", scenarios(), ids=lambda s: s.name)
def test_people_ground_truth_follows_zone_schedule_and_loiter_time(sc: Scenario) -> None:
    # One intrusion per person who is ever in the armed zone, starting in a window
    # that contains their entry; none where intrusion is forbidden.
    armed = _armed(sc)
    armed_entries = []
    for fig in sc.scene.figures:
        armed_times = [t for t in _times(sc) if _in_zone(sc, fig, t) and armed(t)]
        if armed_times:
            armed_entries.append(armed_times[0])
    intrusions = [e for e in sc.expected if e.type == "intrusion"]
    assert len(intrusions) == len(armed_entries)
    for e, entry in zip(intrusions, sorted(armed_entries)):
        assert e.from_s <= entry <= e.to_s and e.zone == "yard"
    if "intrusion" in sc.forbidden:
        assert not armed_entries
    # Loitering: expected stays exceed the threshold with margin; forbidden ones fall well short.
    stays = [s for fig in sc.scene.figures for s in _stays(sc, fig)]
    long = [s for s in stays if s[1] - s[0] > LOITER_SECONDS]
    loiters = [e for e in sc.expected if e.type == "loitering"]
    assert len(loiters) == len(long)
    for e, (entry, leave) in zip(loiters, long):
        assert leave - entry >= LOITER_SECONDS + 10 and e.from_s <= entry <= e.to_s
    if "loitering" in sc.forbidden:
        assert all(leave - entry <= LOITER_SECONDS - 4 for entry, leave in stays)


@pytest.mark.parametrize("sc", scenarios(), ids=lambda s: s.name)
def test_scene_and_tamper_ground_truth_follow_the_scene(sc: Scenario) -> None:
    changes = ([p.appears_s for p in sc.scene.props if p.appears_s is not None]
               + [p.removed_s for p in sc.scene.props if p.removed_s is not None]
               + [g.start_s for g in sc.scene.graffiti])
    assert len([e for e in sc.expected if e.type == "scene_change"]) == len(changes)
    for e in (e for e in sc.expected if e.type == "scene_change"):
        assert any(e.from_s <= c <= e.to_s for c in changes)
    subtype = {LensCover: "covered", LensSmear: "defocused", CameraTurn: "moved"}
    tampers = [e for e in sc.expected if e.type == "tamper"]
    assert [(e.subtype, e.from_s) for e in tampers] == [(subtype[type(f)], f.start_s) for f in sc.scene.camera_effects]
    if not sc.expected:  # the nuisance clips change the light, never the world or the camera
        assert not (sc.scene.props or sc.scene.graffiti or sc.scene.camera_effects)


# --- photo figures and effects in the generator -------------------------------------------


def _photo_scene(kind: str, **kw) -> Scene:
    fig = Figure(0.0, 4.0, [(0.2, 0.9), (0.8, 0.85)], height=0.5, kind=kind)  # type: ignore[arg-type]
    base = dict(width=320, height=240, fps=10.0, duration_s=4.0, seed=3, noise_sigma=0.0, figures=[fig])
    base.update(kw)
    return Scene(**base)


@pytest.mark.parametrize("kind", ["astronaut", "cameraman"])
def test_photo_figure_is_composited_inside_its_truth_box(kind: str) -> None:
    scene = _photo_scene(kind)
    empty = dataclasses.replace(scene, figures=[])
    for t in (1.0, 2.5):
        frame = render_frame(scene, t)
        diff = np.abs(frame.astype(int) - render_frame(empty, t).astype(int)).max(axis=2) > 12
        (x1, y1, x2, y2), = scene.truth_boxes(t)
        ys, xs = np.nonzero(diff)
        # All of the person is in the box (2 px for the walking bounce and soft edge) ...
        assert xs.min() >= x1 * 320 - 2 and xs.max() <= x2 * 320 + 2
        assert ys.min() >= y1 * 240 - 2 and ys.max() <= y2 * 240 + 2
        # ... and the cut-out fills much of it: a person, not a box or a speck.
        box_px = (x2 - x1) * 320 * (y2 - y1) * 240
        assert 0.4 < len(xs) / box_px < 0.95
        # It is the photograph, with its texture and colour: not a flat drawn shape.
        person = frame[diff].astype(float)
        assert person.std(axis=0).mean() > 25
        chroma = np.abs(person[:, 2] - person[:, 0]).mean()  # red - blue
        assert chroma > 40 if kind == "astronaut" else chroma < 2  # orange suit / grayscale photo


def test_photo_figure_faces_the_way_it_walks() -> None:
    right = _photo_scene("astronaut")
    left = dataclasses.replace(right, figures=[Figure(0.0, 4.0, [(0.5, 0.9), (0.49, 0.9)], height=0.5,
                                                      kind="astronaut")])
    right = dataclasses.replace(right, figures=[Figure(0.0, 4.0, [(0.5, 0.9), (0.51, 0.9)], height=0.5,
                                                       kind="astronaut")])
    a, b = render_frame(right, 2.0), render_frame(left, 2.0)
    (x1, y1, x2, y2), = right.truth_boxes(2.0)
    ca = a[int(y1 * 240) + 5 : int(y2 * 240) - 5, int(x1 * 320) + 5 : int(x2 * 320) - 5].astype(int)
    cb = b[int(y1 * 240) + 5 : int(y2 * 240) - 5, int(x1 * 320) + 5 : int(x2 * 320) - 5].astype(int)
    assert np.abs(ca - cb).mean() > 10  # not the same picture ...
    assert np.abs(ca - cb[:, ::-1]).mean() < np.abs(ca - cb).mean() / 2  # ... but its mirror image


def test_person_matte_is_deterministic_and_person_shaped() -> None:
    from vaktpost.scenes import _PHOTO_SEEDS, _photo

    rect, sure = _PHOTO_SEEDS["astronaut"]
    a = person_matte(_photo("astronaut"), rect, sure)
    b = person_matte(_photo("astronaut"), rect, sure)
    assert np.array_equal(a, b)
    _, alpha = photo_cutout("astronaut")
    share = float((alpha > 0.5).mean())
    assert 0.5 < share < 0.9  # an upper body with arms fills a good part of its box, not all of it
    assert alpha[0, 0] < 0.5 and alpha[0, -1] < 0.5  # the corners above the shoulders are background


def _still(**kw) -> Scene:
    return Scene(width=320, height=180, fps=10.0, duration_s=30.0, seed=9, noise_sigma=0.0, **kw)


def test_lens_cover_ramps_in_within_half_a_second_stays_and_goes() -> None:
    scene = _still(camera_effects=[LensCover(5.0, 15.0, ramp_s=0.5)])
    clear = _still()
    assert np.array_equal(render_frame(scene, 4.9), render_frame(clear, 4.9))
    for t in (5.5, 10.0, 14.9):
        covered = render_frame(scene, t).astype(float)
        assert covered.mean() < 25 and covered.std() < 6  # dark and near-uniform: noise, no picture
    assert render_frame(clear, 10.0).std() > 30
    assert np.array_equal(render_frame(scene, 15.6), render_frame(clear, 15.6))


def test_lens_smear_removes_detail_and_stays() -> None:
    def detail(img: np.ndarray) -> float:
        return float(cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var())

    scene = _still(camera_effects=[LensSmear(5.0, ramp_s=1.0)])
    sharp = detail(render_frame(scene, 4.9))
    assert detail(render_frame(scene, 6.0)) < sharp / 20
    assert detail(render_frame(scene, 29.0)) < sharp / 20


def test_camera_turn_shifts_the_view_and_stays() -> None:
    scene = _still(camera_effects=[CameraTurn(5.0, ramp_s=1.0, shift=(0.15, 0.0), angle_deg=0.0)])
    before = cv2.cvtColor(render_frame(scene, 4.9), cv2.COLOR_BGR2GRAY).astype(np.float32)
    for t in (6.0, 29.0):
        after = cv2.cvtColor(render_frame(scene, t), cv2.COLOR_BGR2GRAY).astype(np.float32)
        (dx, dy), _ = cv2.phaseCorrelate(before, after)
        assert dx == pytest.approx(0.15 * 320, abs=1.5) and abs(dy) < 1.5


def test_graffiti_grows_while_painted_then_stays() -> None:
    scene = _still(graffiti=[Graffiti(2.0, 6.0, [[(0.1, 0.3), (0.3, 0.45), (0.5, 0.3)]])])

    def paint(t: float) -> int:
        b, g, r = cv2.split(render_frame(scene, t).astype(int))
        return int(((r > 150) & (b > 150) & (g < 100)).sum())  # magenta

    counts = [paint(t) for t in (1.9, 3.0, 4.0, 5.0, 6.0, 20.0)]
    assert counts[0] == 0 and all(a < b for a, b in zip(counts[:5], counts[1:5]))
    assert counts[5] == counts[4] > 300


def test_props_appear_and_disappear_on_time() -> None:
    scene = _still(props=[Prop("bag", 0.5, 0.9, appears_s=3.0), Prop("bin", 0.2, 0.8, size=0.15, removed_s=4.0)])
    empty = _still()

    def changed(t: float, box: tuple[float, float, float, float]) -> float:
        x1, y1, x2, y2 = box
        sl = np.s_[int(y1 * 180) : int(y2 * 180), int(x1 * 320) : int(x2 * 320)]
        return float(np.abs(render_frame(scene, t)[sl].astype(int) - render_frame(empty, t)[sl].astype(int)).mean())

    bag, bin_ = (p.box(320 / 180) for p in scene.props)
    assert changed(2.9, bag) == 0 and changed(3.0, bag) > 20 and changed(29.0, bag) > 20
    assert changed(3.9, bin_) > 20 and changed(4.0, bin_) == 0


def test_rain_is_new_every_frame_and_deterministic() -> None:
    scene = _still(rain=0.6)
    dry = render_frame(_still(), 1.0).astype(int)
    a, b = render_frame(scene, 1.0).astype(int), render_frame(scene, 1.1).astype(int)
    assert np.array_equal(a, render_frame(scene, 1.0))
    streaks_a, streaks_b = (a - dry).max(axis=2) > 20, (b - render_frame(_still(), 1.1)).max(axis=2) > 20
    assert streaks_a.mean() > 0.01 and streaks_b.mean() > 0.01
    assert (streaks_a & streaks_b).sum() < 0.3 * streaks_a.sum()  # other streaks in the next frame
    assert ((a - dry) < -20).mean() < 0.01  # streaks are bright, never dark


def test_night_ir_switch_is_grayscale_with_another_contrast() -> None:
    scene = _still(backdrop="park", ir_at=10.0)
    day, night = render_frame(scene, 9.9).astype(int), render_frame(scene, 10.0).astype(int)
    assert np.abs(day[:, :, 2] - day[:, :, 0]).mean() > 10  # colour before ...
    assert np.abs(night[:, :, 2] - night[:, :, 0]).max() <= 1  # ... none after
    # Lit from the camera: the near ground gains against the sky.
    top, bottom = slice(0, 40), slice(140, 180)
    assert night[bottom].mean() / night[top].mean() > 1.5 * day[bottom].mean() / day[top].mean()


def test_photo_people_are_found_by_the_person_detector() -> None:
    """The reason for photo figures: the node's SSD model takes them for people (crop as regions.py does)."""
    pytest.importorskip("onnxruntime")
    from vaktpost.edge.config.detectors import DetectorSettings
    from vaktpost.edge.detectors.factory import create_detector
    from vaktpost.edge.modelfile import ModelError

    try:
        detector = create_detector(DetectorSettings(kind="ssd", threads=1))
    except ModelError as e:
        pytest.skip(f"no SSD model: {e}")
    (sc,) = [s for s in scenarios() if s.name == "intrusion_armed"]
    for t in (6.0, 17.0):  # the cameraman, then the astronaut
        frame = render_frame(sc.scene, t)
        (x1, y1, x2, y2), = sc.scene.truth_boxes(t)
        side = int((y2 - y1) * 360 * 1.5)
        cx, cy = int((x1 + x2) / 2 * 640), int((y1 + y2) / 2 * 360)
        left, top = min(max(0, cx - side // 2), 640 - side), min(max(0, cy - side // 2), 360 - side)
        found = detector.detect(frame[top : top + side, left : left + side])
        assert found and found[0].score > 0.7


def test_wind_moves_the_trees_every_frame_and_nothing_else() -> None:
    scene = _still(backdrop="park", wind=1.0)
    calm = render_frame(_still(backdrop="park"), 1.0).astype(int)
    a, b = render_frame(scene, 1.0).astype(int), render_frame(scene, 1.1).astype(int)
    moved = np.abs(a - b).max(axis=2) > 20
    assert moved.mean() > 0.01  # foliage changes from one frame to the next ...
    rows, cols = np.nonzero(moved | (np.abs(a - calm).max(axis=2) > 0))
    assert rows.max() < 0.55 * 180  # ... above the horizon only: the trees, never the ground or path
