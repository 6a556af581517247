"""Settings of the person tracker (vaktpost.edge.analysis.track)."""

from __future__ import annotations

from pydantic import Field, model_validator

from vaktpost.contract.config import Strict

_REPLACED = {"iou_threshold": "gate", "max_center_distance": "gate", "min_hits": "confirm_hits and confirm_runs"}


class TrackerSettings(Strict):
    @model_validator(mode="before")
    @classmethod
    def _removed(cls, data: object) -> object:
        # An old config should say what replaced the key, not just "extra inputs not permitted".
        for old, new in _REPLACED.items():
            if isinstance(data, dict) and old in data:
                raise ValueError(f"{old} was removed: the tracker now gates by predicted position ({new})")
        return data

    gate: float = Field(
        3.5, gt=0, le=10,
        description="Largest distance, in standard deviations of the track's predicted position (Kalman "
        "filter), at which a detection can still be that track's person; the prediction's uncertainty "
        "grows with the time since the last match, so a fast walker at a low detector rate stays inside",
    )
    confirm_hits: int = Field(
        3, ge=1, le=50,
        description="A new detection becomes a reported track once it was matched in this many of its "
        "last confirm_runs detector runs (M of N); filters one-frame and flickering false detections",
    )
    confirm_runs: int = Field(
        5, ge=1, le=100,
        description="The window of detector runs (N) in which confirm_hits matches confirm a track; "
        "a candidate missed in more than confirm_runs - confirm_hits of them is forgotten",
    )
    confirm_fps: float = Field(
        5.0, gt=0, le=30,
        description="While an unconfirmed candidate exists the detector runs up to this often per second "
        "(instead of detector.max_fps), so a person is confirmed quickly",
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

    @model_validator(mode="after")
    def _hits_fit_runs(self) -> TrackerSettings:
        if self.confirm_hits > self.confirm_runs:
            raise ValueError(f"confirm_hits ({self.confirm_hits}) cannot exceed confirm_runs ({self.confirm_runs})")
        return self
