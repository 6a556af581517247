"""Per-frame cost of a node's whole CameraPipeline, on generated 640x480 scenes.

`CameraPipeline.process` is everything a camera costs per frame: privacy masks,
motion, the person detector on the motion crops (at most detector.max_fps),
tracker, rules, tamper, lasting scene change, and anonymised snapshots for the
events that want one. Two scenes, rendered first (vaktpost.scenes), then only
`process` is timed:

* quiet: the static schoolyard backdrop with sensor noise, nobody in it;
* busy:  photographed people (scikit-image's astronaut and cameraman) walking
  across a zone armed all day, with intrusion snapshots switched on, so the
  anonymiser (SSD person detection + CenterFace + JPEG) runs at each intrusion
  start.

Each scene is run with the configured detector (kind ssd) and with kind none.
Reported per run: mean, p50, p95, max ms/frame (the first frame, which seeds
the motion background, is left out of the timings), the same split by what
happened in the frame, detector passes and model inferences, events and
messages emitted, snapshots made. Models are loaded and warmed up before any
timing, as on a node that has been running.

Then benchmarks/detector.py (onnxruntime versus OpenCV DNN on the same ONNX
file) runs in-process and its JSON is embedded under "detector_latency".

Prints one JSON object. Needs scikit-image for the photographs.

    .venv/bin/python benchmarks/pipeline.py [--frames 200] [--fps 5] [--threads 2] [--detector-runs 50]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import io
import itertools
import json
import os
import platform
import statistics
import sys
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable without an install

import cv2
import numpy as np

from vaktpost.edge.config import Camera, parse
from vaktpost.edge.detectors import Detection, Detector, NullDetector
from vaktpost.edge.detectors.factory import create_detector
from vaktpost.edge.evidence.anonymise import Anonymiser
from vaktpost.edge.evidence.snapshot import make_snapshot
from vaktpost.edge.pipeline import CameraPipeline
from vaktpost.edge.privacy.masks import PrivacyMasker
from vaktpost.scenes import Figure, Scene, render_frame

WIDTH, HEIGHT = 640, 480
TZ = "Europe/Stockholm"
START = datetime(2026, 3, 3, 22, 0, 0, tzinfo=ZoneInfo(TZ))  # a Tuesday night; the zone is armed all day anyway
ZONE = [[0.0, 0.62], [1.0, 0.62], [1.0, 1.0], [0.0, 1.0]]  # the yard: the ground in front of the building
PRIVACY_MASK = [[0.0, 0.0], [0.12, 0.0], [0.12, 0.14], [0.0, 0.14]]  # a neighbour's window, top left


def config(kind: str, threads: int) -> Camera:
    """The camera both scenes run under: one zone armed around the clock, intrusion snapshots on."""
    cfg = parse({
        "node": {"id": "bench", "timezone": TZ},
        "cameras": [{
            "id": "yard",
            "source": "bench.avi",
            "fps": 5,
            "privacy_masks": [PRIVACY_MASK],
            "zones": [{
                "name": "yard",
                "polygon": ZONE,
                "armed": [{"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                           "from": "00:00", "to": "24:00"}],
            }],
            "detector": {"kind": kind, "threads": threads},
            "snapshots": {"intrusion": "anonymised"},  # scene_change and tamper are by default
        }],
    }, source="benchmark config")
    return cfg.cameras[0]


def scenes(duration_s: float) -> dict[str, Scene]:
    """quiet: backdrop + noise; busy: four photographed people crossing the armed yard in turn (overlapping)."""
    base = Scene(width=WIDTH, height=HEIGHT, fps=10.0, duration_s=duration_s, seed=3, noise_sigma=3.0,
                 backdrop="schoolyard")
    d = duration_s
    walkers = [  # (start, end) as fractions of the clip, path, kind
        ((0.03, 0.33), [(-0.1, 0.92), (1.1, 0.88)], "astronaut"),
        ((0.18, 0.50), [(1.1, 0.80), (-0.1, 0.84)], "cameraman"),
        ((0.45, 0.75), [(-0.1, 0.97), (1.1, 0.93)], "cameraman"),
        ((0.62, 0.95), [(1.1, 0.86), (-0.1, 0.82)], "astronaut"),
    ]
    figures = [Figure(a * d, b * d, path, height=0.42, kind=kind, name=f"{kind}-{i}")
               for i, ((a, b), path, kind) in enumerate(walkers)]
    return {"quiet": base, "busy": dataclasses.replace(base, figures=figures)}


class CountingDetector:
    """The real detector, counting its inferences (one per crop or whole frame)."""

    def __init__(self, inner: Detector) -> None:
        self.inner = inner
        self.calls = 0
        self.ms: list[float] = []

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        self.calls += 1
        t0 = time.perf_counter()
        try:
            return self.inner.detect(image_bgr)
        finally:
            self.ms.append((time.perf_counter() - t0) * 1e3)


class CountingAnonymiser(Anonymiser):
    """An Anonymiser whose `find` (the model part of every snapshot) is counted; built from a loaded one."""

    finds = 0

    @classmethod
    def wrap(cls, loaded: Anonymiser) -> CountingAnonymiser:
        out = cls.__new__(cls)
        out.__dict__.update(loaded.__dict__)
        return out

    def find(self, frame_masked, person_boxes=()):
        CountingAnonymiser.finds += 1
        return super().find(frame_masked, person_boxes)


def stats(ms: list[float]) -> dict:
    if not ms:
        return {"frames": 0}
    s = sorted(ms)

    def pick(q: float) -> float:
        return s[min(len(s) - 1, round(q * (len(s) - 1)))]

    return {"frames": len(s), "mean_ms": round(statistics.fmean(s), 2), "p50_ms": round(pick(0.5), 2),
            "p95_ms": round(pick(0.95), 2), "max_ms": round(s[-1], 2)}


def run(camera: Camera, frames: list[np.ndarray], times: list[datetime], detector: Detector,
        anonymiser: Anonymiser) -> dict:
    seq = itertools.count(1)
    counting = CountingDetector(detector)
    anon = CountingAnonymiser.wrap(anonymiser)
    CountingAnonymiser.finds = 0
    pipe = CameraPipeline("bench", camera, lambda: next(seq), TZ, detector=counting, anonymiser=anon)
    passes = 0
    all_ms: list[float] = []
    kinds: dict[str, list[float]] = {"detector_ran": [], "snapshot_made": [], "neither": []}
    updates = []
    for i, (frame, t) in enumerate(zip(frames, times)):
        calls, finds = counting.calls, CountingAnonymiser.finds
        t0 = time.perf_counter()
        ups = pipe.process(frame, t)
        ms = (time.perf_counter() - t0) * 1e3
        updates += ups
        ran = counting.calls > calls
        passes += ran
        if i == 0:
            continue  # seeds the motion background and the tamper/scene references
        all_ms.append(ms)
        if CountingAnonymiser.finds > finds:
            kinds["snapshot_made"].append(ms)
        elif ran:
            kinds["detector_ran"].append(ms)
        else:
            kinds["neither"].append(ms)
    tail = pipe.finish()  # events still running at the end of the clip: closed, untimed
    msgs = updates + tail
    events: dict[str, set] = {}
    for u in msgs:
        key = u.event.type.value + (f"/{u.event.subtype}" if u.event.subtype else "")
        events.setdefault(key, set()).add(u.event.event_id)
    return {
        **stats(all_ms),
        "by_frame_kind": {k: stats(v) for k, v in kinds.items()},
        "detector_passes": passes,  # frames on which the RegionDetector looked
        "detector_inferences": counting.calls,  # model runs: one per crop (or the whole frame)
        "detector_inference_ms": {k: v for k, v in stats(counting.ms).items() if k != "frames"},
        "messages_emitted": len(updates),
        "messages_at_finish": len(tail),
        "phases": dict(sorted(Counter(u.phase for u in msgs).items())),
        "events": {k: len(v) for k, v in sorted(events.items())},
        "snapshots_made": sum(1 for u in msgs if u.snapshot is not None),
        "snapshot_bytes_mean": round(statistics.fmean(b) if (b := [len(u.snapshot) for u in msgs if u.snapshot])
                                     else 0),
        "snapshots_withheld": len({u.event.event_id for u in msgs if u.event.snapshot == "withheld"}),
        "anonymiser_runs": CountingAnonymiser.finds,
    }


def detector_latency(runs: int, threads: int) -> dict:
    """benchmarks/detector.py's report, run in this process (its main() prints one JSON object)."""
    path = Path(__file__).with_name("detector.py")
    spec = importlib.util.spec_from_file_location("vaktpost_bench_detector", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    argv, out = sys.argv, io.StringIO()
    sys.argv = [str(path), "--runs", str(runs), "--threads", str(threads)]
    try:
        with contextlib.redirect_stdout(out):
            mod.main()
    finally:
        sys.argv = argv
    return json.loads(out.getvalue())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=200, help="frames per scene (default 200)")
    ap.add_argument("--fps", type=float, default=5.0, help="frame rate of the timestamps (default 5, the node's)")
    ap.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads of the camera's detector "
                    "and of benchmarks/detector.py (default 2, the config default)")
    ap.add_argument("--opencv-threads", type=int, default=None,
                    help="OpenCV threads (default: OpenCV's own choice, as on the node, which does not set it)")
    ap.add_argument("--detector-runs", type=int, default=50,
                    help="--runs for benchmarks/detector.py (default 50, its own)")
    args = ap.parse_args()
    if args.opencv_threads is not None:
        cv2.setNumThreads(args.opencv_threads)
    wall0 = time.perf_counter()

    import onnxruntime as ort

    duration = args.frames / args.fps
    offsets = [i / args.fps for i in range(args.frames)]
    times = [START + timedelta(seconds=s) for s in offsets]
    t0 = time.perf_counter()
    rendered = {name: [render_frame(sc, s) for s in offsets] for name, sc in scenes(duration).items()}
    render_s = time.perf_counter() - t0

    # Models load once and are warmed up, as on a running node; each run gets a fresh pipeline.
    ssd_camera = config("ssd", args.threads)
    t0 = time.perf_counter()
    ssd = create_detector(ssd_camera.detector)
    anonymiser = Anonymiser.create(ssd_camera.snapshot)
    load_s = time.perf_counter() - t0
    warm = rendered["busy"][len(offsets) // 4]
    ssd.detect(warm)
    ssd.detect(warm[100:400, 100:400])
    if anonymiser.unavailable is None:
        make_snapshot(anonymiser.with_masker(PrivacyMasker([PRIVACY_MASK])), warm, [], ssd_camera.snapshot)

    report: dict = {
        "benchmark": "pipeline",
        "machine": {
            "arch": platform.machine(),
            "python": platform.python_version(),
            "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "cpu_count": os.cpu_count(),
            "onnxruntime_threads": {"detector_intra_op": ssd_camera.detector.threads, "inter_op": 1,
                                    "anonymiser_intra_op": ssd_camera.snapshot.threads},
            "opencv_threads": cv2.getNumThreads(),
        },
        "versions": {"onnxruntime": ort.__version__, "opencv": cv2.__version__, "numpy": np.__version__},
        "setup": {
            "resolution": f"{WIDTH}x{HEIGHT}",
            "frames_per_scene": args.frames,
            "timestamps_fps": args.fps,
            "clip_seconds": duration,
            "timed_frames": args.frames - 1,
            "detector": {"kind": "ssd", "model": ssd_camera.detector.model,
                         "max_fps": ssd_camera.detector.max_fps},
            "anonymiser": "ok" if anonymiser.unavailable is None else f"unavailable: {anonymiser.unavailable}",
            "snapshots_anonymised_for": sorted(t for t, m in ssd_camera.snapshots.model_dump().items()
                                               if m == "anonymised"),
            "zone": "yard, lower 38 % of the frame, armed all day",
            "scenes": {"quiet": "schoolyard backdrop, noise sigma 3, nobody",
                       "busy": "4 photo people (astronaut, cameraman) 0.42 of the frame tall crossing the "
                               "armed yard, up to 2 at once"},
            "render_seconds": round(render_s, 2),
            "model_load_seconds": round(load_s, 2),
        },
        "scenes": {},
    }
    none_camera = config("none", args.threads)
    for name, frames in rendered.items():
        report["scenes"][name] = {
            "detector_ssd": run(ssd_camera, frames, times, ssd, anonymiser),
            "detector_none": run(none_camera, frames, times, NullDetector(), anonymiser),
        }
    report["detector_latency"] = detector_latency(args.detector_runs, args.threads)
    report["wall_seconds"] = round(time.perf_counter() - wall0, 1)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
