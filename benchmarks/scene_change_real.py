"""Lasting scene change on real footage (../shared/data/real, see its PROVENANCE.md).

Three runs, frame times driving every clock, default `scene_change` settings:

* `empty_road.avi` (a road; a car drives through the lower left corner and
  back, as the clip is played forward and back with no jump at the turn)
  for 60 s at 10 fps: nothing may be reported;
* the street clip, filmed from a moving bus: what scene change does with a
  view that never holds still, alone and with the tamper detector's veto as
  the pipeline wires it;
* a composite: the road's first 55 frames (no car yet: real sensor noise and
  compression, nothing moving) played forward and back for 90 s, with real people (rectangular crops of
  the person boxes SSDLite finds in photos/*.jpg, 60-150 px tall) walking
  across all the time, and a painter (another crop) standing at the kerb
  while a coloured tag grows from 20 s to 28 s: the tag must be reported
  within 30 s of video time after the painting stops, and nothing else.

Prints one JSON object (the table in docs/evaluation.md is made from it).

    .venv/bin/python benchmarks/scene_change_real.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable without an install

import cv2
import numpy as np

from vaktpost.edge.analysis.motion import MotionDetector
from vaktpost.edge.analysis.scene_change import SceneChangeDetector
from vaktpost.edge.analysis.tamper import TamperDetector

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
FPS = 10.0
TAG_FROM, TAG_UNTIL = 20.0, 28.0
TAG_BOX = (0.30, 0.18, 0.42, 0.30)  # normalised: on the road surface, away from the walkers' lane
STILL_FRAMES = 55  # empty_road.avi's first frames, before a car drives into view


def read(path: Path) -> tuple[list[np.ndarray], float]:
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    out = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        out.append(frame)
    cap.release()
    if not out:
        raise SystemExit(f"{path}: no frames")
    return out, fps


def ping_pong(frames: list[np.ndarray], fps: float, seconds: float) -> list[np.ndarray]:
    """`seconds` of video at FPS from `frames` (at `fps`), played forward and back."""
    cycle = frames + frames[-2:0:-1]
    return [cycle[int(i * fps / FPS) % len(cycle)] for i in range(int(seconds * FPS))]


def person_crops() -> list[np.ndarray]:
    """Rectangular crops of the people SSDLite finds in the photos (score > 0.6, at least 60 px tall)."""
    from vaktpost.edge.config.detectors import DetectorSettings
    from vaktpost.edge.detectors.factory import create_detector

    det = create_detector(DetectorSettings(kind="ssd", threads=1))
    crops = []
    for path in sorted((REAL / "photos").glob("*.jpg")):
        img = cv2.imread(str(path))
        h, w = img.shape[:2]
        for d in det.detect(img):
            x1, y1, x2, y2 = (int(d.box[0] * w), int(d.box[1] * h), int(d.box[2] * w), int(d.box[3] * h))
            if d.label == "person" and d.score > 0.6 and y2 - y1 >= 60:
                crops.append(img[y1:y2, x1:x2].copy())
    if not crops:
        raise SystemExit("no person crops found in the photos")
    return crops


def paste(img: np.ndarray, crop: np.ndarray, cx: float, foot: float, height: int) -> tuple[float, ...] | None:
    """Paste `crop` scaled to `height` px with its bottom centre at (cx, foot) px; its normalised box."""
    h, w = img.shape[:2]
    ch = height
    cw = max(1, round(crop.shape[1] * height / crop.shape[0]))
    sprite = cv2.resize(crop, (cw, ch), interpolation=cv2.INTER_AREA)
    x0, y0 = round(cx - cw / 2), round(foot - ch)
    x1, y1, x2, y2 = max(0, x0), max(0, y0), min(w, x0 + cw), min(h, y0 + ch)
    if x2 <= x1 or y2 <= y1:
        return None
    img[y1:y2, x1:x2] = sprite[y1 - y0 : y2 - y0, x1 - x0 : x2 - x0]
    return (x1 / w, y1 / h, x2 / w, y2 / h)


def composite(background: list[np.ndarray], crops: list[np.ndarray]) -> tuple[list[np.ndarray], list[list]]:
    """The busy road with a tag being painted; frames and the people's true boxes per frame."""
    rng = np.random.default_rng(10)
    walkers = []  # (start s, seconds to cross, crop, foot y px, height px, left to right)
    t = 0.0
    while t < len(background) / FPS:
        walkers.append((t, float(rng.uniform(6, 10)), crops[int(rng.integers(len(crops)))],
                        float(rng.uniform(320, 358)), int(rng.integers(60, 150)), bool(rng.random() < 0.5)))
        t += float(rng.uniform(2.0, 5.0))
    painter = crops[0]
    frames, truth = [], []
    for i, bg in enumerate(background):
        t = i / FPS
        img = bg.copy()
        h, w = img.shape[:2]
        x1, y1, x2, y2 = (int(TAG_BOX[0] * w), int(TAG_BOX[1] * h), int(TAG_BOX[2] * w), int(TAG_BOX[3] * h))
        done = min(1.0, max(0.0, (t - TAG_FROM) / (TAG_UNTIL - TAG_FROM)))
        if done > 0:  # the tag grows left to right in two colours
            xe = x1 + int(done * (x2 - x1))
            img[y1 : (y1 + y2) // 2, x1:xe] = (200, 40, 230)
            img[(y1 + y2) // 2 : y2, x1:xe] = (40, 200, 240)
        boxes = []
        painting = TAG_FROM - 4 <= t < TAG_UNTIL + 3  # the painter stands at the tag's right
        if painting and (b := paste(img, painter, x2 + 25, y2 + 40, 150)) is not None:
            boxes.append(b)
        for start, cross, crop, foot, height, rightward in walkers:
            if start <= t < start + cross:
                a = (t - start) / cross
                cx = -60 + a * (w + 120) if rightward else w + 60 - a * (w + 120)
                if (b := paste(img, crop, cx, foot, height)) is not None:
                    boxes.append(b)
        frames.append(img)
        truth.append(boxes)
    return frames, truth


def run(frames: list[np.ndarray], truth: list[list] | None = None, veto: bool = False) -> list[dict]:
    det = SceneChangeDetector()
    tamper = TamperDetector() if veto else None
    out = []
    for i, frame in enumerate(frames):
        t = i / FPS
        quiet = True
        if tamper is not None:
            state = tamper.observe(frame, t)
            quiet = state.incident is None and state.candidate is None
        c = det.observe(frame, t, quiet, truth[i] if truth else ())
        if c is not None:
            out.append({"t": round(t, 1), "subtype": c.subtype, "region": [round(v, 2) for v in c.region]})
    return out


def motion_seconds_on_tag(frames: list[np.ndarray]) -> float | None:
    """Seconds after the painting stopped until the motion stage no longer reports a box on the tag."""
    det = MotionDetector()
    last = None
    for i, frame in enumerate(frames):
        t = i / FPS
        boxes = det.detect(frame).boxes
        on_tag = any(b[0] < TAG_BOX[2] and TAG_BOX[0] < b[2] and b[1] < TAG_BOX[3] and TAG_BOX[1] < b[3]
                     for b in boxes)
        if on_tag and t >= TAG_UNTIL:
            last = t
    return None if last is None else round(max(0.0, last - TAG_UNTIL + 1 / FPS), 1)


def main() -> None:
    if not REAL.is_dir():
        raise SystemExit(f"no real footage at {REAL}")
    road, road_fps = read(REAL / "empty_road.avi")
    street, street_fps = read(REAL / "mot17_13_street_from_bus.avi")
    result: dict = {}
    result["empty_road_60s"] = run(ping_pong(road, road_fps, 60.0))
    street10 = ping_pong(street, street_fps, len(street) / street_fps)[: int(len(street) / street_fps * FPS)]
    result["street_alone"] = run(street10)
    result["street_with_tamper_veto"] = run(street10, veto=True)
    frames, truth = composite(ping_pong(road[:STILL_FRAMES], road_fps, 90.0), person_crops())
    for boxes in (False, True):
        found = run(frames, truth if boxes else None)
        key = "composite_with_person_boxes" if boxes else "composite_motion_only"
        tag = [f for f in found if f["region"][0] < TAG_BOX[2] and TAG_BOX[0] < f["region"][2]
               and f["region"][1] < TAG_BOX[3] and TAG_BOX[1] < f["region"][3]]
        result[key] = {"reports": found,
                       "tag_after_painting_s": round(tag[0]["t"] - TAG_UNTIL, 1) if tag else None,
                       "other_reports": len(found) - len(tag)}
    result["composite_motion_on_tag_after_painting_s"] = motion_seconds_on_tag(frames)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
