"""Node configuration (YAML), validated by pydantic.

Every option is documented here, in its `description`; docs/config.md and
`vaktpost config example` are the reader-facing forms of the same facts.
"""

from __future__ import annotations

from datetime import date, time
from pathlib import Path
from typing import Annotated, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from vaktpost.edge.detectors import DetectorSettings
from vaktpost.edge.analysis.scene_change import SceneChangeSettings
from vaktpost.edge.evidence.snapshot import SnapshotSettings
from vaktpost.edge.analysis.tamper import TamperSettings
from vaktpost.edge.analysis.track import TrackerSettings

Point = Annotated[list[float], Field(min_length=2, max_length=2)]
Ident = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class ConfigError(ValueError):
    """A config file that cannot be used; the message names key and problem."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _check_polygon(poly: list[list[float]]) -> list[list[float]]:
    if len(poly) < 3:
        raise ValueError("needs at least 3 points")
    for x, y in poly:
        if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            raise ValueError(f"point [{x}, {y}] is outside 0..1 (coordinates are normalised)")
    return poly


Polygon = Annotated[
    list[Point],
    Field(description="[[x, y], …] in normalised image coordinates 0..1"),
    AfterValidator(_check_polygon),
]


def _check_timezone(v: str) -> str:
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {v!r}") from None
    return v


TimeZoneName = Annotated[str, AfterValidator(_check_timezone)]


class NodeSection(Strict):
    id: Ident = Field(description="Node id; also its MQTT username")
    timezone: TimeZoneName = Field("Europe/Stockholm", description="IANA zone for zone schedules")


class TlsSection(Strict):
    ca_file: Path = Field(description="CA certificate that signed the broker's certificate")
    cert_file: Path | None = Field(None, description="Client certificate (optional)")
    key_file: Path | None = Field(None, description="Client key (optional)")


class BrokerConnection(Strict):
    """What node and central consumer both need to reach the broker."""

    host: str = Field("localhost", description="Broker host")
    port: int = Field(1883, ge=1, le=65535, description="Broker port (8883 is usual with TLS)")
    password: str | None = Field(None, description="Password; prefer password_file")
    password_file: Path | None = Field(None, description="File whose first line is the password")
    tls: TlsSection | None = Field(None, description="TLS files; omit for plain TCP on a trusted LAN")
    keepalive: int = Field(30, ge=5, le=3600, description="MQTT keepalive, seconds")

    @model_validator(mode="after")
    def _one_password(self):
        if self.password is not None and self.password_file is not None:
            raise ValueError("give password or password_file, not both")
        return self

    def resolved_password(self) -> str | None:
        if self.password_file is not None:
            try:
                return self.password_file.read_text().splitlines()[0].strip()
            except (OSError, IndexError) as e:
                raise ConfigError(f"mqtt.password_file: cannot read {self.password_file}: {e}") from None
        return self.password


class MqttSection(BrokerConnection):
    username: str | None = Field(None, description="Defaults to node.id")
    heartbeat_seconds: float = Field(30.0, gt=0, description="Interval between heartbeats")


class SpoolSection(Strict):
    path: Path = Field(Path("/var/lib/vaktpost/outbox.db"), description="SQLite outbox file")
    max_events: int = Field(100_000, ge=10, description="Unacknowledged events kept at most")
    when_full: Literal["drop_oldest", "drop_newest"] = Field(
        "drop_oldest",
        description="drop_oldest: delete the oldest unsent event to make room (keeps the present); "
        "drop_newest: refuse the new event. Either way the outbox_dropped counter rises and is "
        "reported in the heartbeat.",
    )


class ArmedRange(Strict):
    days: list[Day] = Field(min_length=1, description="Days on which the range starts")
    from_: time = Field(alias="from", description="HH:MM local time")
    to: time | Literal["24:00"] = Field(description="HH:MM; earlier than from means overnight; 24:00 is midnight")

    @field_validator("from_", "to", mode="before")
    @classmethod
    def _parse_time(cls, v):
        if isinstance(v, int):  # YAML 1.1 reads 18:00 unquoted as sexagesimal 1080
            v = f"{v // 60:02d}:{v % 60:02d}"
        if v == "24:00":
            return v
        return v


class ArmedSchedule(Strict):
    ranges: list[ArmedRange] = Field(default_factory=list)
    exceptions: list[date] = Field(default_factory=list, description="Dates (local) never armed, e.g. school events")
    armed_dates: list[date] = Field(default_factory=list, description="Dates (local) armed all day, e.g. holidays")


class Zone(Strict):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9 _-]{1,64}$")]
    polygon: Polygon
    armed: list[ArmedRange] | ArmedSchedule = Field(
        default_factory=list,
        description="Weekly schedule: a list of ranges, or {ranges, exceptions, armed_dates}",
    )

    @property
    def schedule(self) -> ArmedSchedule:
        return self.armed if isinstance(self.armed, ArmedSchedule) else ArmedSchedule(ranges=self.armed)


class MotionSection(Strict):
    width: int = Field(320, ge=64, le=1920, description="Analysis width in pixels (frames are downscaled)")
    threshold: int = Field(25, ge=1, le=255, description="Per-pixel difference from background that counts")
    learning_rate: float = Field(0.02, gt=0, lt=1, description="Background running-average weight per frame")
    min_area: float = Field(0.002, ge=0, le=1, description="Smallest box counted, as a fraction of the image")
    global_change: float = Field(
        0.6, gt=0, le=1, description="Changed fraction above which a frame is an illumination step, not motion"
    )
    min_duration: float = Field(1.0, ge=0, description="Seconds of motion before an event starts")
    merge_gap: float = Field(3.0, ge=0, description="Quiet seconds that end an event; shorter gaps merge bursts")
    update_interval: float = Field(10.0, gt=0, description="Seconds between update messages of a running event")


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
    def _gap_covers_tracker_memory(self) -> "RulesSettings":
        # A person unseen for a moment stays the same track for max_age_seconds; a shorter
        # reenter_gap would still cut their one event in two.
        if self.reenter_gap < self.tracker.max_age_seconds:
            raise ValueError(
                f"reenter_gap ({self.reenter_gap}) must be at least tracker.max_age_seconds "
                f"({self.tracker.max_age_seconds}), or one person's event splits while the detector misses them"
            )
        return self


SnapshotMode = Literal["none", "anonymised"]


class SnapshotPolicy(Strict):
    """Which events carry an evidence snapshot. There is no raw choice: an image leaves
    the node only anonymised (people and faces filled solid), or not at all."""

    scene_change: SnapshotMode = Field("anonymised", description="Snapshot of the settled scene after the change")
    tamper: SnapshotMode = Field("anonymised", description="Snapshot of the view when tampering is confirmed")
    intrusion: SnapshotMode = Field("none", description="Snapshot when an intrusion starts (people hidden)")
    loitering: SnapshotMode = Field("none", description="Snapshot when loitering is reported (people hidden)")
    motion: SnapshotMode = Field("none", description="Snapshot when motion starts (people hidden)")


class Camera(Strict):
    id: Ident
    source: str | int = Field(description="Video file, V4L2 index or /dev/videoN, rtsp:// or http:// URL")
    fps: float = Field(5.0, gt=0, le=60, description="Processing rate; frames are dropped, not queued")
    privacy_masks: list[Polygon] = Field(default_factory=list, description="Blanked before any analysis")
    motion_masks: list[Polygon] = Field(default_factory=list, description="Ignored by motion detection")
    zones: list[Zone] = Field(default_factory=list)
    motion: MotionSection = Field(default_factory=MotionSection)
    reconnect_max_seconds: float = Field(30.0, gt=0, description="Cap of the reconnect backoff")
    lost_after_seconds: float = Field(10.0, gt=0, description="No frames for this long raises a health event")
    detector: DetectorSettings = Field(default_factory=DetectorSettings, description="Person detector (edge/detectors/)")
    rules: RulesSettings = Field(default_factory=RulesSettings, description="Intrusion and loitering rules")
    tamper: TamperSettings = Field(default_factory=TamperSettings, description="Camera tampering (edge/analysis/tamper.py)")
    scene_change: SceneChangeSettings = Field(default_factory=SceneChangeSettings,
                                              description="Lasting scene change (edge/analysis/scene_change.py)")
    snapshots: SnapshotPolicy = Field(default_factory=SnapshotPolicy, description="Evidence snapshots per event type")
    snapshot: SnapshotSettings = Field(default_factory=SnapshotSettings,
                                       description="How snapshots are anonymised and encoded")

    @model_validator(mode="after")
    def _unique_zones(self) -> "Camera":
        names = [z.name for z in self.zones]
        if len(names) != len(set(names)):
            raise ValueError("zone names must be unique per camera")
        unknown = set(self.rules.loiter_seconds_by_zone) - set(names)
        if unknown:
            raise ValueError(f"rules.loiter_seconds_by_zone names unknown zone(s): {', '.join(sorted(unknown))}")
        return self


def _duration(v):
    """Seconds, or a string such as 90s, 30m, 12h, 7d."""
    if isinstance(v, str):
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
        text = v.strip()
        if text[-1:] in units and text[:-1].replace(".", "", 1).isdigit():
            return float(text[:-1]) * units[text[-1]]
        raise ValueError(f"expected seconds or a duration such as 30m, 12h, 7d, got {v!r}")
    return v


Duration = Annotated[float, BeforeValidator(_duration), Field(gt=0)]


class RetentionSection(Strict):
    max_age: Duration = Field(
        7 * 86400,
        description="Unacknowledged events and snapshots older than this are deleted from the node and "
        "counted (outbox_expired in the heartbeat); seconds or 30m, 12h, 7d. Acknowledged ones are "
        "deleted at once.",
    )


class NodeConfig(Strict):
    node: NodeSection
    mqtt: MqttSection = Field(default_factory=MqttSection)
    spool: SpoolSection = Field(default_factory=SpoolSection)
    retention: RetentionSection = Field(default_factory=RetentionSection)
    cameras: list[Camera] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_cameras(self) -> "NodeConfig":
        ids = [c.id for c in self.cameras]
        if len(ids) != len(set(ids)):
            raise ValueError("camera ids must be unique")
        return self

    def camera(self, camera_id: str | None) -> Camera:
        if camera_id is None:
            return self.cameras[0]
        for cam in self.cameras:
            if cam.id == camera_id:
                return cam
        raise ConfigError(f"no camera {camera_id!r}; known: {', '.join(c.id for c in self.cameras)}")


def format_errors(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ""
        for part in e["loc"]:
            if isinstance(part, int):
                loc += f"[{part}]"
            elif part in ("list[list[float]]", "ArmedSchedule") or part.startswith(("list[", "function-")):
                continue  # union branch names say nothing to a user
            else:
                loc += ("." if loc else "") + str(part)
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"{loc or '(top)'}: {msg}")
    return "\n".join(dict.fromkeys(lines))


M = TypeVar("M", bound=BaseModel)


def validate(model: type[M], data: object, source: str, shape: str = "a mapping at the top level") -> M:
    """`data` as `model`, or one ConfigError naming `source` with a line per problem.
    Shared by every config file of the project (node, central, places)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected {shape}")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"{source}:\n{format_errors(e)}") from None


def parse(data: object, *, source: str = "config") -> NodeConfig:
    return validate(NodeConfig, data, source)


def read_yaml(path: str | Path) -> object:
    """The YAML document in `path`; ConfigError naming the file when it can't be read.
    Shared by every config file of the project (node, central, places)."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text())
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None


def load(path: str | Path) -> NodeConfig:
    return parse(read_yaml(path), source=str(path))
