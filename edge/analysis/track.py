"""A light multi-object tracker for person detections.

Greedy matching: detections are paired with tracks by IoU against each track's
predicted box (constant velocity), highest first; what is left is paired by
centre distance, for people who moved further than their own width between two
detector runs. A track is *confirmed* after `min_hits` matches in a row, so a
one-frame false detection never becomes a person, and it survives a few misses
(`max_missed` detector runs, `max_age_seconds`) so a person the detector
overlooks for a moment keeps the same id.

Track ids are node-local integers and must never leave the node: events carry
zones and regions, not ids.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from vaktpost.edge.config.track import TrackerSettings
from vaktpost.edge.geometry import Box, center, iou


class DetectionLike(Protocol):
    """Anything with a normalised `box` (x1, y1, x2, y2) and a `score`, e.g. vaktpost.edge.detectors' Detection."""

    @property
    def box(self) -> Box: ...  # pragma: no cover

    @property
    def score(self) -> float: ...  # pragma: no cover


@dataclass(frozen=True)
class Track:
    """A snapshot of one tracked person; `box` and `score` are from the last match."""

    id: int
    box: Box
    score: float
    first_seen: float
    last_seen: float
    hits: int
    missed: int
    confirmed: bool


# ---- pure geometry -------------------------------------------------------


def center_distance(a: Box, b: Box) -> float:
    """Centre distance in units of the larger box's diagonal, so near and far people compare alike."""
    (ax, ay), (bx, by) = center(a), center(b)
    diag = max(math.hypot(a[2] - a[0], a[3] - a[1]), math.hypot(b[2] - b[0], b[3] - b[1]), 1e-6)
    return math.hypot(ax - bx, ay - by) / diag


def similar_size(a: Box, b: Box, ratio: float = 2.0) -> bool:
    # Guards the distance fallback: a child-sized box far off is not the adult just tracked.
    ha, hb = a[3] - a[1], b[3] - b[1]
    return max(ha, hb) <= ratio * max(min(ha, hb), 1e-6)


def shift(b: Box, dx: float, dy: float) -> Box:
    return (b[0] + dx, b[1] + dy, b[2] + dx, b[3] + dy)


def greedy_pairs(scores: Iterable[tuple[float, int, int]]) -> list[tuple[int, int]]:
    """Pick (row, col) pairs best score first, each row and column at most once.

    `scores` holds (score, row, col) with higher = better; ties break on row, col so
    the result does not depend on input order.
    """
    used_r: set[int] = set()
    used_c: set[int] = set()
    out = []
    for _, r, c in sorted(scores, key=lambda s: (-s[0], s[1], s[2])):
        if r not in used_r and c not in used_c:
            used_r.add(r)
            used_c.add(c)
            out.append((r, c))
    return out


def match(predicted: list[Box], last: list[Box], boxes: list[Box], s: TrackerSettings) -> list[tuple[int, int]]:
    """(track index, detection index) pairs: IoU first, then centre distance for the rest.

    `predicted` and `last` are each track's extrapolated and last matched box; the
    distance fallback takes the nearer of the two, so someone who stopped abruptly
    is not lost because the prediction walked on without them.
    """
    by_iou = [(v, i, j) for i, p in enumerate(predicted) for j, b in enumerate(boxes)
              if (v := iou(p, b)) >= s.iou_threshold]
    pairs = greedy_pairs(by_iou)
    if s.max_center_distance > 0:
        done_t = {i for i, _ in pairs}
        done_d = {j for _, j in pairs}
        by_dist = [(-d, i, j) for i, p in enumerate(predicted) if i not in done_t
                   for j, b in enumerate(boxes) if j not in done_d and similar_size(p, b)
                   if (d := min(center_distance(p, b), center_distance(last[i], b))) <= s.max_center_distance]
        pairs += greedy_pairs(by_dist)
    return pairs


# ---- state ---------------------------------------------------------------

_VELOCITY_SMOOTHING = 0.5  # weight of the newest velocity estimate; lower = steadier, slower to turn


@dataclass
class _Live:
    id: int
    box: Box
    score: float
    first_seen: float
    last_seen: float
    hits: int = 1
    missed: int = 0
    confirmed: bool = False
    vx: float = 0.0  # centre velocity, normalised units per second
    vy: float = 0.0

    def predicted(self, t: float) -> Box:
        dt = t - self.last_seen
        return shift(self.box, self.vx * dt, self.vy * dt)

    def hit(self, box: Box, score: float, t: float, min_hits: int) -> None:
        dt = t - self.last_seen
        if dt > 0:
            (ox, oy), (nx, ny) = center(self.box), center(box)
            a = _VELOCITY_SMOOTHING
            self.vx = a * (nx - ox) / dt + (1 - a) * self.vx
            self.vy = a * (ny - oy) / dt + (1 - a) * self.vy
        self.box, self.score, self.last_seen = box, score, t
        self.hits += 1
        self.missed = 0
        self.confirmed = self.confirmed or self.hits >= min_hits

    def snapshot(self) -> Track:
        return Track(self.id, self.box, self.score, self.first_seen, self.last_seen,
                     self.hits, self.missed, self.confirmed)


class Tracker:
    """Assigns node-local ids to detections over time. Not thread-safe; one per camera."""

    def __init__(self, settings: TrackerSettings | None = None):
        self.settings = settings or TrackerSettings()
        self._tracks: list[_Live] = []
        self._next_id = 1
        self._t: float | None = None

    def update(self, detections: Iterable[DetectionLike] | None, t: float) -> list[Track]:
        """Feed one frame at time `t` (seconds, monotonic) and get the confirmed tracks.

        `detections=None` means the detector did not run on this frame: no information,
        so tracks age only by time. An empty list means it ran and saw nobody.
        Returned tracks are matched now or still within memory, ordered by id.
        """
        if self._t is not None and t < self._t:
            raise ValueError(f"time went backwards: {t} < {self._t}")
        self._t = t
        s = self.settings
        if detections is not None:
            dets = [(tuple(float(c) for c in d.box), float(d.score)) for d in detections]
            self._associate(dets, t)  # type: ignore[arg-type]
        self._tracks = [tr for tr in self._tracks
                        if tr.missed <= s.max_missed and t - tr.last_seen <= s.max_age_seconds]
        return [tr.snapshot() for tr in self._tracks if tr.confirmed]

    def _associate(self, dets: list[tuple[Box, float]], t: float) -> None:
        s = self.settings
        pairs = match([tr.predicted(t) for tr in self._tracks], [tr.box for tr in self._tracks],
                      [b for b, _ in dets], s)
        matched_t = {i for i, _ in pairs}
        matched_d = {j for _, j in pairs}
        for i, j in pairs:
            self._tracks[i].hit(dets[j][0], dets[j][1], t, s.min_hits)
        kept = []
        for i, tr in enumerate(self._tracks):
            if i not in matched_t:
                if not tr.confirmed:
                    continue  # a candidate must be seen every run until confirmed
                tr.missed += 1
            kept.append(tr)
        for j, (box, score) in enumerate(dets):
            if j not in matched_d:
                kept.append(_Live(self._next_id, box, score, t, t, confirmed=s.min_hits <= 1))
                self._next_id += 1
        self._tracks = kept

    @property
    def tracks(self) -> list[Track]:
        """All live tracks, confirmed or not (for debugging overlays; never published)."""
        return [tr.snapshot() for tr in self._tracks]
