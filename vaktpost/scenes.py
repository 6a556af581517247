"""Deterministic synthetic camera scenes for the demo, tests, benchmarks and evaluation.

A scene is a static outdoor backdrop (sky, building with windows, ground,
trees, fine texture) with, optionally:

* people: simple drawn figures (no detector will take them for people; cheap,
  dependency-free) or composited photographs (cut-outs of scikit-image's
  `astronaut` and `camera` pictures, which a person detector does recognise),
  moving along a path or standing;
* changes to the scene itself: graffiti painted onto the wall, a bag left
  behind, a bin taken away (`Prop`, `Graffiti`);
* changes of the light: a lights-on step, slow daylight drift, a night/IR
  switch (grayscale + contrast), rain streaks;
* wind: tree canopies sway and their leaves flicker;
* interference with the camera: lens covered, lens smeared, camera turned
  (`LensCover`, `LensSmear`, `CameraTurn`);
* sensor noise.

Everything is a function of (scene, t): the same scene and time always give the
same frame, so tests can compare detections with the ground truth the scene
carries (each figure's presence window, moving windows and box at any time).

Coordinates are normalised 0..1 as everywhere in Vaktpost (see edge/privacy/masks.py).
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

from vaktpost.edge.geometry import Box

Color = tuple[int, int, int]  # BGR
FigureKind = Literal["drawn", "astronaut", "cameraman"]
PHOTO_KINDS: tuple[FigureKind, ...] = ("astronaut", "cameraman")

_SHIFT = 4  # sub-pixel bits for cv2 drawing, so slow figures move smoothly
_SKIN: Color = (120, 150, 190)
_LEGS: Color = (55, 50, 50)
HALF_WIDTH = 0.17  # of figure height: half the widest extent of the drawn figure (legs mid-stride)


@dataclass
class Figure:
    """A person whose feet follow `path` while start_s <= t <= end_s.

    `kind` "drawn" is a simple painted figure (legs, torso, head) that needs
    nothing but OpenCV; "astronaut" and "cameraman" composite a cut-out of the
    scikit-image photo of that name, scaled to `height`, for a person detector
    to find (`color` applies to drawn figures only).

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
    kind: FigureKind = "drawn"

    def __post_init__(self) -> None:
        if self.kind not in ("drawn", *PHOTO_KINDS):
            raise ValueError(f"unknown figure kind {self.kind!r}")
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

    def faces_left(self) -> bool:
        """Photo figures are mirrored to face the way they walk (overall direction of the path)."""
        return self.path[-1][0] < self.path[0][0]

    def box(self, t: float, aspect: float) -> Box | None:
        """Normalised box around the figure (clipped to the frame); `aspect` = frame width / height."""
        pos = self.position(t)
        if pos is None:
            return None
        x, y = pos
        if self.kind == "drawn":
            half_w = HALF_WIDTH * self.height / aspect
        else:
            half_w = 0.5 * photo_aspect(self.kind) * self.height / aspect
        x1, y1 = max(0.0, x - half_w), max(0.0, y - self.height)
        x2, y2 = min(1.0, x + half_w), min(1.0, y)
        return (x1, y1, x2, y2) if x2 > x1 and y2 > y1 else None


@dataclass
class Prop:
    """A still object standing on the ground: a `bag` someone leaves, a `bin` someone takes away.

    (x, y) is the bottom centre, `size` the height, both normalised. It is in
    the scene from `appears_s` (None: from the start) until `removed_s` (None:
    to the end).
    """

    kind: Literal["bag", "bin"]
    x: float
    y: float
    size: float = 0.07
    appears_s: float | None = None
    removed_s: float | None = None
    color: Color | None = None  # default per kind

    def present(self, t: float) -> bool:
        return (self.appears_s is None or t >= self.appears_s) and (self.removed_s is None or t < self.removed_s)

    def box(self, aspect: float) -> Box:
        """Normalised box of the object; `aspect` = frame width / height."""
        half_w = 0.5 * _PROP_ASPECT[self.kind] * self.size / aspect
        return (self.x - half_w, self.y - self.size, self.x + half_w, self.y)


