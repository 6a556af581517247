"""Real people at known sizes on real backgrounds, for recall and privacy tests.

Person crops are cut from ../shared/data/real/photos with the boxes in
tests/data/person_boxes.json, scaled to a given height and pasted onto a frame of
../shared/data/real/empty_road.avi (its centre 480x360, native pixels). The data is
not in the repository: `real_dir()` is None when it is absent, and callers skip.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
BOXES = Path(__file__).with_name("data") / "person_boxes.json"
FRAME_W, FRAME_H = 480, 360


def real_dir() -> Path | None:
    """<repo>/../shared/data/real, or None when it (or a file used here) is absent."""
    d = REPO.parent / "shared" / "data" / "real"
    return d if (d / "empty_road.avi").is_file() and (d / "photos").is_dir() else None


@dataclass(frozen=True)
class PersonCrop:
    image: np.ndarray  # BGR, the box cut from the photo
    full: bool  # head to foot
    name: str


def person_crops(real: Path) -> list[PersonCrop]:
    out = []
    for entry in json.loads(BOXES.read_text())["boxes"]:
        photo = cv2.imread(str(real / "photos" / entry["photo"]))
        x1, y1, x2, y2 = entry["box"]
        out.append(PersonCrop(photo[y1:y2, x1:x2].copy(), entry["full"], f"{entry['photo']}:{x1},{y1}"))
    return out


def backgrounds(real: Path, count: int = 4, size: tuple[int, int] = (FRAME_W, FRAME_H)) -> list[np.ndarray]:
    """`count` frames spread over empty_road.avi, the centre `size` of each (no rescaling)."""
    cap = cv2.VideoCapture(str(real / "empty_road.avi"))
    frames = []
    ok, f = cap.read()
    while ok:
        frames.append(f)
        ok, f = cap.read()
    cap.release()
    if not frames:
        raise RuntimeError("empty_road.avi has no frames")
    w, h = size
    out = []
    for i in np.linspace(0, len(frames) - 1, count).astype(int):
        fr = frames[i]
        if fr.shape[0] < h or fr.shape[1] < w:
            fr = cv2.resize(fr, (max(w, fr.shape[1]), max(h, fr.shape[0])))
        y0, x0 = (fr.shape[0] - h) // 2, (fr.shape[1] - w) // 2
        out.append(fr[y0 : y0 + h, x0 : x0 + w].copy())
    return out


def scaled(crop: np.ndarray, height: int) -> np.ndarray:
    """`crop` resized to `height` pixels tall, aspect kept (area averaging when shrinking)."""
    h, w = crop.shape[:2]
    nw = max(1, round(w * height / h))
    interp = cv2.INTER_AREA if height < h else cv2.INTER_LINEAR
    return cv2.resize(crop, (nw, height), interpolation=interp)


def paste(frame: np.ndarray, crop: np.ndarray, x: int, y: int) -> tuple[int, int, int, int]:
    """Paste `crop` with its top-left at (x, y), in place; its pixel box (x2/y2 exclusive)."""
    h, w = crop.shape[:2]
    frame[y : y + h, x : x + w] = crop
    return (x, y, x + w, y + h)
