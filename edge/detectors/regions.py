"""Run the person detector where motion is, through tiles of the full-resolution frame,
within a per-camera budget of detector passes.

A 300x300 SSD sees a whole 480x360 frame stretched to 300x300: a pedestrian 40 px
tall becomes 33 px and is mostly missed. So the detector never looks at the whole
frame at once. Each run makes at most `max_tiles` passes over parts of the frame:

1. motion crops: each motion (and watched) box widened by `crop_margin`, made
   square, at least `min_crop` of the frame height on a side, shifted into the
   frame, overlapping crops merged (edge cases as in `square_crop`, `merge_crops`);
2. a crop larger than two tiles (`tile_side` of the frame height), or more crops
   than the budget, is replaced by the tiles of a fixed overlapping grid that it
   touches: squares of `tile_side`, plus frame-height squares so that people
   taller than a small tile are seen whole too. A busy scene is covered tile by
   tile at native resolution instead of one shrunken view. When those exceed the budget, the least recently looked-at
   go first, so every moving part is seen within a few runs;
3. passes left in the budget go round-robin over the other tiles, least recently
   looked-at first, so people the motion stage does not report (standing still,
   or lost in a crowd's motion) are still found.

Detections are mapped back to full-frame normalised coordinates; a person cut by a
tile's inner edge is joined with its other part from the neighbouring tile, then
duplicates are removed with NMS.

Crops are in integer pixels (x1, y1, x2, y2), x2/y2 exclusive, so that slicing
the frame with them is exact and mapping back is exact too.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from vaktpost.edge.config.detectors import DetectorSettings
from vaktpost.edge.detectors import Detection, Detector
from vaktpost.edge.detectors.ops import nms
from vaktpost.edge.geometry import Box

Crop = tuple[int, int, int, int]


# --- pure helpers -----------------------------------------------------------


def expand_box(box: Box, margin: float) -> Box:
    """Normalised box widened by `margin` times its width (height) on the left and right (top and bottom)."""
    x1, y1, x2, y2 = box
    dx, dy = (x2 - x1) * margin, (y2 - y1) * margin
    return (x1 - dx, y1 - dy, x2 + dx, y2 + dy)


def square_crop(box_px: tuple[float, float, float, float], min_side: float, frame_w: int, frame_h: int) -> Crop:
    """Integer square crop around a pixel box: side max(box w, box h, min_side), same centre,
    shifted to lie inside the frame; clipped only where the side exceeds the frame."""
    x1, y1, x2, y2 = box_px
    side = max(x2 - x1, y2 - y1, min_side, 1.0)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2

    def place(centre: float, length: int) -> tuple[int, int]:
        s = min(int(np.ceil(side)), length)
        start = int(round(centre - s / 2))
        start = min(max(start, 0), length - s)
        return start, start + s

    ax1, ax2 = place(cx, frame_w)
    ay1, ay2 = place(cy, frame_h)
    return (ax1, ay1, ax2, ay2)


def overlap(a: Crop, b: Crop) -> bool:
    """True when two crops share pixels (touching edges do not count)."""
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def crop_area(c: Crop) -> int:
    return (c[2] - c[0]) * (c[3] - c[1])


def merge_crops(crops: Sequence[Crop], min_side: float, frame_w: int, frame_h: int) -> list[Crop]:
    """Replace overlapping crops by one square crop around both, until none overlap. Largest first."""
    out = list(crops)
    merged = True
    while merged:
        merged = False
        for i in range(len(out)):
            for j in range(i + 1, len(out)):
                if overlap(out[i], out[j]):
                    a, b = out[i], out[j]
                    union = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                    out[i] = square_crop(union, min_side, frame_w, frame_h)
                    del out[j]
                    merged = True  # the grown crop may now overlap others: start over
                    break
            if merged:
                break
    return sorted(out, key=lambda c: (-crop_area(c), c))


def plan_crops(motion_boxes: Sequence[Box], frame_w: int, frame_h: int, *, margin: float = 0.25,
               min_crop: float = 0.25) -> list[Crop]:
    """The square pixel crops around these normalised motion boxes (none for none), merged, largest first."""
    if not motion_boxes:
        return []
    min_side = min_crop * frame_h
    crops = []
    for box in motion_boxes:
        x1, y1, x2, y2 = expand_box(box, margin)
        crops.append(square_crop((x1 * frame_w, y1 * frame_h, x2 * frame_w, y2 * frame_h), min_side, frame_w, frame_h))
    return merge_crops(crops, min_side, frame_w, frame_h)


def _starts(length: int, side: int, overlap: float) -> list[int]:
    """Evenly spread starts of windows of `side` covering 0..length, neighbours sharing >= overlap*side."""
    if side >= length:
        return [0]
    step = side * (1.0 - overlap)
    n = math.ceil((length - side) / step) + 1
    return [round(i * (length - side) / (n - 1)) for i in range(n)]


def pyramid(frame_w: int, frame_h: int, side_frac: float, overlap: float) -> list[Crop]:
    """The fine grid of `tile_grid`, then the coarse one of frame-height squares: people taller
    than a fine tile are cut by its edges, and are found whole in a coarse tile."""
    fine = tile_grid(frame_w, frame_h, side_frac, overlap)
    coarse = [t for t in tile_grid(frame_w, frame_h, 1.0, overlap) if t not in fine]
    return fine + coarse


def tile_grid(frame_w: int, frame_h: int, side_frac: float, overlap: float) -> list[Crop]:
    """Overlapping square tiles of side `side_frac` x frame height covering the frame, row by row."""
    side = max(1, min(round(side_frac * frame_h), frame_w, frame_h))
    xs, ys = _starts(frame_w, side, overlap), _starts(frame_h, side, overlap)
    return [(x, y, x + side, y + side) for y in ys for x in xs]


@dataclass(frozen=True, slots=True)
class Plan:
    """The passes of one run: `motion` crops or tiles first, then `sweep` tiles."""

    motion: list[Crop]
    sweep: list[Crop]

    @property
    def crops(self) -> list[Crop]:
        return [*self.motion, *self.sweep]


def plan_passes(boxes: Sequence[Box], grid: Sequence[Crop], frame_w: int, frame_h: int, budget: int,
                last_seen: Mapping[Crop, int], *, margin: float, min_crop: float) -> Plan:
    """At most `budget` passes: motion crops when they fit (each no larger than a tile, no more
    than the budget), else the grid tiles they touch; the remainder fills with the other tiles.
    Among equals, tiles with the smallest `last_seen` (run counter) come first."""
    crops = plan_crops(boxes, frame_w, frame_h, margin=margin, min_crop=min_crop)
    # A crop up to twice a tile is one person close by (or a small group): looked at whole,
    # not cut by tile edges. Larger ones are what merged motion all over a busy frame gives.
    tile_side = min((t[2] - t[0] for t in grid), default=0)
    fitting = [c for c in crops if c[2] - c[0] <= 2 * tile_side]
    if len(fitting) == len(crops) and len(crops) <= budget:
        motion, touched = crops, []
    else:
        motion = []
        touched = [t for t in grid if any(overlap(t, c) for c in crops)]
        touched.sort(key=lambda t: last_seen.get(t, -1))
        motion = touched[:budget]
    rest = [t for t in grid if t not in touched and not any(_covers(c, t) for c in motion)]
    rest.sort(key=lambda t: last_seen.get(t, -1))
    return Plan(motion, rest[: budget - len(motion)])


def _covers(a: Crop, b: Crop) -> bool:
    """True when crop `a` contains most (>= 3/4) of tile `b`: looking at `b` again adds little."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    return ix * iy >= 0.75 * crop_area(b)


