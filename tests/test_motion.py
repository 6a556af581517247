"""Motion detection on synthetic frames: what must and must not count as motion."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from vaktpost.edge.analysis.imageops import (
    estimate_illumination,
    is_ghost,
    motion_score,
    outline_contrast,
    to_analysis_gray,
)
from vaktpost.edge.analysis.motion import (
    MotionDetector,
    boxes_from_mask,
    clean_mask,
    difference_mask,
    global_shift,
    is_illumination_step,
)
from vaktpost.edge.config.motion import MotionSection
from vaktpost.scenes import demo_scenes, frames

H, W = 480, 640


def textured_background(seed: int = 0) -> np.ndarray:
    """A float32 BGR scene with structure at several scales, values ~20..220."""
    rng = np.random.default_rng(seed)
    blobs = cv2.GaussianBlur(rng.standard_normal((H, W)).astype(np.float32), (0, 0), 12)
    fine = cv2.GaussianBlur(rng.standard_normal((H, W)).astype(np.float32), (0, 0), 1.5)
    gray = 120 + 70 * blobs / blobs.std() + 12 * fine / fine.std()
    gray[:, 300:310] = 230  # a bright pole: a strong edge objects pass in front of
    return np.dstack([gray * 0.9, gray, gray * 1.1]).clip(20, 220).astype(np.float32)


BG = textured_background()
RECT_H, RECT_W = 120, 60


def rect_x(i: int) -> int:
    return 40 + 10 * i


def make_frame(i: int, *, rect: bool = True, rect_at: int | None = None, gain: float = 1.0, add: float = 0.0,
               noise: float = 2.0, seed: int = 0) -> np.ndarray:
    """Frame i: the background, optionally a dark rectangle moving 10 px/frame, lighting, noise."""
    f = BG.copy()
    if rect:
        x = rect_x(i) if rect_at is None else rect_at
        f[200 : 200 + RECT_H, x : x + RECT_W] = (30, 40, 50)
    f = f * gain + add
    if noise:
        f += np.random.default_rng([seed, i]).normal(0, noise, f.shape).astype(np.float32)
    return np.clip(f, 0, 255).astype(np.uint8)


def run(frames_: list[np.ndarray], det: MotionDetector | None = None):
    det = det or MotionDetector(MotionSection())
    return det, [det.detect(f) for f in frames_]


# --- pure helpers -------------------------------------------------------------


def test_to_analysis_gray_shapes_and_formats() -> None:
    bgr = make_frame(0)
    g = to_analysis_gray(bgr, 320)
    assert g.shape == (240, 320) and g.dtype == np.uint8
    assert to_analysis_gray(cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA), 320).shape == (240, 320)
    assert to_analysis_gray(bgr[:, :, :1], 160).shape == (120, 160)
    assert to_analysis_gray(np.zeros((100, 200), np.uint8), 320).shape == (100, 200)  # never upscaled
    assert to_analysis_gray(np.zeros((720, 1280, 3), np.uint8), 320).shape == (180, 320)
    # Gray conversion weights green most (BT.601): a pure green frame is brighter than pure blue.
    green = np.zeros((10, 10, 3), np.uint8)
    green[..., 1] = 200
    blue = np.zeros((10, 10, 3), np.uint8)
    blue[..., 0] = 200
    assert to_analysis_gray(green, 320, blur=0).mean() > 3 * to_analysis_gray(blue, 320, blur=0).mean()
    with pytest.raises(ValueError):
        to_analysis_gray(np.zeros((10, 10, 3), np.float32), 320)
    with pytest.raises(ValueError):
        to_analysis_gray(np.zeros((10, 10, 2), np.uint8), 320)


def test_difference_mask_is_strictly_over_threshold() -> None:
    bg = np.full((4, 4), 100, np.float32)
    gray = np.array([[100, 125, 126, 74], [75, 0, 255, 100], [100] * 4, [100] * 4], np.uint8)
    m = difference_mask(gray, bg, 25)
    assert m.dtype == np.uint8
    assert m[0].tolist() == [0, 0, 255, 255] and m[1].tolist() == [0, 255, 255, 0]
    assert m[2:].sum() == 0


def test_clean_mask_drops_speckle_and_joins_parts() -> None:
    m = np.zeros((60, 80), np.uint8)
    m[5, 5] = m[40, 70] = m[50, 10] = 255  # isolated noise pixels
    m[20:40, 20:26] = 255  # two halves of one object, 3 px apart
    m[20:40, 29:35] = 255
    out = clean_mask(m, 3, 7)
    assert out[5, 5] == 0 and out[40, 70] == 0 and out[50, 10] == 0
    assert out[30, 27] == 255  # the gap is closed
    assert len(boxes_from_mask(out, 0.0)) == 1


def test_clean_mask_around_survivors_equals_whole_image_morphology() -> None:
    rng = np.random.default_rng(1)
    for _ in range(500):
        h, w = (int(v) for v in rng.integers(5, 80, 2))
        m = np.zeros((h, w), np.uint8)
        for _ in range(int(rng.integers(0, 6))):
            y, x = int(rng.integers(0, h)), int(rng.integers(0, w))
            m[y : y + int(rng.integers(1, 15)), x : x + int(rng.integers(1, 15))] = 255
        m[rng.random((h, w)) < rng.choice([0.0, 0.01, 0.2])] = 255  # speckle
        o, c = int(rng.choice([1, 3, 5])), int(rng.choice([1, 3, 7, 9]))
        whole = cv2.morphologyEx(m, cv2.MORPH_OPEN, np.ones((o, o), np.uint8))
        whole = cv2.morphologyEx(whole, cv2.MORPH_CLOSE, np.ones((c, c), np.uint8))
        assert np.array_equal(clean_mask(m, o, c), whole)


def test_boxes_from_mask_normalised_and_min_area() -> None:
    m = np.zeros((100, 200), np.uint8)
    m[10:30, 50:90] = 255  # 40 x 20 px = 4 % of the image
    m[80:83, 0:3] = 255  # 9 px
    assert boxes_from_mask(m, 0.01) == [(0.25, 0.1, 0.45, 0.3)]
    both = boxes_from_mask(m, 0.0)
    assert both[0] == (0.25, 0.1, 0.45, 0.3) and both[1] == (0.0, 0.8, 0.015, 0.83)  # largest first
    assert boxes_from_mask(np.zeros((10, 10), np.uint8), 0.0) == []


def test_estimate_illumination_ignores_a_moving_minority() -> None:
    rng = np.random.default_rng(3)
    bg = rng.uniform(20, 200, 4000).astype(np.float32)
    gray = 1.3 * bg + 12 + rng.normal(0, 1.5, bg.size)
    gray[:1000] = rng.uniform(0, 255, 1000)  # a quarter of the samples are a passer-by
    gain, offset = estimate_illumination(gray.astype(np.float32), bg)
    assert gain == pytest.approx(1.3, abs=0.05) and offset == pytest.approx(12, abs=4)
    assert global_shift(bg, gain, offset) == pytest.approx(np.median(np.abs(0.3 * bg + 12)), rel=0.1)
    # A flat background cannot tell gain from offset: offset only.
    flat = np.full(500, 100, np.float32)
    assert estimate_illumination(flat + 20, flat) == (1.0, 20.0)


def test_is_illumination_step_rules() -> None:
    assert is_illumination_step(0.7, 0.0, 0.6, 25)  # most of the picture changed
    assert is_illumination_step(0.3, 40.0, 0.6, 25)  # a typical pixel moved past the threshold
    assert not is_illumination_step(0.3, 10.0, 0.6, 25)  # small global change: compensated, not a step
    assert not is_illumination_step(0.05, 0.0, 0.6, 25)  # ordinary motion


def test_is_ghost_tells_a_vanished_object_from_a_present_one() -> None:
    rng = np.random.default_rng(4)
    plain = cv2.GaussianBlur((100 + rng.normal(0, 3, (60, 60))).astype(np.float32), (5, 5), 0)
    with_obj = plain.copy()
    with_obj[20:40, 20:40] = 30
    with_obj = cv2.GaussianBlur(with_obj, (5, 5), 0)
    blob = np.zeros((60, 60), bool)
    blob[21:39, 21:39] = True  # where |frame - background| crosses the threshold
    assert outline_contrast(with_obj, blob) > 30 > 3 > outline_contrast(plain, blob)
    assert is_ghost(plain, with_obj, blob)  # the background has the object, the frame does not
    assert not is_ghost(with_obj, plain, blob)  # the object is really there
    assert not is_ghost(plain, plain, blob)  # no outline anywhere: undecided, not a ghost


def test_motion_score_grows_with_size_and_contrast() -> None:
    assert motion_score(0.0, 50, 25, 0.002) == 0.0
    small, big = motion_score(0.002, 50, 25, 0.002), motion_score(0.05, 50, 25, 0.002)
    faint, strong = motion_score(0.05, 26, 25, 0.002), motion_score(0.05, 90, 25, 0.002)
    assert 0 < small < big <= 1 and 0 < faint < strong <= 1


# --- the detector on synthetic sequences -----------------------------------------


def test_static_scene_gives_no_boxes_after_warm_up() -> None:
    _, results = run([make_frame(i, rect=False, noise=3) for i in range(40)])
    assert all(not r.boxes for r in results)
    assert not any(r.illumination_change for r in results)


def test_moving_rectangle_is_boxed_in_normalised_coordinates() -> None:
    _, results = run([make_frame(i) for i in range(30)])
    assert not results[0].boxes  # the first frame only seeds the background
    for i in range(12, 30):  # the rectangle has left its start position by now
        r = results[i]
        assert len(r.boxes) == 1, (i, r.boxes)
        x1, y1, x2, y2 = r.boxes[0]
        tx1, ty1, tx2, ty2 = rect_x(i) / W, 200 / H, (rect_x(i) + RECT_W) / W, (200 + RECT_H) / H
        # Covers the rectangle, give or take blur and a pixel of the 320-px analysis image.
        tol = 3 / 320
        assert x1 <= tx1 + tol and y1 <= ty1 + tol and x2 >= tx2 - tol and y2 >= ty2 - tol, (i, r.boxes[0])
        assert x1 >= tx1 - 0.03 and y1 >= ty1 - 0.03 and x2 <= tx2 + 0.03 and y2 <= ty2 + 0.03, (i, r.boxes[0])
        assert 0.5 < r.score <= 1.0
        assert 0.0 < r.changed_fraction < 0.1


def test_motion_mask_over_the_path_suppresses_it() -> None:
    settings = MotionSection()
    band = [[0.0, 0.35], [1.0, 0.35], [1.0, 0.75], [0.0, 0.75]]  # covers the rectangle's rows
    _, results = run([make_frame(i) for i in range(30)], MotionDetector(settings, [band]))
    assert all(not r.boxes for r in results)


def test_motion_mask_over_half_the_path_clips_the_boxes() -> None:
    left = [[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]
    _, results = run([make_frame(i) for i in range(50)], MotionDetector(MotionSection(), [left]))
    boxes = [b for r in results for b in r.boxes]
    assert boxes, "the unmasked half must still see motion"
    assert all(b[0] >= 0.5 for b in boxes)
    # Frames with the rectangle wholly in the masked half have no boxes.
    assert all(not results[i].boxes for i in range(1, 50) if rect_x(i) + RECT_W < 0.5 * W - 8)


@pytest.mark.parametrize("add", [60.0, -60.0])
def test_global_brightness_step_produces_no_motion(add: float) -> None:
    seq = [make_frame(i, rect=False) for i in range(10)] + [make_frame(i, rect=False, add=add) for i in range(10, 40)]
    _, results = run(seq)
    assert sum(len(r.boxes) for r in results) == 0
    assert results[10].illumination_change and results[10].changed_fraction > 0.6
    assert not results[9].illumination_change and not results[-1].illumination_change  # it settles


def test_brightness_step_while_something_moves_resumes_detection() -> None:
    seq = [make_frame(i) for i in range(15)] + [make_frame(i, add=50) for i in range(15, 45)]
    det, results = run(seq)
    assert results[15].illumination_change
    assert all(not r.boxes for r in results[15 : 15 + det.settle_frames + 1])
    later = results[15 + det.settle_frames + 10 :]
    assert all(len(r.boxes) == 1 for r in later)  # the object again, and its ghost healed away
    x1, _, x2, _ = later[-1].boxes[0]
    assert x1 <= rect_x(44) / W + 0.01 and x2 >= (rect_x(44) + RECT_W) / W - 0.01


def test_moderate_gain_change_is_compensated_not_reported() -> None:
    seq = [make_frame(i, rect=False) for i in range(10)] + [make_frame(i, rect=False, gain=1.15) for i in range(10, 30)]
    _, results = run(seq)
    # Without compensation the bright parts of the picture would count as changed ...
    assert results[10].changed_fraction > 0.05
    # ... but it is neither motion nor a step that blinds the detector.
    assert all(not r.boxes for r in results)
    assert not any(r.illumination_change for r in results)


def test_gradual_drift_is_learnt_without_motion_or_steps() -> None:
    # +0.4 grey levels per frame: +60 over the sequence, like daylight fading in.
    _, results = run([make_frame(i, rect=False, add=0.4 * i) for i in range(150)])
    assert all(not r.boxes for r in results)
    assert not any(r.illumination_change for r in results)


def test_sensor_noise_is_not_motion() -> None:
    _, results = run([make_frame(i, rect=False, noise=8.0) for i in range(60)])
    assert sum(len(r.boxes) for r in results) == 0


def test_someone_standing_still_is_not_learnt_quickly() -> None:
    # Walks in, then stands for 200 frames (40 s at 5 fps), held by a track's box (`keep`).
    seq = [make_frame(i) for i in range(10)] + [make_frame(i, rect_at=rect_x(10)) for i in range(10, 210)]
    det = MotionDetector(MotionSection())
    keep = [((rect_x(10) - 5) / W, 195 / H, (rect_x(10) + RECT_W + 5) / W, (200 + RECT_H + 5) / H)]
    results = [det.detect(f, keep=keep if i >= 10 else ()) for i, f in enumerate(seq)]
    assert all(len(r.boxes) == 1 for r in results[10:])


def test_something_motionless_stops_being_motion_soon() -> None:
    """A thing put down (or paint) that no track holds: not one pixel moves, so it is scene, not motion."""
    seq = [make_frame(i) for i in range(10)] + [make_frame(i, rect_at=rect_x(10)) for i in range(10, 60)]
    det = MotionDetector(MotionSection())
    results = [det.detect(f) for f in seq]
    assert all(len(r.boxes) == 1 for r in results[10:20])  # still motion for a moment ...
    healed = next(i for i in range(10, 60) if not results[i].boxes)
    assert healed <= 10 + det.still_frames + 2  # ... then part of the background
    assert all(not r.boxes for r in results[healed:])


def test_a_person_swaying_in_place_stays_motion() -> None:
    """Too slow to see from one frame to the next, but over a second or two the outline moves."""
    def sway(i: int) -> int:
        return rect_x(10) + round(2 * np.sin(2 * np.pi * 0.3 * i / 5))

    seq = [make_frame(i) for i in range(10)] + [make_frame(i, rect_at=sway(i)) for i in range(10, 110)]
    _, results = run(seq)
    assert all(len(r.boxes) == 1 for r in results[10:])


def test_object_present_at_start_leaves_no_lasting_ghost() -> None:
    # The background is seeded with the rectangle in it; once it walks off,
    # the "hole" it leaves must be healed within a few frames.
    det, results = run([make_frame(i) for i in range(30)])
    for i in range(15, 30):
        assert len(results[i].boxes) == 1
        assert results[i].boxes[0][0] > 100 / W  # nothing at the start position x=40..100


def test_resolution_change_reseeds() -> None:
    det = MotionDetector(MotionSection())
    for i in range(5):
        det.detect(make_frame(i, rect=False))
    small = cv2.resize(make_frame(5, rect=False), (320, 180))
    r = det.detect(small)
    assert r.boxes == [] and not r.illumination_change
    assert all(not det.detect(cv2.resize(make_frame(i, rect=False), (320, 180))).boxes for i in range(6, 15))


def test_detector_is_fast() -> None:
    import time

    det = MotionDetector(MotionSection())
    seq = [make_frame(i) for i in range(40)]
    det.detect(seq[0])
    t0 = time.process_time()  # CPU time of the process: what other jobs on a shared runner do not inflate
    for f in seq[1:]:
        det.detect(f)
    per_frame = (time.process_time() - t0) / (len(seq) - 1)
    assert per_frame < 0.010  # 640x480; typically ~1 ms on x86 (generous for shared CI)


# --- against the demo scenes' ground truth -------------------------------------


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.mark.parametrize("name", ["schoolyard", "park"])
def test_demo_scene_detections_match_ground_truth(name: str) -> None:
    scene = demo_scenes()[name]
    det = MotionDetector(MotionSection())
    hits = misses = false = 0
    ious: list[float] = []
    for t, frame in frames(scene):
        r = det.detect(frame)
        truth = scene.truth_boxes(t)
        whole = [b for b in truth if b[0] > 0.0 and b[2] < 1.0]  # figure entirely in view
        if whole and not r.illumination_change:
            if r.boxes:
                hits += 1
                ious.append(max(_iou(whole[0], b) for b in r.boxes))
            else:
                misses += 1
        if not truth and r.boxes:
            false += 1
        if scene.lights_on_at is not None and scene.lights_on_at <= t < scene.lights_on_at + 1:
            assert not r.boxes, "the lights-on step must not read as motion"
    assert hits > 100
    assert misses <= 0.03 * (hits + misses)
    assert false == 0
    assert np.mean(ious) > 0.6


def test_demo_scene_with_lights_on_during_a_crossing() -> None:
    scene = dataclasses.replace(demo_scenes()["schoolyard"], lights_on_at=6.0, width=320, height=180)
    det = MotionDetector(MotionSection())
    results = {round(t, 1): det.detect(f) for t, f in frames(scene)}
    assert results[6.0].illumination_change and not results[6.0].boxes
    # Detection resumes after the settle frames and the figure is found again.
    assert all(results[round(t, 1)].boxes for t in np.arange(7.0, 10.5, 0.1))
    # No leftover ghost once the figure has gone.
    assert all(not results[round(t, 1)].boxes for t in np.arange(11.5, 16.9, 0.1))
