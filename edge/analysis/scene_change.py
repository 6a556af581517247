"""Lasting scene change: graffiti, damage, an object left behind or taken away.

Two images are kept, both learnt only from quiet frames (the caller says
which: no motion, no person):

* `recent` — a short running average (settle_seconds / 5), the settled scene
  with sensor noise, rain and single odd frames averaged away;
* `reference` — the long-term empty scene (`learn_seconds`), learnt only
  where `recent` does not differ from it, so a new change is not absorbed
  before it is judged.

Per quiet frame the reference is brightness-compensated per colour channel
(gain and offset, robust medians: `estimate_illumination` from
edge/analysis/motion.py) and compared with `recent`; a pixel differs when any channel
is off by more than `threshold`. Working per channel finds coloured strokes
whose brightness matches the wall. Changed pixels carry the (quiet) time
they first differed. A group of changed pixels (strokes close together are
joined) that has differed for `settle_seconds` of quiet time is then judged:

* smaller than `min_area` → noise, leaves, a shifted chair: learnt silently;
* colours kept (channels scaled alike) and either the texture still
  correlates with the reference's (≥ `lighting_correlation`) or no edges
  came or went → a shadow, a patch of sunlight, a lamp: learnt silently;
* otherwise → one `SceneChange` with its region; the change becomes part of
  the reference at once, so it is reported once and never again.

More than `relearn_area` of the picture differing is a lighting or view
change, not an object: everything is re-learnt, as it is when the whole
view has shifted or is no longer the learnt view at all (the camera moved or
was covered; edge/analysis/tamper.py reports that). While the view is blurred (a
smeared lens) nothing is judged. Even so, the caller should pass
`quiet=False` while the tamper detector sees tampering, so that a tampered
picture is neither learnt nor compared. Global
brightness changes (lights, clouds, daylight) are compensated before
comparing and slow ones are learnt, so neither raises anything. After
seeding or re-learning, the reference copies `recent` for a few quiet
seconds (cut short by activity) so that no single frame's rain or exposure
becomes the empty scene. See docs/analytics.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from vaktpost.edge.analysis.frames import check_image, steady_seconds
from vaktpost.edge.analysis.imageops import (
    MIN_CELL_CONTRAST,
    cell_contrast,
    cell_sharpness,
    estimate_illumination,
    is_ghost,
    motion_score,
    normalised_box,
    sample_indices,
)
from vaktpost.edge.config.scene_change import SceneChangeSettings
from vaktpost.edge.geometry import Box

ChangeKind = Literal["appeared", "removed", "changed"]

MAX_STEP_SECONDS = 2.0  # a longer gap between frames counts as this much (the node was busy or blind)
MIN_TEXTURE = 3.0  # grey-level std below which a region has no texture to correlate
# Edge change (slope, grey levels per pixel) below this share of `threshold` is a smooth
# brightness change (a soft shadow, a sun patch), not a thing. A step of `threshold` grey
# levels has a slope of about 0.4 × threshold after the analysis blur.
EDGE_SHARE = 0.35
# Light and shade scale the colour channels alike, give or take (shade is bluer than sun);
# channel ratios further apart than this (max/min) are a new colour, not lighting.
MAX_COLOUR_SHIFT = 1.5
BLACK = 10.0  # grey levels added before taking channel ratios: black level / noise floor
MAX_VIEW_SHIFT = 0.01  # the whole view shifted by this fraction of its size: the camera moved, re-learn
# Phase-correlation response below this: the picture is not the learnt view at all (a hand over
# the lens gives ~0.25; the same view with a bag, paint or other light stays above 0.85).
MIN_SAME_VIEW = 0.5
MIN_SHARPNESS = 0.5  # the view keeps less of its sharpness than this: a blurred lens, judge nothing
RECENT_FRACTION = 0.2  # recent average time constant, as a share of settle_seconds
WARM_UP = 3.0  # after seeding, the reference copies `recent` for this many of its time constants


@dataclass(frozen=True)
class SceneChange:
    """One confirmed lasting change. `region` is normalised (x1, y1, x2, y2)."""

    region: Box
    confidence: float  # 0..1, from size and contrast
    subtype: ChangeKind  # appeared: something new stands out; removed: something that stood out is gone
    area: float  # the changed region (strokes joined) as a fraction of the image
    first_seen: float  # t of the first quiet frame that showed the change
    t: float  # t at which it was confirmed


# --- pure helpers -----------------------------------------------------------


def check_frame(frame: object) -> np.ndarray:
    """`frame` if it is a gray, BGR or BGRA uint8 image of at least 16×16; else TypeError/ValueError saying why."""
    return check_image(frame, 16, "scene-change detection")


def to_analysis_color(frame: np.ndarray, width: int, blur: int = 3) -> np.ndarray:
    """float32 (h, w, c) copy of `frame` downscaled to `width`, c = 3 for colour or 1 for gray.

    The blur is light: graffiti strokes are only a pixel or two wide at
    analysis width.
    """
    img = check_frame(frame)
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]
    h, w = img.shape[:2]
    if w > width:
        img = cv2.resize(img, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
    if blur > 1:
        img = cv2.GaussianBlur(img, (blur | 1, blur | 1), 0)
    out = img.astype(np.float32)
    return out if out.ndim == 3 else out[:, :, None]  # cv2 drops a single channel axis


def compensate(reference: np.ndarray, image: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """`reference` with each channel mapped by the (gain, offset) that best explains `image`.

    `samples` are flat pixel indices used for the robust estimate.
    """
    c = reference.shape[2]
    img_s = image.reshape(-1, c)[samples]
    ref_s = reference.reshape(-1, c)[samples]
    gains = np.empty(c, np.float32)
    offsets = np.empty(c, np.float32)
    for k in range(c):
        gains[k], offsets[k] = estimate_illumination(img_s[:, k], ref_s[:, k])
    return reference * gains + offsets


def difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float32 (h, w): the largest absolute difference over the channels."""
    d = cv2.absdiff(a, b)
    if d.ndim == 2:
        return d
    out = d[:, :, 0].copy()
    for k in range(1, d.shape[2]):
        np.maximum(out, d[:, :, k], out=out)
    return out


