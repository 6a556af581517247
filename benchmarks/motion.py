"""Per-frame cost of MotionDetector versus OpenCV's MOG2, on generated scene frames.

Frames are rendered first (the schoolyard demo scene: walking figures, a
lights-on step, noise) and only detection is timed. Prints one JSON object.

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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable without an install

import cv2
import numpy as np

from vaktpost.edge.analysis.imageops import to_analysis_gray
from vaktpost.edge.analysis.motion import MotionDetector
from vaktpost.edge.config import MotionSection
from vaktpost.edge.privacy.masks import PrivacyMasker
from vaktpost.scenes import demo_scenes, render_frame


def render(width: int, height: int, n: int) -> tuple[list[np.ndarray], list[float]]:
    """n frames spread over the whole scene, so each run sees quiet, walking and the lights step."""
    scene = dataclasses.replace(demo_scenes()["schoolyard"], width=width, height=height)
    times = [scene.duration_s * i / n for i in range(n)]
    return [render_frame(scene, t) for t in times], times


def timed(step, frames: list[np.ndarray], keep=lambda result: result) -> tuple[dict, list]:
    """Run step(frame) over all frames; mean/p95 ms per frame, and keep(result) of each (untimed).

    Keeping hundreds of frame-sized results would time the kernel's page
    faults, not the step, so `keep` reduces them first.
    """
    out, ms = [], []
    for f in frames:
        t0 = time.perf_counter()
        r = step(f)
        ms.append((time.perf_counter() - t0) * 1e3)
        out.append(keep(r))
    ms_sorted = sorted(ms[1:])  # the first call seeds models and allocates
    return {
        "ms_per_frame": round(statistics.fmean(ms_sorted), 3),
        "p95_ms": round(ms_sorted[int(0.95 * (len(ms_sorted) - 1))], 3),
    }, out


def bench_resolution(width: int, height: int, n: int) -> dict:
    frames, _ = render(width, height, n)
    settings = MotionSection()
    res: dict = {"frames": n}

    det = MotionDetector(settings)
    stats, results = timed(det.detect, frames)
    res["vaktpost_motion"] = {
        **stats,
        "analysis_width": settings.width,
        "frames_with_boxes": sum(1 for r in results if r.boxes),
        "illumination_frames": sum(1 for r in results if r.illumination_change),
    }

    def fg_fraction(mask: np.ndarray) -> float:
        return float(np.count_nonzero(mask == 255)) / mask.size

    def over_half(fractions: list[float]) -> dict:
        # How MOG2 sees the lights-on step: frames where most of the picture is "foreground".
        return {"frames_over_half_foreground": sum(1 for f in fractions[1:] if f > 0.5)}

    mog = cv2.createBackgroundSubtractorMOG2(detectShadows=False)
    stats, fr = timed(lambda f: mog.apply(to_analysis_gray(f, settings.width, blur=0)), frames, fg_fraction)
    res["mog2_analysis_width"] = {**stats, "analysis_width": settings.width, **over_half(fr)}

    mog_full = cv2.createBackgroundSubtractorMOG2(detectShadows=False)
    stats, fr = timed(mog_full.apply, frames, fg_fraction)
    res["mog2_full_resolution"] = {**stats, **over_half(fr)}

    masker = PrivacyMasker([[[0.0, 0.0], [0.3, 0.0], [0.3, 0.4], [0.0, 0.4]], [[0.6, 0.5], [0.9, 0.45], [0.8, 0.9]]])
    stats, _ = timed(masker.apply, frames, keep=lambda _: None)
    res["privacy_masker"] = stats
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300, help="frames per resolution (default 300)")
    ap.add_argument("--threads", type=int, default=1,
                    help="OpenCV threads (default 1: one core per camera, comparable across machines)")
    args = ap.parse_args()
    cv2.setNumThreads(args.threads)
    report = {
        "benchmark": "motion",
        "machine": platform.machine(),
        "python": platform.python_version(),
        "opencv": cv2.__version__,
        "numpy": np.__version__,
        "opencv_threads": cv2.getNumThreads(),
        "scene": "schoolyard",
        "resolutions": {
            "640x480": bench_resolution(640, 480, args.frames),
            "1280x720": bench_resolution(1280, 720, args.frames),
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
