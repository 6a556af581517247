"""Lasting scene change: graffiti, damage, an object left behind or taken away.

Works in a busy scene: "quiet" is decided per cell of the picture (8×8
pixels at the analysis width of 320), never per frame. A cell is *active*
while its pixels changed from one frame to the next (frame difference, not a
background model: fresh paint stops being active the moment the painting
stops) or while a person box (tracks or detections, passed by the caller)
covers it; each cell has its own settle clock, the frame time it was last
active. Three colour images are kept at the analysis width:

* `previous` — the last frame, for the frame difference;
* `recent` — a short running average (settle_seconds / 5): the settled scene
  with sensor noise and rain averaged away; under activity it follows the
  frame at once, so a passer-by leaves no trail in it;
* `reference` — the long-term empty scene. A cell is *known* once it has
  been quiet for settle_seconds / 5; until then its reference simply copies
  `recent`, so whatever stood or moved there before it was seen quiet (a
  person in the first frame) never counts as removed later. A known cell
  learns slowly (`learn_seconds`) where it is settled and `recent` does not
  differ from it, so a new change is not absorbed before it is judged.

Per frame the reference is brightness-compensated per colour channel (gain
and offset, robust medians over the settled known pixels) and compared with
`recent`; a pixel differs when any channel is off by more than `threshold`
(per channel, so coloured strokes as bright as the wall are found). A
differing pixel in a cell that has been quiet for `settle_seconds` is
*lasting*. Lasting pixels close together are joined into groups (the strokes
of one tag); a group is judged once no unsettled differing pixel (a person
beside a left bag, paint still drying under a passer-by) touches it:

* smaller than `min_area` → noise, leaves, a shifted chair: learnt silently;
* colours kept (channels scaled alike) and either the texture still
  correlates with the reference's (≥ `lighting_correlation`) or no edges
  came or went → a shadow, a patch of sunlight, a lamp: learnt silently;
* otherwise → one `SceneChange` with its region; the change becomes part of
  the reference at once, so it is reported once and never again.

A frame that differs from the previous one over more than `relearn_area` of
the picture is a lighting step or a new view: everything is re-seeded (every
cell must be seen quiet again). The same happens when more than that much
lasting change builds up, when the whole view has shifted, or when it is no
longer the learnt view at all (the camera moved or was covered;
edge/analysis/tamper.py reports that); while the view is blurred (a smeared
lens) nothing is judged. The caller passes `quiet=False` while the tamper
detector sees tampering: such a frame is neither learnt nor compared, and
every cell must settle again afterwards. Slow daylight is compensated and
learnt. See docs/analytics.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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
# A cell is known (its reference counts) once quiet for this many recent time constants.
KNOWN_AFTER = 1.0
CELL_DIVISOR = 40  # cells are width / 40 pixels square: 8×8 at 320
# Frame-to-frame change above this share of `threshold` is activity: lower than a lasting
# change must be, so that a low-contrast passer-by still keeps the cells it crosses busy.
ACTIVITY_SHARE = 0.5
ACTIVE_PIXELS = 3  # changed pixels that make a cell active (one or two are noise)
LEARN_EVERY = 1.0  # seconds between the reference's (slow) learning steps


@dataclass(frozen=True)
class SceneChange:
    """One confirmed lasting change. `region` is normalised (x1, y1, x2, y2)."""

    region: Box
    confidence: float  # 0..1, from size and contrast
    subtype: ChangeKind  # appeared: something new stands out; removed: something that stood out is gone
    area: float  # the changed region (strokes joined) as a fraction of the image
    first_seen: float  # t by which most of the change had been seen where nothing moved
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
    m = np.zeros((c, c + 1), np.float32)  # per channel: out = gain · in + offset
    for k in range(c):
        m[k, k], m[k, c] = estimate_illumination(img_s[:, k], ref_s[:, k])
    out = cv2.transform(reference, m)
    return out if out.ndim == 3 else out[:, :, None]


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


class CellGrid:
    """Square cells of `size` pixels over an (h, w) image (the last row and column may be cut short)."""

    def __init__(self, shape: tuple[int, int], size: int) -> None:
        h, w = shape
        self.shape = shape
        self.size = size
        self.rows, self.cols = -(-h // size), -(-w // size)
        self._padded = np.zeros((self.rows * size, self.cols * size), np.uint8)

    def counts(self, mask: np.ndarray) -> np.ndarray:
        """(rows, cols): true pixels of boolean `mask` per cell."""
        h, w = self.shape
        self._padded[:h, :w] = mask
        return self._padded.reshape(self.rows, self.size, self.cols, self.size).sum(axis=(1, 3))

    def pixels(self, cells: np.ndarray) -> np.ndarray:
        """bool (h, w) image of a boolean per-cell array: each pixel takes its cell's value."""
        h, w = self.shape
        big = cv2.resize(cells.astype(np.uint8), (self.cols * self.size, self.rows * self.size),
                         interpolation=cv2.INTER_NEAREST)
        return big[:h, :w].astype(bool)

    def boxes(self, boxes: Sequence[Box]) -> np.ndarray:
        """bool (rows, cols): the cells that normalised boxes touch."""
        h, w = self.shape
        out = np.zeros((self.rows, self.cols), bool)
        for x1, y1, x2, y2 in boxes:
            c1, c2 = int(max(0.0, x1) * w) // self.size, int(min(1.0, x2) * w - 1e-6) // self.size
            r1, r2 = int(max(0.0, y1) * h) // self.size, int(min(1.0, y2) * h - 1e-6) // self.size
            if c2 >= c1 and r2 >= r1:
                out[r1 : r2 + 1, c1 : c2 + 1] = True
        return out


