"""Anonymising frames for evidence snapshots, failing closed.

On the full-resolution frame, in this order:

1. the privacy masks are filled again (the caller passes a masked frame; this
   is belt and braces, and it paints them in the snapshot's fill colour);
2. people are found: the boxes the caller passes (the tracks' boxes) plus the
   anonymiser's own person detector, run on the whole frame, on square tiles
   of the frame height, and on a fine grid of small overlapping tiles of the
   full-resolution frame (`SNAPSHOT_TILE_SIDE` of its height), where a distant
   person 25 px tall fills a third of a tile. A snapshot is rare, so it affords
   this thorough pass (about 40 detector passes); it finds people standing still
   whom no track and no motion holds;
   the current moving regions the caller passes are hidden too, widened by
   `motion_margin`: a person the detector misses while walking is still covered;
3. faces are found by CenterFace on the masked frame (not on the frame with
   people already filled, so a face is found even where a person box is off);
4. every person box (widened by `person_margin`), every moving region and every
   face box (widened by `face_margin`) is filled SOLID with the fill colour. Blurring and
   pixelating are not used: both keep information that can be partly undone.

Failing closed: whenever a model is missing, fails its checksum, or inference
raises, an `AnonymiseError` is raised and no image is returned. A node keeps
running with an anonymiser that cannot work (`Anonymiser.create`), and every
call then raises with the reason it could not be built.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar, get_args

import numpy as np

from vaktpost.edge.config.detectors import DEFAULT_SSD_MODEL, DetectorSettings
from vaktpost.edge.config.snapshot import SnapshotSettings
from vaktpost.edge.detectors import Detector, FaceDetector
from vaktpost.edge.detectors.faces import MODEL_NAME as FACE_MODEL
from vaktpost.edge.detectors.faces import CenterFace
from vaktpost.edge.detectors.factory import create_detector
from vaktpost.edge.detectors.regions import Crop, expand_box, tile_grid, to_frame
from vaktpost.edge.geometry import Box
from vaktpost.edge.modelfile import MANIFEST, ModelError, load_manifest, sha256_of
from vaktpost.edge.privacy.masks import PrivacyMasker

Reason = Literal["model_missing", "model_checksum", "inference_error"]
REASONS: tuple[str, ...] = get_args(Reason)
T = TypeVar("T")
# The fine snapshot grid: a tile a quarter of the frame height shows a person of 25 px
# (at 480x360) at a third of the tile, where SSDLite finds most (docs/evaluation.md);
# half-overlapping, so every person up to half a tile tall lies whole in some tile.
SNAPSHOT_TILE_SIDE = 0.25
SNAPSHOT_TILE_OVERLAP = 0.5


class AnonymiseError(RuntimeError):
    """A frame could not be anonymised; `reason` is one of REASONS, `detail` says more."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown reason {reason!r}")
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason: Reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Cover:
    """What must be hidden in a frame, independent of its resolution: normalised
    (x1, y1, x2, y2) boxes with their margins already added."""

    people: tuple[Box, ...] = ()
    faces: tuple[Box, ...] = ()
    moving: tuple[Box, ...] = ()

    @property
    def boxes(self) -> tuple[Box, ...]:
        return self.people + self.faces + self.moving


# --- pure helpers -------------------------------------------------------------------


def box_pixels(box: Box, width: int, height: int) -> tuple[int, int, int, int]:
    """Pixel rectangle (x1, y1, x2, y2), x2/y2 exclusive, of every pixel the normalised box touches.

    Rounded outwards (a sliver too much is the right error) and clipped to the image.
    """
    x1, y1, x2, y2 = box
    return (
        min(max(math.floor(x1 * width), 0), width),
        min(max(math.floor(y1 * height), 0), height),
        min(max(math.ceil(x2 * width), 0), width),
        min(max(math.ceil(y2 * height), 0), height),
    )


