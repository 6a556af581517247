"""CenterFace face detector (models/centerface.onnx) for anonymising snapshots.

CenterFace is anchor-free: the network marks face centres on a
heatmap at a quarter of the input resolution, and at each cell predicts the
box size, a sub-cell offset of the centre and five landmarks. The model file's
tensors are described in models/MANIFEST.toml; in short (h = H/4, w = W/4):

    input.1  float32 [1, 3, H, W]  RGB 0..255, H and W multiples of 32
    537      heatmap   [1, 1, h, w]   face-centre probability per cell
    538      scale     [1, 2, h, w]   box height, width = exp(value) * 4 input pixels
    539      offset    [1, 2, h, w]   centre (y, x) = (cell + offset + 0.5) * 4
    540      landmarks [1, 10, h, w]  5 (y, x) pairs from the box's top-left, in box heights/widths

Frames are padded (never stretched) up to the next multiple of 32. Small faces
are the hard case, so frames are analysed at full resolution up to `max_side`
pixels on the longer side and only larger frames are scaled down.

The pre- and post-processing below are pure functions so they can be tested
against hand-built model outputs; `CenterFace` is a thin wrapper that owns the
verified onnxruntime session.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vaktpost.edge.detectors import Face
from vaktpost.edge.detectors.onnx_session import input_spec, open_session, output_names
from vaktpost.edge.detectors.ops import nms, to_rgb
from vaktpost.edge.modelfile import MANIFEST, ModelError, load_manifest

MODEL_NAME = "centerface"
STRIDE = 4  # heatmap cell size in input pixels
ALIGN = 32  # input sides must be multiples of this (five stride-2 stages)
DEFAULT_MAX_SIDE = 1280
DEFAULT_NMS_IOU = 0.3
# exp() of a raw scale beyond this is a box thousands of times the frame: clip so a
# broken output cannot overflow to inf/NaN boxes (those would be unplaceable).
_MAX_LOG_SCALE = 10.0



@dataclass(frozen=True, slots=True)
class InputPlan:
    """How a frame of src_w x src_h is placed in the model input: resized by `scale` to
    resized_w x resized_h at the top-left, then padded to in_w x in_h."""

    src_w: int
    src_h: int
    scale: float
    resized_w: int
    resized_h: int
    in_w: int
    in_h: int


def round_up(value: int, multiple: int = ALIGN) -> int:
    return -(-value // multiple) * multiple


def plan_input(src_w: int, src_h: int, max_side: int = DEFAULT_MAX_SIDE) -> InputPlan:
    """Input geometry for a frame: full resolution unless its longer side exceeds `max_side`."""
    if src_w <= 0 or src_h <= 0:
        raise ValueError(f"image size must be positive, got {src_w}x{src_h}")
    if max_side < ALIGN:
        raise ValueError(f"max_side must be at least {ALIGN}, got {max_side}")
    scale = min(1.0, max_side / max(src_w, src_h))
    rw, rh = max(1, round(src_w * scale)), max(1, round(src_h * scale))
    return InputPlan(src_w, src_h, scale, rw, rh, round_up(rw), round_up(rh))


def centerface_input(image_bgr: np.ndarray, plan: InputPlan) -> np.ndarray:
    """float32 [1, 3, in_h, in_w] RGB 0..255 tensor: the (resized) frame at the top-left, zeros below/right."""
    rgb = to_rgb(image_bgr)
    if (plan.resized_w, plan.resized_h) != (plan.src_w, plan.src_h):
        rgb = cv2.resize(rgb, (plan.resized_w, plan.resized_h), interpolation=cv2.INTER_AREA)
    tensor = np.zeros((1, 3, plan.in_h, plan.in_w), np.float32)
    tensor[0, :, : plan.resized_h, : plan.resized_w] = rgb.transpose(2, 0, 1)
    return tensor


def decode_centerface(heatmap: np.ndarray, scale: np.ndarray, offset: np.ndarray, landmarks: np.ndarray,
                      threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidates of the first image of a batch, in input pixels, unsorted and before NMS.

    Returns boxes (K, 4) as (x1, y1, x2, y2), scores (K,), landmarks (K, 5, 2) as (x, y).
    """
    heat = np.asarray(heatmap, np.float32)[0, 0]
    for name, arr, channels in (("scale", scale, 2), ("offset", offset, 2), ("landmarks", landmarks, 10)):
        if arr.ndim != 4 or arr.shape[1] != channels or arr.shape[2:] != heat.shape:
            raise ValueError(f"CenterFace {name} output has shape {list(arr.shape)}, "
                             f"expected [N, {channels}, {heat.shape[0]}, {heat.shape[1]}]")
    if not np.isfinite(heat).all():
        # A NaN cell compares False with any threshold: it would read as "no face" — fail instead.
        raise ValueError("CenterFace heatmap holds NaN or infinite values")
    rows, cols = np.nonzero(heat >= threshold)
    scores = heat[rows, cols].astype(np.float64)
    log_hw = np.clip(np.asarray(scale, np.float64)[0][:, rows, cols], -_MAX_LOG_SCALE, _MAX_LOG_SCALE)
    bh, bw = np.exp(log_hw[0]) * STRIDE, np.exp(log_hw[1]) * STRIDE
    off = np.asarray(offset, np.float64)[0][:, rows, cols]
    cy = (rows + off[0] + 0.5) * STRIDE
    cx = (cols + off[1] + 0.5) * STRIDE
    x1, y1 = cx - bw / 2, cy - bh / 2
    boxes = np.stack([x1, y1, x1 + bw, y1 + bh], axis=1)
    lm = np.asarray(landmarks, np.float64)[0][:, rows, cols].reshape(5, 2, -1)  # (point, (y, x), K)
    points = np.stack([x1 + lm[:, 1] * bw, y1 + lm[:, 0] * bh], axis=-1)  # (5, K, 2) as (x, y)
    if not np.isfinite(boxes).all():
        raise ValueError("CenterFace produced boxes that are not finite numbers")  # a face we cannot place
    return boxes, scores, points.transpose(1, 0, 2)


