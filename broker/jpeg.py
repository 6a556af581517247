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

CONTENT_TYPE = "image/jpeg"

SOI, EOI, SOS = 0xD8, 0xD9, 0xDA
ALLOWED_APP = frozenset({0xE0, 0xEE})  # APP0 JFIF, APP14 Adobe
# Start-of-frame markers: C0-CF except DHT (C4), JPG (C8) and DAC (CC).
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


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


def _skip_entropy_data(data: bytes, pos: int) -> int:
    """Position of the marker that ends the scan starting at `pos`. Inside a scan
    0xFF is followed by 0x00 (a stuffed byte) or a restart marker; anything else
    is the next segment."""
    n = len(data)
    while True:
        j = data.find(b"\xff", pos)
        if j < 0 or j + 1 >= n:
            raise JpegError("truncated JPEG: scan data runs to the end of the payload")
        nxt = data[j + 1]
        if nxt == 0x00 or 0xD0 <= nxt <= 0xD7:
            pos = j + 2
            continue
        return j


def check_jpeg(data: bytes, max_bytes: int) -> tuple[int, int]:
    """Raise JpegError unless `data` is a complete JPEG of at most `max_bytes` bytes
    without metadata segments; returns (width, height) from its frame header."""
    n = len(data)
    if n > max_bytes:
        raise JpegError(f"snapshot of {n} bytes exceeds the limit of {max_bytes} bytes")
    if n < 4 or data[0] != 0xFF or data[1] != SOI:
        raise JpegError("not a JPEG: the payload does not start with FFD8")
    if data[-2] != 0xFF or data[-1] != EOI:
        raise JpegError("not a complete JPEG: the payload does not end with FFD9")
    pos = 2
    size: tuple[int, int] | None = None
    scanned = False
    while True:
        if pos >= n or data[pos] != 0xFF:
            raise JpegError(f"corrupt JPEG: no marker at byte {pos}")
        while pos < n and data[pos] == 0xFF:  # fill bytes may precede any marker
            pos += 1
        if pos >= n:
            raise JpegError("truncated JPEG: ends inside a marker")
        marker, at = data[pos], pos - 1
        pos += 1
        if marker == EOI:
            if pos != n:
                raise JpegError(f"{n - pos} bytes after the end-of-image marker")
            break
        if marker == 0x00 or marker == 0x01 or marker == SOI or 0xD0 <= marker <= 0xD7:
            raise JpegError(f"corrupt JPEG: unexpected marker FF{marker:02X} at byte {at}")
        if pos + 2 > n:
            raise JpegError("truncated JPEG: ends inside a segment header")
        length = int.from_bytes(data[pos:pos + 2], "big")
        if length < 2 or pos + length > n:
            raise JpegError(f"corrupt JPEG: segment FF{marker:02X} at byte {at} runs past the end")
        if marker == 0xFE or (0xE0 <= marker <= 0xEF and marker not in ALLOWED_APP):
            raise JpegError(f"metadata segment {_segment_name(marker)} at byte {at} is not allowed "
                            "in a snapshot")
        if marker in _SOF:
            if length < 8:
                raise JpegError(f"corrupt JPEG: frame header at byte {at} is too short")
            height = int.from_bytes(data[pos + 3:pos + 5], "big")
            width = int.from_bytes(data[pos + 5:pos + 7], "big")
            if width == 0 or height == 0:
                raise JpegError(f"corrupt JPEG: frame of {width}x{height} pixels")
            size = (width, height)
        pos += length
        if marker == SOS:
            if size is None:
                raise JpegError("corrupt JPEG: scan before the frame header")
            scanned = True
            pos = _skip_entropy_data(data, pos)
    if size is None or not scanned:
        raise JpegError("not a JPEG image: no frame header or no scan")
    return size