def paint(image: np.ndarray, mask: np.ndarray | None, boxes: Sequence[Box], fill: tuple[int, int, int]) -> np.ndarray:
    """A copy of `image` (BGR) with the `mask` pixels and every box filled solid with `fill`."""
    out = image.copy()
    colour = np.asarray(fill, dtype=out.dtype)
    if mask is not None:
        out[mask] = colour
    h, w = out.shape[:2]
    for box in boxes:
        x1, y1, x2, y2 = box_pixels(box, w, h)
        out[y1:y2, x1:x2] = colour
    return out


def widen(boxes: Sequence[Box], margin: float) -> tuple[Box, ...]:
    """Every box widened by `margin`; ValueError on a box that is not four finite numbers with x1<=x2, y1<=y2."""
    out = []
    for box in boxes:
        if len(box) != 4 or not all(math.isfinite(v) for v in box) or box[2] < box[0] or box[3] < box[1]:
            raise ValueError(f"cannot place box {box!r}")
        out.append(expand_box(tuple(float(v) for v in box), margin))  # type: ignore[arg-type]
    return tuple(out)


def person_tiles(width: int, height: int) -> list[Crop]:
    """The whole frame, then square tiles of side min(width, height) spread evenly (overlapping)
    along the longer side so that together they cover the frame."""
    whole = (0, 0, width, height)
    side, length = min(width, height), max(width, height)
    n = math.ceil(length / side)
    if n <= 1:
        return [whole]
    starts = [round(i * (length - side) / (n - 1)) for i in range(n)]
    if width >= height:
        return [whole, *[(s, 0, s + side, height) for s in starts]]
    return [whole, *[(0, s, width, s + side) for s in starts]]


def snapshot_tiles(width: int, height: int) -> list[Crop]:
    """`person_tiles`, then the fine grid: squares of SNAPSHOT_TILE_SIDE of the height, half overlapping."""
    return [*person_tiles(width, height), *tile_grid(width, height, SNAPSHOT_TILE_SIDE, SNAPSHOT_TILE_OVERLAP)]


def detect_people(detector: Detector, image: np.ndarray) -> list[Box]:
    """Person boxes, normalised to `image`, from every tile of `snapshot_tiles`.

    No NMS across tiles: overlapping boxes all get filled, and their union
    hides at least as much as the best of them (a person cut by a tile edge
    is covered by the parts from both tiles).
    """
    h, w = image.shape[:2]
    boxes: list[Box] = []
    for crop in snapshot_tiles(w, h):
        x1, y1, x2, y2 = crop
        boxes.extend(to_frame(d.box, crop, w, h) for d in detector.detect(image[y1:y2, x1:x2]))
    return boxes


def model_file_problem(name: str, models_dir: Path | str | None = None) -> Reason:
    """Why manifest model `name` could not be opened: its file is absent, or it is there but
    refused by its checksum, or (verified, yet unusable) the runtime could not load it."""
    try:
        entry = load_manifest(MANIFEST)[name]
    except (ModelError, KeyError):
        return "model_missing"
    path = (Path(models_dir) if models_dir is not None else MANIFEST.parent) / entry.file
    if not path.is_file():
        return "model_missing"
    if sha256_of(path) != entry.sha256:
        return "model_checksum"
    return "inference_error"


def check_frame(frame: np.ndarray) -> None:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3 \
            or frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ValueError(f"expected a BGR uint8 (h, w, 3) frame, got {getattr(frame, 'shape', type(frame))}")


# --- the anonymiser -----------------------------------------------------------------