def to_frame(box: Box, crop: Crop, frame_w: int, frame_h: int) -> Box:
    """A box normalised to `crop` → normalised to the whole frame."""
    cx1, cy1, cx2, cy2 = crop
    cw, ch = cx2 - cx1, cy2 - cy1
    return (
        (cx1 + box[0] * cw) / frame_w,
        (cy1 + box[1] * ch) / frame_h,
        (cx1 + box[2] * cw) / frame_w,
        (cy1 + box[3] * ch) / frame_h,
    )


def merge_detections(detections: Sequence[Detection], iou: float) -> list[Detection]:
    """One detection per object: NMS per label over detections from several crops; best first."""
    out: list[Detection] = []
    for label in sorted({d.label for d in detections}):
        same = [d for d in detections if d.label == label]
        keep = nms(np.array([d.box for d in same], np.float64), np.array([d.score for d in same]), iou)
        out.extend(same[i] for i in keep)
    out.sort(key=lambda d: -d.score)
    return out


def _cut_sides(box_px: tuple[float, float, float, float], crop: Crop, frame_w: int, frame_h: int,
               tol: float) -> tuple[bool, bool, bool, bool]:
    """Which sides (left, top, right, bottom) of a box lie on an inner edge of its crop: the
    person may go on beyond it. Crop edges on the frame border cut nobody."""
    x1, y1, x2, y2 = box_px
    cx1, cy1, cx2, cy2 = crop
    return (cx1 > 0 and x1 - cx1 <= tol, cy1 > 0 and y1 - cy1 <= tol,
            cx2 < frame_w and cx2 - x2 <= tol, cy2 < frame_h and cy2 - y2 <= tol)


