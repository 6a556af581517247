"""A light multi-object tracker for person detections.

Each track carries a constant-velocity Kalman filter on its box centre. At a
detector run every track predicts where its person is now, with an uncertainty
that grows with the time since it was last matched, and a detection can only be
that person if it lies within `gate` standard deviations of the prediction and
has a similar height. Within the gates, pairs are chosen by optimal assignment
(scipy's linear_sum_assignment, least total negative log-likelihood), confirmed
tracks first, then candidates. So two people who cross keep their ids: each
track's prediction walks on past the other person, and a greedy "nearest first"
choice cannot steal the other's detection.

A new detection is a *candidate*. It is confirmed (reported) once it was matched
in `confirm_hits` of its last `confirm_runs` detector runs (M of N), so a
detector that misses a small person now and then still confirms them, while a
one-frame false detection never becomes a person. A confirmed track survives a
few misses (`max_missed` detector runs, `max_age_seconds`) with the same id.
Tracks keep the sightings that led to their confirmation so that the rules can
count a dwell from the first detection, not from the confirmation.

Positions are measured in frame heights (x scaled by the frame's aspect ratio)
and noise in the person's own height, so near and far people, and any frame
rate, are treated alike. Track ids are node-local integers and must never leave
the node: events carry zones and regions, not ids.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from scipy.optimize import linear_sum_assignment

from vaktpost.edge.config.track import TrackerSettings
from vaktpost.edge.geometry import Box, area, center

# Motion model, in units of the person's height (h) and seconds. Walkers change speed
# and direction gently; the detector's box centre jitters by a tenth of a height.
ACCELERATION = 1.5  # std of unmodelled acceleration, h / s²
MEASUREMENT = 0.1  # std of a detection's centre, h
INITIAL_SPEED = 1.5  # std of a new track's unknown velocity, h / s (a brisk walk is about 1)
MAX_SIZE_RATIO = 2.0  # a box twice as tall (or half) is someone else, however close
SIZE_SIGMA = 0.2  # std of log(height ratio) between runs, for ranking pairs inside the gates
MAX_SIGHTINGS = 50  # pre-confirmation sightings kept per track
HIDDEN_SHARE = 0.5  # a predicted box covered this much by a nearer one is expected to be hidden
_FORBIDDEN = 1e9  # cost of a pair outside the gates

Sighting = tuple[float, Box, float]  # (t, box, score)


class DetectionLike(Protocol):
    """Anything with a normalised `box` (x1, y1, x2, y2) and a `score`, e.g. vaktpost.edge.detectors' Detection."""

    @property
    def box(self) -> Box: ...  # pragma: no cover

    @property
    def score(self) -> float: ...  # pragma: no cover


@dataclass(frozen=True)
class Track:
    """A snapshot of one tracked person; `box` and `score` are from the last match.

    `sightings` are the matches up to and including the one that confirmed the
    track (t, box, score), oldest first: the rules replay them so that a dwell
    counts from the first detection.
    """

    id: int
    box: Box
    score: float
    first_seen: float
    last_seen: float
    hits: int
    missed: int
    confirmed: bool
    sightings: tuple[Sighting, ...] = ()


# ---- pure helpers --------------------------------------------------------


def hidden(boxes: list[Box]) -> list[bool]:
    """Which boxes are mostly behind another: more than HIDDEN_SHARE of the box covered by one
    whose foot is lower in the image (on the ground, lower means nearer the camera, in front)."""
    out = []
    for i, a in enumerate(boxes):
        covered = False
        for j, b in enumerate(boxes):
            if i != j and b[3] > a[3]:
                ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
                iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
                covered = covered or ix * iy > HIDDEN_SHARE * max(area(a), 1e-12)
        out.append(covered)
    return out



def height(b: Box) -> float:
    return max(b[3] - b[1], 1e-6)


def measurement(b: Box, aspect: float) -> np.ndarray:
    """Box centre in frame heights: x scaled by the aspect ratio (width / height)."""
    cx, cy = center(b)
    return np.array([cx * aspect, cy])


