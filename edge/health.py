"""Small health measurements for the node's heartbeat."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

THERMAL_ZONE = Path("/sys/class/thermal/thermal_zone0/temp")


def cpu_temperature(path: Path = THERMAL_ZONE) -> float | None:
    """SoC temperature in °C (Raspberry Pi and most Linux boards), None where the
    kernel does not expose one (containers, most x86 VMs)."""
    try:
        return round(int(path.read_text().strip()) / 1000.0, 1)  # the file holds millidegrees
    except (OSError, ValueError):
        return None


class FpsMeter:
    """Processed frames per second over the last `window` seconds, and frames the
    source produced that were never processed. Camera thread writes, heartbeat reads."""

    def __init__(self, window: float = 10.0, clock: Callable[[], float] = time.monotonic):
        if window <= 0:
            raise ValueError("window must be positive")
        self.window = window
        self._clock = clock
        self._times: deque[float] = deque()
        self._dropped = 0
        self._first: float | None = None
        self._lock = threading.Lock()

    def frame(self, dropped: int = 0) -> None:
        """One frame processed; `dropped` frames skipped since the previous one."""
        now = self._clock()
        with self._lock:
            self._times.append(now)
            if self._first is None:
                self._first = now
            self._dropped += max(0, dropped)
            self._trim(now)

    def fps(self) -> float:
        now = self._clock()
        with self._lock:
            self._trim(now)
            if self._first is None:
                return 0.0
            # A meter younger than its window divides by its age, so a camera that just
            # started is not reported as slow; the floor keeps one frame from reading as 1000 fps.
            span = max(1.0, min(self.window, now - self._first))
            return len(self._times) / span

    @property
    def dropped(self) -> int:
        with self._lock:
            return self._dropped

    def _trim(self, now: float) -> None:
        cutoff = now - self.window
        while self._times and self._times[0] <= cutoff:
            self._times.popleft()
