"""Motion detection against a running background, robust to lighting changes.

Per frame: downscale to grayscale → estimate the global brightness change
(gain and offset) against the background → either treat the frame as an
illumination step (re-seed, report nothing for a few frames) or compare it
with the brightness-compensated background (one difference image, reused
for the mask and the score) → threshold → morphological clean-up → outer
contours → drop and heal "ghosts" (what the background remembers but the
scene no longer holds) → boxes → update the background, slowly where
something moves. Pixels under motion masks never count. See docs/motion.md
for the reasoning and tuning, and for what each step costs.

The image math lives in small pure functions; `MotionDetector` only holds
state (background, masks, settle counter, ghost candidates) and wires them
together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from vaktpost.edge.analysis.imageops import (
    SampleSplit,
    estimate_illumination,
    is_ghost,
    motion_score,
    normalised_box,
    sample_indices,
    split_samples,
    to_analysis_gray,
)
from vaktpost.edge.config.motion import MotionSection
from vaktpost.edge.geometry import Box, iou
from vaktpost.edge.privacy.masks import polygon_mask

Polygon = Sequence[Sequence[float]]
Contour = np.ndarray  # (n, 1, 2) int32 points, as cv2.findContours returns them
# A blob is motionless when under 1 % of it changed, since it first stood still, by this share of
# `threshold`: far above sensor noise after the analysis blur, below the sway of someone standing still.
STILL_SHARE = 0.4

# Frames between refreshes of the background samples' dark/bright split: the
# background moves by a few percent per frame at most, so the split stays valid.
_SPLIT_REFRESH = 8
# A blob that stays still where it was judged real (not a ghost) is judged again
# only every this many frames: the outline test is the costliest per-blob step,
# and what is still does not change its verdict from one frame to the next.
_REAL_RECHECK = 5

@dataclass
class MotionResult:
    """What one frame showed. Boxes are normalised (x1, y1, x2, y2), largest first."""

    boxes: list[Box] = field(default_factory=list)
    changed_fraction: float = 0.0  # share of unmasked pixels over threshold vs the uncompensated background
    illumination_change: bool = False  # step frame or one of the settle frames after it
    score: float = 0.0  # 0..1, grows with the largest box's size and contrast

    @property
    def motion(self) -> bool:
        return bool(self.boxes)


# --- pure helpers -----------------------------------------------------------


def global_shift(background: np.ndarray, gain: float, offset: float) -> float:
    """Median absolute brightness change that (gain, offset) predicts for these background samples."""
    if background.size == 0:
        return 0.0
    return float(np.median(np.abs((gain - 1.0) * background.astype(np.float32) + offset)))


def is_illumination_step(changed_fraction: float, shift: float, global_change: float, threshold: float) -> bool:
    """True when a frame's change is mostly global: lights, clouds, exposure, not objects.

    Either most of the picture changed (more than `global_change`), or the
    global brightness model alone moves a typical pixel past `threshold`. Small
    global changes are not steps; the compensated comparison absorbs them.
    """
    return changed_fraction > global_change or shift > threshold


def absolute_difference(gray: np.ndarray, background: np.ndarray) -> np.ndarray:
    """float32 |gray - background|."""
    return cv2.absdiff(gray.astype(np.float32), background.astype(np.float32, copy=False))


def over_threshold(diff: np.ndarray, threshold: float) -> np.ndarray:
    """uint8 mask, 255 where `diff` > threshold, else 0 (one OpenCV pass, no temporaries)."""
    return cv2.compare(diff, float(threshold), cv2.CMP_GT)  # type: ignore[call-overload]  # stubs lack scalars


def difference_mask(gray: np.ndarray, background: np.ndarray, threshold: float) -> np.ndarray:
    """uint8 mask, 255 where |gray - background| > threshold, else 0."""
    return over_threshold(absolute_difference(gray, background), threshold)


def _square(size: int) -> np.ndarray:
    return np.ones((size, size), np.uint8)


Slices = tuple[slice, slice]  # (rows, columns) of an image


def clean_mask_within(mask: np.ndarray, open_size: int = 3,
                      close_size: int = 7) -> tuple[np.ndarray, Slices | None]:
    """`clean_mask`, and the part of the image outside which the result is surely 0 (None: all 0).

    Only the opening's erosion runs on the whole image; what survives it is
    usually a few people, so the rest of the work is done around them: with
    a margin wider than the remaining dilations and erosion reach, the crop's
    edges are 0 before and after each step, and the result is the same as on
    the whole image.
    """
    out = cv2.erode(mask, _square(open_size)) if open_size > 1 else mask
    x, y, w, h = cv2.boundingRect(out)  # of the nonzero pixels
    if w == 0 or h == 0:
        return np.zeros_like(mask), None
    margin = open_size + 2 * close_size
    sl = (slice(max(0, y - margin), y + h + margin), slice(max(0, x - margin), x + w + margin))
    roi = out[sl]
    if open_size > 1:
        roi = cv2.dilate(roi, _square(open_size))
    if close_size > 1:
        roi = cv2.morphologyEx(roi, cv2.MORPH_CLOSE, _square(close_size))
    result = np.zeros_like(mask)
    result[sl] = roi
    return result, sl


def clean_mask(mask: np.ndarray, open_size: int = 3, close_size: int = 7) -> np.ndarray:
    """Opening drops speckle smaller than `open_size`; closing joins the parts of one object."""
    return clean_mask_within(mask, open_size, close_size)[0]


def blobs(mask: np.ndarray, min_area: float,
          within: Slices | None = None) -> list[tuple[Contour, int, int, int, int]]:
    """(outer contour, x, y, w, h) of the 8-connected blobs whose box covers >= `min_area`.

    Largest box first. Outer contours cost a fraction of a labelling with
    statistics and give the same boxes; a blob inside another's hole is left
    out (its box lies inside the outer one anyway). `within`: where all of `mask`'s
    nonzero pixels lie, to search only there (`clean_mask_within` says where).
    """
    h, w = mask.shape
    rows, cols = within or (slice(0, h), slice(0, w))
    offset = (cols.start or 0, rows.start or 0)
    contours, _ = cv2.findContours(mask[rows, cols], cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE, offset=offset)
    kept = []
    for c in contours:
        x, y, bw, bh = cv2.boundingRect(c)
        if bw * bh >= min_area * h * w:
            kept.append((c, x, y, bw, bh))
    kept.sort(key=lambda b: -b[3] * b[4])
    return kept


def union_slices(kept: Sequence[tuple[Contour, int, int, int, int]]) -> Slices:
    """(rows, columns) slices of the smallest box around all `blobs` boxes."""
    x1 = min(b[1] for b in kept)
    y1 = min(b[2] for b in kept)
    x2 = max(b[1] + b[3] for b in kept)
    y2 = max(b[2] + b[4] for b in kept)
    return slice(y1, y2), slice(x1, x2)


def blob_mask(mask: np.ndarray, contour: Contour, sl: Slices) -> np.ndarray:
    """bool crop `mask[sl]` of the one blob whose outer contour is `contour`."""
    crop = mask[sl]
    filled = np.zeros(crop.shape, np.uint8)
    cv2.drawContours(filled, [contour], 0, 255, thickness=cv2.FILLED,
                     offset=(-(sl[1].start or 0), -(sl[0].start or 0)))
    return (filled & crop) > 0  # the fill covers the blob's holes; the mask does not


def boxes_from_mask(mask: np.ndarray, min_area: float) -> list[Box]:
    """Normalised boxes of the blobs in `mask` whose box covers at least `min_area` of the image."""
    return [normalised_box(x, y, bw, bh, mask.shape) for _, x, y, bw, bh in blobs(mask, min_area)]


def changed_share(a: np.ndarray, b: np.ndarray, where: np.ndarray, threshold: float) -> float:
    """Share of the `where` pixels at which a and b differ by more than `threshold`."""
    n = int(np.count_nonzero(where))
    if n == 0:
        return 0.0
    diff = cv2.absdiff(a, b) if a.dtype == b.dtype else np.abs(a.astype(np.float32) - b.astype(np.float32))
    return float(np.count_nonzero((diff > threshold) & where)) / n


def close_kernel_for(width: int) -> int:
    """Odd closing size that joins a person's parts at this analysis width (7 px at 320)."""
    return max(3, round(width / 45)) | 1


