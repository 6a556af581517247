"""Settings of the people rules: intrusion and loitering (vaktpost.edge.analysis.rules)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from vaktpost.contract.config import Strict
from vaktpost.edge.config.track import TrackerSettings

Seconds = Annotated[float, Field(gt=0)]


class RulesSettings(Strict):
    """People rules: intrusion and loitering (edge/analysis/rules.py)."""

    intrusion: bool = Field(True, description="Report people inside armed zones (intrusion events)")
    intrusion_min_seconds: float = Field(
        1.0, ge=0, description="Seconds a person must be inside an armed zone before an intrusion event starts",
    )
    loitering: bool = Field(True, description="Report people staying long in a zone (loitering events)")
    loiter_seconds: float = Field(
        60.0, gt=0,
        description="Seconds a person must stay in a zone before a loitering event is published; "
        "the event's started_at is when they entered",
    )
    loiter_seconds_by_zone: dict[str, Seconds | None] = Field(
        default_factory=dict,
        description="Per-zone loiter_seconds, keyed by zone name; null turns loitering off for that zone "
        "(e.g. a bench where sitting is normal)",
    )
    loiter_armed_only: bool = Field(
        False, description="Count loitering only while the zone is armed; false: at any time",
    )
    reenter_gap: float = Field(
        5.0, ge=0,
        description="Seconds a person may be out of a zone and come back with the event continuing; also "
        "how long after leaving an event ends. Must be at least tracker.max_age_seconds",
    )
    update_interval: float = Field(
        10.0, gt=0, description="Seconds between update messages of a running intrusion or loitering event",
    )
    tracker: TrackerSettings = Field(
        default_factory=TrackerSettings, description="Person tracker (edge/analysis/track.py) feeding these rules",
    )

    @model_validator(mode="after")
    def _gap_covers_tracker_memory(self) -> RulesSettings:
        # A person unseen for a moment stays the same track for max_age_seconds; a shorter
        # reenter_gap would still cut their one event in two.
        if self.reenter_gap < self.tracker.max_age_seconds:
            raise ValueError(
                f"reenter_gap ({self.reenter_gap}) must be at least tracker.max_age_seconds "
                f"({self.tracker.max_age_seconds}), or one person's event splits while the detector misses them"
            )
        return self
