"""The node messages other than events: Ack (consumer → node), Status and Heartbeat
(node → consumer). Docs: docs/mqtt.md, "Payloads"."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from vaktpost.contract.events import UtcTime


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
