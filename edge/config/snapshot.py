"""How evidence snapshots are anonymised and encoded (vaktpost.edge.evidence)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from vaktpost.contract.config import Strict

Channel = Annotated[int, Field(ge=0, le=255)]
SnapshotMode = Literal["none", "anonymised"]


class SnapshotSettings(Strict):
    """How evidence snapshots are anonymised and encoded."""

    width: int = Field(640, ge=32, le=4096,
                       description="Snapshot width in pixels; larger frames are scaled down to it "
                       "(aspect ratio kept), smaller ones are never scaled up")
    quality: int = Field(80, ge=10, le=100, description="JPEG quality 10..100")
    face_margin: float = Field(0.25, ge=0, le=2,
                               description="Each face box is widened by this fraction of its width "
                               "(height) on the left and right (top and bottom) before it is filled")
    person_margin: float = Field(0.1, ge=0, le=2,
                                 description="Each person box is widened by this fraction of its size "
                                 "on every side before it is filled")
    motion_margin: float = Field(0.5, ge=0, le=2,
                                 description="Each moving region (the motion stage's boxes at snapshot time) "
                                 "is widened by this fraction of its size on every side before it is filled: "
                                 "motion boxes often hold only the moving part of a person")
    face_threshold: float = Field(0.4, gt=0, le=1,
                                  description="Lowest face-detector score that is filled. Lower than "
                                  "for events on purpose: when in doubt, hide")
    person_threshold: float = Field(0.3, gt=0, le=1,
                                    description="Lowest person-detector score that is filled (the "
                                    "anonymiser's own full-frame pass). Lower than for events: when in "
                                    "doubt, hide")
    fill: tuple[Channel, Channel, Channel] = Field(
        (0, 0, 0),
        description="BGR colour of every filled region: privacy masks, people and faces alike, so the "
        "hidden parts of a snapshot are one constant colour",
    )
    face_max_side: int = Field(1280, ge=32, le=4096,
                               description="The face detector sees the frame at full resolution up to "
                               "this many pixels on its longer side; larger frames are scaled down for "
                               "it (cost grows with the pixel count; small faces need the pixels)")
    threads: int = Field(1, ge=1, le=8,
                         description="onnxruntime intra-op threads for the anonymiser's face and person "
                         "detectors")


class SnapshotPolicy(Strict):
    """Which events carry an evidence snapshot. There is no raw choice: an image leaves
    the node only anonymised (people and faces filled solid), or not at all."""

    scene_change: SnapshotMode = Field("anonymised", description="Snapshot of the settled scene after the change")
    tamper: SnapshotMode = Field("anonymised", description="Snapshot of the view when tampering is confirmed")
    intrusion: SnapshotMode = Field("none", description="Snapshot when an intrusion starts (people hidden)")
    loitering: SnapshotMode = Field("none", description="Snapshot when loitering is reported (people hidden)")
    motion: SnapshotMode = Field("none", description="Snapshot when motion starts (people hidden)")
