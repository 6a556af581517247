"""The node messages other than events: Ack (consumer → node), Status and Heartbeat
(node → consumer). Docs: docs/mqtt.md, "Payloads"."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from vaktpost.contract.events import COUNT_MAX, Ident, UtcTime

# Bounds (docs/mqtt.md, "Bounds"): the timestamps are bounded by UtcTime.
Count = Annotated[int, Field(ge=0, le=COUNT_MAX)]
MAX_CAMERAS = 64  # entries of a per-camera map


class Ack(BaseModel):
    """Consumer → node on `acks`: these events are committed centrally and may be forgotten."""

    model_config = ConfigDict(extra="forbid")
    event_ids: list[str] = Field(min_length=1)


class Status(BaseModel):
    """Retained on `status`; the Last Will sets `offline`."""

    model_config = ConfigDict(allow_inf_nan=False)
    node_id: Ident
    state: Literal["online", "offline"]
    at: UtcTime | None = None


class Heartbeat(BaseModel):
    """Periodic node health on `heartbeat`."""

    model_config = ConfigDict(allow_inf_nan=False)
    node_id: Ident
    at: UtcTime
    fps: dict[Ident, Annotated[float, Field(ge=0, le=1e6)]] = Field(  # unpaced test sources run fast
        default_factory=dict, max_length=MAX_CAMERAS, description="Processed frames/s per camera")
    dropped_frames: dict[Ident, Count] = Field(default_factory=dict, max_length=MAX_CAMERAS)
    outbox_depth: Count = 0
    outbox_dropped: Count = 0
    outbox_failed: Count = 0
    outbox_expired: Count = 0
    cpu_temp_c: Annotated[float, Field(ge=-100, le=200)] | None = None
