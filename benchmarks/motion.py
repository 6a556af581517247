"""Motion stage versus OpenCV's MOG2: CPU per frame, and how good the boxes are.

Frames of the demo scenes (vaktpost.scenes: schoolyard with walking figures
and a lights-on step, park with a lingering walker and daylight drift) are
rendered first and only detection is timed, as CPU time of the calling thread
(OpenCV runs single-threaded here), so other jobs on the machine do not
inflate it; wall-clock ms are reported too. Both run twice in the same run:

* stage: on the analysis copy of each frame (grayscale, downscaled to the
  analysis width, `to_analysis_gray(frame, width, blur=0)`), made beforehand,
  as a node shares it between its stages; `ratio_to_mog2` compares the motion
  stage (its own blur included) with MOG2 on the same input;
* with_downscale: from the camera frame, each making its own analysis copy;
  the conversion of the full frame is the same for both and dominates at
  high resolutions (`ratio_to_mog2_with_downscale`).

Box quality is scored against the scenes' known masks: each figure is also
rendered alone without noise and compared with the empty scene, which gives
its exact pixels. Per frame (the seeding first frame left out):

* a figure counts (is a truth region) when its box covers at least the
  detector's `min_area`; it is *found* when the motion boxes cover at least
  half of its pixels — recall = found / truth regions;
* a motion box is *correct* when at least half of its area lies in the boxes
  around the figures' pixels — precision = correct / motion boxes.

Prints one JSON object.

    .venv/bin/python benchmarks/motion.py [--frames 300] [--threads 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable without an install

import cv2
import numpy as np

from vaktpost.edge.analysis.imageops import to_analysis_gray
from vaktpost.edge.analysis.motion import MotionDetector
from vaktpost.edge.config import MotionSection
from vaktpost.edge.privacy.masks import PrivacyMasker
from vaktpost.scenes import Scene, demo_scenes, render_frame

PixelBox = tuple[int, int, int, int]


def render(name: str, width: int, height: int, n: int) -> tuple[Scene, list[float], list[np.ndarray]]:
    """n frames spread over the whole scene, so each run sees quiet, walking and the lights step."""
    scene = dataclasses.replace(demo_scenes()[name], width=width, height=height)
    times = [scene.duration_s * i / n for i in range(n)]
    return scene, times, [render_frame(scene, t) for t in times]


def truth_masks(scene: Scene, t: float) -> list[np.ndarray]:
    """bool mask of each figure present at t: where it alone changes the noise-free empty scene."""
    quiet = dataclasses.replace(scene, noise_sigma=0.0, rain=0.0)
    empty = render_frame(dataclasses.replace(quiet, figures=[]), t).astype(np.int16)
    out = []
    for fig in scene.figures:
        if fig.present(t):
            alone = render_frame(dataclasses.replace(quiet, figures=[fig]), t).astype(np.int16)
            out.append(np.abs(alone - empty).max(axis=2) > 8)  # antialiased fringes left out
    return out


def bounding(mask: np.ndarray) -> PixelBox | None:
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def to_pixels(box: tuple[float, float, float, float], w: int, h: int) -> PixelBox:
    return round(box[0] * w), round(box[1] * h), round(box[2] * w), round(box[3] * h)


def region_scores(results: list, truths: list[list[np.ndarray]], min_area: float) -> dict:
    """Region-level precision and recall of motion boxes against the figures' masks."""
    regions = found = boxes = correct = 0
    for result, masks in zip(results[1:], truths[1:]):  # frame 0 seeds the background
        if not masks and not result.boxes:
            continue
        h, w = masks[0].shape if masks else (1, 1)
        covered = np.zeros((h, w), bool)
        px = [to_pixels(b, w, h) for b in result.boxes]
        for x1, y1, x2, y2 in px:
            covered[y1:y2, x1:x2] = True
        truth_boxes = []
        for m in masks:
            tb = bounding(m)
            if tb is None or (tb[2] - tb[0]) * (tb[3] - tb[1]) < min_area * h * w:
                continue
            truth_boxes.append(tb)
            regions += 1
            found += int(np.count_nonzero(covered & m) >= 0.5 * np.count_nonzero(m))
        on_truth = np.zeros((h, w), bool)
        for x1, y1, x2, y2 in truth_boxes:
            on_truth[y1:y2, x1:x2] = True
        for x1, y1, x2, y2 in px:
            boxes += 1
            area = max(1, (x2 - x1) * (y2 - y1))
            correct += int(np.count_nonzero(on_truth[y1:y2, x1:x2]) >= 0.5 * area)
    return {
        "truth_regions": regions,
        "found": found,
        "recall": round(found / regions, 3) if regions else None,
        "motion_boxes": boxes,
        "correct_boxes": correct,
        "precision": round(correct / boxes, 3) if boxes else None,
    }


Step = Callable[[np.ndarray], Any]
_BLOCK = 20


