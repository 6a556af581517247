"""The event contract: the one source of truth for what a node publishes.

`vaktpost/contract/schema/event.schema.json` is generated from `Event` (``vaktpost schema``)
and a test fails when it is stale. Events carry the minimum: what, where, when,
how sure. No image data and no free text from the camera: an event only says
whether an anonymised snapshot travels separately (`snapshot`).
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import datetime, timezone
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

SCHEMA_NAME = "vaktpost.event/1"


class EventType(StrEnum):
    motion = "motion"
    intrusion = "intrusion"
    loitering = "loitering"
    scene_change = "scene_change"
    tamper = "tamper"
    health = "health"


def _round_region(v: list[float] | None) -> list[float] | None:
    if v is None:
        return None
    x1, y1, x2, y2 = (min(1.0, max(0.0, round(float(c), 2))) for c in v)
    if x2 < x1 or y2 < y1:
        raise ValueError("region must be [x1, y1, x2, y2] with x1<=x2 and y1<=y2")
    return [x1, y1, x2, y2]


def _utc(v: datetime | None) -> datetime | None:
    if v is None:
        return None
    if v.tzinfo is None:
        raise ValueError("timestamps must carry a time zone")
    return v.astimezone(timezone.utc)


Region = Annotated[
    list[float],
    Field(min_length=4, max_length=4, description="Normalised [x1, y1, x2, y2], 0..1, 2 decimals"),
    AfterValidator(_round_region),
]
UtcTime = Annotated[datetime, AfterValidator(_utc)]
SnapshotState = Literal["none", "attached", "withheld"]
# Why a node sends no snapshot although one was due: the anonymiser's model is absent
# or fails its checksum, it failed on the frame, or JPEG encoding failed.
WithheldReason = Literal["model_missing", "model_checksum", "inference_error", "encode_error"]
Ident = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
UUID7_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"


class Event(BaseModel):
    """One detection, in its current state (`ended_at` is null while it lasts)."""

    model_config = ConfigDict(extra="forbid", title="VaktpostEvent")

    schema_: Literal["vaktpost.event/1"] = Field(SCHEMA_NAME, alias="schema")
    event_id: Annotated[str, Field(pattern=UUID7_PATTERN, description="UUIDv7: unique, sortable by creation time")]
    seq: Annotated[int, Field(ge=0, description="Per-node monotonic sequence number")]
    node_id: Ident
    camera_id: Ident | None = None
    type: EventType
    subtype: Annotated[str, Field(pattern=r"^[a-z_]{1,32}$")] | None = None
    zone: Annotated[str, Field(pattern=r"^[A-Za-z0-9 _-]{1,64}$")] | None = None
    started_at: UtcTime
    ended_at: UtcTime | None = None
    confidence: Annotated[float, Field(ge=0.0, le=1.0)]
    region: Region | None = None
    snapshot: SnapshotState = Field(
        "none",
        description="Evidence snapshot: none (not taken), attached (an anonymised JPEG goes to "
        "snapshots/<event_id>), withheld (one was due but none is sent; snapshot_withheld says why)",
    )
    snapshot_withheld: WithheldReason | None = Field(
        None, description="Why the snapshot was withheld; set exactly when snapshot is withheld")

    @model_validator(mode="after")
    def _withheld_has_reason(self) -> "Event":
        # A reason without "withheld" (or the reverse) is a node bug the consumer should see.
        if (self.snapshot == "withheld") != (self.snapshot_withheld is not None):
            raise ValueError("snapshot_withheld must be set when snapshot is withheld, and only then")
        return self

    def to_payload(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()

    @classmethod
    def from_payload(cls, data: bytes | str) -> "Event":
        return cls.model_validate_json(data)


def uuid7(ms: int | None = None) -> str:
    """RFC 9562 UUIDv7 (stdlib gains uuid7 only in 3.14)."""
    ms = int(time.time() * 1000) if ms is None else ms
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


def json_schema() -> dict:
    schema = Event.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://vaktpost.example/schema/event/1.json"
    return schema


class Ack(BaseModel):
    """Consumer → node on `acks`: these events are committed centrally and may be forgotten."""

    model_config = ConfigDict(extra="forbid")
    event_ids: list[str] = Field(min_length=1)


class Status(BaseModel):
    """Retained on `status`; the Last Will sets `offline`."""

    node_id: str
    state: Literal["online", "offline"]
    at: UtcTime | None = None


class Heartbeat(BaseModel):
    """Periodic node health on `heartbeat`."""

    node_id: str
    at: UtcTime
    fps: dict[str, float] = Field(default_factory=dict, description="Processed frames/s per camera")
    dropped_frames: dict[str, int] = Field(default_factory=dict)
    outbox_depth: int = 0
    outbox_dropped: int = 0
    outbox_failed: int = 0
    outbox_expired: int = 0
    cpu_temp_c: float | None = None
