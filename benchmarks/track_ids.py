"""Id switches of the person tracker on real footage, before and after a change.

Two sets of real scenes, the same detections fed to each tracker:

* street: the real clip ../shared/data/real/mot17_13_street_from_bus.avi, frames
  340-425 at 5 fps, with two women who cross annotated by hand
  (tests/data/street_ids.json);
* composites: pairs of real person crops (tests/data/person_crops.json) crossing
  each other at several heights and speeds on frames of the real
  ../shared/data/real/empty_road.avi, at the detector rates 5 and 2 per second.

Detections: SSDLite (the node's default model) over three overlapping 360 px
tiles of the 640x360 frame; a box cut off by a tile's inner edge is dropped (the
person is whole in a neighbouring tile), duplicates merged by NMS.

At each annotated frame, annotated people and the tracker's reported tracks are
paired by optimal assignment at IoU >= 0.3; an *id switch* is an annotated person
paired with a different track id than last time. Also reported: the share of
annotated boxes paired with a track (coverage), and how many people had the same
track id at their first and last pairing. People mostly hidden behind another (half
their box covered by someone whose feet are lower, nearer the camera) are not scored
in that frame, as MOT evaluations ignore heavily occluded boxes: nobody can say whom
the detector saw.

`--before REV` also runs the tracker of git revision REV (its
edge/analysis/track.py, with its defaults) on the same detections. Prints JSON.

    .venv/bin/python benchmarks/track_ids.py [--before REV]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable without an install
sys.path.insert(0, str(ROOT / "tests"))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from real_composites import REAL, Walker, clip_frames, paste  # noqa: E402
from scipy.optimize import linear_sum_assignment  # noqa: E402

from vaktpost.edge.analysis.track import Tracker, hidden  # noqa: E402
from vaktpost.edge.config.detectors import DetectorSettings  # noqa: E402
from vaktpost.edge.detectors import Detection  # noqa: E402
from vaktpost.edge.detectors.factory import create_detector  # noqa: E402
from vaktpost.edge.detectors.regions import detect_in_crops, merge_detections, to_frame  # noqa: E402
from vaktpost.edge.geometry import iou  # noqa: E402

W, H = 640, 360
TILES = [(x, 0, x + 360, 360) for x in (0, 140, 280)]  # 220 px overlap: a person is whole in one of them
MIN_IOU = 0.3
EDGE = 2  # px: a box this close to a tile's inner edge is a cut-off person (whole in another tile)


def detections(detector, frame: np.ndarray) -> list:
    found = []
    for tile in TILES:
        x1, y1, x2, y2 = tile
        for d in detect_in_crops(frame[y1:y2, x1:x2], [(0, 0, x2 - x1, y2 - y1)], detector, 0.45):
            bx1, bx2 = d.box[0] * (x2 - x1), d.box[2] * (x2 - x1)
            if d.label != "person" or (x1 > 0 and bx1 < EDGE) or (x2 < W and bx2 > x2 - x1 - EDGE):
                continue
            found.append(Detection(to_frame(d.box, tile, W, H), d.score, d.label))
    return merge_detections(found, 0.45)


def norm(b) -> tuple[float, float, float, float]:
    return (b[0] / W, b[1] / H, b[2] / W, b[3] / H)


def visible(truth: dict[str, tuple]) -> dict[str, tuple]:
    """The annotated people not mostly hidden behind another (MOT evaluations ignore those too)."""
    names = sorted(truth)
    return {n: truth[n] for n, behind in zip(names, hidden([truth[n] for n in names]), strict=True) if not behind}


def score(runs: list[tuple[float, list, dict[str, tuple]]], make_tracker) -> dict[str, Any]:
    """runs: (t, detections, {person: normalised box} or {} when not annotated). Id switches and coverage
    over the visible annotated people; `kept`: people whose first and last track ids are the same."""
    tracker = make_tracker()
    last: dict[str, int] = {}
    first: dict[str, int] = {}
    switches = matched = total = 0
    for t, dets, truth in runs:
        tracks = tracker(dets, t)
        truth = visible(truth)
        if not truth:
            continue
        names = sorted(truth)
        total += len(names)
        if not tracks:
            continue
        cost = np.array([[1 - iou(truth[n], tr.box) for tr in tracks] for n in names])
        for r, c in zip(*linear_sum_assignment(cost), strict=True):
            if 1 - cost[r, c] < MIN_IOU:
                continue
            matched += 1
            name, tid = names[r], tracks[c].id
            if name in last and last[name] != tid:
                switches += 1
            last[name] = tid
            first.setdefault(name, tid)
    kept = sum(first[n] == last[n] for n in first)
    return {"id_switches": switches, "coverage": round(matched / max(total, 1), 3), "annotated_boxes": total,
            "kept": kept, "people": len({n for _, _, truth in runs for n in truth})}


def street(detector) -> list:
    truth = json.loads((ROOT / "tests" / "data" / "street_ids.json").read_text())["frames"]
    cap = cv2.VideoCapture(str(REAL / "mot17_13_street_from_bus.avi"))
    runs = []
    for i in range(426):
        ok, frame = cap.read()
        if not ok:
            break
        if i >= 340 and i % 5 == 0:
            people = {k: norm(b) for k, b in truth.get(str(i), {}).items()}
            runs.append((i / 25.0, detections(detector, frame), people))
    return runs


def crossings() -> list[list[Walker]]:
    """Pairs crossing head-on at 3 heights and 2 walking speeds; the second is a little lower (nearer)."""
    out = []
    for k, (height, speed) in enumerate((h, v) for h in (70, 100, 140) for v in (60, 110)):
        a, b = (2 * k) % 12, (2 * k + 5) % 12
        y = 200 + height
        out.append([Walker(a, height, 60, y, speed), Walker(b, height + 6, 580, y + 8, -speed)])
    return out


def composites(detector, fps: float) -> list[list]:
    road = clip_frames("empty_road.avi")  # 30 fps
    step = round(30 / fps)
    scenes = []
    for walkers in crossings():
        seconds = 520 / abs(walkers[0].vx)
        runs = []
        for i in range(0, min(len(road), round(seconds * 30)), step):
            t = i / 30
            frame, boxes = paste(road[i], walkers, t)
            runs.append((t, detections(detector, frame), {f"p{j}": norm(walkers[j].box(t)) for j, _ in boxes}))
        scenes.append(runs)
    return scenes


def new_tracker():
    tr = Tracker()
    return lambda dets, t: tr.update(dets, t, aspect=W / H)


def old_tracker(rev: str):
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:edge/analysis/track.py"],
                            check=True, capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "track_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("track_before", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["track_before"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    # Its defaults at the time (TrackerSettings then: IoU, centre distance, N in a row).
    settings = SimpleNamespace(iou_threshold=0.3, max_center_distance=1.0, min_hits=3, max_missed=10,
                               max_age_seconds=3.0)

    def make():
        tr = module.Tracker(settings)
        return lambda dets, t: tr.update(dets, t)
    return make


def total(results: list[dict[str, Any]]) -> dict[str, Any]:
    boxes = sum(r["annotated_boxes"] for r in results)
    return {"id_switches": sum(r["id_switches"] for r in results),
            "people_with_one_id": f"{sum(r['kept'] for r in results)}/{sum(r['people'] for r in results)}",
            "coverage": round(sum(r["coverage"] * r["annotated_boxes"] for r in results) / max(boxes, 1), 3),
            "visible_boxes": boxes, "scenes": len(results)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", help="git revision whose tracker to compare with")
    args = ap.parse_args()
    if not (REAL / "photos").is_dir():
        sys.exit(f"real footage not found at {REAL}")
    trackers = {"after": new_tracker}
    if args.before:
        trackers[f"before ({args.before})"] = old_tracker(args.before)
    detector = create_detector(DetectorSettings(score_threshold=0.5, threads=1))
    data = {"street": [street(detector)], "composites_5fps": composites(detector, 5.0),
            "composites_2fps": composites(detector, 2.0)}
    out = {name: {key: total([score(runs, make) for runs in scenes]) for key, scenes in data.items()}
           for name, make in trackers.items()}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
