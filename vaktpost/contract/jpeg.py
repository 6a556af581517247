"""A cheap structural check of the JPEG snapshots nodes send (docs/central.md, "Snapshots").

The consumer does not decode images. It walks the marker segments instead, which is
enough to refuse what is not a plain baseline/progressive JPEG and, above all,
anything that carries metadata: EXIF and XMP (APP1), comments (COM) and the other
application segments (IPTC in APP13, ICC/FlashPix in APP2, …). Only APP0 (JFIF) and
APP14 (Adobe colour transform), which encoders write to describe the pixels
themselves, are allowed. Data after the end-of-image marker is refused too: it is
where appended files hide.
"""

from __future__ import annotations

from vaktpost.edge.evidence.snapshot import jpeg_spans

CONTENT_TYPE = "image/jpeg"

SOI, EOI, SOS = 0xD8, 0xD9, 0xDA
ALLOWED_APP = frozenset({0xE0, 0xEE})  # APP0 JFIF, APP14 Adobe
# Start-of-frame markers: C0-CF except DHT (C4), JPG (C8) and DAC (CC).
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Never a segment of their own outside a scan: a stuffed zero, TEM and restart markers.
_UNEXPECTED = frozenset({0x00, 0x01} | set(range(0xD0, 0xD8)))


class JpegError(ValueError):
    """The payload is not an acceptable snapshot; the message says why."""


def _segment_name(marker: int) -> str:
    if marker == 0xE1:
        return "APP1 (EXIF/XMP metadata)"
    if 0xE0 <= marker <= 0xEF:
        return f"APP{marker - 0xE0} (application metadata)"
    if marker == 0xFE:
        return "COM (comment)"
    return f"FF{marker:02X}"


def check_jpeg(data: bytes, max_bytes: int) -> tuple[int, int]:
    """Raise JpegError unless `data` is a complete JPEG of at most `max_bytes` bytes
    without metadata segments; returns (width, height) from its frame header.

    The segments are walked by the same parser that strips the node's snapshots
    (vaktpost.edge.evidence.snapshot.jpeg_spans); this only judges what it finds."""
    n = len(data)
    if n > max_bytes:
        raise JpegError(f"snapshot of {n} bytes exceeds the limit of {max_bytes} bytes")
    if n < 4 or data[0] != 0xFF or data[1] != SOI:
        raise JpegError("not a JPEG: the payload does not start with FFD8")
    if data[-2] != 0xFF or data[-1] != EOI:
        raise JpegError("not a complete JPEG: the payload does not end with FFD9")
    size: tuple[int, int] | None = None
    scanned = False
    try:
        for marker, start, end in jpeg_spans(data):
            if marker in _UNEXPECTED or (marker == SOI and start != 0):
                raise JpegError(f"corrupt JPEG: unexpected marker FF{marker:02X} at byte {start}")
            if marker == 0xFE or (0xE0 <= marker <= 0xEF and marker not in ALLOWED_APP):
                raise JpegError(f"metadata segment {_segment_name(marker)} at byte {start} is not allowed "
                                "in a snapshot")
            if marker in _SOF:
                size = _frame_size(data, start, end)
            elif marker == SOS:
                if size is None:
                    raise JpegError("corrupt JPEG: scan before the frame header")
                scanned = True
            elif marker == EOI and end != n:
                raise JpegError(f"{n - end} bytes after the end-of-image marker")
    except JpegError:
        raise
    except ValueError as e:  # the parser's own verdict on a broken structure
        raise JpegError(f"corrupt {e}") from None
    if size is None or not scanned:
        raise JpegError("not a JPEG image: no frame header or no scan")
    return size


def _frame_size(data: bytes, start: int, end: int) -> tuple[int, int]:
    """(width, height) from the start-of-frame segment at data[start:end]."""
    header = start
    while data[header] == 0xFF:  # fill bytes, then the marker byte
        header += 1
    header += 1  # now at the segment's length field
    if end - header < 8:
        raise JpegError(f"corrupt JPEG: frame header at byte {start} is too short")
    height = int.from_bytes(data[header + 3:header + 5], "big")
    width = int.from_bytes(data[header + 5:header + 7], "big")
    if width == 0 or height == 0:
        raise JpegError(f"corrupt JPEG: frame of {width}x{height} pixels")
    return width, height
