"""Real people on real backgrounds: person crops of ../shared/data/real/photos (rectangles in
tests/data/person_crops.json) pasted at known places and heights onto frames of a real clip.

The data folder is not part of the repository; `require_real()` skips a test that needs it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
REAL = (REPO / ".." / "shared" / "data" / "real").resolve()
CROPS = REPO / "tests" / "data" / "person_crops.json"


def require_real() -> Path:
    if not (REAL / "photos").is_dir():
        pytest.skip(f"real footage not present at {REAL} (see tests/real_composites.py)")
    return REAL


@cache
def person_crops() -> tuple[np.ndarray, ...]:
    """The person rectangles cut out of the photos (BGR), in the order of the JSON."""
    out = []
    for c in json.loads(CROPS.read_text())["crops"]:
        photo = cv2.imread(str(require_real() / "photos" / c["photo"]))
        x1, y1, x2, y2 = c["box"]
        out.append(photo[y1:y2, x1:x2].copy())
    return tuple(out)


@cache
def clip_frames(name: str, step: int = 1, limit: int | None = None) -> tuple[np.ndarray, ...]:
    """Every `step`-th decoded frame of a real clip (BGR)."""
    cap = cv2.VideoCapture(str(require_real() / name))
    out: list[np.ndarray] = []
    i = 0
    while limit is None or len(out) < limit:
        ok, frame = cap.read()
        if not ok:
            break
        if i % step == 0:
            out.append(frame)
        i += 1
    cap.release()
    if not out:
        pytest.skip(f"cannot decode {name}")
    return tuple(out)


@dataclass(frozen=True)
class Walker:
    """Crop `crop` (index into person_crops) `height` px tall, feet at (x, y) px moving at (vx, vy) px/s."""

    crop: int
    height: int
    x: float
    y: float
    vx: float
    vy: float = 0.0
    start: float = 0.0  # seconds: appears
    end: float = float("inf")  # seconds: gone

    def box(self, t: float) -> tuple[int, int, int, int] | None:
        """Pixel box (x1, y1, x2, y2, exclusive) at `t`, or None when not in the scene."""
        if not self.start <= t < self.end:
            return None
        c = person_crops()[self.crop]
        w = max(1, round(c.shape[1] * self.height / c.shape[0]))
        fx, fy = self.x + self.vx * (t - self.start), self.y + self.vy * (t - self.start)
        x1, y2 = round(fx - w / 2), round(fy)
        return (x1, y2 - self.height, x1 + w, y2)


def paste(frame: np.ndarray, walkers: list[Walker], t: float) -> tuple[np.ndarray, list[tuple[int, tuple]]]:
    """`frame` with the walkers at time `t` (later ones in front), and (index, pixel box) of each visible,
    clipped to the frame."""
    out = frame.copy()
    h, w = out.shape[:2]
    boxes = []
    for i, wk in enumerate(walkers):
        b = wk.box(t)
        if b is None:
            continue
        x1, y1, x2, y2 = b
        cx1, cy1, cx2, cy2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
        if cx2 <= cx1 or cy2 <= cy1:
            continue
        img = cv2.resize(person_crops()[wk.crop], (x2 - x1, y2 - y1), interpolation=cv2.INTER_AREA)
        out[cy1:cy2, cx1:cx2] = img[cy1 - y1:cy2 - y1, cx1 - x1:cx2 - x1]
        boxes.append((i, (cx1, cy1, cx2, cy2)))
    return out, boxes
