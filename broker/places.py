"""The places registry (YAML): which places exist and which camera watched which place when.

`import_places` writes it into the store. Import is idempotent and the file is
authoritative for what it mentions:

- places are upserted by id; places missing from the file are kept (events refer to them);
- for every camera (node + camera) listed, its whole assignment history becomes the
  file's list, so correcting a date never leaves a stale overlapping period behind;
  cameras not listed keep their assignments;
- afterwards every stored event's place is recomputed from the assignments, so
  events that arrived before their camera was registered get their place too.

Dates and times without a zone are local times in the file's `timezone`; a bare
date means midnight at the start of that day.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BeforeValidator, Field, field_validator

from vaktpost.broker.store import Store
from vaktpost.contract.config import (
    ConfigError,
    Ident,
    Strict,
    TimeZoneName,
    read_yaml,
    validate,
)

log = logging.getLogger(__name__)

PlaceKind = Literal["school", "schoolyard", "park", "square", "playground", "sports_ground", "other"]


def _when(v: object) -> object:
    """date, datetime or ISO text → datetime (a date is its midnight); one clear message
    instead of pydantic's per-union-branch errors."""
    if isinstance(v, datetime):
        return v
    if isinstance(v, date):
        return datetime.combine(v, time(0))
    if isinstance(v, str):
        try:
            return datetime.fromisoformat(v.strip())
        except ValueError:
            pass
    raise ValueError(f"{v!r} is not a date (2024-08-01) or date and time (2024-08-01T06:00, optionally +02:00)")


# Naive values are local times of the file's `timezone`; see to_utc.
When = Annotated[datetime, BeforeValidator(_when)]


class Place(Strict):
    id: Ident = Field(description="Stable id used by camera assignments and queries")
    name: Annotated[str, Field(min_length=1, max_length=200)]
    kind: PlaceKind
    district: Annotated[str, Field(max_length=200)] | None = None
    address: Annotated[str, Field(max_length=300)] | None = None
    coordinates: Annotated[list[float], Field(min_length=2, max_length=2)] | None = Field(
        None, description="[lat, lon] in degrees (WGS 84)"
    )
    # The camera register (vaktpost.broker.register): why the place is watched, and who answers for it.
    purpose: Annotated[str, Field(min_length=1, max_length=1000)] | None = Field(
        None, description="Why the place is under camera surveillance (the register's purpose)")
    responsible: Annotated[str, Field(min_length=1, max_length=300)] | None = Field(
        None, description="The unit responsible for the surveillance of the place")

    @field_validator("coordinates")
    @classmethod
    def _lat_lon(cls, v: list[float] | None) -> list[float] | None:
        if v is not None:
            lat, lon = v
            if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
                raise ValueError(f"[{lat}, {lon}] is not [lat, lon]: lat must be -90..90, lon -180..180")
        return v


class CameraPeriod(Strict):
    node: Ident
    camera: Ident
    place: Ident
    from_: When = Field(alias="from", description="Start of the period (inclusive)")
    to: When | None = Field(None, description="End of the period (exclusive); omit while it lasts")


class PlacesFile(Strict):
    timezone: TimeZoneName = Field("Europe/Stockholm", description="IANA zone for dates and times without a zone")
    places: list[Place] = Field(default_factory=list)
    cameras: list[CameraPeriod] = Field(default_factory=list)


@dataclass(frozen=True)
class Period:
    index: int  # position in `cameras`, for messages
    node_id: str
    camera_id: str
    place_id: str
    valid_from: datetime  # aware UTC
    valid_to: datetime | None


@dataclass(frozen=True)
class Registry:
    places: list[Place]
    periods: list[Period]

    def by_camera(self) -> dict[tuple[str, str], list[Period]]:
        out: dict[tuple[str, str], list[Period]] = defaultdict(list)
        for p in self.periods:
            out[(p.node_id, p.camera_id)].append(p)
        return {k: sorted(v, key=lambda p: p.valid_from) for k, v in out.items()}


def to_utc(v: datetime, tz: ZoneInfo) -> datetime:
    if v.tzinfo is None:
        v = v.replace(tzinfo=tz)
    return v.astimezone(UTC)


def _fmt(t: datetime | None) -> str:
    return "open" if t is None else t.isoformat(timespec="minutes")


def _check(reg: Registry) -> list[str]:
    """Problems pydantic cannot see: references, duplicates, empty and overlapping periods."""
    errors: list[str] = []
    first_index: dict[str, int] = {}
    for i, place in enumerate(reg.places):
        if place.id in first_index:
            errors.append(f"places[{i}].id: {place.id!r} is already used by places[{first_index[place.id]}]")
        first_index.setdefault(place.id, i)
    for p in reg.periods:
        if p.place_id not in first_index:
            errors.append(f"cameras[{p.index}].place: unknown place {p.place_id!r}")
        if p.valid_to is not None and p.valid_to <= p.valid_from:
            errors.append(f"cameras[{p.index}].to: must be later than from ({_fmt(p.valid_from)})")
    for (node, cam), periods in reg.by_camera().items():
        for prev, cur in zip(periods, periods[1:]):
            if prev.valid_to is None or cur.valid_from < prev.valid_to:
                errors.append(
                    f"cameras[{cur.index}]: {node}/{cam} from {_fmt(cur.valid_from)} overlaps "
                    f"cameras[{prev.index}] ({_fmt(prev.valid_from)} to {_fmt(prev.valid_to)}); "
                    "a camera watches one place at a time"
                )
    return errors


def parse_places(data: object, *, source: str = "places") -> Registry:
    doc = validate(PlacesFile, data, source, "a mapping with 'places' and 'cameras' at the top level")
    tz = ZoneInfo(doc.timezone)
    periods = [
        Period(i, c.node, c.camera, c.place, to_utc(c.from_, tz), None if c.to is None else to_utc(c.to, tz))
        for i, c in enumerate(doc.cameras)
    ]
    reg = Registry(doc.places, periods)
    if errors := _check(reg):
        raise ConfigError(f"{source}:\n" + "\n".join(errors))
    return reg


def load_places(path: str | Path) -> Registry:
    return parse_places(read_yaml(path), source=str(path))


def _place_row(p: Place) -> dict[str, Any]:
    lat, lon = p.coordinates if p.coordinates else (None, None)
    return {"id": p.id, "name": p.name, "kind": p.kind, "district": p.district, "address": p.address,
            "lat": lat, "lon": lon, "purpose": p.purpose, "responsible": p.responsible}


def write_registry(store: Store, reg: Registry) -> tuple[int, int]:
    """Store `reg` in one transaction (see the module doc for the rules)."""
    with store.begin() as tx:
        for place in reg.places:
            tx.upsert_place(_place_row(place))
        for (node, cam), periods in reg.by_camera().items():
            tx.replace_assignments(node, cam, [
                {"valid_from": p.valid_from, "valid_to": p.valid_to, "place_id": p.place_id} for p in periods
            ])
        moved = tx.reassign_places()
    if moved:
        log.info("places: %d stored events changed place", moved)
    return len(reg.places), len(reg.periods)


def import_places(store: Store, path: str | Path) -> tuple[int, int]:
    """Validate the registry at `path` and write it; returns (places, camera periods)."""
    return write_registry(store, load_places(path))
