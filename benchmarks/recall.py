"""Person recall versus height and CPU, per detector layout, on real people pasted onto a real road.

Real person crops (tests/data/person_boxes.json, cut from ../shared/data/real/photos)
are scaled to known heights and pasted, three to a frame, onto 480x360 frames of
../shared/data/real/empty_road.avi. Each layout looks at every frame as the node would:

* ``whole``        the detector on the whole frame (the old busy-scene fallback);
* ``motion``       motion crops around each person (a quiet scene, one mover each);
* ``tiles-S``      every tile of the grid with tile_side S (a busy scene, the whole
                   frame swept; the node spreads these passes over runs, max_tiles a run).

A person is found when a detection (score >= --threshold) overlaps its box with IoU >= 0.4.
CPU is the process time of the detector passes (onnxruntime, --threads intra-op threads);
``cpu_s_per_s_at_1hz`` is what looking at the whole frame once a second costs.
Prints one JSON object (recall by height, recall for >= 30 px, passes per frame, CPU).

    .venv/bin/python benchmarks/recall.py [--threads 1] [--model ssdlite_mobilenet_v2_coco]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable without an install
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # real_people

import numpy as np
from real_people import FRAME_H, FRAME_W, backgrounds, paste, person_crops, real_dir, scaled

from vaktpost.edge.config.detectors import DetectorSettings
from vaktpost.edge.detectors import Detection, Detector
from vaktpost.edge.detectors.factory import create_detector
from vaktpost.edge.detectors.regions import Crop, detect_in_crops, plan_crops, tile_grid
from vaktpost.edge.geometry import iou

HEIGHTS = (20, 25, 30, 35, 40, 50, 65, 80, 100, 120)
PER_FRAME = 3
TILE_SIDES = (1.0, 0.75, 0.6, 0.5, 0.4)


class Timed:
    """A detector that counts its passes and their process time."""

    def __init__(self, inner: Detector) -> None:
        self.inner, self.passes, self.cpu = inner, 0, 0.0

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        t = time.process_time()
        out = self.inner.detect(image_bgr)
        self.cpu += time.process_time() - t
        self.passes += 1
        return out


def scenes(seed: int = 0) -> list[tuple[np.ndarray, list[tuple[int, tuple[float, float, float, float], bool]]]]:
    """Frames with PER_FRAME pasted people each: (frame, [(height, normalised box, full body)])."""
    real = real_dir()
    assert real is not None
    crops, bgs = person_crops(real), backgrounds(real, 4)
    rng = np.random.default_rng(seed)
    out = []
    for height in HEIGHTS:
        order = rng.permutation(len(crops))
        for k in range(0, len(order), PER_FRAME):
            frame = bgs[(k // PER_FRAME + height) % len(bgs)].copy()
            truth = []
            for slot, ci in enumerate(order[k : k + PER_FRAME]):
                person = scaled(crops[ci].image, height)
                h, w = person.shape[:2]
                lane = FRAME_W // PER_FRAME  # one person per vertical third: no overlaps
                x = int(rng.integers(slot * lane, max(slot * lane + 1, (slot + 1) * lane - w)))
                y = int(rng.integers(0, FRAME_H - h + 1))
                x1, y1, x2, y2 = paste(frame, person, min(x, FRAME_W - w), y)
                truth.append((height, (x1 / FRAME_W, y1 / FRAME_H, x2 / FRAME_W, y2 / FRAME_H), crops[ci].full))
            out.append((frame, truth))
    return out


def layouts() -> dict[str, Callable[[Sequence[tuple[float, float, float, float]]], list[Crop]]]:
    out: dict[str, Callable[[Sequence[tuple[float, float, float, float]]], list[Crop]]] = {
        "whole": lambda truth: [(0, 0, FRAME_W, FRAME_H)],
        "motion": lambda truth: plan_crops(truth, FRAME_W, FRAME_H),
    }
    for side in TILE_SIDES:
        grid = tile_grid(FRAME_W, FRAME_H, side, 0.25)
        out[f"tiles-{side}"] = lambda truth, grid=grid: grid  # type: ignore[misc]
    return out


def evaluate(detector: Detector, threshold: float) -> dict:
    frames = scenes()
    report: dict = {}
    for name, plan in layouts().items():
        timed = Timed(detector)
        found: dict[int, list[int]] = {h: [0, 0] for h in HEIGHTS}
        found_full: dict[int, list[int]] = {h: [0, 0] for h in HEIGHTS}
        passes_per_frame = 0
        for frame, truth in frames:
            crops = plan([b for _, b, _ in truth])
            passes_per_frame = len(crops) if name != "motion" else passes_per_frame + len(crops)
            dets = [d for d in detect_in_crops(frame, crops, timed, 0.45) if d.score >= threshold]
            for height, box, full in truth:
                hit = any(iou(d.box, box) >= 0.4 for d in dets)
                for table in (found, found_full) if full else (found,):
                    table[height][0] += hit
                    table[height][1] += 1
        ms_per_pass = 1000 * timed.cpu / max(timed.passes, 1)
        if name == "motion":
            passes_per_frame = round(timed.passes / len(frames), 2)
        big = [found[h] for h in HEIGHTS if h >= 30]
        report[name] = {
            "recall_by_height": {str(h): round(f / n, 3) for h, (f, n) in found.items()},
            "recall_full_body_by_height": {str(h): round(f / n, 3) if n else None for h, (f, n) in found_full.items()},
            "recall_30px_and_taller": round(sum(f for f, _ in big) / sum(n for _, n in big), 3),
            "people_30px_and_taller": sum(n for _, n in big),
            "passes_per_frame": passes_per_frame,
            "ms_per_pass": round(ms_per_pass, 2),
            "cpu_s_per_s_at_1hz": round(passes_per_frame * ms_per_pass / 1000, 4),
        }
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model", default="ssdlite_mobilenet_v2_coco")
    ap.add_argument("--threshold", type=float, default=0.5, help="score a detection needs (the node's default)")
    args = ap.parse_args()
    if real_dir() is None:
        sys.exit("recall.py: ../shared/data/real (empty_road.avi, photos/) is not there")
    det = create_detector(DetectorSettings(kind="ssd", model=args.model, threads=args.threads, score_threshold=0.05))
    res = {"machine": platform.machine(), "python": platform.python_version(), "model": args.model,
           "threads": args.threads, "threshold": args.threshold, "frame": [FRAME_W, FRAME_H],
           "layouts": evaluate(det, args.threshold)}
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