def predict(x: np.ndarray, p: np.ndarray, dt: float, h: float) -> tuple[np.ndarray, np.ndarray]:
    """Constant-velocity prediction of state (x, y, vx, vy) and covariance `dt` seconds on."""
    f = np.eye(4)
    f[0, 2] = f[1, 3] = dt
    q1 = (ACCELERATION * h) ** 2 * np.array([[dt**4 / 4, dt**3 / 2], [dt**3 / 2, dt**2]])
    q = np.zeros((4, 4))
    q[np.ix_([0, 2], [0, 2])] = q1
    q[np.ix_([1, 3], [1, 3])] = q1
    return f @ x, f @ p @ f.T + q


def innovation(x: np.ndarray, p: np.ndarray, z: np.ndarray, h: float) -> tuple[np.ndarray, np.ndarray]:
    """(z - predicted position, its covariance S) for a measured centre `z`."""
    s = p[:2, :2] + np.eye(2) * (MEASUREMENT * h) ** 2
    return z - x[:2], s


def mahalanobis(x: np.ndarray, p: np.ndarray, z: np.ndarray, h: float) -> float:
    y, s = innovation(x, p, z, h)
    return float(math.sqrt(max(0.0, float(y @ np.linalg.solve(s, y)))))


def spread(p: np.ndarray, h: float) -> float:
    """log det of the innovation covariance, relative to a measurement's own: 0 for a sure prediction.

    Added to the squared distance it makes the cost a negative log-likelihood, so a track
    whose prediction is vague (unseen for a while) does not win a detection just because
    its wide gate makes every offset look small."""
    s = p[:2, :2] + np.eye(2) * (MEASUREMENT * h) ** 2
    return float(math.log(max(np.linalg.det(s), 1e-300)) - 4 * math.log(MEASUREMENT * h))


def assign(cost: np.ndarray) -> list[tuple[int, int]]:
    """Optimal (row, col) pairs of a cost matrix, leaving out pairs at `_FORBIDDEN`."""
    if cost.size == 0:
        return []
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if cost[r, c] < _FORBIDDEN]


# ---- state ---------------------------------------------------------------


@dataclass
class _Live:
    id: int
    box: Box
    score: float
    first_seen: float
    last_seen: float
    x: np.ndarray  # (x, y, vx, vy) at last_seen, frame heights and per second
    p: np.ndarray
    runs: deque[bool]  # outcomes of the last confirm_runs detector runs while a candidate
    hits: int = 1
    missed: int = 0
    confirmed: bool = False
    sightings: list[Sighting] = field(default_factory=list)

    @classmethod
    def new(cls, tid: int, box: Box, score: float, t: float, aspect: float, s: TrackerSettings) -> _Live:
        h = height(box)
        x = np.concatenate([measurement(box, aspect), [0.0, 0.0]])
        p = np.diag([(MEASUREMENT * h) ** 2] * 2 + [(INITIAL_SPEED * h) ** 2] * 2)
        return cls(tid, box, score, t, t, x, p, deque([True], maxlen=s.confirm_runs),
                   confirmed=s.confirm_hits <= 1, sightings=[(t, box, score)])

    def predicted(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        return predict(self.x, self.p, max(0.0, t - self.last_seen), height(self.box))

    def predicted_box(self, t: float, aspect: float) -> Box:
        x, _ = self.predicted(t)
        (cx, cy), (w, h) = (x[0] / aspect, x[1]), (self.box[2] - self.box[0], self.box[3] - self.box[1])
        return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)

    def cost(self, box: Box, t: float, aspect: float, gate: float) -> float:
        ratio = math.log(height(box) / height(self.box))
        if abs(ratio) > math.log(MAX_SIZE_RATIO):
            return _FORBIDDEN
        x, p = self.predicted(t)
        h = height(self.box)
        d = mahalanobis(x, p, measurement(box, aspect), h)
        return d * d + spread(p, h) + (ratio / SIZE_SIGMA) ** 2 if d <= gate else _FORBIDDEN

    def hit(self, box: Box, score: float, t: float, aspect: float, s: TrackerSettings) -> None:
        h = height(self.box)
        x, p = self.predicted(t)
        y, sc = innovation(x, p, measurement(box, aspect), h)
        k = p[:, :2] @ np.linalg.inv(sc)
        self.x = x + k @ y
        self.p = (np.eye(4) - k @ np.eye(2, 4)) @ p
        self.box, self.score, self.last_seen = box, score, t
        self.hits += 1
        self.missed = 0
        if not self.confirmed:
            self.runs.append(True)
            if len(self.sightings) < MAX_SIGHTINGS:
                self.sightings.append((t, box, score))
            self.confirmed = sum(self.runs) >= s.confirm_hits

    def miss(self, s: TrackerSettings) -> bool:
        """Count a detector run without a match; False when the track is to be dropped."""
        self.missed += 1
        if self.confirmed:
            return self.missed <= s.max_missed
        self.runs.append(False)
        return self.runs.count(False) <= s.confirm_runs - s.confirm_hits

    def snapshot(self) -> Track:
        return Track(self.id, self.box, self.score, self.first_seen, self.last_seen,
                     self.hits, self.missed, self.confirmed, tuple(self.sightings))


