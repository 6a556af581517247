"""Image-plane geometry shared by the node's stages: one box convention, one IoU,
one point-in-polygon, one zone lookup.

A `Box` is ``(x1, y1, x2, y2)`` with ``x1 <= x2`` and ``y1 <= y2``: normalised to 0..1
of the image it was measured in, or in pixels where a function says so. Polygons
are lists of ``[x, y]`` in the same normalised coordinates (config zones and masks).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

import numpy as np

Box = tuple[float, float, float, float]


class Named(Protocol):
    """A zone as the lookup needs it (vaktpost.edge.config.Zone is one)."""

    @property
    def name(self) -> str: ...

    @property
    def polygon(self) -> Sequence[Sequence[float]]: ...


def area(b: Box) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (0 when they do not overlap)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = area(a) + area(b) - inter
    return inter / union if union > 0 else 0.0


def iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """`iou` of one box with each row of an (n, 4) array, vectorised for non-maximum suppression."""
    iw = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    ih = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = iw * ih
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = (box[2] - box[0]) * (box[3] - box[1]) + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def union(a: Box | None, b: Box) -> Box:
    """The smallest box holding both (`a` None: just `b`)."""
    if a is None:
        return b
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def center(b: Box) -> tuple[float, float]:
    return (b[0] + b[2]) / 2, (b[1] + b[3]) / 2


def foot_point(b: Box) -> tuple[float, float]:
    """Where a person stands: the middle of the box's bottom edge."""
    return (b[0] + b[2]) / 2, b[3]


def point_in_polygon(x: float, y: float, polygon: Sequence[Sequence[float]]) -> bool:
    """Even-odd ray casting; points on an edge may fall either way."""
    inside = False
    n = len(polygon)
    for i in range(n):
        x1, y1 = polygon[i]
        x2, y2 = polygon[(i + 1) % n]
        if (y1 > y) != (y2 > y):
            cross_x = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
            if x < cross_x:
                inside = not inside
    return inside


def zone_at(zones: Iterable[Named], x: float, y: float) -> str | None:
    """Name of the first zone whose polygon contains the normalised point (x, y)."""
    for z in zones:
        if point_in_polygon(x, y, z.polygon):
            return z.name
    return None


def _orientation(p: Sequence[float], q: Sequence[float], r: Sequence[float]) -> float:
    return (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])


def _segments_cross(a: Sequence[float], b: Sequence[float], c: Sequence[float], d: Sequence[float]) -> bool:
    """Whether segments ab and cd share a point (touching counts)."""
    o1, o2, o3, o4 = _orientation(a, b, c), _orientation(a, b, d), _orientation(c, d, a), _orientation(c, d, b)
    if ((o1 > 0 and o2 < 0) or (o1 < 0 and o2 > 0)) and ((o3 > 0 and o4 < 0) or (o3 < 0 and o4 > 0)):
        return True

    def on(p: Sequence[float], q: Sequence[float], r: Sequence[float], o: float) -> bool:
        return o == 0 and min(p[0], q[0]) <= r[0] <= max(p[0], q[0]) and min(p[1], q[1]) <= r[1] <= max(p[1], q[1])

    return on(a, b, c, o1) or on(a, b, d, o2) or on(c, d, a, o3) or on(c, d, b, o4)


def self_intersects(polygon: Sequence[Sequence[float]]) -> bool:
    """Whether two non-adjacent edges of the closed polygon meet (a bow tie, a figure eight).

    Such a polygon has no clear inside: the even-odd rule and a fill would disagree on it.
    A closing point that repeats the first is allowed."""
    pts = list(polygon)
    if len(pts) > 3 and list(pts[0]) == list(pts[-1]):
        pts = pts[:-1]
    n = len(pts)
    edges = [(pts[i], pts[(i + 1) % n]) for i in range(n)]
    for i in range(n):
        for j in range(i + 2, n):
            if i == 0 and j == n - 1:
                continue  # the first and last edges share the first point
            if _segments_cross(*edges[i], *edges[j]):
                return True
    return False