class Anonymiser:
    """Hides privacy masks, people and faces in frames, or raises AnonymiseError.

    `person_detector` and `faces` default to the manifest's SSDLite person
    detector (at `settings.person_threshold`) and CenterFace, loaded here after
    their checksums pass; a model that cannot be loaded raises AnonymiseError.
    Use `create` to get an anonymiser that records the failure instead.
    An injected `person_detector` reports at its own score threshold.
    """

    def __init__(self, settings: SnapshotSettings, person_detector: Detector | None = None,
                 faces: FaceDetector | None = None, masker: PrivacyMasker | None = None, *,
                 models_dir: Path | str | None = None) -> None:
        self.settings = settings
        self.masker = masker
        self.unavailable: Reason | None = None
        self.detail = ""
        if faces is None:
            faces = _load(FACE_MODEL, models_dir,
                          lambda: CenterFace(settings.threads, models_dir, max_side=settings.face_max_side))
        if person_detector is None:
            ssd = DetectorSettings(kind="ssd", score_threshold=settings.person_threshold, threads=settings.threads)
            person_detector = _load(DEFAULT_SSD_MODEL, models_dir, lambda: create_detector(ssd, models_dir))
        self.faces: FaceDetector = faces
        self.person_detector: Detector = person_detector

    @classmethod
    def create(cls, settings: SnapshotSettings, masker: PrivacyMasker | None = None, *,
               models_dir: Path | str | None = None) -> Anonymiser:
        """An anonymiser with the default models; if they cannot be loaded, one whose
        `unavailable` says why and whose every call raises AnonymiseError with that reason."""
        try:
            return cls(settings, masker=masker, models_dir=models_dir)
        except AnonymiseError as e:
            broken = cls.__new__(cls)
            broken.settings, broken.masker = settings, masker
            broken.faces, broken.person_detector = None, None  # type: ignore[assignment]
            broken.unavailable, broken.detail = e.reason, e.detail
            return broken

    def with_masker(self, masker: PrivacyMasker | None) -> Anonymiser:
        """This anonymiser with another camera's privacy masks; the models (and a failure to
        load them) are shared, so a node loads them once however many cameras it has."""
        other = copy.copy(self)
        other.masker = masker
        return other

    def _mask(self, shape: tuple[int, ...]) -> np.ndarray | None:
        return self.masker.mask_for(shape) if self.masker else None

    def find(self, frame_masked: np.ndarray, person_boxes: Sequence[Box] = (), moving: Sequence[Box] = ()) -> Cover:
        """What to hide in this frame: the given person boxes, the people and the faces found, and
        the `moving` regions, with margins."""
        if self.unavailable is not None:
            raise AnonymiseError(self.unavailable, self.detail)
        check_frame(frame_masked)
        # The detectors look at the re-masked frame: they have no business with masked pixels.
        seen = paint(frame_masked, self._mask(frame_masked.shape), (), self.settings.fill)
        try:
            people = detect_people(self.person_detector, seen)
            faces = [f.box for f in self.faces.detect(seen, self.settings.face_threshold)]
            return Cover(widen([*person_boxes, *people], self.settings.person_margin),
                         widen(faces, self.settings.face_margin),
                         widen(moving, self.settings.motion_margin))
        except Exception as e:  # whatever went wrong, the frame is not known to be anonymous
            raise AnonymiseError("inference_error", f"{type(e).__name__}: {e}") from e

    def paint(self, image: np.ndarray, cover: Cover) -> np.ndarray:
        """A copy of `image`, at any resolution, with the masks and `cover` filled."""
        return paint(image, self._mask(image.shape), cover.boxes, self.settings.fill)

    def anonymise(self, frame_masked: np.ndarray, person_boxes: Sequence[Box] = (),
                  moving: Sequence[Box] = ()) -> np.ndarray:
        """The full-resolution frame with masks, people, faces and moving regions filled solid; or AnonymiseError."""
        return self.paint(frame_masked, self.find(frame_masked, person_boxes, moving))


def _load(name: str, models_dir: Path | str | None, build: Callable[[], T]) -> T:
    """`build()`, with a ModelError turned into AnonymiseError with the reason it failed."""
    try:
        return build()
    except ModelError as e:
        raise AnonymiseError(model_file_problem(name, models_dir), str(e)) from e


__all__ = [
    "REASONS",
    "AnonymiseError",
    "Anonymiser",
    "Cover",
    "Reason",
    "box_pixels",
    "detect_people",
    "model_file_problem",
    "paint",
    "person_tiles",
    "snapshot_tiles",
]
