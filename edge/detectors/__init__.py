"""Detectors: the interface every back-end implements.

A person detector takes one BGR uint8 image and returns the people in it as
`Detection`s whose boxes are normalised (x1, y1, x2, y2) in that image, in the
coordinate convention of edge/privacy/masks.py. Two model families are supported:

* ``ssd``  — TF Object Detection API SSD graphs converted to ONNX (edge/detectors/ssd.py);
  the default is the manifest's ``ssdlite_mobilenet_v2_coco``.
* ``yolo`` — Ultralytics-style YOLO exports, v5 or v8/11 output layout (edge/detectors/yolo.py).

Models are loaded only after their sha256 is checked (edge/detectors/onnx_session.py).
To run the detector only where motion is and at most `max_fps` times a second,
see edge/detectors/regions.py.

Face detectors (`FaceDetector`, CenterFace in faces.py) find faces for the
anonymiser in the same box convention. This package declares the interfaces; `factory.create_detector` builds a back-end
from its settings (vaktpost.edge.config.detectors).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from vaktpost.edge.geometry import Box

PERSON = "person"


@dataclass(frozen=True, slots=True)
class Detection:
    """One detected object. `box` is normalised (x1, y1, x2, y2) within the analysed image."""

    box: Box
    score: float
    label: str = PERSON


@runtime_checkable
class Detector(Protocol):
    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        """People in a BGR uint8 image (h, w, 3), best first."""
        ...


class NullDetector:
    """`kind: none`: detection switched off; finds nothing and costs nothing."""

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        return []


Point = tuple[float, float]


@dataclass(frozen=True, slots=True)
class Face:
    """A detected face: `box` normalised (x1, y1, x2, y2) in the analysed image, and its five
    landmarks (left eye, right eye, nose, left and right mouth corner) as normalised (x, y)."""

    box: Box
    score: float
    landmarks: tuple[Point, Point, Point, Point, Point]


@runtime_checkable
class FaceDetector(Protocol):
    def detect(self, image_bgr: np.ndarray, threshold: float = 0.5) -> list[Face]:
        """Faces in a BGR uint8 image, best first; boxes normalised to that image."""
        ...


__all__ = [
    "Detection",
    "Detector",
    "Face",
    "FaceDetector",
    "NullDetector",
    "PERSON",
]