class SceneChangeDetector:
    """Keeps the reference, the recent average and the per-cell settle clocks between frames.

    Call `observe(frame, t, quiet, people)` for every processed frame; it
    returns a `SceneChange` on the frame that confirms one and None otherwise.
    `people` are normalised boxes of the persons seen now (tracks,
    detections): their cells count as active. Frames with `quiet=False`
    (tampering) are not looked at and restart every settle clock. Times are
    frame times in seconds on any monotonic clock; a clock that steps back is
    treated as standing still.
    """

    def __init__(self, settings: SceneChangeSettings | None = None) -> None:
        self.settings = settings or SceneChangeSettings()
        self._kernel = join_kernel(self.settings.width)
        self._grow = np.ones((3, 3), np.uint8)
        self.reset()

    def reset(self) -> None:
        """Forget everything; the next frame seeds the reference (e.g. after re-aiming the camera)."""
        self._reference: np.ndarray | None = None
        self._recent: np.ndarray | None = None
        self._previous: np.ndarray | None = None
        self._grid: CellGrid | None = None
        self._quiet_since = np.empty((0, 0))  # per cell: frame time it was last active
        self._known = np.empty((0, 0), bool)  # per cell: seen quiet, so its reference counts
        self._first = np.empty(0)  # per pixel: frame time it was first seen differing while quiet; inf: not
        self._samples = np.empty(0, np.intp)
        self._unlearnt = 0.0  # seconds of frames since the reference last learnt
        self._last_t: float | None = None

    @property
    def reference(self) -> np.ndarray | None:
        """The learnt empty scene (float32, analysis size), for inspection."""
        return self._reference

    @property
    def known(self) -> np.ndarray:
        """bool (rows, cols): cells seen quiet, whose changes can be judged (for inspection)."""
        return self._known

    def observe(self, frame: np.ndarray, t: float, quiet: bool = True,
                people: Sequence[Box] = ()) -> SceneChange | None:
        t = self._time(t)
        step = 0.0 if self._last_t is None else min(t - self._last_t, MAX_STEP_SECONDS)
        self._last_t = t
        img = to_analysis_color(frame, self.settings.width)  # a broken source fails, busy or quiet
        if not quiet:
            # A tampered picture teaches and tests nothing; afterwards every cell settles anew.
            self._quiet_since[...] = t
            return None
        if self._reference is None or self._reference.shape != img.shape:
            self._seed(img, t)
            return None
        assert self._recent is not None and self._previous is not None and self._grid is not None
        s = self.settings
        grid = self._grid
        moved = difference(img, self._previous) > s.threshold * ACTIVITY_SHARE
        self._previous = img
        if float(moved.mean()) > s.relearn_area:
            self._reseed(img, t)  # lights on or off, a new view: the old reference no longer applies
            return None

        # Per cell: active now (changed, next to a change, or under a person), and for how long quiet.
        active = grid.counts(moved) >= ACTIVE_PIXELS
        if people:
            active |= grid.boxes(people)
        active = cv2.dilate(active.astype(np.uint8), self._grow).astype(bool)
        self._quiet_since[active] = t
        quiet_for = t - self._quiet_since
        settled = grid.pixels(quiet_for >= s.settle_seconds)

        # `recent` averages where quiet and follows the frame where active (no trail of passers-by).
        if step > 0:
            cv2.accumulateWeighted(img, self._recent, 1.0 - math.exp(-step / (s.settle_seconds * RECENT_FRACTION)))
        busy = grid.pixels(active)
        if active.any():
            cv2.copyTo(img, busy.view(np.uint8), self._recent)
        # Until a cell has been seen quiet its reference is just what it shows now.
        if not self._known.all():
            cv2.copyTo(self._recent, grid.pixels(~self._known).view(np.uint8), self._reference)
            self._known |= quiet_for >= KNOWN_AFTER * s.settle_seconds * RECENT_FRACTION
        known = grid.pixels(self._known)

        base = known & settled
        samples = self._samples[base.ravel()[self._samples]]
        compensated = compensate(self._reference, self._recent, samples) if samples.size >= 64 else self._reference
        diff = difference(self._recent, compensated)
        differs = (diff > s.threshold) & known
        lasting = differs & settled
        if float(lasting.mean()) > s.relearn_area:
            self._reseed(img, t)
            return None
        # A change dates from the first quiet sighting (not from the painter or owner in front of
        # it); activity over it later does not reset that.
        self._first = np.where(differs, np.where(busy, self._first, np.minimum(self._first, t)), np.inf)
        self._unlearnt += step
        if self._unlearnt >= LEARN_EVERY:
            # Learn the empty scene slowly where it is settled and nothing differs (once a second
            # is as good as every frame at this pace). The weight fades in over a few pixels:
            # a hard mask would leave steps that later read as edges.
            hold = cv2.blur(cv2.dilate((differs | ~settled).astype(np.float32), self._grow), (5, 5))
            a = 1.0 - math.exp(-self._unlearnt / s.learn_seconds)
            self._reference += (a * (1.0 - hold))[:, :, None] * (self._recent - self._reference)
            self._unlearnt = 0.0
        if not lasting.any():
            return None
        return self._judge(lasting, differs & ~settled, settled, diff, compensated, t)

    # --- internals ---

    def _time(self, t: float) -> float:
        return steady_seconds(t, self._last_t)

    def _seed(self, img: np.ndarray, t: float) -> None:
        h, w = img.shape[:2]
        self._grid = CellGrid((h, w), max(4, round(self.settings.width / CELL_DIVISOR)))
        self._quiet_since = np.full((self._grid.rows, self._grid.cols), t)
        self._known = np.zeros((self._grid.rows, self._grid.cols), bool)
        self._first = np.full((h, w), np.inf)
        self._samples = sample_indices(np.ones((h, w), bool), 1024)  # plenty for per-channel medians
        self._reseed(img, t)

    def _reseed(self, img: np.ndarray, t: float) -> None:
        """Start over from this frame: every cell must be seen quiet again before it is judged."""
        self._reference = img.copy()
        self._recent = img.copy()
        self._previous = img
        self._quiet_since[...] = t
        self._known[...] = False
        self._first[...] = np.inf

    def _relearn(self) -> None:
        """Forget what is known: each cell copies `recent` again until seen quiet."""
        self._known[...] = False
        self._first[...] = np.inf

    def _adopt(self, box: tuple[slice, slice], region: np.ndarray) -> None:
        """Make the recent scene the reference in `region` (a mask within `box`), fading out at its edge."""
        assert self._reference is not None and self._recent is not None
        weight = cv2.blur(cv2.dilate(region.astype(np.float32), self._grow, iterations=2), (5, 5))[:, :, None]
        ref = self._reference[box]
        ref += weight * (self._recent[box] - ref)
        self._first[box][weight[:, :, 0] > 0] = np.inf

    def _judge(self, lasting: np.ndarray, pending: np.ndarray, settled: np.ndarray, diff: np.ndarray,
               compensated: np.ndarray, t: float) -> SceneChange | None:
        """Decide every settled group of changes; report the largest real one (others follow on later frames)."""
        s = self.settings
        recent = self._recent
        assert recent is not None and self._reference is not None
        # The view as a whole is checked where it is settled: busy parts show the reference
        # instead, so passers-by neither shift nor blur it.
        reference = gray_of(self._reference)
        view = np.where(settled, gray_of(recent), reference)
        shift, response = view_alignment(view, reference)
        # The camera moved (a shift found with confidence) or sees something else altogether (no
        # match, and much of it differs): a tamper matter (edge/analysis/tamper.py), not objects in
        # the view. On a plain scene one large new object alone can spoil the match: that is judged.
        elsewhere = response < MIN_SAME_VIEW and lasting.sum() > 0.5 * s.relearn_area * max(1, settled.sum())
        if (response >= MIN_SAME_VIEW and shift >= MAX_VIEW_SHIFT) or elsewhere:
            self._relearn()
            return None
        if view_sharpness(view, reference) < MIN_SHARPNESS:
            # A smeared or defocused lens: edges vanish everywhere. Judge nothing until it is clean.
            return None
        joined = cv2.morphologyEx(lasting.astype(np.uint8), cv2.MORPH_CLOSE, self._kernel)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8)
        boxes = [(int(x), int(y), int(bw), int(bh)) for x, y, bw, bh, _ in stats[1:count]]
        h, w = lasting.shape
        pad = 5  # room for the outline (edge_change, change_kind) and the faded margin of _adopt
        assert self._grid is not None
        near = 2 * self._grid.size - pad  # unsettled change this close (beyond the pad) holds a group back
        best: tuple[int, tuple[slice, slice], np.ndarray] | None = None
        for group in merge_boxes(boxes, gap=max(2, w // 40)):
            # Work inside the group's (padded) bounding box: cheap however many groups there are.
            box = (slice(max(0, min(boxes[i][1] for i in group) - pad),
                         min(h, max(boxes[i][1] + boxes[i][3] for i in group) + pad)),
                   slice(max(0, min(boxes[i][0] for i in group) - pad),
                         min(w, max(boxes[i][0] + boxes[i][2] for i in group) + pad)))
            region = np.isin(labels[box], [i + 1 for i in group])
            pixels = region & lasting[box]
            if not pixels.any():
                continue
            y1, y2, x1, x2 = box[0].start, box[0].stop, box[1].start, box[1].stop
            if pending[max(0, y1 - near):y2 + near, max(0, x1 - near):x2 + near].any():
                continue  # part of it, or of a neighbour, is still busy or settling: judge it whole, later
            area = int(region.sum())  # strokes joined: a tag counts with the wall between its strokes
            if area < s.min_area * h * w:
                self._adopt(box, region)  # too small to report, but lasting: part of the scene now
                continue
            if colour_shift(recent[box], compensated[box], pixels) <= MAX_COLOUR_SHIFT:
                # Colours kept: lighting if the texture stayed (a shadow or sun patch, even a sharp
                # one) or no edges came or went (a soft shadow moving slowly, a dimmer lamp).
                corr = texture_correlation(gray_of(recent[box]), gray_of(compensated[box]), pixels)
                edges = cv2.dilate(region.astype(np.uint8), self._grow, iterations=2).astype(bool)
                if ((corr is not None and corr >= s.lighting_correlation)
                        or edge_change(recent[box], compensated[box], edges) < EDGE_SHARE * s.threshold):
                    self._adopt(box, region)
                    continue
            if best is None or area > best[0]:
                best = (area, box, region)
        if best is None:
            return None
        area, box, region = best
        pixels = region & lasting[box]
        ys, xs = np.nonzero(pixels)
        bx, by = box[1].start, box[0].start
        nbox = normalised_box(bx + int(xs.min()), by + int(ys.min()),
                              int(xs.max() - xs.min()) + 1, int(ys.max() - ys.min()) + 1, (h, w))
        kind = change_kind(gray_of(recent[box]), gray_of(compensated[box]), region)
        confidence = motion_score((nbox[2] - nbox[0]) * (nbox[3] - nbox[1]), float(diff[box][pixels].mean()),
                                  s.threshold, s.min_area)
        first_seen = float(np.median(self._first[box][pixels]))  # most of it: not the odd pixel a person hid
        self._adopt(box, region)
        return SceneChange(region=nbox, confidence=confidence, subtype=kind, area=area / (h * w),
                           first_seen=first_seen, t=t)
