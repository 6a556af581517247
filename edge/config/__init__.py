"""Node configuration (YAML), validated by pydantic.

Every option is documented here, in its `description`; docs/config.md and
`vaktpost config example` are the reader-facing forms of the same facts.

Relative paths (spool.path, mqtt.password_file, TLS files and cameras' file
sources) are taken relative to the config file's directory, as on the central
side, so a config works the same whatever directory the node starts in.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, Field, PrivateAttr, field_validator, model_validator

from vaktpost.contract.config import (
    RESERVED_ACCOUNTS,
    BrokerConnection,
    ConfigError,
    Duration,
    Ident,
    Strict,
    TimeZoneName,
    read_yaml,
    rebase,
    validate,
)
from vaktpost.contract.schedule import DAYS, ArmedRange, ArmedSchedule, Day
from vaktpost.edge.config import armed
from vaktpost.edge.config.detectors import DetectorSettings
from vaktpost.edge.config.motion import MotionSection
from vaktpost.edge.config.rules import RulesSettings
from vaktpost.edge.config.scene_change import SceneChangeSettings
from vaktpost.edge.config.snapshot import SnapshotPolicy, SnapshotSettings
from vaktpost.edge.config.tamper import TamperSettings
from vaktpost.edge.geometry import self_intersects

Point = Annotated[list[float], Field(min_length=2, max_length=2)]
__all__ = ["DAYS", "ArmedRange", "ArmedSchedule", "Day"]  # the contract's, named here for the node's modules


def _check_polygon(poly: list[list[float]]) -> list[list[float]]:
    if len(poly) < 3:
        raise ValueError("needs at least 3 points")
    for x, y in poly:
        if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            raise ValueError(f"point [{x}, {y}] is outside 0..1 (coordinates are normalised)")
    if self_intersects(poly):
        raise ValueError("edges cross each other; list the points in order around the area")
    return poly


Polygon = Annotated[
    list[Point],
    Field(description="[[x, y], …] in normalised image coordinates 0..1"),
    AfterValidator(_check_polygon),
]


class NodeSection(Strict):
    id: Ident = Field(description="Node id; also its MQTT username")
    timezone: TimeZoneName = Field("Europe/Stockholm", description="IANA zone for zone schedules")
    school_breaks: Path | None = Field(
        None, description="iCalendar file of school breaks for every zone that names none of its own")

    @field_validator("id")
    @classmethod
    def _not_reserved(cls, v: str) -> str:
        if v in RESERVED_ACCOUNTS:
            raise ValueError(f"{v!r} is reserved for a central account; pick another node id")
        return v


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


class Zone(Strict):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9 _-]{1,64}$")]
    polygon: Polygon
    armed: list[ArmedRange] | ArmedSchedule = Field(
        default_factory=list,
        description="Weekly schedule: a list of ranges, or {ranges, exceptions, armed_dates}, or "
        "{preset: school_facade, exceptions, armed_dates} (docs/config.md, \"Armed schedules\")",
    )
    school_breaks: Path | None = Field(
        None, description="iCalendar file whose all-day events are school breaks, armed like holidays "
        "(default: the camera's, else the node's)")
    _schedule: ArmedSchedule | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _preset_or_ranges(self) -> Zone:
        if isinstance(self.armed, ArmedSchedule) and self.armed.preset is not None and self.armed.ranges:
            raise ValueError("armed: a preset gives the ranges; give either preset or ranges")
        return self

    @property
    def schedule(self) -> ArmedSchedule:
        """The schedule as evaluated: preset ranges filled in, holidays and school breaks
        resolved (edge/config/armed.py); computed once."""
        if self._schedule is None:
            written = self.armed if isinstance(self.armed, ArmedSchedule) else ArmedSchedule(ranges=self.armed)
            self._schedule = armed.resolve(written, breaks=self.school_breaks, today=date.today())
        return self._schedule


URL_SCHEMES = ("rtsp://", "http://", "https://")


def source_file(source: str | int) -> Path | None:
    """The file a camera source plays, or None for a V4L2 device or a stream URL."""
    s = str(source)
    if isinstance(source, int) or s.isdigit() or s.startswith("/dev/") or s.startswith(URL_SCHEMES):
        return None
    return Path(s)


class Camera(Strict):
    id: Ident
    source: str | int = Field(description="Video file, V4L2 index or /dev/videoN, rtsp:// or http:// URL")
    fps: float = Field(5.0, gt=0, le=60, description="Processing rate; frames are dropped, not queued")
    pace: bool = Field(
        True,
        description="File sources only. true: play the file at its native rate, like a camera, each frame "
        "stamped with the clock when it is read. false: play it as fast as analysis goes, analysing every "
        "frame due at `fps` (none dropped) and stamping it with start_time + its time in the file, so a run "
        "is repeatable (tests, replays of recordings)",
    )
    start_time: AwareDatetime | None = Field(
        None, description="With pace: false, the time of the file's first frame (default: when the node starts)")
    privacy_masks: list[Polygon] = Field(default_factory=list, description="Blanked before any analysis")
    motion_masks: list[Polygon] = Field(default_factory=list, description="Ignored by motion detection")
    zones: list[Zone] = Field(default_factory=list)
    school_breaks: Path | None = Field(
        None, description="iCalendar file of school breaks for this camera's zones that name none")
    motion: MotionSection = Field(default_factory=MotionSection)
    reconnect_max_seconds: float = Field(30.0, gt=0, description="Cap of the reconnect backoff")
    lost_after_seconds: float = Field(10.0, gt=0, description="No frames for this long raises a health event")
    detector: DetectorSettings = Field(default_factory=DetectorSettings,
                                       description="Person detector (edge/detectors/)")
    rules: RulesSettings = Field(default_factory=RulesSettings, description="Intrusion and loitering rules")
    tamper: TamperSettings = Field(default_factory=TamperSettings,
                                   description="Camera tampering (edge/analysis/tamper.py)")
    scene_change: SceneChangeSettings = Field(default_factory=SceneChangeSettings,
                                              description="Lasting scene change (edge/analysis/scene_change.py)")
    snapshots: SnapshotPolicy = Field(default_factory=SnapshotPolicy, description="Evidence snapshots per event type")
    snapshot: SnapshotSettings = Field(default_factory=SnapshotSettings,
                                       description="How snapshots are anonymised and encoded")

    @model_validator(mode="after")
    def _unique_zones(self) -> Camera:
        names = [z.name for z in self.zones]
        if len(names) != len(set(names)):
            raise ValueError("zone names must be unique per camera")
        unknown = set(self.rules.loiter_seconds_by_zone) - set(names)
        if unknown:
            raise ValueError(f"rules.loiter_seconds_by_zone names unknown zone(s): {', '.join(sorted(unknown))}")
        return self


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
    def _unique_cameras(self) -> NodeConfig:
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


def parse(data: object, *, source: str = "config") -> NodeConfig:
    return validate(NodeConfig, data, source)


def resolve_paths(cfg: NodeConfig, base: Path) -> NodeConfig:
    """Make relative paths in `cfg` relative to `base` (the config file's directory)."""
    cameras = []
    for cam in cfg.cameras:
        f = source_file(cam.source)
        rebased = rebase(f, base) if f is not None else None
        update: dict[str, object] = {"source": str(rebased)} if rebased else {}
        # Each zone gets its school-break file (its own, else the camera's, else the node's).
        zones = []
        for z in cam.zones:
            ics = z.school_breaks or cam.school_breaks or cfg.node.school_breaks
            zones.append(z.model_copy(update={"school_breaks": rebase(ics, base) or ics}))
        cameras.append(cam.model_copy(update={**update, "zones": zones}))
    return cfg.model_copy(update={
        "mqtt": cfg.mqtt.rebased(base),
        "spool": cfg.spool.model_copy(update={"path": rebase(cfg.spool.path, base) or cfg.spool.path}),
        "cameras": cameras,
    })


def missing_files(cfg: NodeConfig) -> list[str]:
    """One line per file the config names that is not there (devices and URLs are not checked)."""
    found: list[str] = []
    mqtt = cfg.mqtt
    named = [("mqtt.password_file", mqtt.password_file)]
    if mqtt.tls is not None:
        named += [(f"mqtt.tls.{k}", getattr(mqtt.tls, k)) for k in ("ca_file", "cert_file", "key_file")]
    named += [(f"cameras[{i}].source", source_file(c.source)) for i, c in enumerate(cfg.cameras)]
    for key, path in named:
        if path is not None and not path.is_file():
            found.append(f"{key}: {path}: no such file")
    return found


def spool_problems(cfg: NodeConfig) -> list[str]:
    """What can be known about spool.path without opening it: a directory in its place,
    a file where a folder of it should be, a folder the node may not write in."""
    path = cfg.spool.path
    if path.is_dir():
        return [f"spool.path: {path}: is a directory (name the outbox file in it)"]
    for parent in path.parents:  # the nearest one that exists holds what the node must create
        if parent.exists():
            if not parent.is_dir():
                return [f"spool.path: {parent}: not a directory"]
            target = path if path.exists() else parent
            if not os.access(target, os.W_OK | (0 if target is path else os.X_OK)):
                return [f"spool.path: {target}: not writable by this user"]
            break
    return []


def load(path: str | Path) -> NodeConfig:
    """The config in `path`, paths resolved and every zone's schedule evaluated once, so a
    school-break file that cannot be read is a ConfigError now, not in the middle of a run."""
    path = Path(path)
    cfg = resolve_paths(parse(read_yaml(path), source=str(path)), path.resolve().parent)
    for cam in cfg.cameras:
        for z in cam.zones:
            _ = z.schedule
    return cfg
