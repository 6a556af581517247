"""JPEG structure, shared by node and central: the segment parser (`jpeg_spans`) that
strips the node's snapshots, and the cheap structural check of the snapshots
central receives (docs/central.md, "Snapshots").

The consumer does not decode images. It walks the marker segments instead, which is
enough to refuse what is not a plain baseline/progressive JPEG and, above all,
anything that could carry other data. A node strips its snapshots to the segments in
`NODE_MARKERS` (the node's KEEP_MARKERS: frame and scan headers, tables, restart
interval) and the centre accepts exactly those: every application segment (APP0
thumbnails and text included, EXIF/XMP in APP1, ICC, IPTC, Adobe APP14), comments,
and the JPGn extensions (FFF0-FFFD, FFC8) are refused. Data after the end-of-image
marker is refused too: it is where appended files hide.
"""

from __future__ import annotations

from collections.abc import Iterator

CONTENT_TYPE = "image/jpeg"

SOI, EOI, SOS = 0xD8, 0xD9, 0xDA
# Start-of-frame markers: C0-CF except DHT (C4), JPG (C8) and DAC (CC).
SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
DQT, DHT, DAC, DNL, DRI = 0xDB, 0xC4, 0xCC, 0xDC, 0xDD
# The segments a node's snapshot is made of (it strips all others), and all the centre accepts.
NODE_MARKERS = frozenset({SOI, EOI, SOS, DQT, DHT, DAC, DRI, DNL} | SOF)
# Markers without a length field.
_STANDALONE = frozenset({SOI, EOI, 0x01} | set(range(0xD0, 0xD8)))
# Never a segment of their own outside a scan: a stuffed zero, TEM and restart markers.
_UNEXPECTED = frozenset({0x00, 0x01} | set(range(0xD0, 0xD8)))


# --- parsing ------------------------------------------------------------------------


def jpeg_spans(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(marker, start, end) for each segment of a JPEG, `end` exclusive.

    An SOS segment's range includes the entropy-coded data after it, up to the
    next marker that is neither a stuffed 0xFF00 nor a restart marker.
    Raises ValueError on anything that is not a well-formed JPEG.
    """
    if data[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG: no SOI marker at the start")
    yield SOI, 0, 2
    pos, n = 2, len(data)
    while pos < n:
        if data[pos] != 0xFF:
            raise ValueError(f"JPEG: expected a marker at byte {pos}")
        start = pos
        while pos < n and data[pos] == 0xFF:  # fill bytes may precede a marker
            pos += 1
        if pos >= n:
            raise ValueError("JPEG: truncated marker")
        marker = data[pos]
        pos += 1
        if marker == EOI:
            yield EOI, start, pos
            return
        if marker in _STANDALONE:
            yield marker, start, pos
            continue
        if pos + 2 > n:
            raise ValueError(f"JPEG: truncated segment 0x{marker:02X}")
        length = int.from_bytes(data[pos : pos + 2], "big")
        if length < 2:
            raise ValueError(f"JPEG: segment 0x{marker:02X} at byte {start} has a bad length {length}")
        if pos + length > n:
            raise ValueError(f"JPEG: segment 0x{marker:02X} at byte {start} runs past the end")
        pos += length
        if marker == SOS:
            pos = _end_of_scan(data, pos)
        yield marker, start, pos
    raise ValueError("JPEG: no EOI marker")


def _end_of_scan(data: bytes, pos: int) -> int:
    """Index of the first marker after entropy-coded data starting at `pos`.

    0xFF00 is a stuffed data byte and RST0-7 markers belong to the scan; any
    other 0xFF (including fill bytes before the next marker) ends it.
    """
    n = len(data)
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= n:
            raise ValueError("JPEG: scan data runs to the end of the file")
        nxt = data[pos + 1]
        if nxt == 0x00 or 0xD0 <= nxt <= 0xD7:
            pos += 2
            continue
        return pos


# --- the central check -------------------------------------------------------------


class JpegError(ValueError):
    """The payload is not an acceptable snapshot; the message says why."""


def _segment_name(marker: int) -> str:
    if marker == 0xE1:
        return "APP1 (EXIF/XMP metadata)"
    if 0xE0 <= marker <= 0xEF:
        return f"APP{marker - 0xE0} (application metadata)"
    if marker == 0xFE:
        return "COM (comment)"
    if 0xF0 <= marker <= 0xFD or marker == 0xC8:
        return f"FF{marker:02X} (JPG extension)"
    return f"FF{marker:02X}"


def check_jpeg(data: bytes, max_bytes: int) -> tuple[int, int]:
    """Raise JpegError unless `data` is a complete JPEG of at most `max_bytes` bytes
    made only of the segments a node writes (`NODE_MARKERS`); returns (width, height)
    from its frame header.

    The segments are walked by the same parser that strips the node's snapshots
    (`jpeg_spans`); this only judges what it finds."""
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
            if marker not in NODE_MARKERS:
                raise JpegError(f"segment {_segment_name(marker)} at byte {start} is not allowed in a snapshot: "
                                "nodes write no such segment")
            if marker in SOF:
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
