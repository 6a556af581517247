"""Settings of lasting scene change detection (vaktpost.edge.analysis.scene_change)."""

from __future__ import annotations

from pydantic import Field

from vaktpost.contract.config import Strict


class SceneChangeSettings(Strict):
    width: int = Field(320, ge=64, le=1920, description="Analysis width in pixels (frames are downscaled)")
    threshold: int = Field(
        25, ge=1, le=255,
        description="Difference in any colour channel, after brightness compensation, that counts as changed",
    )
    settle_seconds: float = Field(
        10.0, gt=0, description="Seconds a change must stay with no movement and no person over it (judged per "
        "8x8-pixel cell at the analysis width) before it is reported"
    )
    min_area: float = Field(
        0.003, gt=0, le=1,
        description="Smallest change reported, as a fraction of the image's pixels; smaller lasting "
        "changes are learnt silently",
    )
    relearn_area: float = Field(
        0.5, gt=0, le=1,
        description="A change covering more than this fraction of the image is lighting or a new view: "
        "the reference is re-learnt and nothing is reported",
    )
    learn_seconds: float = Field(
        120.0, gt=0,
        description="Time constant with which the reference follows slow changes (daylight, shadows, seasons) "
        "where the picture is settled",
    )
    lighting_correlation: float = Field(
        0.8, gt=0, le=1,
        description="A changed area whose texture still correlates at least this much with the reference "
        "is lighting (a shadow, a patch of sun), not a change",
    )
