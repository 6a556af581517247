"""The node messages other than events: Ack (consumer → node), Status, Heartbeat and
the retained NodeSetup on `config` (node → consumer). Docs: docs/mqtt.md, "Payloads"."""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from vaktpost.contract.config import TimeZoneName
from vaktpost.contract.events import COUNT_MAX, TIME_DOC, EventType, Ident, UtcTime
from vaktpost.contract.schedule import ArmedSchedule

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


# -- config (retained): what a node watches ------------------------------------------

SETUP_SCHEMA: Final = "vaktpost.config/1"
MAX_ZONES = 64  # per camera
DAY_SECONDS = 86400.0
SnapshotMode = Literal["none", "anonymised"]
ZoneName = Annotated[str, Field(pattern=r"^[A-Za-z0-9 _-]{1,64}$")]
_Seconds = Annotated[float, Field(gt=0, le=3650 * DAY_SECONDS)]


class _Setup(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class PeopleRules(_Setup):
    """The people rules of one zone, as the node applies them."""

    intrusion: bool = Field(description="Intrusion events while the zone is armed")
    intrusion_min_seconds: Annotated[float, Field(ge=0, le=DAY_SECONDS)]
    loiter_seconds: _Seconds | None = Field(description="Loitering after this long in the zone; null: off")
    loiter_armed_only: bool


class ZoneSetup(_Setup):
    name: ZoneName
    schedule: ArmedSchedule = Field(
        description="As evaluated by the node: preset ranges filled in, holidays (public holidays and "
        "school breaks) resolved for about the next 13 months")
    people_rules: PeopleRules


class CameraSetup(_Setup):
    id: Ident
    timezone: Annotated[TimeZoneName, Field(max_length=64, description="IANA zone the schedules are read in")]
    fps: Annotated[float, Field(gt=0, le=60, description="Frames analysed per second")]
    masked_share: Annotated[float, Field(ge=0, le=1, description="Share of the view under privacy masks")]
    zones: list[ZoneSetup] = Field(default_factory=list, max_length=MAX_ZONES)
    snapshots: dict[EventType, SnapshotMode] = Field(
        default_factory=dict, max_length=len(EventType),
        description="Snapshot policy per event type: anonymised, or none (no image leaves the node)")

    @model_validator(mode="after")
    def _unique_zones(self) -> CameraSetup:
        if len({z.name for z in self.zones}) != len(self.zones):
            raise ValueError("zone names must be unique per camera")
        return self


class Retention(_Setup):
    max_age: _Seconds = Field(description="Unacknowledged events older than this are deleted from the node")


class NodeSetup(_Setup):
    """Retained on `config`: what a node watches and how (no images). Sent at every
    connect and when it changes; the consumer keeps its history (docs/mqtt.md)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, title="VaktpostNodeConfig")
    schema_: Literal["vaktpost.config/1"] = Field(SETUP_SCHEMA, alias="schema")
    node_id: Ident
    at: Annotated[UtcTime, Field(description=f"When the node sent this. {TIME_DOC}")]
    cameras: list[CameraSetup] = Field(min_length=1, max_length=MAX_CAMERAS)
    retention: Retention

    @model_validator(mode="after")
    def _unique_cameras(self) -> NodeSetup:
        if len({c.id for c in self.cameras}) != len(self.cameras):
            raise ValueError("camera ids must be unique")
        return self

    def to_payload(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()

    def content(self) -> dict[str, Any]:
        """What the node watches, without when it said so: equal for an unchanged setup."""
        return self.model_dump(mode="json", by_alias=True, exclude={"at"})


def setup_json_schema() -> dict[str, Any]:
    """The published JSON Schema of `vaktpost.config/1` (config-1.schema.json)."""
    schema = NodeSetup.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://vaktpost.example/schema/config/1.json"
    schema["required"] = ["schema", *schema["required"]]
    return schema


def published_schemas() -> dict[str, dict[str, Any]]:
    """Every published JSON Schema by file name (`vaktpost schema --write`)."""
    from vaktpost.contract.events import EVENT_MODELS, json_schema, schema_file_name
    return {**{schema_file_name(n): json_schema(n) for n in EVENT_MODELS}, "config-1.schema.json": setup_json_schema()}