# --- the stateful detector --------------------------------------------------


class MotionDetector:
    """Feeds frames through the helpers above, keeping the background between calls.

    `learning_rate` applies where nothing moves; under detected motion the
    background learns `foreground_rate_factor` times slower, so a person who
    stands still stays visible for minutes rather than seconds. After an
    illumination step the detector is blind for `settle_frames` frames while
    the background adapts at `settle_rate` (auto-exposure needs a moment).
    A blob that `is_ghost` recognises (with `ghost_ratio`; None disables) in
    `ghost_frames` consecutive frames at the same place is healed into the
    background; requiring persistence keeps a single misjudged frame of a
    passer-by from being learnt. Likewise a blob whose pixels have not changed
    from frame to frame for `still_frames` frames (fresh paint, a bag put
    down) is healed: it is a change of the scene, not motion. Blobs that touch
    a `keep` box passed to `detect` (a tracked person standing still) are
    never healed as still.
    """

    def __init__(
        self,
        settings: MotionSection | None = None,
        motion_masks: Sequence[Polygon] = (),
        *,
        settle_frames: int = 5,
        settle_rate: float = 0.5,
        foreground_rate_factor: float = 0.1,
        ghost_ratio: float | None = 1.5,
        ghost_frames: int = 3,
        still_frames: int = 15,
        blur: int = 5,
    ) -> None:
        self.settings = settings or MotionSection()
        self.motion_masks = [list(map(list, p)) for p in motion_masks]
        self.settle_frames = settle_frames
        self.settle_rate = settle_rate
        self.foreground_rate_factor = foreground_rate_factor
        self.ghost_ratio = ghost_ratio
        self.ghost_frames = ghost_frames
        self.still_frames = still_frames
        # Blobs standing still: (x1, y1, x2, y2) pixels, frames still, and where and how they looked then.
        self._still: list[tuple[tuple[int, int, int, int], int, tuple[slice, slice], np.ndarray]] = []
        self._ghosts: list[tuple[tuple[int, int, int, int], int]] = []  # (x1, y1, x2, y2) pixels, frames seen
        self._real: list[tuple[tuple[int, int, int, int], int]] = []  # still blobs judged real, frames since
        self.blur = blur
        self._close = close_kernel_for(self.settings.width)
        self._grow = _square(3)
        self._background: np.ndarray | None = None  # float32, analysis size
        self._valid: np.ndarray | None = None  # uint8 255 where motion counts; None = everywhere
        self._samples = np.empty(0, np.intp)
        self._split: SampleSplit | None = None
        self._split_age = 0
        self._previous: np.ndarray | None = None  # last analysis frame, to see what is static
        self._settle = 0
        self.frames = 0

    def reset(self) -> None:
        """Forget the background; the next frame seeds it (e.g. after a camera reconnect)."""
        self._background = None
        self._previous = None

    def _start(self, gray: np.ndarray) -> None:
        self._background = gray.astype(np.float32)
        masked = polygon_mask(self.motion_masks, gray.shape) if self.motion_masks else None
        valid = np.ones(gray.shape, bool) if masked is None else ~masked
        self._valid = None if masked is None else np.where(valid, np.uint8(255), np.uint8(0))
        self._samples = sample_indices(valid)
        self._split_age = _SPLIT_REFRESH  # stale: split on the next frame
        self._settle = 0
        self._ghosts = []
        self._real = []
        self._still = []

    def detect(self, frame: np.ndarray, keep: Sequence[Box] = ()) -> MotionResult:
        """Motion in `frame`; `keep`: normalised boxes of people (tracks) whose blobs are never healed as still."""
        return self.detect_analysis(to_analysis_gray(frame, self.settings.width, blur=0), keep)

    def detect_analysis(self, analysis: np.ndarray, keep: Sequence[Box] = ()) -> MotionResult:
        """`detect` on the analysis copy of a frame: `to_analysis_gray(frame, width, blur=0)`,
        which other stages (or a benchmark's MOG2) may share; blurring is this stage's own."""
        gray = cv2.GaussianBlur(analysis, (self.blur | 1, self.blur | 1), 0) if self.blur > 1 else analysis.copy()
        self.frames += 1
        try:
            return self._detect(gray, keep)
        finally:
            self._previous = gray

    def _detect(self, gray: np.ndarray, keep: Sequence[Box] = ()) -> MotionResult:
        s = self.settings
        bg = self._background
        if bg is None or bg.shape != gray.shape:
            self._start(gray)  # first frame, or the camera changed resolution
            return MotionResult()

        g_s = gray.ravel()[self._samples].astype(np.float32)
        b_s = bg.ravel()[self._samples]
        raw_fraction = float(np.count_nonzero(cv2.absdiff(g_s, b_s) > s.threshold)) / g_s.size if g_s.size else 0.0
        if self._split_age >= _SPLIT_REFRESH:
            self._split, self._split_age = split_samples(b_s), 0
        self._split_age += 1
        gain, offset = estimate_illumination(g_s, b_s, self._split)
        # The shift (gain, offset) predicts for the median background pixel: the median
        # shift itself, as the prediction is monotonic in brightness, without a median.
        mid = self._split.mid if self._split is not None else 0.0
        shift = abs((gain - 1.0) * mid + offset)
        if is_illumination_step(raw_fraction, shift, s.global_change, s.threshold):
            bg[...] = gray  # re-seed: the old background describes a different lighting
            self._split_age = _SPLIT_REFRESH
            self._settle = self.settle_frames
            return MotionResult(changed_fraction=raw_fraction, illumination_change=True)
        # The one difference image of this frame, |gray - (gain * bg + offset)| in two passes:
        # thresholded for the mask, averaged for the score.
        diff = cv2.addWeighted(gray, 1.0, bg, -gain, -offset, dtype=cv2.CV_32F)
        np.abs(diff, out=diff)
        if self._settle > 0:
            # Adapt fast to what the lighting is still doing, but not where something
            # differs outright: that is a passer-by, who must not be smeared into the background.
            self._settle -= 1
            moving = cv2.dilate(over_threshold(diff, s.threshold), self._grow)
            cv2.accumulateWeighted(gray, bg, self.settle_rate, mask=cv2.bitwise_not(moving))
            cv2.accumulateWeighted(gray, bg, s.learning_rate, mask=moving)
            return MotionResult(changed_fraction=raw_fraction, illumination_change=True)

        fg = over_threshold(diff, s.threshold)
        if self._valid is not None:
            fg &= self._valid
        fg, active = clean_mask_within(fg, 3, self._close)
        if active is None:
            kept = []
        else:
            if self._valid is not None:
                fg[active] &= self._valid[active]  # closing can grow blobs back under a mask
            kept = blobs(fg, 0.0, active)
        boxes = self._real_boxes(gray, fg, kept, keep)

        score = 0.0
        if boxes:
            x1, y1, x2, y2 = boxes[0]
            around = union_slices(kept)  # all of fg lies in its blobs' boxes
            mean_diff = float(cv2.mean(diff[around], mask=fg[around])[0])
            score = motion_score((x2 - x1) * (y2 - y1), mean_diff, s.threshold, s.min_area)

        # Learn the background: normally where nothing moves, slowly under motion
        # (grown by a pixel so blurred object edges are not learnt either).
        if not kept:  # nothing moves anywhere (blobs of any size count): one plain update
            cv2.accumulateWeighted(gray, bg, s.learning_rate)
        else:
            moving = cv2.dilate(fg, self._grow)
            cv2.accumulateWeighted(gray, bg, s.learning_rate, mask=cv2.bitwise_not(moving))
            if self.foreground_rate_factor > 0:
                cv2.accumulateWeighted(gray, bg, s.learning_rate * self.foreground_rate_factor, mask=moving)
        return MotionResult(boxes=boxes, changed_fraction=raw_fraction, illumination_change=False, score=score)

    def _real_boxes(self, gray: np.ndarray, fg: np.ndarray, all_blobs: list, keep: Sequence[Box] = ()
                    ) -> list[Box]:
        """Boxes of the blobs in `fg` of at least min_area; persistent ghosts and blobs
        still for long are healed (background := frame) and dropped. `all_blobs`:
        `blobs(fg, 0.0)`; `keep`: people's boxes, never healed as still."""
        h, w = fg.shape
        kept = [b for b in all_blobs if b[3] * b[4] >= self.settings.min_area * h * w]
        prev = self._previous if self._previous is not None and self._previous.shape == gray.shape else None
        if not kept or prev is None:
            self._ghosts, self._real, self._still = [], [], []
            return [normalised_box(x, y, bw, bh, fg.shape) for _, x, y, bw, bh in kept]
        bg = self._background
        assert bg is not None
        boxes: list[Box] = []
        ghosts: list[tuple[tuple[int, int, int, int], int]] = []
        real: list[tuple[tuple[int, int, int, int], int]] = []
        stills: list[tuple[tuple[int, int, int, int], int, tuple[slice, slice], np.ndarray]] = []
        for contour, x, y, bw, bh in kept:
            # Crop with a margin so the ring around the blob fits.
            sl = (slice(max(0, y - 3), min(h, y + bh + 3)), slice(max(0, x - 3), min(w, x + bw + 3)))
            blob = blob_mask(fg, contour, sl)
            rect = (x, y, x + bw, y + bh)
            # A ghost is still; a blob merging a ghost with a passer-by is not and must not be healed.
            still = changed_share(gray[sl], prev[sl], blob, self.settings.threshold) <= 0.01
            heal = False
            if still and self.ghost_ratio is not None:
                judged = min((n for r, n in self._real if iou(r, rect) >= 0.8), default=None)
                if judged is not None and judged + 1 < _REAL_RECHECK:
                    real.append((rect, judged + 1))  # still real: no need to look again yet
                elif is_ghost(gray[sl], bg[sl], blob, self.ghost_ratio):
                    seen = 1 + max((n for r, n in self._ghosts if iou(r, rect) >= 0.8), default=0)
                    heal = seen >= self.ghost_frames
                    ghosts.append((rect, seen))
                else:
                    real.append((rect, 0))
            if still and not heal and not any(_touches(rect, k, (h, w)) for k in keep):
                # Motionless for long: fresh paint or a bag put down is part of the scene now, not
                # motion. Compared with how it looked when it first stood still, at a low threshold,
                # because someone standing still sways too slowly for one frame to the next to show.
                match = next((c for c in self._still if iou(c[0], rect) >= 0.8), None)
                if match is not None and changed_share(
                        gray[match[2]], match[3], blob_mask(fg, contour, match[2]),
                        STILL_SHARE * self.settings.threshold) <= 0.01:
                    seen = match[1] + 1
                    heal = seen >= self.still_frames
                    stills.append((rect, seen, match[2], match[3]))
                else:
                    stills.append((rect, 1, sl, gray[sl].copy()))
            if heal:
                # Heal the blob and the ring around it, where its blurred edge lies.
                ring = cv2.dilate(blob.astype(np.uint8), self._grow, iterations=2).astype(bool)
                bg[sl][ring] = gray[sl][ring]
                fg[sl][ring] = 0  # so the background update below treats it as healed
                continue
            boxes.append(normalised_box(x, y, bw, bh, fg.shape))
        self._ghosts, self._real, self._still = ghosts, real, stills
        return boxes


def _touches(rect: tuple[int, int, int, int], box: Box, shape: tuple[int, int]) -> bool:
    """Whether a pixel rect (x1, y1, x2, y2) overlaps a normalised box."""
    h, w = shape
    x1, y1, x2, y2 = rect
    return x1 < box[2] * w and box[0] * w < x2 and y1 < box[3] * h and box[1] * h < y2
