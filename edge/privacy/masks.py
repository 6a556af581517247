"""Polygon masks in normalised coordinates, and the privacy masker.

Coordinate convention (used everywhere in Vaktpost): a normalised point
(x, y) in 0..1 maps to the continuous image position (x * w, y * h), where
(0, 0) is the top-left corner of the top-left pixel and (1, 1) the
bottom-right corner of the bottom-right pixel. Pixel (col, row) is the unit
square [col, col+1) x [row, row+1). So the same polygon covers the same part
of the scene at every resolution; scaling by (w-1, h-1) instead would shift
masks by up to half a pixel depending on resolution.

Rasterisation is conservative: every pixel that the polygon touches is
masked, plus a margin of at most two pixels. For privacy, masking a
sliver too much is the right error; leaving a sliver visible is not.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import cv2
import numpy as np

Polygon = Sequence[Sequence[float]]

# Fixed-point fraction bits for cv2.fillPoly/polylines: 1/256 px precision.
_SHIFT = 8
_ONE = 1 << _SHIFT
_KERNEL3 = np.ones((3, 3), np.uint8)


def _to_fixed_point(poly: Polygon, w: int, h: int) -> np.ndarray:
    """Normalised polygon → int32 fixed-point coords in OpenCV's pixel-centre frame."""
    pts = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
    # OpenCV puts pixel centres on integers; our convention puts them at +0.5.
    px = pts * (w, h) - 0.5
    return np.round(px * _ONE).astype(np.int32).reshape(-1, 1, 2)


def polygon_mask(polygons: Sequence[Polygon], shape: tuple[int, int]) -> np.ndarray:
    """Boolean (h, w) mask, True on every pixel any of `polygons` touches.

    `shape` is (height, width); extra trailing dims (channels) are ignored.
    Pixels whose centre lies inside a polygon are filled (OpenCV rounds the
    sub-pixel vertices, which may add a pixel on the right/bottom), the
    outline is drawn so that slivers thinner than a pixel still show, and the
    result is grown by one pixel so that pixels a slanted edge only clips are
    included too.
    """
    h, w = int(shape[0]), int(shape[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"shape must be positive, got {shape!r}")
    canvas = np.zeros((h, w), np.uint8)
    pts = [_to_fixed_point(p, w, h) for p in polygons if len(p) >= 3]
    if not pts:
        return canvas.astype(bool)
    cv2.fillPoly(canvas, pts, 255, lineType=cv2.LINE_8, shift=_SHIFT)
    cv2.polylines(canvas, pts, True, 255, thickness=1, lineType=cv2.LINE_8, shift=_SHIFT)
    return cv2.dilate(canvas, _KERNEL3).astype(bool)


class PrivacyMasker:
    """Blanks privacy polygons in every frame before anything else sees it.

    `apply` always returns a new array (never the caller's buffer, even with no
    polygons), so code further down cannot reach unmasked pixels through it.
    The mask is rasterised once per frame size and cached, so a camera that
    changes resolution mid-stream is still masked correctly.
    """

    _CACHE_SIZE = 4  # a stream rarely alternates between more sizes than this

    def __init__(self, polygons: Sequence[Polygon], fill: int = 0) -> None:
        self.polygons: list[list[list[float]]] = [[list(map(float, pt)) for pt in p] for p in polygons]
        for p in self.polygons:
            if len(p) < 3 or any(len(pt) != 2 for pt in p):
                raise ValueError("a privacy polygon needs at least 3 [x, y] points")
        self.fill = int(fill)
        self._cache: OrderedDict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = OrderedDict()

    def __bool__(self) -> bool:
        return bool(self.polygons)

    def _masks(self, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        key = (int(shape[0]), int(shape[1]))
        entry = self._cache.get(key)
        if entry is None:
            mask = polygon_mask(self.polygons, key)
            keep = (~mask).astype(np.uint8)  # for cv2.bitwise_and's mask argument
            mask.flags.writeable = False
            keep.flags.writeable = False
            entry = self._cache[key] = (mask, keep)
            if len(self._cache) > self._CACHE_SIZE:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return entry

    def mask_for(self, shape: tuple[int, ...]) -> np.ndarray:
        """Read-only boolean (h, w) mask for frames of this shape (cached)."""
        return self._masks(shape)[0]

    def apply(self, frame: np.ndarray) -> np.ndarray:
        """A copy of `frame` (gray (h, w) or colour (h, w, c)) with masked pixels set to `fill`."""
        if not isinstance(frame, np.ndarray) or frame.ndim not in (2, 3) or frame.size == 0:
            # Refuse rather than pass through something we cannot mask.
            raise ValueError(f"expected an (h, w) or (h, w, c) image, got {getattr(frame, 'shape', type(frame))}")
        if not self.polygons:
            return frame.copy()
        mask, keep = self._masks(frame.shape)
        channels = 1 if frame.ndim == 2 else frame.shape[2]
        if self.fill == 0 and frame.dtype == np.uint8 and (frame.ndim == 2 or channels in (3, 4)):
            # ~15x faster than boolean indexing at 720p; the masked-out pixels
            # of a freshly allocated output are zero. (h, w, 1) is excluded
            # because OpenCV would hand it back as (h, w).
            return cv2.bitwise_and(frame, frame, mask=keep)
        out = frame.copy()
        out[mask] = self.fill  # a boolean (h, w) index selects whole pixels, all channels
        return out