_PROP_ASPECT = {"bag": 1.3, "bin": 0.65}  # width / height of the drawn object
_PROP_COLOR: dict[str, Color] = {"bag": (40, 50, 110), "bin": (45, 105, 40)}


@dataclass
class Graffiti:
    """Bright thick strokes painted between start_s and end_s (at constant pen speed), then staying.

    `strokes` are polylines in normalised coordinates; `thickness` is normalised
    to the frame height.
    """

    start_s: float
    end_s: float
    strokes: list[list[tuple[float, float]]]
    color: Color = (200, 40, 230)  # BGR: a loud magenta-pink
    thickness: float = 0.014

    def __post_init__(self) -> None:
        if self.end_s <= self.start_s:
            raise ValueError("end_s must be after start_s")
        if not self.strokes or any(len(st) < 2 for st in self.strokes):
            raise ValueError("strokes need at least one polyline of two or more points")

    def fraction(self, t: float) -> float:
        """Share of the total stroke length painted at t."""
        return min(1.0, max(0.0, (t - self.start_s) / (self.end_s - self.start_s)))


@dataclass
class CameraEffect:
    """Something done to the camera from start_s: it ramps in over ramp_s, and out again from end_s.

    `end_s` None means it stays to the end of the clip.
    """

    start_s: float
    end_s: float | None = None
    ramp_s: float = 0.5

    def __post_init__(self) -> None:
        if self.end_s is not None and self.end_s <= self.start_s:
            raise ValueError("end_s must be after start_s")
        if self.ramp_s < 0:
            raise ValueError("ramp_s must not be negative")

    def level(self, t: float) -> float:
        """0 (no effect) .. 1 (full effect) at time t."""
        def ramp(since: float) -> float:
            return 1.0 if self.ramp_s == 0 else min(1.0, max(0.0, since / self.ramp_s))

        if t < self.start_s:
            return 0.0
        on = ramp(t - self.start_s)
        if self.end_s is not None and t >= self.end_s:
            on = min(on, 1.0 - ramp(t - self.end_s))
        return on


@dataclass
class LensCover(CameraEffect):
    """A hand, cap or tape over the lens: the picture goes dark and near-uniform, only noise left."""

    darkness: float = 16.0  # mean grey level of the covered picture
    extra_noise: float = 2.5  # the camera raises its gain in the dark: more noise


@dataclass
class LensSmear(CameraEffect):
    """Grease or spray on the lens: strong blur and a milky haze."""

    blur_sigma: float = 8.0  # pixels at 640 wide; scaled with the frame width
    haze: float = 0.3  # share of the picture replaced by a flat pale veil


@dataclass
class CameraTurn(CameraEffect):
    """The camera pushed to look elsewhere: the whole view shifts and rotates, then stays."""

    ramp_s: float = 1.0
    shift: tuple[float, float] = (0.15, 0.04)  # of the frame width, height
    angle_deg: float = 5.0


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
    props: list[Prop] = field(default_factory=list)
    graffiti: list[Graffiti] = field(default_factory=list)
    camera_effects: list[CameraEffect] = field(default_factory=list)
    rain: float = 0.0  # 0..1: density of rain streaks (1 = downpour) and the extra noise that comes with it
    ir_at: float | None = None  # night mode from then on: grayscale under the camera's own IR light
    ir_gain: float = 1.35  # contrast of the IR picture (IR light is harsh and local)
    ir_offset: float = 10.0
    wind: float = 0.0  # 0..1: tree canopies sway (up to a quarter of their radius at 1) and their leaves flicker

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
    n = cv2.GaussianBlur(rng.standard_normal((h, w), dtype=np.float32), (0, 0), max(0.5, scale))
    return 1.0 + amount * (n / (float(n.std()) or 1.0))


