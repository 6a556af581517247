"""YOLO detectors exported to ONNX by the usual tools (YOLOv5 export.py, Ultralytics export).

Input: float32 RGB NCHW [1, 3, H, W], values 0..1, the frame letterboxed into
H x W (scaled to fit, aspect kept, padded with gray 114 as in training).
Output 0, boxes as (cx, cy, w, h) in input pixels:

    v5       [1, N, 5 + C]  cx, cy, w, h, objectness, C class probabilities;
                            score = objectness * class probability
    v8, v11  [1, 4 + C, N]  cx, cy, w, h, C class scores; no objectness

Neither export includes non-maximum suppression, so it is done here, per class.
Only the person class is reported.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from vaktpost.edge.config.detectors import DetectorSettings
from vaktpost.edge.detectors import PERSON, Detection
from vaktpost.edge.detectors.onnx_session import input_spec
from vaktpost.edge.detectors.ops import (
    Letterbox,
    classwise_nms,
    letterbox,
    to_rgb,
    unletterbox,
)
from vaktpost.edge.modelfile import ModelError

Layout = Literal["v5", "v8"]
DEFAULT_SIZE = 640
# Candidates kept for NMS, best first. A sane threshold leaves a few dozen; the cap
# only bounds the cost (NMS is quadratic) when a low threshold lets thousands through.
MAX_CANDIDATES = 2000


def yolo_input(image_bgr: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, Letterbox]:
    """float32 [1, 3, h, w] RGB 0..1 tensor of the letterboxed image, and the letterbox used."""
    boxed, lb = letterbox(to_rgb(image_bgr), size)
    tensor = boxed.transpose(2, 0, 1)[None].astype(np.float32) * np.float32(1 / 255)
    return np.ascontiguousarray(tensor), lb


def detect_layout(shape: tuple[int | None, ...], setting: str = "auto") -> Layout:
    """The output layout for an output of `shape` ([1, a, b]).

    v5 puts the many candidates first ([1, 25200, 85]), v8 last ([1, 84, 8400]),
    so for auto the longer axis is the candidate axis. A square output cannot
    be told apart: then the setting must say.
    """
    if setting in ("v5", "v8"):
        return setting  # type: ignore[return-value]
    if len(shape) != 3:
        raise ValueError(f"YOLO output should be [1, a, b], got {list(shape)}")
    a, b = shape[1], shape[2]
    if a is None or b is None or a == b:
        raise ValueError(f"cannot tell the YOLO layout from output shape {list(shape)}; set yolo_layout to v5 or v8")
    return "v5" if a > b else "v8"


def xywh_to_xyxy(b: np.ndarray) -> np.ndarray:
    half = b[:, 2:4] / 2
    return np.concatenate([b[:, 0:2] - half, b[:, 0:2] + half], axis=1)


def decode_yolo(output: np.ndarray, layout: Layout, threshold: float,
                classes: tuple[int, ...] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(boxes xyxy in input pixels [K, 4], scores [K], class ids [K]) with score >= threshold.

    Each candidate gets its best class, as the YOLO tools do by default;
    `classes` then keeps only candidates whose best class is listed.
    """
    out = np.asarray(output, np.float32)
    rows = out[0] if layout == "v5" else out[0].T
    first_class = 5 if layout == "v5" else 4
    if rows.ndim != 2 or rows.shape[1] <= first_class:
        raise ValueError(f"YOLO {layout} output {list(out.shape)} has no class columns")
    if layout == "v5":
        # Class probabilities are at most 1, so objectness bounds the score: cheap pre-filter.
        rows = rows[rows[:, 4] >= threshold]
    cls_scores = rows[:, first_class:]
    class_ids = cls_scores.argmax(axis=1)
    scores = cls_scores[np.arange(len(rows)), class_ids]
    if layout == "v5":
        scores = scores * rows[:, 4]
    keep = scores >= threshold
    if classes is not None:
        keep &= np.isin(class_ids, classes)
    boxes, scores, class_ids = xywh_to_xyxy(rows[keep, :4]), scores[keep], class_ids[keep]
    if len(scores) > MAX_CANDIDATES:
        top = np.argsort(-scores, kind="stable")[:MAX_CANDIDATES]
        boxes, scores, class_ids = boxes[top], scores[top], class_ids[top]
    return boxes, scores, class_ids


class YoloDetector:
    """Runs a YOLO ONNX export on BGR frames; reports people only."""

    def __init__(self, session: Any, settings: DetectorSettings) -> None:
        self.session = session
        self.threshold = settings.score_threshold
        self.class_id = settings.class_id
        self.nms_iou = settings.nms_iou
        spec = input_spec(session)
        float_input = spec.dtype in ("tensor(float)", "tensor(float16)")
        if not float_input or len(spec.shape) != 4 or spec.shape[1] not in (3, None):
            raise ModelError(f"model input {spec.name} is {spec.dtype} {list(spec.shape)}; a YOLO export "
                             "takes float [1, 3, H, W] (is `kind` right?)")
        self.input_name = spec.name
        self.input_dtype = np.float16 if spec.dtype == "tensor(float16)" else np.float32
        side = settings.input_size or DEFAULT_SIZE
        h, w = spec.shape[2] or side, spec.shape[3] or side
        if settings.input_size and (h, w) != (side, side):
            raise ModelError(f"input_size {side} does not fit the model's fixed input {w}x{h}")
        self.size = (w, h)
        out = session.get_outputs()[0]
        self.output_name = out.name
        out_shape = tuple(d if isinstance(d, int) else None for d in out.shape)
        self.layout: Layout | None = None
        self._layout_setting = settings.yolo_layout
        if settings.yolo_layout != "auto" or None not in out_shape[1:]:
            try:
                self.layout = detect_layout(out_shape, settings.yolo_layout)
            except ValueError as e:
                raise ModelError(str(e)) from None
            self._check_class(out_shape)

    def _check_class(self, shape: tuple[int | None, ...]) -> None:
        assert self.layout is not None
        n_classes = shape[2] - 5 if self.layout == "v5" else shape[1] - 4  # type: ignore[operator]
        if n_classes is not None and not 0 <= self.class_id < n_classes:
            raise ModelError(f"person_class {self.class_id} is not among the model's {n_classes} classes "
                             f"(output {list(shape)}, layout {self.layout})")

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        tensor, lb = yolo_input(image_bgr, self.size)
        (output,) = self.session.run([self.output_name], {self.input_name: tensor.astype(self.input_dtype, copy=False)})
        if self.layout is None:  # symbolic output shape: decide once, on the first real output
            self.layout = detect_layout(output.shape, self._layout_setting)
            self._check_class(output.shape)
        boxes, scores, class_ids = decode_yolo(output, self.layout, self.threshold, (self.class_id,))
        keep = classwise_nms(boxes, scores, class_ids, self.nms_iou)
        normalised = unletterbox(boxes[keep], lb)
        return [
            Detection(tuple(float(v) for v in box), float(score), PERSON)  # type: ignore[arg-type]
            for box, score in zip(normalised, scores[keep])
            if box[2] > box[0] and box[3] > box[1]
        ]
