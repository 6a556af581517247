"""Cost of one anonymised evidence snapshot, end to end and per step.

For a 1280x720 and a 640x480 frame (a synthetic schoolyard with two
photographed people, vaktpost.scenes), times over --runs calls after one
warm-up call each, mean and p95 in ms:

* snapshot: vaktpost.edge.evidence.snapshot.make_snapshot, the whole path: privacy masks,
  person detection (whole frame + square tiles), face detection (CenterFace
  at full resolution), solid fill, downscale to `width`, fill again, JPEG
  encode and strip;
* person_detection, face_detection, fill_downscale_encode: those steps alone.

Prints one JSON object. Needs scikit-image for the photographs.

    .venv/bin/python benchmarks/anonymise.py [--runs 10] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable without an install

import numpy as np
from timing import timed

from vaktpost.edge.config.snapshot import SnapshotSettings
from vaktpost.edge.evidence.anonymise import Anonymiser, detect_people
from vaktpost.edge.evidence.snapshot import downscale, encode_jpeg, make_snapshot
from vaktpost.edge.privacy.masks import PrivacyMasker
from vaktpost.scenes import Figure, Scene, render_frame

MASK = [[0.05, 0.05], [0.35, 0.08], [0.15, 0.45]]


def frame(w: int, h: int) -> np.ndarray:
    scene = Scene(width=w, height=h, seed=1, figures=[
        Figure(0, 10, [(0.3, 0.95)], height=0.6, kind="astronaut"),
        Figure(0, 10, [(0.72, 0.9)], height=0.5, kind="cameraman"),
    ])
    return render_frame(scene, 1.0)


def bench_size(an: Anonymiser, settings: SnapshotSettings, img: np.ndarray, runs: int) -> dict:
    cover = an.find(img, [])
    jpeg = make_snapshot(an, img, [], settings)

    def fill_downscale_encode() -> bytes:
        small = downscale(an.paint(img, cover), settings.width)
        return encode_jpeg(an.paint(small, cover), settings.width, settings.quality)

    return {
        "snapshot": timed(lambda: make_snapshot(an, img, [], settings), runs, digits=1),
        "person_detection": timed(lambda: detect_people(an.person_detector, img), runs, digits=1),
        "face_detection": timed(lambda: an.faces.detect(img, settings.face_threshold), runs, digits=1),
        "fill_downscale_encode": timed(fill_downscale_encode, runs, digits=1),
        "found": {"people": len(cover.people), "faces": len(cover.faces)},
        "jpeg_bytes": len(jpeg),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    settings = SnapshotSettings(threads=args.threads)
    masker = PrivacyMasker([MASK])
    an = Anonymiser(settings, masker=masker)
    results: dict[str, Any] = {}
    for w, h in ((1280, 720), (640, 480)):
        results[f"{w}x{h}"] = bench_size(an, settings, masker.apply(frame(w, h)), args.runs)
    print(json.dumps({
        "runs": args.runs,
        "threads": args.threads,
        "settings": {"width": settings.width, "quality": settings.quality, "face_max_side": settings.face_max_side},
        "cpu": platform.processor() or platform.machine(),
        "cpus_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "results": results,
    }, indent=2))


if __name__ == "__main__":
    main()