class Tracker:
    """Assigns node-local ids to detections over time. Not thread-safe; one per camera."""

    def __init__(self, settings: TrackerSettings | None = None):
        self.settings = settings or TrackerSettings()
        self._tracks: list[_Live] = []
        self._next_id = 1
        self._t: float | None = None

    def update(self, detections: Iterable[DetectionLike] | None, t: float, aspect: float = 1.0) -> list[Track]:
        """Feed one frame at time `t` (seconds, monotonic) and get the confirmed tracks.

        `detections=None` means the detector did not run on this frame: no information,
        so tracks age only by time. An empty list means it ran and saw nobody.
        `aspect` is the frame's width / height (boxes are normalised to the frame).
        Returned tracks are matched now or still within memory, ordered by id.
        """
        if self._t is not None and t < self._t:
            raise ValueError(f"time went backwards: {t} < {self._t}")
        if not aspect > 0:
            raise ValueError(f"aspect must be positive, got {aspect}")
        self._t = t
        s = self.settings
        if detections is not None:
            dets = [(tuple(float(c) for c in d.box), float(d.score)) for d in detections]
            self._associate(dets, t, aspect)  # type: ignore[arg-type]
        self._tracks = [tr for tr in self._tracks if t - tr.last_seen <= s.max_age_seconds]
        return [tr.snapshot() for tr in self._tracks if tr.confirmed]

    def _associate(self, dets: list[tuple[Box, float]], t: float, aspect: float) -> None:
        s = self.settings
        free = list(range(len(dets)))
        matched: set[int] = set()
        # Confirmed tracks choose first: a fresh candidate must not take a known person's detection.
        for group in ([tr for tr in self._tracks if tr.confirmed], [tr for tr in self._tracks if not tr.confirmed]):
            cost = np.array([[tr.cost(dets[j][0], t, aspect, s.gate) for j in free] for tr in group]).reshape(
                len(group), len(free))
            # Where two people overlap the detector sees the one in front: the one behind gets a
            # detection only if no one else can have it, and otherwise coasts on its prediction.
            behind = np.array(hidden([tr.predicted_box(t, aspect) for tr in group]), bool)
            cost[behind] = np.where(cost[behind] < _FORBIDDEN, cost[behind] + s.gate**2, _FORBIDDEN)
            for r, c in assign(cost):
                j = free[c]
                group[r].hit(dets[j][0], dets[j][1], t, aspect, s)
                matched.add(id(group[r]))
                free[c] = -1
            free = [j for j in free if j >= 0]
        kept = [tr for tr in self._tracks if id(tr) in matched or tr.miss(s)]
        for j in free:
            kept.append(_Live.new(self._next_id, dets[j][0], dets[j][1], t, aspect, s))
            self._next_id += 1
        self._tracks = kept

    @property
    def tracks(self) -> list[Track]:
        """All live tracks, confirmed or not (for debugging overlays; never published)."""
        return [tr.snapshot() for tr in self._tracks]

    @property
    def has_candidates(self) -> bool:
        """True while a detection waits for confirmation: the detector should look again soon."""
        return any(not tr.confirmed for tr in self._tracks)
