"""Settings of camera tamper detection (vaktpost.edge.analysis.tamper)."""

from __future__ import annotations

from pydantic import Field

from vaktpost.contract.config import Strict


class TamperSettings(Strict):
    width: int = Field(320, ge=64, le=1920, description="Analysis width in pixels (frames are downscaled)")
    confirm_seconds: float = Field(
        2.5, ge=0, description="Seconds of tampered frames before an incident is confirmed (once per incident)"
    )
    recover_seconds: float = Field(
        3.0, ge=0, description="Seconds of healthy frames that end an incident"
    )
    covered_contrast: float = Field(
        0.35, gt=0, lt=1,
        description="A cell counts as covered when its contrast relative to its brightness falls below "
        "this share of the reference's (a dark but structured night keeps its relative contrast)",
    )
    defocus_ratio: float = Field(
        0.4, gt=0, lt=1,
        description="A cell counts as blurred when its sharpness (gradient energy / variance) falls below "
        "this share of the reference's",
    )
    min_area: float = Field(
        0.6, gt=0, le=1,
        description="Share of the structured cells that must be covered (or blurred) for 'covered' ('defocused')",
    )
    moved_shift: float = Field(
        0.05, gt=0, le=0.5,
        description="Global shift against the reference, as a fraction of width/height, that counts as 'moved'",
    )
    moved_match: float = Field(
        0.3, gt=-1, lt=1,
        description="Median per-cell correlation with the reference below which the view no longer "
        "matches ('moved', e.g. turned or rotated)",
    )
    reference_seconds: float = Field(
        60.0, gt=0,
        description="Time constant of the reference view, learnt only from healthy frames outside incidents",
    )
    adopt_moved_seconds: float | None = Field(
        600.0, gt=0,
        description="A 'moved' incident lasting this long ends and the new view becomes the reference "
        "(the camera was re-aimed for good); null keeps it open until the old view returns. "
        "'covered' and 'defocused' never adopt",
    )
    signal_lost_seconds: float = Field(
        5.0, gt=0, description="No frames for this long is 'signal_lost' (see TamperDetector.signal)"
    )
