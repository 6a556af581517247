"""The synthetic scene generator: deterministic frames, honest ground truth, readable videos."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest

from vaktpost.scenes import (
    Figure,
    Scene,
    demo_scenes,
    frames,
    render_frame,
    write_video,
)


def small_scene(**kw) -> Scene:
    base = dict(width=160, height=120, fps=10.0, duration_s=2.0, seed=5, noise_sigma=3.0,
                figures=[Figure(0.2, 1.8, [(0.1, 0.9), (0.9, 0.8)], height=0.4, color=(40, 190, 230))])
    base.update(kw)
    return Scene(**base)


def test_same_seed_same_frame_and_seed_matters() -> None:
    a = render_frame(small_scene(), 1.0)
    assert a.shape == (120, 160, 3) and a.dtype == np.uint8
    assert np.array_equal(a, render_frame(small_scene(), 1.0))
    # Order of rendering does not matter: noise is seeded per frame.
    render_frame(small_scene(), 0.3)
    assert np.array_equal(a, render_frame(small_scene(), 1.0))
    assert not np.array_equal(a, render_frame(small_scene(seed=6), 1.0))
    # Consecutive frames differ by noise even where nothing moves.
    b, c = render_frame(small_scene(figures=[]), 0.0), render_frame(small_scene(figures=[]), 0.1)
    assert not np.array_equal(b, c)
    assert np.abs(b.astype(int) - c.astype(int)).mean() < 6


def test_figure_is_drawn_inside_its_truth_box() -> None:
    scene = small_scene(width=320, height=240, noise_sigma=0.0)
    empty = dataclasses.replace(scene, figures=[])
    for t in (0.5, 1.0, 1.5):
        diff = np.abs(render_frame(scene, t).astype(int) - render_frame(empty, t).astype(int)).max(axis=2) > 10
        (x1, y1, x2, y2), = scene.truth_boxes(t)
        ys, xs = np.nonzero(diff)
        assert len(xs) > 200
        # Every changed pixel lies in the truth box (one pixel of anti-aliasing allowed) ...
        assert xs.min() >= x1 * 320 - 1 and xs.max() <= x2 * 320 + 1
        assert ys.min() >= y1 * 240 - 1 and ys.max() <= y2 * 240 + 1
        # ... and the figure fills most of the box's height.
        assert (ys.max() - ys.min()) > 0.85 * (y2 - y1) * 240
    assert scene.truth_boxes(0.1) == [] and scene.truth_boxes(1.9) == []
    assert np.array_equal(render_frame(scene, 0.1), render_frame(empty, 0.1))


def test_figure_motion_model() -> None:
    walk = Figure(2.0, 6.0, [(0.0, 0.5), (0.5, 0.5), (1.0, 0.5)])
    assert walk.position(1.9) is None and walk.position(6.1) is None
    assert walk.position(4.0) == pytest.approx((0.5, 0.5))  # constant speed: halfway at half time
    assert walk.position(3.0) == pytest.approx((0.25, 0.5))
    assert walk.moving_windows() == [(2.0, 6.0)]
    linger = Figure(3.0, 22.0, [(0.0, 0.8), (0.5, 0.8), (0.5, 0.8)], times=[3.0, 11.0, 22.0])
    assert linger.moving_windows() == [(3.0, 11.0)]
    assert linger.moving(5.0) and not linger.moving(15.0) and linger.present(15.0)
    assert linger.position(15.0) == (0.5, 0.8)
    with pytest.raises(ValueError):
        Figure(2.0, 1.0, [(0, 0)])
    with pytest.raises(ValueError):
        Figure(0.0, 1.0, [(0, 0), (1, 1)], times=[0.0])


def test_lights_on_is_a_global_brightness_step() -> None:
    scene = small_scene(figures=[], lights_on_at=1.0, noise_sigma=0.0)
    before, after = render_frame(scene, 0.9).astype(float), render_frame(scene, 1.0).astype(float)
    assert after.mean() > before.mean() * 1.25
    unsaturated = after < 250
    # Gain 1.4, offset 10 everywhere that did not clip.
    assert np.allclose(after[unsaturated], before[unsaturated] * 1.4 + 10, atol=1.01)
    assert np.array_equal(render_frame(scene, 0.0), render_frame(scene, 0.9))  # otherwise static


def test_drift_brightens_slowly() -> None:
    scene = small_scene(figures=[], drift=0.01, noise_sigma=0.0, duration_s=20)
    m0, m10 = render_frame(scene, 0.0).mean(), render_frame(scene, 10.0).mean()
    assert m10 == pytest.approx(m0 * 1.1, rel=0.03)


@pytest.mark.parametrize("suffix", [".avi", ".mp4"])
def test_video_reads_back_with_frame_count_and_size(tmp_path: Path, suffix: str) -> None:
    scene = small_scene(duration_s=1.5)
    path = write_video(scene, tmp_path / f"clip{suffix}")
    assert path.exists() and path.stat().st_size > 1000
    cap = cv2.VideoCapture(str(path))
    try:
        assert cap.isOpened()
        read = []
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            read.append(frame)
    finally:
        cap.release()
    assert len(read) == scene.frame_count == 15
    assert all(f.shape == (120, 160, 3) for f in read)
    # Lossy, but recognisably the rendered frames.
    for i in (0, 7, 14):
        ref = render_frame(scene, scene.frame_time(i)).astype(int)
        assert np.abs(read[i].astype(int) - ref).mean() < 8


def test_write_video_rejects_unknown_container(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_video(small_scene(), tmp_path / "clip.mkv")


def test_demo_scenes_shape_and_ground_truth() -> None:
    scenes = demo_scenes()
    assert set(scenes) == {"schoolyard", "park"}
    for scene in scenes.values():
        assert (scene.width, scene.height, scene.fps) == (640, 360, 10.0)
        assert 20 <= scene.duration_s <= 30 and scene.noise_sigma > 0
        assert scene.frame_count == int(scene.duration_s * scene.fps)
    yard = scenes["schoolyard"]
    a, b = yard.figures
    assert a.end_s < b.start_s  # two people crossing at different times
    assert yard.lights_on_at is not None and a.end_s < yard.lights_on_at < b.start_s
    park = scenes["park"]
    (walker,) = park.figures
    moving = walker.moving_windows()
    assert moving and moving[-1][1] < walker.end_s - 5  # walks, then lingers for a while
    assert park.drift > 0


def test_frames_iterates_the_whole_scene() -> None:
    scene = small_scene(duration_s=0.5)
    ts = [t for t, _ in frames(scene)]
    assert ts == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
