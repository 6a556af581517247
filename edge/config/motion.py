"""Settings of motion detection (vaktpost.edge.analysis.motion)."""

from __future__ import annotations

from pydantic import Field

from vaktpost.contract.config import Strict


class MotionSection(Strict):
    width: int = Field(320, ge=64, le=1920, description="Analysis width in pixels (frames are downscaled)")
    threshold: int = Field(25, ge=1, le=255, description="Per-pixel difference from background that counts")
    learning_rate: float = Field(0.02, gt=0, lt=1, description="Background running-average weight per frame")
    min_area: float = Field(0.002, ge=0, le=1, description="Smallest box counted, as a fraction of the image")
    global_change: float = Field(
        0.6, gt=0, le=1, description="Changed fraction above which a frame is an illumination step, not motion"
    )
    min_duration: float = Field(1.0, ge=0, description="Seconds of motion before an event starts")
    merge_gap: float = Field(3.0, ge=0, description="Quiet seconds that end an event; shorter gaps merge bursts")
    update_interval: float = Field(10.0, gt=0, description="Seconds between update messages of a running event")