def to_faces(boxes: np.ndarray, scores: np.ndarray, points: np.ndarray, plan: InputPlan) -> list[Face]:
    """Input-pixel candidates → normalised `Face`s in the source frame, clipped to it; best first."""
    sx, sy = plan.src_w * plan.scale, plan.src_h * plan.scale  # resized size in (fractional) pixels
    order = np.argsort(-scores, kind="stable")
    faces = []
    for i in order:
        x1, y1, x2, y2 = boxes[i]
        box = (min(max(x1 / sx, 0.0), 1.0), min(max(y1 / sy, 0.0), 1.0),
               min(max(x2 / sx, 0.0), 1.0), min(max(y2 / sy, 0.0), 1.0))
        if not (box[2] > box[0] and box[3] > box[1]):
            continue  # entirely in the padding
        lms = tuple((float(px / sx), float(py / sy)) for px, py in points[i])
        faces.append(Face(tuple(float(v) for v in box), float(scores[i]), lms))  # type: ignore[arg-type]
    return faces


class CenterFace:
    """Face detector on a checksum-verified CenterFace model.

    Raises vaktpost.edge.modelfile.ModelError when the model is missing, fails its
    checksum, or does not have CenterFace's inputs and outputs.
    """

    def __init__(self, threads: int = 1, models_dir: Path | str | None = None, *,
                 max_side: int = DEFAULT_MAX_SIDE, nms_iou: float = DEFAULT_NMS_IOU) -> None:
        plan_input(1, 1, max_side)  # rejects an unusable max_side now rather than on the first frame
        self.max_side = int(max_side)
        self.nms_iou = nms_iou
        entries = load_manifest(MANIFEST)
        if MODEL_NAME not in entries:
            raise ModelError(f"no model {MODEL_NAME!r} in {MANIFEST}")
        entry = entries[MODEL_NAME]
        # Tensor names from the manifest, so a rebuilt model with renamed outputs fails here, loudly.
        self.outputs = [entry.output(role).name for role in ("heatmap", "scale", "offset", "landmarks")]
        self.session: Any = open_session(MODEL_NAME, threads, models_dir=models_dir)  # verifies the sha256 first
        spec = input_spec(self.session)
        if spec.dtype != "tensor(float)" or len(spec.shape) != 4 or spec.shape[1] not in (3, None):
            raise ModelError(f"CenterFace input {spec.name} is {spec.dtype} {list(spec.shape)}; "
                             "expected float [N, 3, H, W]")
        missing = [o for o in self.outputs if o not in output_names(self.session)]
        if missing:
            raise ModelError(f"CenterFace model lacks outputs {missing}; it has {output_names(self.session)}")
        self.input_name = spec.name

    def detect(self, image_bgr: np.ndarray, threshold: float = 0.5) -> list[Face]:
        """Faces in a BGR uint8 image, best first; boxes normalised to that image."""
        plan = plan_input(image_bgr.shape[1], image_bgr.shape[0], self.max_side)
        heat, scale, offset, lms = self.session.run(self.outputs, {self.input_name: centerface_input(image_bgr, plan)})
        boxes, scores, points = decode_centerface(heat, scale, offset, lms, threshold)
        keep = nms(boxes, scores, self.nms_iou)
        return to_faces(boxes[keep], scores[keep], points[keep], plan)


__all__ = ["CenterFace", "InputPlan", "centerface_input", "decode_centerface", "plan_input", "to_faces"]