def _rect(img: np.ndarray, x1: float, y1: float, x2: float, y2: float, color: Color) -> None:
    h, w = img.shape[:2]
    cv2.rectangle(img, (int(x1 * w), int(y1 * h)), (int(x2 * w) - 1, int(y2 * h) - 1), color, -1)


_HORIZON = 0.55
_TREES = {  # (x of the trunk, canopy radius as a share of the height) per backdrop
    "schoolyard": ((0.8, 0.11), (0.93, 0.08)),
    "park": ((0.15, 0.12), (0.45, 0.09), (0.8, 0.14)),
}


@lru_cache(maxsize=8)
def _backdrop(width: int, height: int, seed: int, kind: str) -> np.ndarray:
    rng = np.random.default_rng(seed)
    h, w = height, width
    img = np.zeros((h, w, 3), np.float32)
    horizon = _HORIZON
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
            cv2.line(canvas, (int(x * w), int(0.6 * h)), (int((x - 0.05) * w), h - 1), (190, 190, 190),
                     max(1, w // 320))
    else:
        _rect(canvas, 0.0, horizon, 1.0, horizon + 0.03, (70, 120, 80))  # far hedge
        # gravel path
        cv2.ellipse(canvas, (int(0.5 * w), int(0.8 * h)), (int(0.6 * w), int(0.08 * h)), 0, 0, 360, (120, 140, 150), -1)
        _rect(canvas, 0.12, 0.62, 0.26, 0.66, (60, 80, 110))  # bench seat
    for tx, r in _TREES[kind]:
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


# --- photographs of people ----------------------------------------------------

Rect = tuple[int, int, int, int]  # x, y, w, h in pixels

# GrabCut seeds in each 512x512 photo: a rectangle around the person (outside is
# background) and rectangles that surely are the person. The astronaut's
# rectangle leaves out most of the flag and the shuttle, and her dark neck
# ring is marked as person (GrabCut would otherwise give it to the dark
# background it touches); the cameraman keeps his tripod, carried along like a bag.
_PHOTO_SEEDS: dict[str, tuple[Rect, tuple[Rect, ...]]] = {
    "astronaut": ((18, 8, 350, 504), ((170, 150, 140, 130), (60, 300, 250, 150))),
    "cameraman": ((0, 55, 345, 457), ()),
}


def _photo(kind: str) -> np.ndarray:
    """The BGR uint8 photograph behind a photo figure kind."""
    try:
        from skimage import data
    except ImportError:  # the node never draws photo figures; only dev/eval needs scikit-image
        raise RuntimeError("photo figures need scikit-image: pip install 'vaktpost[demo]'") from None
    if kind == "astronaut":
        return np.ascontiguousarray(data.astronaut()[:, :, ::-1])
    if kind == "cameraman":
        return cv2.cvtColor(data.camera(), cv2.COLOR_GRAY2BGR)  # grayscale photo: 3 equal channels
    raise ValueError(f"no photo for figure kind {kind!r}")


def person_matte(image: np.ndarray, rect: Rect, sure: tuple[Rect, ...] = ()) -> np.ndarray:
    """Rough person matte (float32 0..1) of a BGR photo: GrabCut seeded by `rect` (and the
    `sure` person rectangles inside it), holes filled.

    GrabCut runs at half resolution (four times faster, and the matte only needs
    to be rough) with OpenCV's RNG seeded, so the matte is the same every run.
    """
    small = cv2.resize(image, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    mask = np.full(small.shape[:2], cv2.GC_BGD, np.uint8)
    x, y, w, h = (v // 2 for v in rect)
    mask[y : y + h, x : x + w] = cv2.GC_PR_FGD
    for sx, sy, sw, sh in ((v // 2 for v in r) for r in sure):
        mask[sy : sy + sh, sx : sx + sw] = cv2.GC_FGD
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(12345)  # GrabCut's GMM initialisation draws from OpenCV's global RNG
    cv2.grabCut(small, mask, (0, 0, 0, 0), bgd, fgd, 5, cv2.GC_INIT_WITH_MASK)  # the mask, not a rect, seeds it
    fg = np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8)
    # Keep the largest blob and fill its small holes: GrabCut drops dark bits inside
    # the person (shadows on a face, a glove) that belong to them. Large holes are
    # real background seen through, e.g. the grass between tripod legs.
    contours, hierarchy = cv2.findContours(fg, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    outer = [i for i in range(len(contours)) if hierarchy[0][i][3] < 0]
    if not outer:
        raise RuntimeError("GrabCut found no foreground in the seed rectangle")
    body = max(outer, key=lambda i: cv2.contourArea(contours[i]))
    solid = np.zeros_like(fg)
    cv2.drawContours(solid, contours, body, 1, -1)
    for i, c in enumerate(contours):
        if hierarchy[0][i][3] == body and cv2.contourArea(c) > 0.02 * cv2.contourArea(contours[body]):
            cv2.drawContours(solid, contours, i, 0, -1)
    full = cv2.resize(solid.astype(np.float32), (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    return np.clip(cv2.GaussianBlur(full, (0, 0), 1.5), 0.0, 1.0)  # soft edge, no cut-out halo


@lru_cache(maxsize=4)
def photo_cutout(kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(BGR uint8, alpha float32 0..1) of the person in photo `kind`, cropped to the matte."""
    image = _photo(kind)
    rect, sure = _PHOTO_SEEDS[kind]
    alpha = person_matte(image, rect, sure)
    ys, xs = np.nonzero(alpha > 0.5)
    x1, x2, y1, y2 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    bgr, a = image[y1:y2, x1:x2].copy(), alpha[y1:y2, x1:x2].copy()
    bgr.flags.writeable = a.flags.writeable = False  # cached and shared
    return bgr, a


def photo_aspect(kind: str) -> float:
    """Width / height of the cut-out person in photo `kind`."""
    bgr, _ = photo_cutout(kind)
    return bgr.shape[1] / bgr.shape[0]


@lru_cache(maxsize=64)
def _sprite(kind: str, height_px: int, mirrored: bool) -> tuple[np.ndarray, np.ndarray]:
    """The cut-out scaled to `height_px`: (BGR float32, alpha float32 with a trailing axis)."""
    bgr, alpha = photo_cutout(kind)
    width_px = max(1, int(round(height_px * bgr.shape[1] / bgr.shape[0])))
    size = (width_px, height_px)
    b = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA).astype(np.float32)
    a = cv2.resize(alpha, size, interpolation=cv2.INTER_AREA)
    if mirrored:
        b, a = b[:, ::-1], a[:, ::-1]
    return np.ascontiguousarray(b), np.ascontiguousarray(a)[:, :, None]


def _blend(img: np.ndarray, sprite: np.ndarray, alpha: np.ndarray, x0: int, y0: int) -> None:
    """Alpha-composite `sprite` onto `img` (uint8, in place) with its top-left at (x0, y0), clipped."""
    h, w = img.shape[:2]
    sh, sw = sprite.shape[:2]
    cx1, cy1, cx2, cy2 = max(0, x0), max(0, y0), min(w, x0 + sw), min(h, y0 + sh)
    if cx2 <= cx1 or cy2 <= cy1:
        return
    src = sprite[cy1 - y0 : cy2 - y0, cx1 - x0 : cx2 - x0]
    a = alpha[cy1 - y0 : cy2 - y0, cx1 - x0 : cx2 - x0]
    dst = img[cy1:cy2, cx1:cx2].astype(np.float32)
    img[cy1:cy2, cx1:cx2] = np.clip(dst + a * (src - dst) + 0.5, 0, 255).astype(np.uint8)


def _paste_photo(img: np.ndarray, fig: Figure, t: float) -> None:
    pos = fig.position(t)
    if pos is None:
        return
    h, w = img.shape[:2]
    hp = max(4, int(round(fig.height * h)))
    sprite, alpha = _sprite(fig.kind, hp, fig.faces_left())
    fx, fy = pos[0] * w, pos[1] * h
    if fig.moving(t):
        # A cut-out cannot swing its legs; a small bounce per step reads as walking.
        fy -= abs(math.sin(2 * math.pi * 1.0 * (t - fig.start_s))) * 0.015 * hp
    else:
        fx += math.sin(2 * math.pi * 0.3 * t) * 0.02 * hp  # a standing person sways
    _blend(img, sprite, alpha, int(round(fx - sprite.shape[1] / 2)), int(round(fy - hp)))


# --- objects and paint ---------------------------------------------------------


def _draw_prop(img: np.ndarray, prop: Prop) -> None:
    h, w = img.shape[:2]
    x1, y1, x2, y2 = prop.box(w / h)
    color = prop.color or _PROP_COLOR[prop.kind]
    dark = tuple(int(c * 0.6) for c in color)
    p1, p2 = _pt(x1 * w, y1 * h), _pt(x2 * w, y2 * h)
    if prop.kind == "bag":
        body_top = y1 + (y2 - y1) * 0.3  # the upper third is the handle
        cv2.rectangle(img, _pt(x1 * w, body_top * h), p2, color, -1, cv2.LINE_AA, _SHIFT)
        cv2.rectangle(img, _pt(x1 * w, body_top * h), p2, dark, max(1, int(0.004 * h)), cv2.LINE_AA, _SHIFT)
        centre = _pt((x1 + x2) / 2 * w, body_top * h)
        axes = _pt((x2 - x1) * 0.25 * w, (body_top - y1) * h)
        cv2.ellipse(img, centre, axes, 0, 180, 360, dark, max(1, int(0.006 * h)), cv2.LINE_AA, _SHIFT)
    else:  # bin: body, darker lid, vertical ribs
        cv2.rectangle(img, p1, p2, color, -1, cv2.LINE_AA, _SHIFT)
        lid_h = (y2 - y1) * 0.12
        cv2.rectangle(img, p1, _pt(x2 * w, (y1 + lid_h) * h), dark, -1, cv2.LINE_AA, _SHIFT)
        for k in (0.3, 0.5, 0.7):
            x = x1 + (x2 - x1) * k
            cv2.line(img, _pt(x * w, (y1 + 2 * lid_h) * h), _pt(x * w, (y2 - lid_h) * h), dark,
                     max(1, int(0.004 * h)), cv2.LINE_AA, _SHIFT)


def _draw_graffiti(img: np.ndarray, g: Graffiti, t: float) -> None:
    """Paint the first `fraction(t)` of the strokes' total length (strokes in order)."""
    budget = g.fraction(t)
    if budget <= 0:
        return
    h, w = img.shape[:2]
    strokes = [[(x * w, y * h) for x, y in st] for st in g.strokes]
    lengths = [math.dist(a, b) for st in strokes for a, b in zip(st, st[1:])]
    budget *= sum(lengths)
    thick = max(1, int(round(g.thickness * h)))
    for st in strokes:
        for a, b in zip(st, st[1:]):
            if budget <= 0:
                return
            d = math.dist(a, b)
            k = 1.0 if d <= budget else budget / d
            end = (a[0] + k * (b[0] - a[0]), a[1] + k * (b[1] - a[1]))
            cv2.line(img, _pt(*a), _pt(*end), g.color, thick, cv2.LINE_AA, _SHIFT)
            budget -= d


def _sway_trees(img: np.ndarray, scene: Scene, t: float) -> None:
    """Wind: each canopy (with the sky around it) shifts by a gusty sway, and its leaves flicker (in place).

    Fast enough that the canopy changes every frame, as real foliage in wind does.
    """
    h, w = img.shape[:2]
    rest = _backdrop(scene.width, scene.height, scene.seed, scene.backdrop)
    index = int(round(t * scene.fps))
    for k, (tx, r) in enumerate(_TREES[scene.backdrop]):
        rp = r * h
        cx, cy = tx * w, (_HORIZON - 0.17) * h
        x1, y1 = max(0, int(cx - 1.4 * rp)), max(0, int(cy - 1.4 * rp))
        x2, y2 = min(w, int(cx + 1.4 * rp)), min(h, int(cy + 1.1 * rp))  # stop above the trunk's foot
        gust = 0.6 + 0.4 * math.sin(2 * math.pi * 0.07 * t + k)
        dx = scene.wind * 0.25 * rp * gust * (math.sin(2 * math.pi * 0.6 * t + 1.7 * k)
                                            + 0.3 * math.sin(2 * math.pi * 2.3 * t + k))
        dy = 0.3 * dx * math.sin(2 * math.pi * 0.9 * t + k)
        crop = rest[y1:y2, x1:x2]
        m = np.array([[1, 0, dx], [0, 1, dy]], np.float32)
        moved = cv2.warpAffine(crop, m, (x2 - x1, y2 - y1), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        leaves = np.zeros(crop.shape[:2], np.float32)
        cv2.circle(leaves, (int(cx - x1 + dx), int(cy - y1 + dy)), int(rp), 1.0, -1)
        rng = np.random.default_rng([scene.seed, index, 3, k])
        flicker = cv2.GaussianBlur(rng.standard_normal(crop.shape[:2], dtype=np.float32), (0, 0), 1.5)
        moved = moved.astype(np.float32) * (1.0 + scene.wind * 0.5 * leaves * flicker)[:, :, None]
        img[y1:y2, x1:x2] = np.clip(moved, 0, 255).astype(np.uint8)


# --- light, weather, camera ------------------------------------------------------


def _illuminate(scene: Scene, img: np.ndarray, t: float) -> np.ndarray:
    """Float32 frame under the light at t: daylight/lamps, or the camera's IR mode."""
    out = img.astype(np.float32)
    if scene.ir_at is not None and t >= scene.ir_at:
        # Under IR, foliage and skin reflect strongly and colour is gone: weight red and
        # green up. The camera's IR lamp is the only light, so daylight drift does not
        # apply, and it lights what is near (the bottom of the picture) far more than
        # the distant wall and the sky.
        b, g, r = cv2.split(out)
        grey = 0.15 * b + 0.45 * g + 0.4 * r
        reach = _ir_falloff(scene.height)
        grey = grey * (reach * np.float32(scene.ir_gain)) + np.float32(scene.ir_offset)
        return cv2.merge([grey, grey, grey])
    gain, offset = scene.brightness(t)
    if gain != 1.0 or offset != 0.0:
        out = out * np.float32(gain) + np.float32(offset)
    return out


@lru_cache(maxsize=8)
def _ir_falloff(height: int) -> np.ndarray:
    """Column of IR lamp reach per row: 0.2 at the top of the picture (sky: nothing to light),
    about 0.6 at the horizon, 1.1 at the bottom (the ground in front of the camera)."""
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)
    out = (0.2 + 0.9 * y**1.5)[:, None].astype(np.float32)
    out.flags.writeable = False
    return out


def _turn(img: np.ndarray, turn: CameraTurn, level: float) -> np.ndarray:
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), turn.angle_deg * level, 1.0)
    m[0, 2] += turn.shift[0] * level * w
    m[1, 2] += turn.shift[1] * level * h
    # Reflecting the border stands in for the scenery the camera now sees; a black
    # wedge would be a give-away no real camera shows.
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def _rain(out: np.ndarray, scene: Scene, index: int) -> None:
    """Add thin bright slanted streaks, new ones every frame (in place)."""
    h, w = out.shape[:2]
    rng = np.random.default_rng([scene.seed, index, 1])
    n = int(scene.rain * 0.0025 * w * h)  # 1.0 → ~575 streaks in 640x360
    layer = np.zeros((h, w), np.float32)
    xs, ys = rng.uniform(-0.1 * w, w, n), rng.uniform(-0.1 * h, h, n)
    lengths = rng.uniform(0.03, 0.09, n) * h
    slant = 0.3 + rng.normal(0.0, 0.04, n)  # wind: all lean the same way, a little jitter
    levels = rng.uniform(30.0, 70.0, n)
    for x, y, ln, s, v in zip(xs, ys, lengths, slant, levels):
        cv2.line(layer, _pt(x, y), _pt(x + s * ln, y + ln), float(v), 1, cv2.LINE_AA, _SHIFT)
    out += layer[:, :, None]


def _smear(out: np.ndarray, smear: LensSmear, level: float) -> np.ndarray:
    sigma = smear.blur_sigma * level * out.shape[1] / 640
    if sigma > 0.3:
        out = cv2.GaussianBlur(out, (0, 0), sigma)
    veil = smear.haze * level
    return out * np.float32(1 - veil) + np.float32(veil * 170.0)


@lru_cache(maxsize=8)
def _cover_field(width: int, height: int, seed: int, darkness: float) -> np.ndarray:
    """The near-uniform dark picture of a covered lens: a faint blotchy glow, not a flat black."""
    rng = np.random.default_rng([seed, 2])
    field_ = darkness * _texture(rng, height, width, width / 12, 0.15)
    out = np.repeat(field_[:, :, None], 3, axis=2).astype(np.float32)
    out.flags.writeable = False
    return out


def _cover(out: np.ndarray, scene: Scene, cover: LensCover, level: float) -> np.ndarray:
    dark = _cover_field(scene.width, scene.height, scene.seed, cover.darkness)
    return out * np.float32(1 - level) + dark * np.float32(level)


def render_frame(scene: Scene, t: float) -> np.ndarray:
    """BGR uint8 frame (height, width, 3) of `scene` at time t seconds."""
    index = int(round(t * scene.fps))
    # The world: backdrop, what is in it, the people in front.
    img = _backdrop(scene.width, scene.height, scene.seed, scene.backdrop).copy()
    if scene.wind > 0:
        _sway_trees(img, scene, t)
    for g in scene.graffiti:
        _draw_graffiti(img, g, t)
    for prop in scene.props:
        if prop.present(t):
            _draw_prop(img, prop)
    for fig in scene.figures:
        (_draw_figure if fig.kind == "drawn" else _paste_photo)(img, fig, t)
    # Where the camera looks, then the light it sees the world in.
    for eff in scene.camera_effects:
        if isinstance(eff, CameraTurn) and (lv := eff.level(t)) > 0:
            img = _turn(img, eff, lv)
    out = _illuminate(scene, img, t)
    # Between the world and the sensor: rain, then what is on the lens.
    sigma = scene.noise_sigma
    if scene.rain > 0:
        _rain(out, scene, index)
        sigma += 2.0 * scene.rain
    for eff in scene.camera_effects:
        lv = eff.level(t)
        if lv <= 0:
            continue
        if isinstance(eff, LensSmear):
            out = _smear(out, eff, lv)
        elif isinstance(eff, LensCover):
            out = _cover(out, scene, eff, lv)
            sigma += eff.extra_noise * lv
    if sigma > 0:
        # Seeded per frame index, so frame t is the same no matter what was rendered before.
        rng = np.random.default_rng([scene.seed, index])
        out += rng.standard_normal(out.shape, dtype=np.float32) * np.float32(sigma)
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
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), scene.fps, (scene.width, scene.height))
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
