"""Operations every detector back-end shares: colour conversion, letterboxing and
non-maximum suppression. Back-ends (ssd, yolo, faces) import these; they do not
borrow from each other."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from vaktpost.edge.geometry import iou_one_to_many

PAD_VALUE = 114  # Ultralytics' letterbox grey


def to_rgb(image_bgr: np.ndarray) -> np.ndarray:
    """RGB uint8 (h, w, 3) from a BGR, BGRA or gray uint8 camera frame."""
    if image_bgr.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image_bgr.dtype}")
    if image_bgr.ndim == 2 or (image_bgr.ndim == 3 and image_bgr.shape[2] == 1):
        return cv2.cvtColor(image_bgr, cv2.COLOR_GRAY2RGB)
    if image_bgr.ndim == 3 and image_bgr.shape[2] == 3:
        return cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    if image_bgr.ndim == 3 and image_bgr.shape[2] == 4:
        return cv2.cvtColor(image_bgr, cv2.COLOR_BGRA2RGB)
    raise ValueError(f"expected a gray, BGR or BGRA image, got shape {image_bgr.shape}")


@dataclass(frozen=True)
class Letterbox:
    """How an image of src_w x src_h was placed in the model input: input = src * scale + pad."""

    src_w: int
    src_h: int
    scale_x: float
    scale_y: float
    pad_x: int
    pad_y: int


def letterbox(image: np.ndarray, size: tuple[int, int], pad_value: int = PAD_VALUE) -> tuple[np.ndarray, Letterbox]:
    """`image` scaled to fit size = (w, h) with its aspect ratio kept, centred on a `pad_value` canvas.

    The scale factors recorded are the ones the rounded resize really applied
    per axis, so un-mapping is exact to the pixel even for odd sizes.
    """
    h, w = image.shape[:2]
    tw, th = size
    r = min(tw / w, th / h)
    nw, nh = max(1, min(tw, round(w * r))), max(1, min(th, round(h * r)))
    if (nw, nh) != (w, h):
        # Area averaging when shrinking avoids aliasing; bilinear when enlarging small crops.
        interp = cv2.INTER_AREA if nw < w else cv2.INTER_LINEAR
        image = cv2.resize(image, (nw, nh), interpolation=interp)
    px, py = (tw - nw) // 2, (th - nh) // 2
    canvas = np.full((th, tw) + image.shape[2:], pad_value, dtype=image.dtype)
    canvas[py : py + nh, px : px + nw] = image
    return canvas, Letterbox(w, h, nw / w, nh / h, px, py)


def unletterbox(boxes_xyxy: np.ndarray, lb: Letterbox) -> np.ndarray:
    """Input-pixel (x1, y1, x2, y2) boxes → normalised boxes in the source image, clipped to it."""
    b = np.asarray(boxes_xyxy, np.float64).reshape(-1, 4)
    x = (b[:, [0, 2]] - lb.pad_x) / lb.scale_x / lb.src_w
    y = (b[:, [1, 3]] - lb.pad_y) / lb.scale_y / lb.src_h
    return np.clip(np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], axis=1), 0.0, 1.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of the boxes greedy non-maximum suppression keeps, best score first.

    Repeatedly keeps the best remaining box and drops every remaining box that
    overlaps it by more than `iou_threshold`.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores), kind="stable")
    kept: list[int] = []
    while order.size:
        best, rest = order[0], order[1:]
        kept.append(int(best))
        order = rest[iou_one_to_many(boxes[best], boxes[rest]) <= iou_threshold]
    return np.asarray(kept, dtype=np.intp)


def classwise_nms(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, iou_threshold: float) -> np.ndarray:
    """NMS within each class separately (a person never suppresses a bicycle); indices best first."""
    kept = [
        np.flatnonzero(class_ids == c)[nms(boxes[class_ids == c], scores[class_ids == c], iou_threshold)]
        for c in np.unique(class_ids)
    ]
    if not kept:
        return np.empty(0, np.intp)
    idx = np.concatenate(kept)
    return idx[np.argsort(-scores[idx], kind="stable")]
