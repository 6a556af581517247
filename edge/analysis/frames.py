"""Input checks the stateful analysers share (tamper, scene change).

A broken source must fail with a message that says what was wrong, and a clock
that steps back (NTP, a camera's own clock) must not make an analyser go back
in time.
"""

from __future__ import annotations

import math

import numpy as np


def check_image(frame: object, min_side: int, purpose: str) -> np.ndarray:
    """`frame` if it is a gray, BGR or BGRA uint8 image of at least `min_side`² pixels;
    else TypeError/ValueError saying why."""
    if not isinstance(frame, np.ndarray):
        raise TypeError(f"expected a numpy image, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {frame.dtype}")
    if not (frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] in (1, 3, 4))):
        raise ValueError(f"expected a gray, BGR or BGRA image, got shape {frame.shape}")
    if frame.shape[0] < min_side or frame.shape[1] < min_side:
        raise ValueError(f"frame too small for {purpose}: shape {frame.shape}")
    return frame


def steady_seconds(t: object, last: float | None, name: str = "t") -> float:
    """`t` as finite seconds, never earlier than `last`: a clock that steps back stands still."""
    try:
        value = float(t)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be seconds as a number, got {t!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number of seconds, got {t!r}")
    return value if last is None else max(value, last)
