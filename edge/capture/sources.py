"""Frame sources over OpenCV's capture back-ends (the interface is `vaktpost.edge.capture`).

`FrameSource.read()` returns the next frame or None. Sources are opened by
`open_source`; the live reader (`LatestFrame`) keeps only the newest frame, so a
node that falls behind drops frames instead of queueing them.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vaktpost.edge.capture import FrameSource, SourceError

log = logging.getLogger(__name__)


def describe(source: str | int) -> str:
    if isinstance(source, int) or str(source).isdigit():
        return f"V4L2 device {source}"
    s = str(source)
    if s.startswith(("rtsp://", "http://", "https://")):
        # Never log credentials embedded in a camera URL.
        scheme, _, rest = s.partition("://")
        return f"{scheme}://{rest.rpartition('@')[2]}"
    return s


class OpenCVSource:
    """A video file, V4L2 device (index or /dev/videoN), or RTSP/HTTP stream."""

    def __init__(self, source: str | int):
        self.source = source
        self.is_file = False
        if isinstance(source, int) or str(source).isdigit():
            self._cap = cv2.VideoCapture(int(source), cv2.CAP_V4L2)
        elif str(source).startswith(("rtsp://", "http://", "https://")):
            self._cap = cv2.VideoCapture(str(source), cv2.CAP_FFMPEG)
        else:
            path = Path(str(source))
            if not str(source).startswith("/dev/") and not path.exists():
                raise SourceError(f"{source}: no such file")
            self.is_file = not str(source).startswith("/dev/")
            self._cap = cv2.VideoCapture(str(path), cv2.CAP_V4L2 if not self.is_file else cv2.CAP_ANY)
        if not self._cap.isOpened():
            raise SourceError(f"cannot open {describe(source)}")
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 0 < fps < 1000 else None
        count = self._cap.get(cv2.CAP_PROP_FRAME_COUNT)
        self.frame_count = int(count) if self.is_file and count and count > 0 else None

    def read(self) -> np.ndarray | None:
        ok, frame = self._cap.read()
        if not ok or frame is None or frame.size == 0 or frame.ndim not in (2, 3):
            return None
        return frame

    def close(self) -> None:
        self._cap.release()


def open_source(source: str | int) -> FrameSource:
    return OpenCVSource(source)


def sampled_frames(video: Path, fps: float) -> Iterator[tuple[int, float, np.ndarray | None]]:
    """(index, seconds since frame 0, image) for every frame of a file, unpaced; the image is
    None for frames a live node at `fps` would drop. Frame time is the file's own, so
    analysis of a file (offline, or a node with `pace: false`) is repeatable."""
    src = open_source(str(video))
    native = src.fps or fps
    last_slot = -1
    try:
        for i in itertools.count():
            img = src.read()
            if img is None:
                return
            t = i / native
            # One frame per 1/fps slot; the rest is what a live node would drop.
            slot = int(t * fps + 1e-6)
            yield i, t, (img if slot != last_slot else None)
            last_slot = slot
    finally:
        src.close()


@dataclass
class Frame:
    image: np.ndarray
    number: int  # frames delivered by the source so far (for counting drops)
    at: float  # time.monotonic() when read


class LatestFrame:
    """Reads a live source in its own thread, keeping only the newest frame.

    Reconnects with exponential backoff when the source fails or disappears and
    reports lost/restored through `on_state(lost: bool)`. File sources are paced at
    their native rate so a file behaves like a camera; at the end `ended` is set.
    """

    def __init__(self, source: str | int, *, max_backoff: float = 30.0,
                 on_state=lambda lost, reason: None, opener=open_source):
        self._source = source
        self._max_backoff = max_backoff
        self._on_state = on_state
        self._opener = opener
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._count = 0
        self._stop = threading.Event()
        self.ended = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"source-{describe(source)}", daemon=True)

    def start(self) -> LatestFrame:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout=5)

    def wait_newer(self, number: int, timeout: float) -> Frame | None:
        """The newest frame if it is newer than `number`, waiting up to `timeout`."""
        with self._cond:
            self._cond.wait_for(
                lambda: (self._latest is not None and self._latest.number > number)
                or self._stop.is_set() or self.ended.is_set(),
                timeout=timeout,
            )
            f = self._latest
            return f if f is not None and f.number > number else None

    def _run(self) -> None:
        backoff = 1.0
        lost = False
        while not self._stop.is_set():
            try:
                src = self._opener(self._source)
            except SourceError as e:
                if not lost:
                    lost = True
                    self._on_state(True, str(e))
                log.warning("%s; retrying in %.0f s", e, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            if lost:
                lost = False
                self._on_state(False, "restored")
            backoff = 1.0
            period = 1.0 / src.fps if src.is_file and src.fps else 0.0
            t0 = time.monotonic()
            n = 0
            try:
                while not self._stop.is_set():
                    img = src.read()
                    if img is None:
                        break
                    n += 1
                    if period:  # pace files at their native rate
                        delay = t0 + n * period - time.monotonic()
                        if delay > 0:
                            self._stop.wait(delay)
                    with self._cond:
                        self._count += 1
                        self._latest = Frame(img, self._count, time.monotonic())
                        self._cond.notify_all()
            finally:
                src.close()
            if src.is_file:
                self.ended.set()
                with self._cond:
                    self._cond.notify_all()
                return
            if not self._stop.is_set():
                lost = True
                self._on_state(True, f"{describe(self._source)} stopped delivering frames")
