"""Motion detection against a running background, robust to lighting changes.

Per frame: downscale to grayscale → estimate the global brightness change
(gain and offset) against the background → either treat the frame as an
illumination step (re-seed, report nothing for a few frames) or compare it
with the brightness-compensated background → threshold → morphological
clean-up → connected components → drop and heal "ghosts" (what the
background remembers but the scene no longer holds) → boxes → update the
background, slowly where something moves. Pixels under motion masks never
count. See docs/motion.md for the reasoning and tuning.

The image math lives in small pure functions; `MotionDetector` only holds
state (background, masks, settle counter, ghost candidates) and wires them
together.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
from vaktpost.edge.config.motion import MotionSection
from vaktpost.edge.privacy.masks import polygon_mask

Box = tuple[float, float, float, float]
Polygon = Sequence[Sequence[float]]

# Brightness samples used to estimate gain/offset: enough for stable medians,
# few enough that the estimate costs microseconds.
_SAMPLES = 4096
# Below this spread between dark and bright background pixels a gain cannot be
# told apart from an offset, so only the offset is estimated.
_MIN_GAIN_SPREAD = 20.0


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


def to_analysis_gray(frame: np.ndarray, width: int, blur: int = 5) -> np.ndarray:
    """uint8 grayscale copy of `frame`, downscaled to `width` (never upscaled), lightly blurred.

    Accepts (h, w), (h, w, 1), BGR or BGRA uint8. Area interpolation averages
    sensor noise away; the small Gaussian blur removes what is left so that
    single noisy pixels rarely cross the threshold.
    """
    if frame.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {frame.dtype}")
    if frame.ndim == 2:
        gray = frame
    elif frame.ndim == 3 and frame.shape[2] == 1:
        gray = frame[:, :, 0]
    elif frame.ndim == 3 and frame.shape[2] == 3:
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    elif frame.ndim == 3 and frame.shape[2] == 4:
        gray = cv2.cvtColor(frame, cv2.COLOR_BGRA2GRAY)
    else:
        raise ValueError(f"expected a gray, BGR or BGRA image, got shape {frame.shape}")
    h, w = gray.shape
    if w > width:
        gray = cv2.resize(gray, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
    if blur > 1:
        gray = cv2.GaussianBlur(gray, (blur | 1, blur | 1), 0)
    if np.shares_memory(gray, frame):
        gray = gray.copy()  # the detector keeps it; the camera may reuse its buffer
    return np.ascontiguousarray(gray)


def sample_indices(valid: np.ndarray, target: int = _SAMPLES) -> np.ndarray:
    """Flat indices of a regular grid of about `target` pixels where `valid` is true."""
    h, w = valid.shape
    step = max(1, int(math.sqrt(h * w / target)))
    grid = np.zeros_like(valid, dtype=bool)
    grid[step // 2 :: step, step // 2 :: step] = True
    return np.flatnonzero(grid & valid)


def estimate_illumination(gray: np.ndarray, background: np.ndarray) -> tuple[float, float]:
    """Robust (gain, offset) such that gray ≈ gain * background + offset.

    Inputs are matching 1-d samples. The offset is the median difference, and
    the gain comes from comparing median differences in the dark and the
    bright half of the background. Medians ignore whatever moving objects
    cover, as long as that is under half of each half.
    """
    g = gray.astype(np.float32, copy=False)
    b = background.astype(np.float32, copy=False)
    if b.size < 16:
        return 1.0, 0.0
    d = g - b
    mid = float(np.median(b))
    dark, bright = b <= mid, b > mid
    if dark.sum() >= 8 and bright.sum() >= 8:
        m_lo, m_hi = float(np.median(b[dark])), float(np.median(b[bright]))
        if m_hi - m_lo >= _MIN_GAIN_SPREAD:
            d_lo, d_hi = float(np.median(d[dark])), float(np.median(d[bright]))
            # Clamp: beyond this range the "global change" is surely a step anyway.
            gain = min(2.0, max(0.5, 1.0 + (d_hi - d_lo) / (m_hi - m_lo)))
            return gain, d_lo - (gain - 1.0) * m_lo
    return 1.0, float(np.median(d))


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


def difference_mask(gray: np.ndarray, background: np.ndarray, threshold: float) -> np.ndarray:
    """uint8 mask, 255 where |gray - background| > threshold, else 0."""
    return np.where(absolute_difference(gray, background) > threshold, np.uint8(255), np.uint8(0))


def clean_mask(mask: np.ndarray, open_size: int = 3, close_size: int = 7) -> np.ndarray:
    """Opening drops speckle smaller than `open_size`; closing joins the parts of one object."""
    out = mask
    if open_size > 1:
        out = cv2.morphologyEx(out, cv2.MORPH_OPEN, np.ones((open_size, open_size), np.uint8))
    if close_size > 1:
        out = cv2.morphologyEx(out, cv2.MORPH_CLOSE, np.ones((close_size, close_size), np.uint8))
    return out


def blobs(mask: np.ndarray, min_area: float) -> tuple[np.ndarray, list[tuple[int, int, int, int, int]]]:
    """Label image and (label, x, y, w, h) of the 8-connected blobs whose box covers >= `min_area`.

    Largest box first.
    """
    h, w = mask.shape
    _, labels, stats, _ = cv2.connectedComponentsWithStats((mask > 0).astype(np.uint8), connectivity=8)
    kept = [
        (i, int(x), int(y), int(bw), int(bh))
        for i, (x, y, bw, bh, _area) in enumerate(stats)
        if i > 0 and int(bw) * int(bh) >= min_area * h * w  # label 0 is the background
    ]
    kept.sort(key=lambda b: -b[3] * b[4])
    return labels, kept


def normalised_box(x: int, y: int, bw: int, bh: int, shape: tuple[int, int]) -> Box:
    """Pixel box → normalised (x1, y1, x2, y2); pixel column c spans [c/w, (c+1)/w] (see edge/privacy/masks.py)."""
    h, w = shape
    return (x / w, y / h, (x + bw) / w, (y + bh) / h)


def boxes_from_mask(mask: np.ndarray, min_area: float) -> list[Box]:
    """Normalised boxes of the blobs in `mask` whose box covers at least `min_area` of the image."""
    _, kept = blobs(mask, min_area)
    return [normalised_box(x, y, bw, bh, mask.shape) for _, x, y, bw, bh in kept]


def outline_contrast(image: np.ndarray, blob: np.ndarray) -> float:
    """Mean brightness step across a blob's outline in `image`.

    Compares, near each outline pixel, the mean of a 2-pixel band just inside
    the blob with the mean of a band just outside it. Local means keep
    gradients and texture of the surroundings from counting as a step.
    """
    b = blob.astype(np.uint8)
    k = np.ones((3, 3), np.uint8)
    inner = (b > cv2.erode(b, k, iterations=2, borderType=cv2.BORDER_REPLICATE)).astype(np.float32)
    outer = (cv2.dilate(b, k, iterations=2) > b).astype(np.float32)
    img = image.astype(np.float32)

    def local_mean(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        total = cv2.boxFilter(img * weights, -1, (7, 7), normalize=False)
        count = cv2.boxFilter(weights, -1, (7, 7), normalize=False)
        return total / np.maximum(count, 1e-6), count

    m_in, n_in = local_mean(inner)
    m_out, n_out = local_mean(outer)
    near = (inner + outer > 0) & (n_in > 0.5) & (n_out > 0.5)
    if not near.any():
        return 0.0
    return float(np.abs(m_in - m_out)[near].mean())


def is_ghost(frame: np.ndarray, background: np.ndarray, blob: np.ndarray, ratio: float = 1.5) -> bool:
    """True when a blob's outline is a step in the background but not in the current frame.

    That is the signature of a "ghost": something that was in the background
    (seeded while a person stood there, or a parked car that left) and is
    gone now; the frame shows the surface continuing across the outline. A
    real object makes the step in the current frame instead. Arrays are
    same-shape crops; `blob` is a boolean/uint8 mask.
    """
    in_frame = outline_contrast(frame, blob)
    in_background = outline_contrast(background, blob)
    return in_background > ratio * in_frame + 2.0  # +2: faint outlines decide nothing


def changed_share(a: np.ndarray, b: np.ndarray, where: np.ndarray, threshold: float) -> float:
    """Share of the `where` pixels at which a and b differ by more than `threshold`."""
    n = int(np.count_nonzero(where))
    if n == 0:
        return 0.0
    diff = cv2.absdiff(a, b) if a.dtype == b.dtype else np.abs(a.astype(np.float32) - b.astype(np.float32))
    return float(np.count_nonzero((diff > threshold) & where)) / n


def box_iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def motion_score(box_area: float, mean_difference: float, threshold: float, min_area: float) -> float:
    """Confidence-like 0..1: half from size (a box at min_area gives ~0.4), scaled up by contrast."""
    if box_area <= 0.0:
        return 0.0
    size = 1.0 - math.exp(-box_area / (2.0 * max(min_area, 1e-3)))
    contrast = min(1.0, max(0.0, mean_difference / (3.0 * threshold)))
    return round(size * (0.5 + 0.5 * contrast), 3)


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
    passer-by from being learnt.
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
        blur: int = 5,
    ) -> None:
        self.settings = settings or MotionSection()
        self.motion_masks = [list(map(list, p)) for p in motion_masks]
        self.settle_frames = settle_frames
        self.settle_rate = settle_rate
        self.foreground_rate_factor = foreground_rate_factor
        self.ghost_ratio = ghost_ratio
        self.ghost_frames = ghost_frames
        self._ghosts: list[tuple[tuple[int, int, int, int], int]] = []  # (x, y, w, h), frames seen
        self.blur = blur
        self._close = close_kernel_for(self.settings.width)
        self._grow = np.ones((3, 3), np.uint8)
        self._background: np.ndarray | None = None  # float32, analysis size
        self._valid: np.ndarray | None = None  # uint8 255 where motion counts; None = everywhere
        self._samples = np.empty(0, np.intp)
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
        self._settle = 0
        self._ghosts = []

    def detect(self, frame: np.ndarray) -> MotionResult:
        gray = to_analysis_gray(frame, self.settings.width, self.blur)
        self.frames += 1
        try:
            return self._detect(gray)
        finally:
            self._previous = gray

    def _detect(self, gray: np.ndarray) -> MotionResult:
        s = self.settings
        bg = self._background
        if bg is None or bg.shape != gray.shape:
            self._start(gray)  # first frame, or the camera changed resolution
            return MotionResult()

        g_s = gray.ravel()[self._samples].astype(np.float32)
        b_s = bg.ravel()[self._samples]
        raw_fraction = float(np.mean(np.abs(g_s - b_s) > s.threshold)) if g_s.size else 0.0
        gain, offset = estimate_illumination(g_s, b_s)
        if is_illumination_step(raw_fraction, global_shift(b_s, gain, offset), s.global_change, s.threshold):
            bg[...] = gray  # re-seed: the old background describes a different lighting
            self._settle = self.settle_frames
            return MotionResult(changed_fraction=raw_fraction, illumination_change=True)
        compensated = bg * np.float32(gain) + np.float32(offset)
        if self._settle > 0:
            # Adapt fast to what the lighting is still doing, but not where something
            # differs outright: that is a passer-by, who must not be smeared into the background.
            self._settle -= 1
            moving = cv2.dilate(difference_mask(gray, compensated, s.threshold), self._grow)
            cv2.accumulateWeighted(gray, bg, self.settle_rate, mask=cv2.bitwise_not(moving))
            cv2.accumulateWeighted(gray, bg, s.learning_rate, mask=moving)
            return MotionResult(changed_fraction=raw_fraction, illumination_change=True)

        fg = difference_mask(gray, compensated, s.threshold)
        if self._valid is not None:
            fg &= self._valid
        fg = clean_mask(fg, 3, self._close)
        if self._valid is not None:
            fg &= self._valid  # closing can grow blobs back under a mask
        boxes = self._real_boxes(gray, fg)

        score = 0.0
        if boxes:
            x1, y1, x2, y2 = boxes[0]
            mean_diff = float(cv2.mean(absolute_difference(gray, compensated), mask=fg)[0])
            score = motion_score((x2 - x1) * (y2 - y1), mean_diff, s.threshold, s.min_area)

        # Learn the background: normally where nothing moves, slowly under motion
        # (grown by a pixel so blurred object edges are not learnt either).
        moving = cv2.dilate(fg, self._grow)
        cv2.accumulateWeighted(gray, bg, s.learning_rate, mask=cv2.bitwise_not(moving))
        if self.foreground_rate_factor > 0 and moving.any():
            cv2.accumulateWeighted(gray, bg, s.learning_rate * self.foreground_rate_factor, mask=moving)
        return MotionResult(boxes=boxes, changed_fraction=raw_fraction, illumination_change=False, score=score)

    def _real_boxes(self, gray: np.ndarray, fg: np.ndarray) -> list[Box]:
        """Boxes of the blobs in `fg`; persistent ghosts are healed (background := frame) and dropped."""
        labels, kept = blobs(fg, self.settings.min_area)
        if not kept or self.ghost_ratio is None:
            self._ghosts = []
            return [normalised_box(x, y, bw, bh, fg.shape) for _, x, y, bw, bh in kept]
        bg = self._background
        assert bg is not None
        prev = self._previous if self._previous is not None and self._previous.shape == gray.shape else None
        h, w = fg.shape
        boxes, ghosts = [], []
        for label, x, y, bw, bh in kept:
            # Crop with a margin so the ring around the blob fits.
            sl = (slice(max(0, y - 3), min(h, y + bh + 3)), slice(max(0, x - 3), min(w, x + bw + 3)))
            blob = labels[sl] == label
            # A ghost is still; a blob merging a ghost with a passer-by is not and must not be healed.
            still = prev is not None and changed_share(gray[sl], prev[sl], blob, self.settings.threshold) <= 0.01
            if still and is_ghost(gray[sl], bg[sl], blob, self.ghost_ratio):
                seen = 1 + max((n for r, n in self._ghosts if box_iou(r, (x, y, bw, bh)) >= 0.8), default=0)
                if seen >= self.ghost_frames:
                    # Heal the blob and the ring around it, where its blurred edge lies.
                    heal = cv2.dilate(blob.astype(np.uint8), self._grow, iterations=2).astype(bool)
                    bg[sl][heal] = gray[sl][heal]
                    fg[sl][heal] = 0  # so the background update below treats it as healed
                    continue
                ghosts.append(((x, y, bw, bh), seen))
            boxes.append(normalised_box(x, y, bw, bh, fg.shape))
        self._ghosts = ghosts
        return boxes
