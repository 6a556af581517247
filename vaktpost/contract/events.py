"""The event contract: the one source of truth for the events a node publishes.

Every version of the event format has its own `schema` name and its own published
JSON Schema (`vaktpost/contract/schema/event-<n>.schema.json`, written by
``vaktpost schema --write``; a test fails when one is stale). The versioning
policy is in docs/mqtt.md: every change of fields is a new version; nodes emit
the newest (`Event`), the consumer accepts every version in `EVENT_MODELS`.

Events carry the minimum: what, where, when, how sure. No image data and no free
text from the camera: an event only says whether an anonymised snapshot travels
separately (`snapshot`). Unknown fields are refused in every version.
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, model_validator

SCHEMA_V1: Final = "vaktpost.event/1"
SCHEMA_V2: Final = "vaktpost.event/2"
SCHEMA_NAME = SCHEMA_V2  # what nodes emit

# Bounds of every number and time a node sends (docs/mqtt.md, "Bounds"): a value out
# of them is refused when parsed, never stored, so nothing a node sends can overflow
# a conversion or a database column. Checked in every version (v1's published schema
# does not state them; v2's does).
SEQ_MAX: Final = 2**63 - 1  # the place log's BIGINT
COUNT_MAX: Final = 2**63 - 1  # any other counter a node reports
TIME_MIN: Final = datetime(1970, 1, 1, tzinfo=UTC)  # inclusive
TIME_MAX: Final = datetime(2100, 1, 1, tzinfo=UTC)  # exclusive
# The consumer refuses times further ahead of its own clock than this: a far-future
# event would never reach the retention cutoff.
MAX_AHEAD: Final = timedelta(days=1)
TIME_DOC: Final = ("RFC 3339 time with a zone, from 1970-01-01T00:00:00Z up to (not including) "
                   "2100-01-01T00:00:00Z; the consumer refuses times more than a day ahead of its clock")


class EventType(StrEnum):
    motion = "motion"
    intrusion = "intrusion"
    loitering = "loitering"
    scene_change = "scene_change"
    tamper = "tamper"
    health = "health"


class TamperSubtype(StrEnum):
    covered = "covered"
    defocused = "defocused"
    moved = "moved"
    signal_lost = "signal_lost"


class SceneChangeSubtype(StrEnum):
    appeared = "appeared"  # something new stands out
    removed = "removed"  # something that stood out is gone
    changed = "changed"


class HealthSubtype(StrEnum):
    camera_lost = "camera_lost"
    detector_unavailable = "detector_unavailable"
    snapshot_withheld = "snapshot_withheld"


Subtype = TamperSubtype | SceneChangeSubtype | HealthSubtype
# The subtypes each type takes; None: the type has no subtype (subtype is null).
SUBTYPES: dict[EventType, type[StrEnum] | None] = {
    EventType.motion: None,
    EventType.intrusion: None,
    EventType.loitering: None,
    EventType.scene_change: SceneChangeSubtype,
    EventType.tamper: TamperSubtype,
    EventType.health: HealthSubtype,
}


class WithheldReason(StrEnum):
    """Why a node sends no snapshot although one was due."""

    model_missing = "model_missing"  # the anonymiser's model is absent
    model_checksum = "model_checksum"  # ... or fails its checksum
    inference_error = "inference_error"  # the anonymiser failed on the frame
    encode_error = "encode_error"  # JPEG encoding failed


class Phase(StrEnum):
    """Which message of an event this is: the first, one while it lasts, or the last
    (the only one with `ended_at` set; an event that is over when first reported,
    such as a scene change, is a single `end`)."""

    start = "start"
    update = "update"
    end = "end"


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
    try:
        t = v.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+05:00: before year 1 in UTC
        raise ValueError("timestamp out of range") from None
    if not TIME_MIN <= t < TIME_MAX:
        raise ValueError(f"timestamp must be from {TIME_MIN:%Y-%m-%d} up to {TIME_MAX:%Y-%m-%d} (UTC)")
    return t


Region = Annotated[
    list[float],
    Field(min_length=4, max_length=4, description="Normalised [x1, y1, x2, y2], 0..1, 2 decimals"),
    AfterValidator(_round_region),
]
UtcTime = Annotated[datetime, AfterValidator(_utc)]
SnapshotState = Literal["none", "attached", "withheld"]
Ident = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
UUID7_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
_SNAPSHOT_DOC = ("Evidence snapshot: none (not taken), attached (an anonymised JPEG goes to "
                 "snapshots/<event_id>), withheld (one was due but none is sent; snapshot_withheld says why)")


class BaseEvent(BaseModel):
    """The fields every version shares (not a published version itself). The store
    and the consumer take any version through this type."""

    # No NaN or infinity (JSON has neither; a parser may still accept them).
    model_config = ConfigDict(extra="forbid", title="VaktpostEvent", allow_inf_nan=False)

    schema_: str = Field(alias="schema")
    event_id: Annotated[str, Field(pattern=UUID7_PATTERN, description="UUIDv7: unique, sortable by creation time")]
    seq: Annotated[int, Field(ge=0, description="Per-node monotonic sequence number")]
    node_id: Ident
    camera_id: Ident | None = None
    type: EventType
    subtype: str | None = None
    zone: Annotated[str, Field(pattern=r"^[A-Za-z0-9 _-]{1,64}$")] | None = None
    started_at: UtcTime
    ended_at: UtcTime | None = None
    confidence: Annotated[float, Field(ge=0.0, le=1.0)]
    region: Region | None = None
    snapshot: SnapshotState = Field("none", description=_SNAPSHOT_DOC)
    snapshot_withheld: str | None = None

    @model_validator(mode="after")
    def _seq_fits(self) -> BaseEvent:
        # v2 states this bound in its schema (Event.seq); v1 is only held to it here.
        if self.seq > SEQ_MAX:
            raise ValueError(f"seq must be at most {SEQ_MAX}")
        return self

    @model_validator(mode="after")
    def _withheld_has_reason(self) -> BaseEvent:
        # A reason without "withheld" (or the reverse) is a node bug the consumer should see.
        if (self.snapshot == "withheld") != (self.snapshot_withheld is not None):
            raise ValueError("snapshot_withheld must be set when snapshot is withheld, and only then")
        return self

    def to_payload(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()


class EventV1(BaseEvent):
    """One detection, in its current state (`ended_at` is null while it lasts)."""

    schema_: Literal["vaktpost.event/1"] = Field(SCHEMA_V1, alias="schema")
    subtype: Annotated[str, Field(pattern=r"^[a-z_]{1,32}$")] | None = None
    snapshot_withheld: Literal["model_missing", "model_checksum", "inference_error", "encode_error"] | None = Field(
        None, description="Why the snapshot was withheld; set exactly when snapshot is withheld")


class Event(BaseEvent):
    """One detection, in its current state: the message's `phase` (start, update, end;
    `ended_at` is set exactly at the end) and a subtype from the set of its type."""

    schema_: Literal["vaktpost.event/2"] = Field(SCHEMA_V2, alias="schema")
    seq: Annotated[int, Field(ge=0, le=SEQ_MAX, description="Per-node monotonic sequence number")]
    started_at: Annotated[UtcTime, Field(description=TIME_DOC)]
    ended_at: Annotated[UtcTime | None, Field(description=f"Null while the event lasts. {TIME_DOC}")] = None
    subtype: Subtype | None = Field(
        None, description="Refines type: a TamperSubtype for tamper, a SceneChangeSubtype for scene_change, "
        "a HealthSubtype for health; null for every other type")
    snapshot_withheld: WithheldReason | None = Field(
        None, description="Why the snapshot was withheld; set exactly when snapshot is withheld")
    phase: Phase

    @model_validator(mode="after")
    def _subtype_of_type_and_phase_of_end(self) -> Event:
        allowed = SUBTYPES[self.type]
        if allowed is None and self.subtype is not None:
            raise ValueError(f"a {self.type} event has no subtype, got {self.subtype!r}")
        if allowed is not None and not isinstance(self.subtype, allowed):
            names = ", ".join(allowed)
            raise ValueError(f"a {self.type} event needs a subtype out of {names}, got {self.subtype!r}")
        if (self.phase is Phase.end) != (self.ended_at is not None):
            raise ValueError("ended_at must be set when phase is end, and only then")
        return self

    @classmethod
    def from_payload(cls, data: bytes | str) -> Event:
        return cls.model_validate_json(data)


# Every version the consumer accepts, by schema name (docs/mqtt.md, "Versions").
EVENT_MODELS: dict[str, type[BaseEvent]] = {SCHEMA_V1: EventV1, SCHEMA_V2: Event}


def _schema_name(v: Any) -> str | None:
    # v1 had a default for `schema`, so a v1 payload may lack it; every later version names itself.
    name = v.get("schema", SCHEMA_V1) if isinstance(v, dict) else getattr(v, "schema_", None)
    return name if isinstance(name, str) else None


AnyEvent = Annotated[
    Annotated[EventV1, Tag(SCHEMA_V1)] | Annotated[Event, Tag(SCHEMA_V2)],
    Discriminator(_schema_name, custom_error_type="unknown_schema",
                  custom_error_message=f"schema must name a known event version ({', '.join(EVENT_MODELS)})"),
]
_ANY_EVENT: TypeAdapter[EventV1 | Event] = TypeAdapter(AnyEvent)


def parse_event(data: bytes | str) -> EventV1 | Event:
    """An event payload of any version the consumer accepts; ValidationError otherwise."""
    return _ANY_EVENT.validate_json(data)


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


def schema_version(name: str) -> int:
    """`vaktpost.event/2` → 2."""
    return int(name.rsplit("/", 1)[1])


def schema_file_name(name: str) -> str:
    """The published file of version `name`, e.g. `event-2.schema.json`."""
    return f"event-{schema_version(name)}.schema.json"


def json_schema(name: str = SCHEMA_NAME) -> dict[str, Any]:
    """The published JSON Schema of event version `name`."""
    schema = EVENT_MODELS[name].model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://vaktpost.example/schema/event/{schema_version(name)}.json"
    if name != SCHEMA_V1:
        # From v2 on the version is named in every payload, and the rules across
        # fields are part of the schema, so validating subscribers see them too.
        schema["required"] = ["schema", *schema["required"]]
        schema["allOf"] = [*_subtype_rules(), _phase_rule()]
    return schema


def _subtype_rules() -> list[dict[str, Any]]:
    rules = []
    for t, allowed in SUBTYPES.items():
        then = ({"properties": {"subtype": {"type": "null"}}} if allowed is None else
                {"properties": {"subtype": {"enum": [s.value for s in allowed]}}, "required": ["subtype"]})
        rules.append({"if": {"properties": {"type": {"const": t.value}}}, "then": then})
    return rules


def _phase_rule() -> dict[str, Any]:
    return {"if": {"properties": {"phase": {"const": Phase.end.value}}},
            "then": {"properties": {"ended_at": {"type": "string"}}, "required": ["ended_at"]},
            "else": {"properties": {"ended_at": {"type": "null"}}}}
