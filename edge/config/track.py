"""Settings of the person tracker (vaktpost.edge.analysis.track)."""

from __future__ import annotations

from pydantic import Field

from vaktpost.contract.config import Strict


class TrackerSettings(Strict):
    iou_threshold: float = Field(
        0.3, gt=0, le=1,
        description="Least overlap (IoU) between a track's predicted box and a detection to count as the same person",
    )
    max_center_distance: float = Field(
        1.0, ge=0,
        description="Fallback when boxes do not overlap enough: largest centre distance, in box diagonals, "
        "still taken as the same person (fast walkers at a low detector rate); 0 disables the fallback",
    )
    min_hits: int = Field(
        3, ge=1, le=50,
        description="Matches in a row before a track is confirmed and reported; filters one-frame false detections",
    )
    max_missed: int = Field(
        10, ge=0, le=1000,
        description="Detector runs in a row without a match after which a confirmed track is dropped",
    )
    max_age_seconds: float = Field(
        3.0, gt=0,
        description="Seconds since the last match after which a track is dropped, whether or not the detector "
        "ran in between (frames where it did not run age tracks only by this)",
    )
