"""Deterministic synthetic camera scenes for the demo, tests and benchmarks.

A scene is a static outdoor backdrop (sky, building with windows, ground,
trees, fine texture), simple walking figures, an optional lights-on step,
slow daylight drift and sensor noise. Everything is a function of
(scene, t): the same scene and time always give the same frame, so tests can
compare detections with the ground truth the scene carries (each figure's
presence window, moving windows and box at any time).

Coordinates are normalised 0..1 as everywhere in Vaktpost (see edge/masks.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

Box = tuple[float, float, float, float]
Color = tuple[int, int, int]  # BGR

_SHIFT = 4  # sub-pixel bits for cv2 drawing, so slow figures move smoothly
_SKIN: Color = (120, 150, 190)
_LEGS: Color = (55, 50, 50)
HALF_WIDTH = 0.17  # of figure height: half the widest extent of the drawn figure (legs mid-stride)


@dataclass
class Figure:
    """A person-like shape whose feet follow `path` while start_s <= t <= end_s.

    Without `times` the figure walks at constant speed from the first point at
    start_s to the last at end_s. With `times` (one per point, start_s..end_s)
    it reaches each point at that time; two equal consecutive points make it
    stand there (lingering), swaying slightly as people do.
    """

    start_s: float
    end_s: float
    path: list[tuple[float, float]]
    height: float = 0.3  # normalised to the frame height
    color: Color = (150, 80, 40)
    times: list[float] | None = None
    name: str = "person"

    def __post_init__(self) -> None:
        if self.end_s <= self.start_s:
            raise ValueError("end_s must be after start_s")
        if len(self.path) < 1:
            raise ValueError("path needs at least one point")
        if self.times is not None and (
            len(self.times) != len(self.path) or any(b < a for a, b in zip(self.times, self.times[1:]))
        ):
            raise ValueError("times must be one non-decreasing time per path point")

    def _knots(self) -> list[float]:
        if self.times is not None:
            return list(self.times)
        if len(self.path) == 1:
            return [self.start_s]
        # Constant speed: time proportional to distance along the path.
        seg = [math.dist(a, b) for a, b in zip(self.path, self.path[1:])]
        total = sum(seg) or 1.0
        knots, acc = [self.start_s], 0.0
        for d in seg:
            acc += d
            knots.append(self.start_s + (self.end_s - self.start_s) * acc / total)
        return knots

    def present(self, t: float) -> bool:
        return self.start_s <= t <= self.end_s

    def position(self, t: float) -> tuple[float, float] | None:
        """Feet position at time t, or None when the figure is not in the scene."""
        if not self.present(t):
            return None
        knots = self._knots()
        if t <= knots[0]:
            return self.path[0]
        for (t0, p0), (t1, p1) in zip(zip(knots, self.path), zip(knots[1:], self.path[1:])):
            if t <= t1:
                a = 0.0 if t1 == t0 else (t - t0) / (t1 - t0)
                return (p0[0] + a * (p1[0] - p0[0]), p0[1] + a * (p1[1] - p0[1]))
        return self.path[-1]

    def moving_windows(self) -> list[tuple[float, float]]:
        """Time windows in which the figure walks (rather than stands)."""
        knots = self._knots()
        windows: list[tuple[float, float]] = []
        for (t0, p0), (t1, p1) in zip(zip(knots, self.path), zip(knots[1:], self.path[1:])):
            if t1 > t0 and p0 != p1:
                if windows and windows[-1][1] == t0:
                    windows[-1] = (windows[-1][0], t1)
                else:
                    windows.append((t0, t1))
        return windows

    def moving(self, t: float) -> bool:
        return any(a <= t <= b for a, b in self.moving_windows())

    def box(self, t: float, aspect: float) -> Box | None:
        """Normalised box around the drawn figure (clipped to the frame); `aspect` = width / height."""
        pos = self.position(t)
        if pos is None:
            return None
        x, y = pos
        half_w = HALF_WIDTH * self.height / aspect
        x1, y1 = max(0.0, x - half_w), max(0.0, y - self.height)
        x2, y2 = min(1.0, x + half_w), min(1.0, y)
        return (x1, y1, x2, y2) if x2 > x1 and y2 > y1 else None


@dataclass
class Scene:
    width: int = 640
    height: int = 360
    fps: float = 10.0
    duration_s: float = 20.0
    seed: int = 0
    figures: list[Figure] = field(default_factory=list)
    lights_on_at: float | None = None  # global step: brightness × lights_gain + lights_offset from then on
    noise_sigma: float = 2.0  # Gaussian sensor noise, grey levels per channel
    drift: float = 0.0  # daylight drift: relative brightness change per second (0.002 = +0.2 %/s)
    lights_gain: float = 1.4
    lights_offset: float = 10.0
    backdrop: Literal["schoolyard", "park"] = "schoolyard"

    @property
    def frame_count(self) -> int:
        return int(round(self.duration_s * self.fps))

    def frame_time(self, index: int) -> float:
        return index / self.fps

    def truth_boxes(self, t: float) -> list[Box]:
        """Boxes of the figures visible at t (ground truth for the detector)."""
        aspect = self.width / self.height
        return [b for f in self.figures if (b := f.box(t, aspect)) is not None]

    def anyone_present(self, t: float) -> bool:
        return bool(self.truth_boxes(t))

    def brightness(self, t: float) -> tuple[float, float]:
        """(gain, offset) of the global illumination at t."""
        gain = max(0.0, 1.0 + self.drift * t)
        offset = 0.0
        if self.lights_on_at is not None and t >= self.lights_on_at:
            gain *= self.lights_gain
            offset = self.lights_offset
        return gain, offset


# --- backdrop ---------------------------------------------------------------


def _texture(rng: np.random.Generator, h: int, w: int, scale: float, amount: float) -> np.ndarray:
    """Smooth multiplicative texture around 1.0 (blurred noise), so surfaces are not flat."""
    n = rng.standard_normal((h, w), dtype=np.float32)
    n = cv2.GaussianBlur(n, (0, 0), max(0.5, scale))
    n /= float(n.std()) or 1.0
    return 1.0 + amount * n


def _rect(img: np.ndarray, x1: float, y1: float, x2: float, y2: float, color: Color) -> None:
    h, w = img.shape[:2]
    cv2.rectangle(img, (int(x1 * w), int(y1 * h)), (int(x2 * w) - 1, int(y2 * h) - 1), color, -1)


@lru_cache(maxsize=8)
def _backdrop(width: int, height: int, seed: int, kind: str) -> np.ndarray:
    rng = np.random.default_rng(seed)
    h, w = height, width
    img = np.zeros((h, w, 3), np.float32)
    horizon = 0.55
    # Sky: darker blue at the top, paler towards the horizon.
    a = np.linspace(0.0, 1.0, int(h * horizon))[:, None, None]
    img[: int(h * horizon)] = (1 - a) * np.array([150, 110, 80]) + a * np.array([185, 170, 150])
    ground: Color = (80, 84, 86) if kind == "schoolyard" else (60, 105, 70)
    img[int(h * horizon) :] = ground
    canvas = img.astype(np.uint8)
    if kind == "schoolyard":
        _rect(canvas, 0.05, 0.15, 0.68, horizon, (60, 75, 120))  # brick wall
        for col in range(5):
            for row in range(2):
                x = 0.09 + col * 0.115
                y = 0.21 + row * 0.15
                _rect(canvas, x - 0.006, y - 0.01, x + 0.076, y + 0.1, (170, 170, 165))  # frame
                _rect(canvas, x, y, x + 0.07, y + 0.09, (65, 55, 45))  # glass
        _rect(canvas, 0.56, 0.38, 0.62, horizon, (40, 45, 70))  # door
        for x in (0.1, 0.35, 0.6, 0.85):  # painted court lines
            cv2.line(canvas, (int(x * w), int(0.6 * h)), (int((x - 0.05) * w), h - 1), (190, 190, 190), max(1, w // 320))
    else:
        _rect(canvas, 0.0, horizon, 1.0, horizon + 0.03, (70, 120, 80))  # far hedge
        cv2.ellipse(canvas, (int(0.5 * w), int(0.8 * h)), (int(0.6 * w), int(0.08 * h)), 0, 0, 360, (120, 140, 150), -1)  # gravel path
        _rect(canvas, 0.12, 0.62, 0.26, 0.66, (60, 80, 110))  # bench seat
    for tx, r in ((0.8, 0.11), (0.93, 0.08)) if kind == "schoolyard" else ((0.15, 0.12), (0.45, 0.09), (0.8, 0.14)):
        _rect(canvas, tx - 0.012, horizon - 0.12, tx + 0.012, horizon + 0.02, (40, 55, 75))  # trunk
        cv2.circle(canvas, (int(tx * w), int((horizon - 0.17) * h)), int(r * h), (50, 95, 55), -1)  # canopy
    img = canvas.astype(np.float32)
    img *= _texture(rng, h, w, w / 100, 0.04)[:, :, None]  # coarse, gentle variation
    img *= _texture(rng, h, w, 0.7, 0.05)[:, :, None]  # fine grain (asphalt, bricks, leaves)
    out = np.clip(img, 0, 255).astype(np.uint8)
    out.flags.writeable = False  # cached and shared: callers copy
    return out


# --- figures ----------------------------------------------------------------


def _pt(x: float, y: float) -> tuple[int, int]:
    return (int(round(x * (1 << _SHIFT))), int(round(y * (1 << _SHIFT))))


def _draw_figure(img: np.ndarray, fig: Figure, t: float) -> None:
    pos = fig.position(t)
    if pos is None:
        return
    h, w = img.shape[:2]
    hp = fig.height * h
    fx, fy = pos[0] * w, pos[1] * h
    if fig.moving(t):
        # Stride phase from time; ~2 steps per second looks like walking at 10 fps.
        swing = math.sin(2 * math.pi * 1.0 * (t - fig.start_s)) * 0.11 * hp
    else:
        swing = 0.0
        fx += math.sin(2 * math.pi * 0.3 * t) * 0.02 * hp  # a standing person sways
    leg_w = max(1, int(round(0.07 * hp)))
    hip = (fx, fy - 0.47 * hp)
    foot_y = fy - leg_w / 2  # round line caps: keep the soles on fy, the box's bottom
    for s in (swing, -swing):
        cv2.line(img, _pt(*hip), _pt(fx + s, foot_y), _LEGS, leg_w, cv2.LINE_AA, _SHIFT)
    tw = 0.13 * hp  # torso half width
    torso = np.array([_pt(fx - tw, fy - 0.82 * hp), _pt(fx + tw, fy - 0.82 * hp),
                      _pt(fx + tw, fy - 0.45 * hp), _pt(fx - tw, fy - 0.45 * hp)], np.int32)
    cv2.fillPoly(img, [torso], fig.color, cv2.LINE_AA, _SHIFT)
    axes = _pt(0.055 * hp, 0.075 * hp)
    cv2.ellipse(img, _pt(fx, fy - 0.91 * hp), axes, 0, 0, 360, _SKIN, -1, cv2.LINE_AA, _SHIFT)


# --- rendering ----------------------------------------------------------------


def render_frame(scene: Scene, t: float) -> np.ndarray:
    """BGR uint8 frame (height, width, 3) of `scene` at time t seconds."""
    img = _backdrop(scene.width, scene.height, scene.seed, scene.backdrop).copy()
    for fig in scene.figures:
        _draw_figure(img, fig, t)
    gain, offset = scene.brightness(t)
    out = img.astype(np.float32)
    if gain != 1.0 or offset != 0.0:
        out = out * np.float32(gain) + np.float32(offset)
    if scene.noise_sigma > 0:
        # Seeded per frame index, so frame t is the same no matter what was rendered before.
        rng = np.random.default_rng([scene.seed, int(round(t * scene.fps))])
        out += rng.standard_normal(out.shape, dtype=np.float32) * np.float32(scene.noise_sigma)
    return np.clip(out, 0, 255).astype(np.uint8)


def frames(scene: Scene) -> Iterator[tuple[float, np.ndarray]]:
    """Yield (t, frame) for every frame of the scene."""
    for i in range(scene.frame_count):
        t = scene.frame_time(i)
        yield t, render_frame(scene, t)


_FOURCC = {".avi": "MJPG", ".mp4": "mp4v"}


def write_video(scene: Scene, path: str | Path) -> Path:
    """Write the whole scene to `path` and return it.

    `.avi` is Motion-JPEG (the default choice: opencv-python-headless writes
    and reads it everywhere); `.mp4` uses the mp4v codec, which also reads
    back with this OpenCV build but is less certain on others.
    """
    path = Path(path)
    fourcc = _FOURCC.get(path.suffix.lower())
    if fourcc is None:
        raise ValueError(f"{path}: use a .avi (MJPG) or .mp4 (mp4v) file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), scene.fps, (scene.width, scene.height))
    if not writer.isOpened():
        raise RuntimeError(f"{path}: OpenCV cannot write {fourcc} video here")
    try:
        for _, frame in frames(scene):
            writer.write(frame)
    finally:
        writer.release()
    return path


def demo_scenes() -> dict[str, Scene]:
    """The two named demo scenes (640x360, 10 fps)."""
    schoolyard = Scene(
        width=640, height=360, fps=10.0, duration_s=30.0, seed=7,
        figures=[
            Figure(2.0, 11.0, [(-0.05, 0.80), (1.05, 0.84)], height=0.32, color=(40, 190, 230), name="pupil-a"),
            Figure(17.0, 27.0, [(1.05, 0.95), (0.5, 0.82), (-0.05, 0.74)], height=0.3,
                   color=(70, 35, 25), name="pupil-b"),
        ],
        lights_on_at=14.0,  # between the two crossings: floodlights at dusk
        noise_sigma=3.0,
        backdrop="schoolyard",
    )
    park = Scene(
        width=640, height=360, fps=10.0, duration_s=25.0, seed=11,
        figures=[
            Figure(3.0, 22.0, [(-0.05, 0.86), (0.55, 0.80), (0.55, 0.80)], times=[3.0, 11.0, 22.0],
                   height=0.33, color=(60, 130, 160), name="walker"),
        ],
        noise_sigma=3.0,
        drift=0.004,  # +10 % over the clip, like clouds thinning
        backdrop="park",
    )
    return {"schoolyard": schoolyard, "park": park}