def gray_of(img: np.ndarray) -> np.ndarray:
    """float32 (h, w) luminance of a (h, w, 3|1) float image."""
    if img.shape[2] == 1:
        return img[:, :, 0]
    return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)


def texture_correlation(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float | None:
    """Correlation (ZNCC) of a and b over the `where` pixels; None when either has no texture there.

    High means b is a in other light (same pattern, brighter or darker).
    """
    va = a[where].astype(np.float64)
    vb = b[where].astype(np.float64)
    if va.size < 16:
        return None
    va -= va.mean()
    vb -= vb.mean()
    sa, sb = float(np.sqrt(np.mean(va * va))), float(np.sqrt(np.mean(vb * vb)))
    if sa < MIN_TEXTURE or sb < MIN_TEXTURE:
        return None
    return float(np.mean(va * vb) / (sa * sb))


def edge_change(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    """How much the edges differ between a and b (h, w, c) over `where`: the mean of the strongest differences.

    Per channel gradient difference (Sobel, slope units), largest over the
    channels; averaged over the top √n pixels so that an object's outline
    counts however large the object is, and a stray pixel does not. A soft
    shadow edge moving slowly scores low; strokes, a bag's outline or a
    removed object's outline score high.
    """
    n = int(where.sum())
    if n == 0:
        return 0.0
    d = a - b
    gx = cv2.Sobel(d, cv2.CV_32F, 1, 0, ksize=3, scale=1 / 8)
    gy = cv2.Sobel(d, cv2.CV_32F, 0, 1, ksize=3, scale=1 / 8)
    mag = np.sqrt(gx * gx + gy * gy)
    if mag.ndim == 3:
        mag = mag.max(axis=2)
    values = mag[where]
    k = min(values.size, max(8, int(math.sqrt(n))))
    return float(np.partition(values, values.size - k)[values.size - k:].mean())


def colour_shift(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    """How unevenly the colour channels changed from b to a over `where`: max/min of the channel ratios.

    1.0 when every channel scaled alike (light and shade mostly do); large
    for a new colour (paint, a coloured object). Always 1.0 for gray images.
    """
    if a.shape[2] == 1 or not where.any():
        return 1.0
    ratios = (a[where].mean(axis=0) + BLACK) / (b[where].mean(axis=0) + BLACK)
    return float(ratios.max() / ratios.min())


def view_alignment(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(shift, response) between two gray images by phase correlation; shift as a fraction of their size.

    The response is ~1 for the same view (objects added or lighting changed
    hardly lower it) and falls towards 0 for an unrelated one (a covered lens).
    """
    h, w = a.shape
    size = (max(16, w // 2), max(16, h // 2))  # half size: plenty for a shift of a few pixels, and cheap
    sa = cv2.resize(a, size, interpolation=cv2.INTER_AREA)
    sb = cv2.resize(b, size, interpolation=cv2.INTER_AREA)
    window = cv2.createHanningWindow(size, cv2.CV_32F)
    (dx, dy), response = cv2.phaseCorrelate(sa - np.float32(sa.mean()), sb - np.float32(sb.mean()), window)
    if not (math.isfinite(dx) and math.isfinite(dy) and math.isfinite(response)):
        return 0.0, 0.0  # flat images
    return max(abs(dx) / size[0], abs(dy) / size[1]), float(response)


def view_sharpness(image: np.ndarray, reference: np.ndarray) -> float:
    """Median sharpness of `image` relative to `reference` over the cells where the reference has structure.

    ~1 for the same view in focus, well below for a blurred lens (see edge/analysis/tamper.py).
    """
    structured = cell_contrast(reference) >= MIN_CELL_CONTRAST
    if not structured.any():
        return 1.0
    ratio = cell_sharpness(image)[structured] / np.maximum(cell_sharpness(reference)[structured], 1e-6)
    return float(np.median(ratio))


def join_kernel(width: int) -> np.ndarray:
    """Closing kernel that joins the strokes of one tag or the parts of one object (9 px at 320)."""
    k = max(3, round(width / 36)) | 1
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))


def change_kind(image: np.ndarray, reference: np.ndarray, blob: np.ndarray) -> ChangeKind:
    """appeared / removed / changed, from where the blob's outline is a brightness step.

    An object left behind makes a step in the current image; one taken away
    made it in the reference (what vaktpost.edge.analysis.motion calls a ghost). Arrays are
    same-shape crops, `blob` boolean.
    """
    if is_ghost(image, reference, blob):
        return "removed"
    if is_ghost(reference, image, blob):
        return "appeared"
    return "changed"


def merge_boxes(boxes: list[tuple[int, int, int, int]], gap: int) -> list[list[int]]:
    """Groups of indices of (x, y, w, h) boxes that lie within `gap` pixels of each other (transitively)."""
    n = len(boxes)
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(n):
        xi, yi, wi, hi = boxes[i]
        for j in range(i + 1, n):
            xj, yj, wj, hj = boxes[j]
            if xi - gap <= xj + wj and xj - gap <= xi + wi and yi - gap <= yj + hj and yj - gap <= yi + hi:
                parent[root(i)] = root(j)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(root(i), []).append(i)
    return list(groups.values())


# --- the stateful detector --------------------------------------------------


class SceneChangeDetector:
    """Keeps the long-term reference, the recent average and the change ages between frames.

    Call `observe(frame, t, quiet)` for every processed frame; it returns a
    `SceneChange` on the frame that confirms one and None otherwise. Frames
    with `quiet=False` are not looked at (people must not become the scene)
    and do not advance the settle clock. Times are seconds on any monotonic
    clock; a clock that steps back is treated as standing still.
    """

    def __init__(self, settings: SceneChangeSettings | None = None) -> None:
        self.settings = settings or SceneChangeSettings()
        self._kernel = join_kernel(self.settings.width)
        self._grow = np.ones((3, 3), np.uint8)
        self.reset()

    def reset(self) -> None:
        """Forget everything; the next quiet frame seeds the reference (e.g. after re-aiming the camera)."""
        self._reference: np.ndarray | None = None
        self._recent: np.ndarray | None = None
        self._since = np.empty(0)  # quiet-clock time each pixel started to differ; inf where it does not
        self._first = np.empty(0)  # frame time of the same moment, for SceneChange.first_seen
        self._samples = np.empty(0, np.intp)
        self._clock = 0.0  # seconds of quiet frames seen
        self._warm_until = 0.0  # quiet clock until which the reference just copies `recent`
        self._last_t: float | None = None

    @property
    def reference(self) -> np.ndarray | None:
        """The learnt empty scene (float32, analysis size), for inspection."""
        return self._reference

    def observe(self, frame: np.ndarray, t: float, quiet: bool) -> SceneChange | None:
        t = self._time(t)
        step = 0.0 if self._last_t is None else min(t - self._last_t, MAX_STEP_SECONDS)
        self._last_t = t
        if not quiet:
            check_frame(frame)  # a broken source fails the same way, busy or quiet
            # Activity ends the warm-up: what it brings (a bag, paint) must be compared, not copied.
            self._warm_until = min(self._warm_until, self._clock)
            return None
        img = to_analysis_color(frame, self.settings.width)
        if self._reference is None or self._reference.shape != img.shape:
            self._seed(img)
            return None
        assert self._recent is not None
        s = self.settings
        self._clock += step
        if step > 0:
            cv2.accumulateWeighted(img, self._recent, 1.0 - math.exp(-step / (s.settle_seconds * RECENT_FRACTION)))

        if self._clock < self._warm_until:
            # Just seeded: one frame's rain, noise or exposure must not become the empty scene.
            self._reference[...] = self._recent
            return None

        compensated = compensate(self._reference, self._recent, self._samples)
        diff = difference(self._recent, compensated)
        changed = diff > s.threshold
        if float(changed.mean()) > s.relearn_area:
            self._relearn()
            return None

        new = changed & np.isinf(self._since)
        self._since[new] = self._clock
        self._first[new] = t
        self._since[~changed] = np.inf
        self._first[~changed] = np.inf
        if step > 0:
            # Learn the empty scene only where nothing differs. The weight fades in over a few
            # pixels: a hard mask would leave steps in the reference that later read as edges.
            hold = cv2.blur(cv2.dilate(changed.astype(np.float32), self._grow), (5, 5))
            a = 1.0 - math.exp(-step / s.learn_seconds)
            self._reference += (a * (1.0 - hold))[:, :, None] * (self._recent - self._reference)
        if not changed.any():
            return None
        return self._judge(changed, diff, compensated, t)

    # --- internals ---

    def _time(self, t: float) -> float:
        return steady_seconds(t, self._last_t)

    def _seed(self, img: np.ndarray) -> None:
        self._reference = img.copy()
        self._recent = img.copy()
        h, w = img.shape[:2]
        self._since = np.full((h, w), np.inf)
        self._first = np.full((h, w), np.inf)
        self._samples = sample_indices(np.ones((h, w), bool))
        self._warm_until = self._clock + WARM_UP * self.settings.settle_seconds * RECENT_FRACTION

    def _relearn(self) -> None:
        assert self._recent is not None
        self._reference = self._recent.copy()
        self._since[:] = np.inf
        self._first[:] = np.inf
        self._warm_until = self._clock + WARM_UP * self.settings.settle_seconds * RECENT_FRACTION

    def _adopt(self, box: tuple[slice, slice], region: np.ndarray) -> None:
        """Make the recent scene the reference in `region` (a mask within `box`), fading out at its edge."""
        assert self._reference is not None and self._recent is not None
        weight = cv2.blur(cv2.dilate(region.astype(np.float32), self._grow, iterations=2), (5, 5))[:, :, None]
        ref = self._reference[box]
        ref += weight * (self._recent[box] - ref)
        done = weight[:, :, 0] > 0
        self._since[box][done] = np.inf
        self._first[box][done] = np.inf

    def _judge(self, changed: np.ndarray, diff: np.ndarray, compensated: np.ndarray, t: float) -> SceneChange | None:
        """Decide every settled group of changes; report the largest real one (others follow on later frames)."""
        s = self.settings
        recent = self._recent
        assert recent is not None and self._reference is not None
        if not np.any(self._clock - self._since >= s.settle_seconds):
            return None  # nothing has lasted long enough to judge
        shift, response = view_alignment(gray_of(recent), gray_of(self._reference))
        if response < MIN_SAME_VIEW or shift >= MAX_VIEW_SHIFT:
            # The camera moved or sees something else (a tamper matter, see edge/analysis/tamper.py):
            # what differs is the view, not objects in it.
            self._relearn()
            return None
        if view_sharpness(gray_of(recent), gray_of(self._reference)) < MIN_SHARPNESS:
            # A smeared or defocused lens: edges vanish everywhere. Judge nothing until it is clean.
            return None
        joined = cv2.morphologyEx(changed.astype(np.uint8), cv2.MORPH_CLOSE, self._kernel)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8)
        boxes = [(int(x), int(y), int(bw), int(bh)) for x, y, bw, bh, _ in stats[1:count]]
        h, w = changed.shape
        pad = 5  # room for the outline (edge_change, change_kind) and the faded margin of _adopt
        best: tuple[int, tuple[slice, slice], np.ndarray] | None = None
        for group in merge_boxes(boxes, gap=max(2, w // 40)):
            # Work inside the group's (padded) bounding box: cheap however many groups there are.
            box = (slice(max(0, min(boxes[i][1] for i in group) - pad),
                         min(h, max(boxes[i][1] + boxes[i][3] for i in group) + pad)),
                   slice(max(0, min(boxes[i][0] for i in group) - pad),
                         min(w, max(boxes[i][0] + boxes[i][2] for i in group) + pad)))
            region = np.isin(labels[box], [i + 1 for i in group])
            pixels = region & changed[box]
            if not pixels.any() or float(np.median(self._clock - self._since[box][pixels])) < s.settle_seconds:
                continue  # not settled yet
            area = int(region.sum())  # strokes joined: a tag counts with the wall between its strokes
            if area < s.min_area * h * w:
                self._adopt(box, region)  # too small to report, but lasting: part of the scene now
                continue
            if colour_shift(recent[box], compensated[box], pixels) <= MAX_COLOUR_SHIFT:
                # Colours kept: lighting if the texture stayed (a shadow or sun patch, even a sharp
                # one) or no edges came or went (a soft shadow moving slowly, a dimmer lamp).
                corr = texture_correlation(gray_of(recent[box]), gray_of(compensated[box]), pixels)
                near = cv2.dilate(region.astype(np.uint8), self._grow, iterations=2).astype(bool)
                if ((corr is not None and corr >= s.lighting_correlation)
                        or edge_change(recent[box], compensated[box], near) < EDGE_SHARE * s.threshold):
                    self._adopt(box, region)
                    continue
            if best is None or area > best[0]:
                best = (area, box, region)
        if best is None:
            return None
        area, box, region = best
        pixels = region & changed[box]
        ys, xs = np.nonzero(pixels)
        bx, by = box[1].start, box[0].start
        nbox = normalised_box(bx + int(xs.min()), by + int(ys.min()),
                              int(xs.max() - xs.min()) + 1, int(ys.max() - ys.min()) + 1, (h, w))
        kind = change_kind(gray_of(recent[box]), gray_of(compensated[box]), region)
        confidence = motion_score((nbox[2] - nbox[0]) * (nbox[3] - nbox[1]), float(diff[box][pixels].mean()),
                                  s.threshold, s.min_area)
        first_seen = float(np.min(self._first[box][pixels]))
        self._adopt(box, region)
        return SceneChange(region=nbox, confidence=confidence, subtype=kind, area=area / (h * w),
                           first_seen=first_seen, t=t)