def _span_iou(a1: float, a2: float, b1: float, b2: float) -> float:
    inter = max(0.0, min(a2, b2) - max(a1, b1))
    union = max(a2, b2) - min(a1, b1)
    return inter / union if union > 0 else 0.0


def join_cut(parts: Sequence[tuple[Detection, Crop]], frame_w: int, frame_h: int,
             tol_frac: float = 0.02, span_iou: float = 0.5) -> list[Detection]:
    """Detections (with the crop each came from) in frame coordinates, with the parts of a
    person cut by a crop's inner edge joined into one box (the union, the better score).

    Two boxes from different crops are joined when one is cut on a side, they overlap, and
    along that side they line up (their spans across the cut overlap by `span_iou`).
    """
    items: list[_Part] = []
    for d, crop in parts:
        b = d.box
        px = (b[0] * frame_w, b[1] * frame_h, b[2] * frame_w, b[3] * frame_h)
        tol = tol_frac * max(crop[2] - crop[0], crop[3] - crop[1])
        items.append(_Part(d, frozenset({crop}), _cut_sides(px, crop, frame_w, frame_h, tol)))
    joined = True
    while joined:
        joined = False
        for i in range(len(items)):
            for j in range(i + 1, len(items)):
                a, b2 = items[i], items[j]
                if a.det.label != b2.det.label or a.crops & b2.crops or \
                        not _may_join(a.det.box, a.cut, b2.det.box, b2.cut, span_iou):
                    continue
                x, y = a.det.box, b2.det.box
                box = (min(x[0], y[0]), min(x[1], y[1]), max(x[2], y[2]), max(x[3], y[3]))
                cut = (a.cut[0] and b2.cut[0], a.cut[1] and b2.cut[1], a.cut[2] and b2.cut[2], a.cut[3] and b2.cut[3])
                items[i] = _Part(Detection(box, max(a.det.score, b2.det.score), a.det.label), a.crops | b2.crops, cut)
                del items[j]
                joined = True
                break
            if joined:
                break
    return [it.det for it in items]


@dataclass(slots=True)
class _Part:
    det: Detection
    crops: frozenset[Crop]
    cut: tuple[bool, bool, bool, bool]  # left, top, right, bottom on an inner crop edge


def _may_join(a: Box, ka: tuple[bool, ...], b: Box, kb: tuple[bool, ...], span_iou: float) -> bool:
    """Overlapping, one cut, and lined up across the cut."""
    if not (min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])):
        return False
    cut_lr = ka[0] or ka[2] or kb[0] or kb[2]
    cut_tb = ka[1] or ka[3] or kb[1] or kb[3]
    return (cut_lr and _span_iou(a[1], a[3], b[1], b[3]) >= span_iou) or \
        (cut_tb and _span_iou(a[0], a[2], b[0], b[2]) >= span_iou)


