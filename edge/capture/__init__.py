"""Capture: where frames come from. Every source has this one small interface;
`sources.open_source` picks the back-end for a camera's `source` setting."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class SourceError(RuntimeError):
    """The source cannot be opened or has failed."""


class FrameSource(Protocol):
    fps: float | None  # native rate when known
    is_file: bool

    def read(self) -> np.ndarray | None:
        """The next frame (BGR uint8), or None when there is none now (or the file ended)."""
        ...

    def close(self) -> None: ...