def timed(steps: dict[str, tuple[Step, list[np.ndarray]]]) -> tuple[dict[str, dict], dict[str, list]]:
    """Run each step over its frames, interleaved in blocks of `_BLOCK` frames so that all of
    them see the same load on a shared machine (blocks, not single frames: each step keeps
    its caches warm as on a node): CPU and wall ms per frame, and each result.

    Results are kept, so steps must return something small (MOG2's masks are reduced to
    their foreground share by the caller's step).
    """
    n = len(next(iter(steps.values()))[1])
    cpu: dict[str, list[float]] = {k: [] for k in steps}
    wall: dict[str, list[float]] = {k: [] for k in steps}
    out: dict[str, list] = {k: [] for k in steps}
    for block in range(0, n, _BLOCK):
        for name, (step, frames) in steps.items():
            for f in frames[block : block + _BLOCK]:
                c0, w0 = time.thread_time(), time.perf_counter()
                r = step(f)
                cpu[name].append((time.thread_time() - c0) * 1e3)
                wall[name].append((time.perf_counter() - w0) * 1e3)
                out[name].append(r)

    def summary(ms: list[float]) -> tuple[float, float]:
        s = sorted(ms[1:])  # the first call seeds models and allocates
        return round(statistics.fmean(s), 3), round(s[int(0.95 * (len(s) - 1))], 3)

    stats = {}
    for name in steps:
        cpu_mean, cpu_p95 = summary(cpu[name])
        wall_mean, wall_p95 = summary(wall[name])
        stats[name] = {"cpu_ms_per_frame": cpu_mean, "cpu_p95_ms": cpu_p95,
                       "ms_per_frame": wall_mean, "p95_ms": wall_p95}
    return stats, out


def fg_fraction(mask: np.ndarray) -> float:
    return float(np.count_nonzero(mask == 255)) / mask.size


def over_half(fractions: list[float]) -> dict:
    # How MOG2 sees the lights-on step: frames where most of the picture is "foreground".
    return {"frames_over_half_foreground": sum(1 for f in fractions[1:] if f > 0.5)}


def bench(name: str, width: int, height: int, n: int, quality: bool) -> dict:
    scene, times, frames = render(name, width, height, n)
    settings = MotionSection()
    analysis = [to_analysis_gray(f, settings.width, blur=0) for f in frames]
    det, det_whole = MotionDetector(settings), MotionDetector(settings)
    mog, mog_whole, mog_full = (cv2.createBackgroundSubtractorMOG2(detectShadows=False) for _ in range(3))
    masker = PrivacyMasker([[[0.0, 0.0], [0.3, 0.0], [0.3, 0.4], [0.0, 0.4]], [[0.6, 0.5], [0.9, 0.45], [0.8, 0.9]]])
    stats, out = timed({
        "motion": (det.detect_analysis, analysis),
        "mog2": (lambda a: fg_fraction(mog.apply(a)), analysis),
        "motion_with_downscale": (lambda f: det_whole.detect(f).motion, frames),
        "mog2_with_downscale": (lambda f: mog_whole.apply(to_analysis_gray(f, settings.width, blur=0)) is None,
                                frames),
        "mog2_full_resolution": (lambda f: fg_fraction(mog_full.apply(f)), frames),
        "privacy_masker": (lambda f: masker.apply(f) is None, frames),
    })
    results = out["motion"]
    motion = {
        **stats["motion"],
        "with_downscale": stats["motion_with_downscale"],
        "analysis_width": settings.width,
        "frames_with_boxes": sum(1 for r in results if r.boxes),
        "illumination_frames": sum(1 for r in results if r.illumination_change),
        "ratio_to_mog2": round(stats["motion"]["cpu_ms_per_frame"] / stats["mog2"]["cpu_ms_per_frame"], 3),
        "ratio_to_mog2_with_downscale": round(stats["motion_with_downscale"]["cpu_ms_per_frame"]
                                              / stats["mog2_with_downscale"]["cpu_ms_per_frame"], 3),
    }
    if quality:
        motion["boxes_vs_truth"] = region_scores(results, [truth_masks(scene, t) for t in times], settings.min_area)
    return {
        "frames": n,
        "vaktpost_motion": motion,
        "mog2_analysis_width": {**stats["mog2"], "with_downscale": stats["mog2_with_downscale"],
                                "analysis_width": settings.width, **over_half(out["mog2"])},
        "mog2_full_resolution": {**stats["mog2_full_resolution"], **over_half(out["mog2_full_resolution"])},
        "privacy_masker": stats["privacy_masker"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300, help="frames per scene and resolution (default 300)")
    ap.add_argument("--threads", type=int, default=1,
                    help="OpenCV threads (default 1: one core per camera, comparable across machines)")
    args = ap.parse_args()
    cv2.setNumThreads(args.threads)
    report: dict = {
        "benchmark": "motion",
        "machine": platform.machine(),
        "python": platform.python_version(),
        "opencv": cv2.__version__,
        "numpy": np.__version__,
        "opencv_threads": cv2.getNumThreads(),
        "scenes": {},
    }
    for name in ("schoolyard", "park"):
        report["scenes"][name] = {
            "640x480": bench(name, 640, 480, args.frames, quality=True),
            "1280x720": bench(name, 1280, 720, args.frames, quality=name == "schoolyard"),
        }
    ratios = [r["vaktpost_motion"]["ratio_to_mog2"] for s in report["scenes"].values() for r in s.values()]
    report["ratio_to_mog2_max"] = max(ratios)
    report["ratio_to_mog2_with_downscale_max"] = max(
        r["vaktpost_motion"]["ratio_to_mog2_with_downscale"] for s in report["scenes"].values() for r in s.values())
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
