"""Camera tampering: the lens covered, the focus turned, the camera moved, the signal gone.

Per frame: analysis gray (`width`, lightly blurred) and a half-size copy →
per-cell measurements against a reference learnt from healthy frames:

* **contrast** — per cell std / (mean + black level) on the half-size image.
  A cover (hand, bag, tape, paint) leaves a flat picture; a dark night is
  dark but keeps its contrast *relative to its brightness*, so it is not a
  cover. A cell is covered when it keeps less than `covered_contrast` of the
  reference's contrast, or less than twice that and no longer correlates
  with the reference (the dim, blotchy glow of a hand over the lens).
* **sharpness** — per cell gradient energy / intensity variance at analysis
  width. Blur removes the fine gradients but hardly the coarse variance. A
  cell is blurred when it keeps less than `defocus_ratio` of the reference's.
* **alignment** — phase correlation of the half-size frame with the
  reference (shift and peak response) and the median per-cell correlation
  (ZNCC) with it once the shift is undone. The view moved when the shift
  exceeds `moved_shift` or the structure no longer matches (`moved_match`):
  turned, rotated, or something textured held in front of the lens.

All three are independent of global gain and offset, so lights switching on
or off and the day/night (IR) switch do not look like tampering. Only cells
where the reference has structure count (a plain sky can lose nothing).

Only cells that stay still are judged. A cell is *moving* while much of it
changes from one frame to the next (after undoing a global shift between the
two frames, so a shaking pole moves no cell); each cell has its own settle
clock, and is judged `SETTLE_SECONDS` after it last moved. A crowd walking
through the view therefore cannot look like a cover or a turned camera: the
cells it crosses are not judged at all, and the alignment is measured on the
still cells only. A frame where too few cells are judged gives no verdict, not
even "healthy". A real cover or a turned camera changes the cells once and
then holds still: its evidence dates from that change, so it is confirmed as
fast as before.

`TamperDetector` turns the per-frame verdicts into incidents: one starts
after `confirm_seconds` in which most frames were tampered and ends after
`recover_seconds` of healthy frames; healthy uses looser thresholds than
tampered (hysteresis), so a view on the edge does not flicker. The reference
follows the scene slowly (`reference_seconds`), but never from a tampered
frame, during an incident or a pending one, or just after a brightness step.
`signal()` reports a camera that stopped delivering frames. See
docs/analytics.md.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from vaktpost.edge.analysis.frames import check_image, steady_seconds
from vaktpost.edge.analysis.imageops import (
    BLACK,
    GRID,
    MIN_CELL_CONTRAST,
    cell_contrast,
    cell_means,
    cell_sharpness,
    to_analysis_gray,
)
from vaktpost.edge.config.tamper import TamperSettings
from vaktpost.edge.privacy.masks import polygon_mask

Subtype = Literal["covered", "defocused", "moved"]  # what `observe` reports
SUBTYPES: tuple[str, ...] = ("covered", "defocused", "moved", "signal_lost")  # all tamper event subtypes

MIN_STRUCTURED_CELLS = 4  # fewer (a blank wall, a dark night) and nothing can be judged
MIN_RESPONSE = 0.08  # phase-correlation peaks below this are noise: their shift means nothing
LOST_MATCH = 0.3  # a cell correlating less than this with the reference shows something else
STEP_CHANGE = 0.08  # relative mean-brightness change between frames that counts as a lighting step
STEP_HOLD_SECONDS = 2.0  # no reference learning this long after a lighting step (exposure settles)
MAX_GAP_SECONDS = 2.0  # frames further apart than this: timers restart, evidence is stale
CHANGE_LEVEL = 12.0  # grey levels (analysis gray) of a frame-to-frame change that is not noise
MOVING_SHARE = 0.15  # a cell with more of its pixels changed than this is moving
SETTLE_SECONDS = 1.0  # a cell is judged once it has not moved for this long
JUMP_RESPONSE = 0.3  # a whole-view jump between frames needs a clear correlation peak (a cover has none)
JUDGED_SHARE = 0.4  # fewer of the structured cells still than this: no verdict on the frame
# Hysteresis: "healthy" needs the measures back past thresholds moved by these factors.
LOOSE_CONTRAST = 1.4
LOOSE_AREA = 0.5
LOOSE_SHARPNESS = 1.4
LOOSE_SHIFT = 0.5
LOOSE_MATCH = 1.5


@dataclass(frozen=True)
class TamperMeasures:
    """One frame against the reference (for debugging and tuning)."""

    covered: float  # share of structured cells that lost their contrast (below covered_contrast)
    blurred: float  # share of structured cells that lost their sharpness (below defocus_ratio)
    shift: float  # global shift, max(|dx|/w, |dy|/h)
    response: float  # phase-correlation peak, ~1 identical .. ~0 unrelated
    match: float  # median per-cell correlation (ZNCC) of structured cells, after undoing the shift
    structured: int  # cells with structure in the reference
    brightness: float  # mean analysis gray level
    covered_loose: float = 0.0  # the same shares at the hysteresis thresholds (≥ covered, blurred)
    blurred_loose: float = 0.0


@dataclass(frozen=True)
class TamperState:
    """Result of `TamperDetector.observe`.

    `incident` is the confirmed subtype ("covered", "defocused", "moved") or
    None. It keeps its subtype for the whole incident and changes only at
    its start and end. `candidate` is this frame's raw verdict.
    """

    incident: Subtype | None
    confidence: float  # 0..1; 0 when no incident
    candidate: Subtype | None
    since: float | None  # t of the first tampered frame of the running incident
    measures: TamperMeasures | None  # None while the reference is being seeded
    learning: bool  # the reference learnt from this frame

    @property
    def active(self) -> bool:
        return self.incident is not None


# --- pure helpers -----------------------------------------------------------


def cell_correlation(a: np.ndarray, b: np.ndarray, grid: tuple[int, int] = GRID) -> np.ndarray:
    """Per-cell zero-mean normalised cross-correlation of two same-size images (0 where either is flat)."""
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    fa = a.astype(np.float32, copy=False)
    fb = b.astype(np.float32, copy=False)
    ma, mb = cell_means(fa, grid), cell_means(fb, grid)
    va = np.maximum(cell_means(fa * fa, grid) - ma * ma, 0.0)
    vb = np.maximum(cell_means(fb * fb, grid) - mb * mb, 0.0)
    cov = cell_means(fa * fb, grid) - ma * mb
    den = np.sqrt(va * vb)
    return np.where(den > 1e-3, cov / np.maximum(den, 1e-3), 0.0).astype(np.float32)


def alignment(reference: np.ndarray, frame: np.ndarray, window: np.ndarray) -> tuple[float, float, float]:
    """(dx, dy, response) of `frame` against `reference` by phase correlation; dx, dy as fractions of w, h.

    Means are removed and a Hann `window` tapers the borders, so brightness
    and the image edges do not pull the peak to zero shift.
    """
    r = reference.astype(np.float32) - np.float32(reference.mean())
    f = frame.astype(np.float32) - np.float32(frame.mean())
    (dx, dy), response = cv2.phaseCorrelate(r, f, window)
    h, w = reference.shape
    if not (math.isfinite(dx) and math.isfinite(dy) and math.isfinite(response)):
        return 0.0, 0.0, 0.0  # flat images: no peak at all
    return dx / w, dy / h, float(response)


def measure(
    gray: np.ndarray,
    small: np.ndarray,
    ref_gray: np.ndarray,
    ref_small: np.ndarray,
    window: np.ndarray,
    *,
    covered_contrast: float,
    defocus_ratio: float,
    excluded: np.ndarray | None = None,
) -> TamperMeasures:
    """Compare one frame (analysis gray and its half-size copy) with the reference.
    `excluded` (rows, cols) bool marks cells that are not the view (privacy masks)."""
    c_ref = cell_contrast(ref_small)
    structured = c_ref >= MIN_CELL_CONTRAST
    if excluded is not None:
        structured &= ~excluded
    n = int(structured.sum())
    dx, dy, response = alignment(ref_small, small, window)
    shift = max(abs(dx), abs(dy))
    brightness = float(small.mean())
    if n == 0:
        return TamperMeasures(0.0, 0.0, shift, response, 1.0, 0, brightness)
    contrast = cell_contrast(small)[structured] / c_ref[structured]
    sharpness = cell_sharpness(gray)[structured] / np.maximum(cell_sharpness(ref_gray)[structured], 1e-6)
    # Match after undoing the shift: a shaking pole or a small nudge is not "no longer the view";
    # the shift has its own threshold. What stays unmatched is a rotated or a different view.
    w, h = small.shape[1], small.shape[0]
    undo = np.array([[1, 0, -dx * w], [0, 1, -dy * h]], dtype=np.float32)
    aligned = small
    if response >= MIN_RESPONSE:
        aligned = cv2.warpAffine(small, undo, (w, h), borderMode=cv2.BORDER_REPLICATE)
    corr = cell_correlation(aligned, ref_small)[structured]
    match = float(np.median(corr))

    def covered(limit: float, lost: float) -> float:
        # Flat, or faint and unrelated to the view: a cover that still shows a dim blotchy
        # glow keeps some contrast, but none of the scene's structure.
        return float(np.mean((contrast < limit) | ((contrast < 2 * limit) & (corr < lost))))

    return TamperMeasures(
        covered=covered(covered_contrast, LOST_MATCH),
        blurred=float(np.mean(sharpness < defocus_ratio)),
        shift=shift, response=response, match=match, structured=n, brightness=brightness,
        covered_loose=covered(min(0.95, covered_contrast * LOOSE_CONTRAST), LOST_MATCH * LOOSE_MATCH),
        blurred_loose=float(np.mean(sharpness < min(0.95, defocus_ratio * LOOSE_SHARPNESS))),
    )


def moving_cells(small: np.ndarray, previous: np.ndarray, window: np.ndarray, jump: float,
                 grid: tuple[int, int] = GRID) -> np.ndarray:
    """(rows, cols) bool: cells where much changed since the previous frame.

    A global shift between the two frames (camera shake) is undone first, so only
    things that move within the view count, such as people passing. Neighbours of a
    moving cell count as moving. A shift of at least `jump` (fraction of w, h) is the
    whole view changing: every cell counts as moving (a knocked camera's evidence
    dates from the knock).
    """
    dx, dy, response = alignment(previous, small, window)
    h, w = small.shape
    if response >= JUMP_RESPONSE and max(abs(dx), abs(dy)) >= jump:
        return np.ones((grid[1], grid[0]), bool)
    if response >= MIN_RESPONSE and max(abs(dx) * w, abs(dy) * h) >= 0.5:
        shift = np.array([[1, 0, dx * w], [0, 1, dy * h]], dtype=np.float32)
        previous = cv2.warpAffine(previous, shift, (w, h), borderMode=cv2.BORDER_REPLICATE)
    changed = cv2.absdiff(small, previous) > CHANGE_LEVEL
    moving = (cell_means(changed.astype(np.float32), grid) > MOVING_SHARE).astype(np.uint8)
    # And their neighbours: a passer-by's plain coat changes little inside, only at its edges.
    return cv2.dilate(moving, cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))).astype(bool)


def cells_to_pixels(cells: np.ndarray, shape: tuple[int, int], soften: bool = False) -> np.ndarray:
    """A (rows, cols) cell mask as a float32 pixel mask of `shape` (h, w), optionally with soft edges."""
    h, w = shape
    out = cv2.resize(cells.astype(np.float32), (w, h), interpolation=cv2.INTER_NEAREST)
    if soften:
        out = cv2.GaussianBlur(out, (0, 0), max(1.0, w / cells.shape[1] / 4))
    return out


def masked_cells(polygons, grid: tuple[int, int] = GRID) -> np.ndarray | None:
    """(rows, cols) bool: cells that privacy masks touch at all, or None without masks.

    The pipeline blanks masks before tamper detection; their edges keep full contrast
    under a cover or blur, so a cell holding any of a mask says nothing about the view.
    """
    if not polygons:
        return None
    cols, rows = grid
    fine = polygon_mask(polygons, (rows * 16, cols * 16)).astype(np.float32)
    return cv2.resize(fine, grid, interpolation=cv2.INTER_AREA) > 0


def classify(m: TamperMeasures, s: TamperSettings, *, loose: bool = False) -> Subtype | None:
    """The tampering `m` shows ("covered", "defocused", "moved") or None.

    `loose` applies the hysteresis thresholds: a frame is healthy only when
    even those find nothing. Covered comes first (a cover also blurs and
    misaligns), then defocused (blur lowers the match), then moved.
    """
    if m.structured < MIN_STRUCTURED_CELLS:
        return None
    area = s.min_area * (LOOSE_AREA if loose else 1.0)
    if (m.covered_loose if loose else m.covered) >= area:
        return "covered"
    if (m.blurred_loose if loose else m.blurred) >= area:
        return "defocused"
    shift = s.moved_shift * (LOOSE_SHIFT if loose else 1.0)
    # Loose: a higher match is still suspicious (for a positive threshold).
    match = s.moved_match * LOOSE_MATCH if loose and s.moved_match > 0 else s.moved_match
    if (m.response >= MIN_RESPONSE and m.shift >= shift) or m.match < match:
        return "moved"
    return None


def strength(subtype: str, m: TamperMeasures, s: TamperSettings) -> float:
    """Confidence 0.5..1 of a verdict: how far past its threshold the evidence is."""
    if subtype == "covered":
        x = m.covered
    elif subtype == "defocused":
        x = m.blurred
    else:
        x = max(min(1.0, m.shift / (2 * s.moved_shift)) if m.response >= MIN_RESPONSE else 0.0,
                min(1.0, max(0.0, 1.0 - m.match)))
    return round(0.5 + 0.5 * min(1.0, max(0.0, x)), 3)


def is_lighting_step(brightness: float, previous: float | None) -> bool:
    """True when the mean brightness jumped since the previous frame (lights, IR switch, exposure)."""
    if previous is None:
        return False
    return abs(brightness - previous) / (previous + BLACK) > STEP_CHANGE


# --- the stateful detector --------------------------------------------------


class TamperDetector:
    """Keeps the reference view and the incident state between frames.

    Feed every processed frame to `observe(frame, t)`; when frames stop,
    call `signal(t_now)` (e.g. from the loop that waits for frames) to learn
    whether the signal counts as lost. Times are seconds on any monotonic
    clock; a clock that steps back is treated as standing still.
    """

    def __init__(self, settings: TamperSettings | None = None, privacy_masks=()) -> None:
        """`privacy_masks`: the camera's privacy polygons, blanked in the frames it is fed."""
        self.settings = settings or TamperSettings()
        self._excluded = masked_cells(privacy_masks)
        self._first_signal_check: float | None = None
        self.reset()

    def reset(self) -> None:
        """Forget the reference and any incident; the next frame seeds a new reference.

        For an operator who re-aimed the camera on purpose. A change of
        resolution does the same by itself.
        """
        self._ref_gray: np.ndarray | None = None  # float32, analysis width
        self._ref_small: np.ndarray | None = None  # float32, half size
        self._window: np.ndarray | None = None
        self._prev_small: np.ndarray | None = None  # uint8, half size: the previous frame
        self._last_moved: np.ndarray = np.full((GRID[1], GRID[0]), -math.inf)  # per cell: t it last moved
        self._last_verdict_t = -math.inf  # t of the last frame judged (tampered, healthy or between)
        self._last_t: float | None = None
        self._prev_brightness: float | None = None
        self._hold_until = -math.inf
        self._pending_since: float | None = None
        self._votes: Counter[Subtype] = Counter()
        self._frames = 0  # frames since pending started
        self._incident: Subtype | None = None
        self._since: float | None = None
        self._confidence = 0.0
        self._healthy_since: float | None = None

    @property
    def last_frame_t(self) -> float | None:
        """Time of the last frame `observe` saw."""
        return self._last_t

    @property
    def incident(self) -> Subtype | None:
        """The confirmed incident now, as in the last TamperState."""
        return self._incident

    def observe(self, frame: np.ndarray, t: float) -> TamperState:
        """Analyse one frame (gray, BGR or BGRA uint8) taken at `t` seconds."""
        t = self._clock(t)
        gray, small = self._prepare(frame)
        gap = t - self._last_t if self._last_t is not None else 0.0
        self._last_t = t
        if self._ref_gray is None or self._ref_gray.shape != gray.shape:
            self._reference(gray, small)
            return self._state(None, None, learning=True)
        assert self._ref_small is not None and self._window is not None and self._prev_small is not None
        if gap > MAX_GAP_SECONDS:
            # Frames stopped for a while: evidence from before the gap does not carry over,
            # and what moved meanwhile is unknown.
            self._pending_since, self._votes, self._healthy_since = None, Counter(), None
            self._last_moved[:] = t
        else:
            jump = self.settings.moved_shift * LOOSE_SHIFT
            self._last_moved[moving_cells(small, self._prev_small, self._window, jump)] = t
        self._prev_small = small

        s = self.settings
        still = t - self._last_moved >= SETTLE_SECONDS
        view = cell_contrast(self._ref_small) >= MIN_CELL_CONTRAST
        if self._excluded is not None:
            view &= ~self._excluded
        judged = view & still
        window = self._window * cells_to_pixels(still, small.shape, soften=True)
        m = measure(gray, small, self._ref_gray, self._ref_small, window,
                    covered_contrast=s.covered_contrast, defocus_ratio=s.defocus_ratio, excluded=~judged)
        step = is_lighting_step(m.brightness, self._prev_brightness)
        self._prev_brightness = m.brightness
        if step:
            self._hold_until = t + STEP_HOLD_SECONDS
        if m.structured < max(MIN_STRUCTURED_CELLS, JUDGED_SHARE * int(view.sum())):
            return self._state(None, m, learning=False)  # too little of the view holds still to judge

        # The evidence dates from the judged cells' last change (median), if that came after the
        # previous verdict: a cover arrives, then holds still for SETTLE_SECONDS before it is judged.
        changed = float(np.median(self._last_moved[judged]))
        start = changed if changed > self._last_verdict_t else t
        self._last_verdict_t = t
        candidate = classify(m, s)
        healthy = candidate is None and classify(m, s, loose=True) is None
        if self._advance(t, start, candidate, healthy, m):
            self._reference(gray, small)  # a moved view that stayed: it is the view now
            return self._state(candidate, m, learning=True)

        # Frames between the thresholds still teach the reference while nothing is pending:
        # otherwise a slow dusk that drifts into that zone would freeze it until it alarms.
        learning = (candidate is None and self._incident is None and self._pending_since is None
                    and t >= self._hold_until)
        if learning and gap > 0:
            # Only still cells teach: a crowd passing must not be learnt into the reference.
            a = 1.0 - math.exp(-min(gap, MAX_GAP_SECONDS) / s.reference_seconds)
            cv2.accumulateWeighted(gray, self._ref_gray, a, cells_to_pixels(still, gray.shape).astype(np.uint8))
            cv2.accumulateWeighted(small, self._ref_small, a, cells_to_pixels(still, small.shape).astype(np.uint8))
        return self._state(candidate, m, learning=learning)

    def signal(self, t_now: float, last_frame_t: float | None = None) -> bool:
        """True when no frame has arrived for `signal_lost_seconds`.

        `last_frame_t` defaults to the last frame `observe` saw; when there
        has never been one, the time is counted from the first call. The
        caller keeps the signal_lost incident (e.g. a Lifecycle stepped with
        this value); frames returning end it.
        """
        t_now = steady_seconds(t_now, None, "t_now")
        last = last_frame_t if last_frame_t is not None else self._last_t
        if last is None:
            if self._first_signal_check is None:
                self._first_signal_check = t_now
            last = self._first_signal_check
        return t_now - last >= self.settings.signal_lost_seconds

    # --- internals ---

    def _clock(self, t: float) -> float:
        return steady_seconds(t, self._last_t)

    def _prepare(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # Imported here, not at module level: vaktpost.edge.config will import this module
        # for TamperSettings, and vaktpost.edge.analysis.motion imports vaktpost.edge.config.
        check_image(frame, 32, "tamper detection")
        gray = to_analysis_gray(frame, self.settings.width, blur=3)
        h, w = gray.shape
        small = cv2.resize(gray, (max(16, w // 2), max(16, h // 2)), interpolation=cv2.INTER_AREA)
        return gray, small

    def _reference(self, gray: np.ndarray, small: np.ndarray) -> None:
        """Take this frame as the reference; whatever was pending or open is closed."""
        self._ref_gray = gray.astype(np.float32)
        self._ref_small = small.astype(np.float32)
        self._window = cv2.createHanningWindow((small.shape[1], small.shape[0]), cv2.CV_32F)
        self._prev_small = small
        self._last_moved = np.full((GRID[1], GRID[0]), -math.inf)
        self._last_verdict_t = -math.inf
        self._prev_brightness = float(small.mean())
        self._pending_since, self._votes = None, Counter()
        self._end()

    def _advance(self, t: float, start: float, candidate: Subtype | None, healthy: bool, m: TamperMeasures) -> bool:
        """Step the incident state machine; True when the current view should become the reference.
        `start` is when this frame's evidence began (the judged cells' last change, or `t`)."""
        s = self.settings
        if self._incident is None:
            if healthy:
                self._pending_since, self._votes, self._confidence = None, Counter(), 0.0
                return False
            if candidate is not None and self._pending_since is None:
                self._pending_since, self._votes, self._frames = start, Counter(), 0
            if self._pending_since is None:
                return False  # between the thresholds with nothing pending: not evidence either way
            self._frames += 1
            if candidate is not None:
                self._votes[candidate] += 1
                self._confidence = max(self._confidence, strength(candidate, m, s))
            if t - self._pending_since >= s.confirm_seconds:
                if sum(self._votes.values()) * 2 >= self._frames:
                    # The most frequent verdict names the incident (a hand first blurs, then covers).
                    self._incident = self._votes.most_common(1)[0][0]
                    self._since = self._pending_since
                    self._pending_since, self._votes, self._healthy_since = None, Counter(), None
                else:
                    # Too few tampered frames in the window (a passer-by close to the lens): start over.
                    self._pending_since, self._votes, self._confidence = None, Counter(), 0.0
            return False
        if candidate == self._incident:
            self._confidence = max(self._confidence, strength(candidate, m, s))
        if healthy:
            if self._healthy_since is None:
                self._healthy_since = start
            if t - self._healthy_since >= s.recover_seconds:
                self._end()
            return False
        self._healthy_since = None
        return (self._incident == "moved" and candidate == "moved" and s.adopt_moved_seconds is not None
                and self._since is not None and t - self._since >= s.adopt_moved_seconds)

    def _end(self) -> None:
        self._incident, self._since, self._confidence, self._healthy_since = None, None, 0.0, None

    def _state(self, candidate: Subtype | None, m: TamperMeasures | None, *, learning: bool) -> TamperState:
        return TamperState(
            incident=self._incident,
            confidence=self._confidence if self._incident is not None else 0.0,
            candidate=candidate,
            since=self._since,
            measures=m,
            learning=learning,
        )
