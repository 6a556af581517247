"""SSD detectors from the TensorFlow Object Detection API, converted to ONNX.

Such a graph takes uint8 RGB NHWC images of any size, resizes them itself to
its training size without keeping the aspect ratio, and ends in its own
non-maximum suppression. Its outputs are the TF names:

    num_detections:0      [N]        rows in use
    detection_boxes:0     [N, K, 4]  (ymin, xmin, ymax, xmax), normalised to the input image
    detection_scores:0    [N, K]     best first
    detection_classes:0   [N, K]     label-map ids as floats (person = 1 in COCO label maps)

Because the graph stretches the image to a square, boxes normalised to the
input are also normalised to the original frame: no un-mapping is needed.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from vaktpost.edge.config.detectors import DetectorSettings
from vaktpost.edge.detectors import PERSON, Detection
from vaktpost.edge.detectors.onnx_session import input_spec, output_names
from vaktpost.edge.detectors.ops import to_rgb
from vaktpost.edge.modelfile import ModelError

NUM, BOXES, SCORES, CLASSES = "num_detections:0", "detection_boxes:0", "detection_scores:0", "detection_classes:0"
OUTPUTS = (NUM, BOXES, SCORES, CLASSES)
DEFAULT_SIZE = 300


def ssd_input(image_bgr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 [1, h, w, 3] RGB tensor of the image stretched to size = (w, h).

    The graph would resize any input itself; doing it here first means the
    graph's copy-and-resize works on 90k pixels instead of a full frame.
    Bilinear, like the TF resize the model was trained behind; the aspect
    ratio is not kept, also as in training.
    """
    rgb = to_rgb(image_bgr)
    if (rgb.shape[1], rgb.shape[0]) != size:
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(rgb)[None]


def decode_ssd(num: np.ndarray, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray,
               class_id: int, threshold: float) -> list[Detection]:
    """Person detections of the first image of a TF OD API output batch.

    Rows past num_detections are padding, whatever they hold. Boxes become
    (x1, y1, x2, y2), clipped to the image; degenerate ones are dropped.
    """
    n = int(np.asarray(num).reshape(-1)[0]) if np.asarray(num).size else boxes.shape[1]
    b = np.asarray(boxes, np.float32)[0, :n]
    s = np.asarray(scores, np.float32)[0, :n]
    c = np.rint(np.asarray(classes, np.float32)[0, :n]).astype(np.int64)
    keep = (c == class_id) & (s >= threshold)
    xyxy = np.clip(b[keep][:, [1, 0, 3, 2]], 0.0, 1.0)
    out = [
        Detection(tuple(float(v) for v in box), float(score), PERSON)  # type: ignore[arg-type]
        for box, score in zip(xyxy, s[keep])
        if box[2] > box[0] and box[3] > box[1]
    ]
    out.sort(key=lambda d: -d.score)
    return out


class SsdDetector:
    """Runs a TF OD API SSD graph on BGR frames; reports people only."""

    def __init__(self, session: Any, settings: DetectorSettings) -> None:
        self.session = session
        self.threshold = settings.score_threshold
        self.class_id = settings.class_id
        spec = input_spec(session)
        if spec.dtype != "tensor(uint8)" or len(spec.shape) != 4 or spec.shape[3] not in (3, None):
            raise ModelError(
                f"model input {spec.name} is {spec.dtype} {list(spec.shape)}; an SSD from the TF Object "
                "Detection API takes uint8 [N, H, W, 3] (is `kind` right?)"
            )
        missing = [o for o in OUTPUTS if o not in output_names(session)]
        if missing:
            raise ModelError(f"model lacks the TF Object Detection API outputs {missing}; "
                             f"it has {output_names(session)} (is `kind` right?)")
        self.input_name = spec.name
        fixed = spec.shape[1:3]
        side = settings.input_size or DEFAULT_SIZE
        # A graph exported with a fixed input size accepts only that size.
        h, w = (fixed[0] or side, fixed[1] or side)
        if settings.input_size and (h, w) != (side, side):
            raise ModelError(f"input_size {side} does not fit the model's fixed input {w}x{h}")
        self.size = (w, h)

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        feed = {self.input_name: ssd_input(image_bgr, self.size)}
        num, boxes, scores, classes = self.session.run(list(OUTPUTS), feed)
        return decode_ssd(num, boxes, scores, classes, self.class_id, self.threshold)
