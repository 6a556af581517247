"""Builds the person detector a camera's settings describe."""

from __future__ import annotations

from pathlib import Path

from vaktpost.edge.config.detectors import DetectorSettings
from vaktpost.edge.detectors import Detector, NullDetector
from vaktpost.edge.detectors.onnx_session import open_session
from vaktpost.edge.detectors.ssd import SsdDetector
from vaktpost.edge.detectors.yolo import YoloDetector


def create_detector(settings: DetectorSettings, models_dir: Path | str | None = None) -> Detector:
    """The detector `settings` describe, with its model verified and loaded.

    Raises vaktpost.edge.modelfile.ModelError when the model is missing, fails its
    checksum, or does not look like the `kind` it is configured as.
    `models_dir` overrides where manifest-named models are looked for.
    """
    if settings.kind == "none":
        return NullDetector()
    assert settings.model is not None  # the validator filled or demanded it
    session = open_session(settings.model, settings.threads, sha256=settings.model_sha256, models_dir=models_dir)
    if settings.kind == "ssd":
        return SsdDetector(session, settings)
    return YoloDetector(session, settings)
