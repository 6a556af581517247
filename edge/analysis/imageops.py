"""Image helpers shared by the analysis stages (motion, tamper, scene change).

Small pure functions on uint8 frames: the analysis copy of a frame, sampling
grids, illumination estimates, per-cell statistics, and blob tests. A stage
imports these rather than borrowing from a sibling stage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from vaktpost.edge.geometry import Box

# Brightness samples used to estimate gain/offset: enough for stable medians,
# few enough that the estimate costs microseconds.
_SAMPLES = 4096
# Below this spread between dark and bright background pixels a gain cannot be
# told apart from an offset, so only the offset is estimated.
_MIN_GAIN_SPREAD = 20.0
GRID = (8, 6)  # cells (columns, rows): coarse enough for stable statistics, fine enough for "most of the view"
BLACK = 10.0  # grey levels added to the mean in the contrast ratio: sensor black level / noise floor
# A reference cell counts as structured above this contrast (after the analysis blur;
# plain sky and bare walls sit below it).
MIN_CELL_CONTRAST = 0.03


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


def median(a: np.ndarray) -> float:
    """np.median of a non-empty 1-d array, by one partition (np.median's own overhead is
    several times the partition's cost at a few thousand samples)."""
    n = a.size
    k = n // 2
    if n % 2:
        return float(np.partition(a, k)[k])
    p = np.partition(a, (k - 1, k))
    return (float(p[k - 1]) + float(p[k])) / 2.0


@dataclass(frozen=True)
class SampleSplit:
    """Background samples split at their median brightness (indices into the sample vector).

    The split moves only as fast as the background learns, so a detector may
    keep one for a few frames instead of taking three medians every frame.
    """

    dark: np.ndarray
    bright: np.ndarray
    mid: float  # median background brightness
    m_lo: float  # median of the dark half
    m_hi: float  # median of the bright half


def split_samples(background: np.ndarray) -> SampleSplit | None:
    """The dark/bright split of 1-d background samples; None when too few for a gain."""
    b = background.astype(np.float32, copy=False)
    if b.size < 16:
        return None
    mid = float(median(b))
    dark, bright = np.flatnonzero(b <= mid), np.flatnonzero(b > mid)
    if dark.size < 8 or bright.size < 8:
        return SampleSplit(dark, bright, mid, mid, mid)  # no spread: offset only
    return SampleSplit(dark, bright, mid, float(median(b[dark])), float(median(b[bright])))


def estimate_illumination(gray: np.ndarray, background: np.ndarray,
                          split: SampleSplit | None = None) -> tuple[float, float]:
    """Robust (gain, offset) such that gray ≈ gain * background + offset.

    Inputs are matching 1-d samples. The offset is the median difference, and
    the gain comes from comparing median differences in the dark and the
    bright half of the background. Medians ignore whatever moving objects
    cover, as long as that is under half of each half. `split`: a recent
    `split_samples(background)` to reuse (two medians per call instead of five).
    """
    g = gray.astype(np.float32, copy=False)
    b = background.astype(np.float32, copy=False)
    if b.size < 16:
        return 1.0, 0.0
    split = split or split_samples(b)
    d = g - b
    if split is not None and split.m_hi - split.m_lo >= _MIN_GAIN_SPREAD:
        d_lo, d_hi = float(median(d[split.dark])), float(median(d[split.bright]))
        # Clamp: beyond this range the "global change" is surely a step anyway.
        gain = min(2.0, max(0.5, 1.0 + (d_hi - d_lo) / (split.m_hi - split.m_lo)))
        return gain, d_lo - (gain - 1.0) * split.m_lo
    return 1.0, float(median(d))


def normalised_box(x: int, y: int, bw: int, bh: int, shape: tuple[int, int]) -> Box:
    """Pixel box → normalised (x1, y1, x2, y2); pixel column c spans [c/w, (c+1)/w] (see edge/privacy/masks.py)."""
    h, w = shape
    return (x / w, y / h, (x + bw) / w, (y + bh) / h)


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


def motion_score(box_area: float, mean_difference: float, threshold: float, min_area: float) -> float:
    """Confidence-like 0..1: half from size (a box at min_area gives ~0.4), scaled up by contrast."""
    if box_area <= 0.0:
        return 0.0
    size = 1.0 - math.exp(-box_area / (2.0 * max(min_area, 1e-3)))
    contrast = min(1.0, max(0.0, mean_difference / (3.0 * threshold)))
    return round(size * (0.5 + 0.5 * contrast), 3)


def cell_means(img: np.ndarray, grid: tuple[int, int] = GRID) -> np.ndarray:
    """float32 (rows, cols) mean of `img` per grid cell (area-weighted where cells split pixels)."""
    return cv2.resize(img.astype(np.float32, copy=False), grid, interpolation=cv2.INTER_AREA)


def cell_contrast(img: np.ndarray, grid: tuple[int, int] = GRID, black: float = BLACK) -> np.ndarray:
    """Per-cell std / (mean + black): contrast relative to brightness, unchanged by a global gain."""
    f = img.astype(np.float32, copy=False)
    m = cell_means(f, grid)
    var = np.maximum(cell_means(f * f, grid) - m * m, 0.0)
    return np.sqrt(var) / (np.maximum(m, 0.0) + black)


def gradient_energy(img: np.ndarray) -> np.ndarray:
    """float32 gx² + gy² (Sobel scaled so a ramp of slope 1 gives 1)."""
    f = img.astype(np.float32, copy=False)
    gx = cv2.Sobel(f, cv2.CV_32F, 1, 0, ksize=3, scale=1 / 8)
    gy = cv2.Sobel(f, cv2.CV_32F, 0, 1, ksize=3, scale=1 / 8)
    return gx * gx + gy * gy


def cell_sharpness(img: np.ndarray, grid: tuple[int, int] = GRID, floor: float = 1.0) -> np.ndarray:
    """Per-cell mean gradient energy / (intensity variance + floor).

    Independent of gain and offset. Blur lowers the fine gradients much more
    than the variance, so the ratio falls; sensor noise raises it, so a noisy
    night never reads as blur. `floor` keeps flat cells from dividing by ~0.
    """
    f = img.astype(np.float32, copy=False)
    m = cell_means(f, grid)
    var = np.maximum(cell_means(f * f, grid) - m * m, 0.0)
    return cell_means(gradient_energy(f), grid) / (var + floor)
