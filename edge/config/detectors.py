"""Settings of the person detector (vaktpost.edge.detectors)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, model_validator

from vaktpost.contract.config import Strict

DEFAULT_SSD_MODEL = "ssdlite_mobilenet_v2_coco"
# Class id of "person" when the setting is left out: TF OD API label maps count
# from 1 (0 is background); Ultralytics' COCO classes count from 0.
DEFAULT_PERSON_CLASS = {"ssd": 1, "yolo": 0}


def is_model_path(model: str) -> bool:
    """True when `model` names a file rather than a manifest entry (manifest names have no / or dot)."""
    return bool(re.search(r"[/\\.]", model))


class DetectorSettings(Strict):
    """The `detector:` section of a camera."""

    @model_validator(mode="before")
    @classmethod
    def _removed(cls, data: object) -> object:
        # An old config should say what replaced the key, not just "extra inputs not permitted".
        if isinstance(data, dict) and "full_frame_above" in data:
            raise ValueError("full_frame_above was removed: a busy frame is now covered by tiles "
                             "(tile_side, tile_overlap, max_tiles)")
        return data

    kind: Literal["none", "ssd", "yolo"] = Field(
        "ssd",
        description="none: no person detection; ssd: TF Object Detection API SSD exported to ONNX; "
        "yolo: YOLO exported to ONNX by Ultralytics/YOLOv5 tools",
    )
    model: str | None = Field(
        None,
        description="A model name from models/MANIFEST.toml, or the path of an .onnx file "
        "(then model_sha256 is required). Default for ssd: ssdlite_mobilenet_v2_coco; yolo needs one.",
    )
    model_sha256: str | None = Field(
        None,
        pattern=r"^[0-9a-fA-F]{64}$",
        description="sha256 of the file when `model` is a path; the file is refused if it differs. "
        "Not allowed with a manifest name (the manifest holds that checksum).",
    )
    score_threshold: float = Field(0.5, gt=0, le=1, description="Lowest score reported as a person")
    max_fps: float = Field(
        2.0, gt=0, le=30, description="The detector runs at most this often per camera (frames in between are skipped)"
    )
    threads: int = Field(
        1, ge=1, le=8,
        description="onnxruntime intra-op threads for this camera's detector. 1 by default: a node is shared "
        "by several cameras and the motion stage (a Pi 4/5 has 4 cores); more only cuts one camera's latency",
    )
    input_size: int | None = Field(
        None,
        ge=32,
        le=2048,
        description="Square model input side in pixels. Default: the model's own fixed size, "
        "else 300 (ssd) or 640 (yolo)",
    )
    person_class: int | None = Field(
        None, ge=0, description="Class id of person in the model's output. Default: 1 for ssd, 0 for yolo"
    )
    yolo_layout: Literal["auto", "v5", "v8"] = Field(
        "auto",
        description="YOLO output layout: v5 = [1, N, 5+C] with objectness; v8 (also v11) = [1, 4+C, N]; "
        "auto decides from the output shape",
    )
    crop_margin: float = Field(
        0.25,
        ge=0,
        le=2,
        description="Motion boxes are widened by this fraction of their size on each side before "
        "the detector looks at them, so a whole person is in view when only a part moved",
    )
    min_crop: float = Field(
        0.25,
        gt=0,
        le=1,
        description="Smallest crop side, as a fraction of the frame height: small motion is looked at "
        "with some context around it, and a tiny crop is not enlarged to the model input without limit",
    )
    tile_side: float = Field(
        0.4,
        gt=0,
        le=1,
        description="Side of the square tiles the frame is divided into, as a fraction of the frame height. "
        "Tiles are cut from the full-resolution frame; motion crops larger than two tiles, or more of them than "
        "max_tiles, are looked at through the tiles they touch (these plus frame-height squares) instead of "
        "one shrunken whole-frame view",
    )
    tile_overlap: float = Field(
        0.25, ge=0, lt=1, description="Fraction of a tile's side shared with its neighbour (people on a seam)"
    )
    max_tiles: int = Field(
        4,
        ge=1,
        le=64,
        description="Detector passes (crops or tiles) per run: the camera's CPU budget is max_fps x max_tiles "
        "passes a second. Motion is looked at first; passes left over go round-robin over the other tiles",
    )
    nms_iou: float = Field(
        0.45, gt=0, lt=1, description="Overlap (IoU) above which two person boxes count as one"
    )

    @model_validator(mode="after")
    def _model_for_kind(self) -> DetectorSettings:
        if self.kind == "ssd" and self.model is None:
            self.model = DEFAULT_SSD_MODEL
        if self.kind == "yolo" and self.model is None:
            raise ValueError("kind yolo needs `model` (a manifest name, or a path with model_sha256)")
        if self.model is not None and self.kind != "none":
            if is_model_path(self.model) and self.model_sha256 is None:
                raise ValueError(
                    f"model {self.model!r} is a path: give its model_sha256 too (models are verified before loading)"
                )
            if not is_model_path(self.model) and self.model_sha256 is not None:
                raise ValueError("model_sha256 is only for a model path; a manifest name carries its own checksum")
        return self

    @property
    def class_id(self) -> int:
        """The person class id in force (the setting, or the default for `kind`)."""
        if self.person_class is not None:
            return self.person_class
        return DEFAULT_PERSON_CLASS.get(self.kind, 0)
