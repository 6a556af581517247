"""Person-detector latency: onnxruntime versus OpenCV DNN on the same ONNX file.

Times, over --runs calls after one warm-up call each, mean and p95 in ms:

* onnxruntime, the whole SsdDetector.detect (BGR→RGB, resize, run, decode) on a
  640x480 frame and on a 300x300 crop, and session.run alone on the 640x480
  frame fed unresized (the graph then resizes it itself);
* RegionDetector on the 640x480 frame with one motion box (the crop path);
* OpenCV DNN (cv2.dnn.readNetFromONNX) on the same file, or "failed: <reason>";
* YOLO post-processing alone (decode + NMS of a synthetic [1, 84, 8400] output),
  since no YOLO model ships.

The frame is scikit-image's astronaut on a plain background when scikit-image
is installed, otherwise noise. Prints one JSON object.

    .venv/bin/python benchmarks/detector.py [--runs 50] [--threads 2] [--model ssdlite_mobilenet_v2_coco]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable without an install

import cv2
import numpy as np
from timing import timed

from vaktpost.edge.config.detectors import DetectorSettings
from vaktpost.edge.detectors.factory import create_detector
from vaktpost.edge.detectors.onnx_session import verified_model_path
from vaktpost.edge.detectors.ops import classwise_nms, to_rgb
from vaktpost.edge.detectors.regions import RegionDetector
from vaktpost.edge.detectors.ssd import OUTPUTS, SsdDetector
from vaktpost.edge.detectors.yolo import decode_yolo
from vaktpost.edge.modelfile import ModelError


def test_frame() -> tuple[np.ndarray, str]:
    """640x480 BGR frame with a person 300 px tall at the centre-right, if scikit-image is here."""
    frame = np.full((480, 640, 3), (90, 110, 100), np.uint8)
    try:
        from skimage import data
    except ImportError:
        return np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8), "noise"
    person = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (300, 300), interpolation=cv2.INTER_AREA)
    frame[120:420, 300:600] = person
    return frame, "astronaut 300x300 on a plain 640x480 background"


def bench_opencv(path: Path, frame: np.ndarray, crop: np.ndarray, runs: int, threads: int) -> dict:
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # the reason goes into the JSON
    try:
        net = cv2.dnn.readNetFromONNX(str(path))
    except cv2.error as e:
        return {"status": "failed: " + " ".join(str(e).split())[-400:]}
    cv2.setNumThreads(threads)

    def run(img: np.ndarray) -> Any:
        # The same tensor onnxruntime gets: uint8 NHWC RGB, 300x300.
        net.setInput(cv2.resize(to_rgb(img), (300, 300))[None])
        return net.forward(list(OUTPUTS))

    out: dict = {"status": "ok"}
    try:
        out["frame_640x480"] = timed(lambda: run(frame), runs)
        out["crop_300x300"] = timed(lambda: run(crop), runs)
    except cv2.error as e:
        return {"status": "failed: loads, but forward() fails: " + " ".join(str(e).split())[-400:]}
    return out


def bench_yolo_post(runs: int) -> dict:
    """Decode + NMS of a v8 [1, 84, 8400] output with 40 person candidates over 0.5 in 4 clusters."""
    rng = np.random.default_rng(0)
    out = np.zeros((1, 84, 8400), np.float32)
    out[0, :4] = rng.uniform(10, 600, (4, 8400))
    out[0, 4:] = rng.uniform(0, 0.2, (80, 8400))  # background: every class weakly
    centres = [(100, 200), (300, 300), (450, 150), (550, 400)]
    for k in range(40):
        cx, cy = centres[k % 4]
        out[0, :4, k] = (cx + rng.normal(0, 3), cy + rng.normal(0, 3), 60, 150)
        out[0, 4, k] = rng.uniform(0.5, 0.95)

    def post() -> Any:
        boxes, scores, classes = decode_yolo(out, "v8", 0.5, (0,))
        return classwise_nms(boxes, scores, classes, 0.45)

    kept = len(post())
    return {"output": [1, 84, 8400], "candidates_over_threshold": 40, "kept_after_nms": kept, **timed(post, runs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads and OpenCV threads")
    ap.add_argument("--model", default="ssdlite_mobilenet_v2_coco", help="manifest name of an SSD model")
    args = ap.parse_args()

    import onnxruntime as ort

    frame, frame_kind = test_frame()
    crop = frame[120:420, 300:600].copy()
    res: dict = {
        "model": args.model,
        "runs": args.runs,
        "threads": args.threads,
        "frame": frame_kind,
        "machine": {"python": platform.python_version(), "arch": platform.machine(), "cpus": _cpus()},
        "versions": {"onnxruntime": ort.__version__, "opencv": cv2.__version__, "numpy": np.__version__},
    }
    settings = DetectorSettings(kind="ssd", model=args.model, threads=args.threads)
    try:
        path = verified_model_path(args.model)
        det = create_detector(settings)
        assert isinstance(det, SsdDetector)
    except ModelError as e:
        res["onnxruntime"] = {"status": f"failed: {e}"}
        print(json.dumps(res, indent=2))
        return

    found = det.detect(frame)
    rd = RegionDetector(det, settings)
    clock = iter(range(10**9))  # a fresh rate-limiter slot for every call
    motion = [(400 / 640, 150 / 480, 500 / 640, 300 / 480)]  # the upper body moved
    res["onnxruntime"] = {
        "status": "ok",
        "people_found_in_frame": [round(d.score, 3) for d in found],
        "frame_640x480": timed(lambda: det.detect(frame), args.runs),
        "crop_300x300": timed(lambda: det.detect(crop), args.runs),
        "frame_640x480_graph_resizes": timed(
            lambda: det.session.run(list(OUTPUTS), {det.input_name: to_rgb(frame)[None]}), args.runs),
        "regions_one_motion_box": timed(lambda: rd.detect(frame, motion, now=float(next(clock))), args.runs),
    }
    res["onnxruntime"]["region_crops"] = [list(c) for c in rd.last_crops]
    res["opencv_dnn"] = bench_opencv(path, frame, crop, args.runs, args.threads)
    res["yolo_postprocess"] = bench_yolo_post(args.runs)
    print(json.dumps(res, indent=2))


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 0)


if __name__ == "__main__":
    main()
