"""Evidence snapshots: settings, downscaling, and JPEG encoding with nothing but the image in it.

A snapshot is made in this order (see docs/privacy.md, "How snapshots are
anonymised"):

1. anonymise the full-resolution, privacy-masked frame (edge/evidence/anonymise.py):
   masks, people and faces filled solid;
2. downscale to `width` (never up);
3. fill the same regions again at the output size, so that every output pixel
   they touch is exactly the fill colour (area averaging would otherwise blend
   the edge pixels of a filled region with their surroundings);
4. encode as JPEG and strip every segment a decoder does not need.

Stripping uses a whitelist of JPEG markers. Everything else goes: all APPn
segments (APP0 JFIF and its optional thumbnail, APP1 EXIF/XMP, APP2 ICC, APP13,
APP14 Adobe, …) and COM comments. OpenCV writes only APP0 JFIF today; the
whitelist keeps that true if the encoder ever adds more. Without APP0 a
decoder reads a 3-component baseline JPEG as YCbCr, which is what the encoder
wrote, so the picture is unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import cv2
import numpy as np
from pydantic import Field

from vaktpost.contract.jpeg import EOI, SOF, SOI, SOS, jpeg_spans
from vaktpost.edge.config.snapshot import SnapshotSettings
from vaktpost.edge.evidence.anonymise import Anonymiser
from vaktpost.edge.geometry import Box

Channel = Annotated[int, Field(ge=0, le=255)]

# Markers kept: start/end of image, quantisation and Huffman tables, arithmetic
# conditioning, restart interval, frame headers (SOF0-15 minus DHT/JPG/DAC codes),
# start of scan with its entropy-coded data, number of lines.
KEEP_MARKERS = frozenset({SOI, EOI, SOS, 0xDB, 0xC4, 0xCC, 0xDD, 0xDC} | SOF)


class EncodeError(ValueError):
    """The anonymised image could not be encoded as a clean JPEG (the event's `encode_error`)."""


# --- images -----------------------------------------------------------------------


def downscale(image: np.ndarray, width: int) -> np.ndarray:
    """`image` scaled down to `width` pixels wide (area averaging, aspect kept); never up.

    Returns `image` itself when it is not wider than `width`.
    """
    h, w = image.shape[:2]
    if w <= width:
        return image
    new_h = max(1, round(h * width / w))
    return cv2.resize(image, (width, new_h), interpolation=cv2.INTER_AREA)


# --- JPEG -------------------------------------------------------------------------


def jpeg_segments(data: bytes) -> list[int]:
    """The marker codes of a JPEG's segments in order, e.g. [0xD8, 0xDB, 0xC0, 0xC4, 0xDA, 0xD9]."""
    return [marker for marker, _, _ in jpeg_spans(data)]


def strip_jpeg(data: bytes) -> bytes:
    """The JPEG with only the segments in KEEP_MARKERS: no APPn (EXIF, JFIF, ICC, thumbnails), no comments.

    Bytes after EOI (some cameras append data there) are dropped too.
    """
    return b"".join(data[s:e] for marker, s, e in jpeg_spans(data) if marker in KEEP_MARKERS)


def encode_jpeg(image: np.ndarray, width: int, quality: int) -> bytes:
    """`image` (BGR uint8) downscaled to `width` (never up), as a stripped baseline JPEG.

    ValueError for an image that is not BGR uint8 (a caller's bug); EncodeError
    when encoding or stripping fails.
    """
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a BGR uint8 (h, w, 3) image, got {getattr(image, 'shape', type(image))}")
    try:
        ok, buf = cv2.imencode(".jpg", downscale(image, width), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    except cv2.error as e:
        raise EncodeError(f"OpenCV could not encode the snapshot: {e}") from e
    if not ok:
        raise EncodeError("OpenCV could not encode the snapshot as JPEG")
    try:
        return strip_jpeg(buf.tobytes())
    except ValueError as e:
        raise EncodeError(f"the encoded snapshot cannot be parsed, so not stripped: {e}") from e


# --- snapshots --------------------------------------------------------------------


def snapshot_image(anonymiser: Anonymiser, frame_masked: np.ndarray, person_boxes: Sequence[Box],
                   settings: SnapshotSettings, moving: Sequence[Box] = ()) -> np.ndarray:
    """The exact array `make_snapshot` encodes: anonymised at full resolution, downscaled,
    and its hidden regions filled again at the output size. Raises AnonymiseError."""
    cover = anonymiser.find(frame_masked, person_boxes, moving)
    full = anonymiser.paint(frame_masked, cover)
    small = downscale(full, settings.width)
    return anonymiser.paint(small, cover) if small is not full else full


def make_snapshot(anonymiser: Anonymiser, frame_masked: np.ndarray, person_boxes: Sequence[Box],
                  settings: SnapshotSettings, moving: Sequence[Box] = ()) -> bytes:
    """Anonymised JPEG snapshot of a privacy-masked frame; `person_boxes` (the tracks') and
    `moving` (the motion stage's current boxes) are normalised to it and hidden too.

    Fails closed: raises vaktpost.edge.evidence.anonymise.AnonymiseError, and produces no bytes,
    whenever the frame cannot be anonymised; EncodeError when the JPEG cannot be made.
    """
    image = snapshot_image(anonymiser, frame_masked, person_boxes, settings, moving)
    return encode_jpeg(image, settings.width, settings.quality)


__all__ = [
    "KEEP_MARKERS",
    "EncodeError",
    "SnapshotSettings",
    "downscale",
    "encode_jpeg",
    "jpeg_segments",
    "make_snapshot",
    "snapshot_image",
    "strip_jpeg",
]
