"""Run the person detector only where motion is, and not more often than `max_fps`.

A 300x300 SSD sees a 1080p frame at a sixth of its resolution, where a child
across a schoolyard is a dozen pixels tall. Cropping around the motion boxes
first gives the detector that person at far higher resolution, and skips the
still parts of the scene. Crops are:

1. the motion box widened by `crop_margin` of its size on each side (a moving
   arm alone should show the whole person),
2. made square, since detector inputs are square and SSD stretches without
   keeping the aspect ratio, at least `min_crop` of the frame height on a side
   (context for small motion; caps the upscaling),
3. shifted, not cut, to lie inside the frame, and clipped only if larger than it,
4. merged with any crop they overlap (one detector pass instead of two over the
   same pixels, and a person is not split between crops), repeatedly.

If the crops together cover more than `full_frame_above` of the frame, the
frame is analysed whole instead: that is cheaper than several big crops.
Detections are mapped back to full-frame normalised coordinates and
de-duplicated with NMS.

Crops are in integer pixels (x1, y1, x2, y2), x2/y2 exclusive, so that slicing
the frame with them is exact and mapping back is exact too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

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
               min_crop: float = 0.25, full_frame_above: float = 0.5) -> list[Crop]:
    """The pixel crops to run the detector on for these normalised motion boxes (none for none)."""
    if not motion_boxes:
        return []
    min_side = min_crop * frame_h
    crops = []
    for box in motion_boxes:
        x1, y1, x2, y2 = expand_box(box, margin)
        crops.append(square_crop((x1 * frame_w, y1 * frame_h, x2 * frame_w, y2 * frame_h), min_side, frame_w, frame_h))
    crops = merge_crops(crops, min_side, frame_w, frame_h)
    if sum(crop_area(c) for c in crops) > full_frame_above * frame_w * frame_h:
        return [(0, 0, frame_w, frame_h)]
    return crops


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


def detect_in_crops(image_bgr: np.ndarray, crops: Sequence[Crop], detector: Detector,
                    nms_iou: float) -> list[Detection]:
    """Run `detector` on each crop of the image; detections in full-frame normalised coordinates."""
    h, w = image_bgr.shape[:2]
    found = []
    for crop in crops:
        x1, y1, x2, y2 = crop
        for d in detector.detect(image_bgr[y1:y2, x1:x2]):
            found.append(Detection(to_frame(d.box, crop, w, h), d.score, d.label))
    return merge_detections(found, nms_iou)


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
    """Runs a detector on the motion crops of a frame, at most `max_fps` times per second.

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

    def detect(self, image_bgr: np.ndarray, motion_boxes: Sequence[Box], now: float | None = None,
               watch: Sequence[Box] = (), hurry: bool = False) -> list[Detection] | None:
        """`hurry`: run now even if `max_fps` says wait (the caller limits how often it hurries)."""
        boxes = [*motion_boxes, *watch]
        if not boxes or not (self.limiter.allow(now) or hurry):  # no slot is used up on a quiet frame
            return None
        s = self.settings
        h, w = image_bgr.shape[:2]
        self.last_crops = plan_crops(boxes, w, h, margin=s.crop_margin, min_crop=s.min_crop,
                                     full_frame_above=s.full_frame_above)
        return detect_in_crops(image_bgr, self.last_crops, self.detector, s.nms_iou)