def detect_in_crops(image_bgr: np.ndarray, crops: Sequence[Crop], detector: Detector,
                    nms_iou: float) -> list[Detection]:
    """Run `detector` on each crop of the image; detections in full-frame normalised
    coordinates, parts cut by crop edges joined, duplicates removed."""
    h, w = image_bgr.shape[:2]
    parts = []
    for crop in crops:
        x1, y1, x2, y2 = crop
        for d in detector.detect(image_bgr[y1:y2, x1:x2]):
            parts.append((Detection(to_frame(d.box, crop, w, h), d.score, d.label), crop))
    return merge_detections(join_cut(parts, w, h), nms_iou)


# --- thin stateful wrappers -------------------------------------------------


class RateLimiter:
    """Lets an action through at most `max_fps` times per second on average, without bursts.

    Slots are spaced 1/max_fps apart and anchored to the previous slot rather
    than to the previous call, so a 5 fps camera gating a 2 fps detector gets
    2 runs a second, not the 1.67 that "at least 0.5 s since the last run"
    would give. After a pause the schedule restarts from now: no catching up.
    """

    def __init__(self, max_fps: float, clock: Callable[[], float] = time.monotonic) -> None:
        if max_fps <= 0:
            raise ValueError("max_fps must be positive")
        self.interval = 1.0 / max_fps
        self.clock = clock
        self._next: float | None = None

    def allow(self, now: float | None = None) -> bool:
        """True (and the slot is used) when a run is due at `now` (default: the clock)."""
        t = self.clock() if now is None else now
        if self._next is not None and t < self._next:
            return False
        if self._next is None or t - self._next >= self.interval:
            self._next = t + self.interval  # first run, or late by a whole slot: restart from now
        else:
            self._next += self.interval
        return True


class RegionDetector:
    """Runs a detector on motion crops and tiles of a frame (see the module docstring), at
    most `max_fps` runs per second and `max_tiles` passes per run.

    `detect` returns None when it did not look (no motion, or too soon since
    the last run) and a list, maybe empty, when it did: "no person found" and
    "not checked" are different facts for the event logic (edge/analysis/track.py's
    `Tracker.update` takes exactly that).

    `watch` boxes are looked at like motion boxes. Pass the boxes of the
    current tracks: a person who stands still is learnt into the motion
    background after a while, and would otherwise no longer be checked.
    """

    def __init__(self, detector: Detector, settings: DetectorSettings,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.detector = detector
        self.settings = settings
        self.limiter = RateLimiter(self.settings.max_fps, clock)
        self.last_crops: list[Crop] = []  # of the last run, for overlays and metrics
        self._grid: list[Crop] = []
        self._grid_set: frozenset[Crop] = frozenset()
        self._grid_size: tuple[int, int] = (0, 0)
        self._last_seen: dict[Crop, int] = {}  # tile → the run that last looked at it
        self._runs = 0

    def grid(self, w: int, h: int) -> list[Crop]:
        if self._grid_size != (w, h):
            self._grid = pyramid(w, h, self.settings.tile_side, self.settings.tile_overlap)
            self._grid_set, self._grid_size, self._last_seen = frozenset(self._grid), (w, h), {}
        return self._grid

    def detect(self, image_bgr: np.ndarray, motion_boxes: Sequence[Box], now: float | None = None,
               watch: Sequence[Box] = (), hurry: bool = False) -> list[Detection] | None:
        """`hurry`: run now even if `max_fps` says wait (the caller limits how often it hurries)."""
        boxes = [*motion_boxes, *watch]
        if not boxes or not (self.limiter.allow(now) or hurry):  # no slot is used up on a quiet frame
            return None
        s = self.settings
        h, w = image_bgr.shape[:2]
        plan = plan_passes(boxes, self.grid(w, h), w, h, s.max_tiles, self._last_seen,
                           margin=s.crop_margin, min_crop=s.min_crop)
        self._runs += 1
        for c in plan.crops:
            if c in self._grid_set:  # only tiles: motion crops vary, and would pile up here
                self._last_seen[c] = self._runs
        self.last_crops = plan.crops
        return detect_in_crops(image_bgr, self.last_crops, self.detector, s.nms_iou)
