"""The register's rows: one per camera assigned to a place now, and one per camera a
node's config lists that is assigned to no place (flagged)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from vaktpost.broker.exposure import latest_setups
from vaktpost.broker.store import Store, as_utc
from vaktpost.contract.messages import CameraSetup

# Why a row needs a look: the node never sent a config, its config does not list the
# camera, or the camera is in a config but watches no place now.
Flag = Literal["no_config", "not_in_config", "unassigned"]


@dataclass(frozen=True)
class RegisterRow:
    node_id: str
    camera_id: str
    place: Mapping[str, Any] | None  # the `places` row; None: assigned to no place now
    assigned_from: datetime | None
    camera: CameraSetup | None  # from the node's config in force; None: not reported
    config_at: datetime | None  # when the node sent the config in force
    node_retention: float | None  # seconds the node keeps unacknowledged events
    flag: Flag | None

    @property
    def district(self) -> str | None:
        return None if self.place is None else self.place.get("district")


def _current(assignment: Mapping[str, Any], now: datetime) -> bool:
    return bool(assignment["valid_from"] <= now and (assignment["valid_to"] is None or assignment["valid_to"] > now))


def _order(row: RegisterRow) -> tuple[bool, str, str, str, str]:
    place = row.place or {}
    return row.place is None, row.district or "\uffff", place.get("name", ""), row.node_id, row.camera_id


def register_rows(store: Store, now: datetime, *, districts: Collection[str] | None = None) -> list[RegisterRow]:
    """The register at `now`, sorted by district, place, node and camera (cameras of no
    place last). `districts` limits it to places of those districts (an operator's
    scope; cameras of no place and places without a district are then left out);
    None: everything (an admin)."""
    now = as_utc(now)
    places = {p["id"]: p for p in store.list_places()}
    setups = latest_setups(store)
    rows: list[RegisterRow] = []
    assigned: set[tuple[str, str]] = set()
    for a in store.list_assignments():
        if not _current(a, now):
            continue
        node, cam = a["node_id"], a["camera_id"]
        assigned.add((node, cam))
        setup = setups.get(node)
        camera = None if setup is None else next((c for c in setup.cameras if c.id == cam), None)
        flag: Flag | None = "no_config" if setup is None else "not_in_config" if camera is None else None
        rows.append(RegisterRow(node, cam, places.get(a["place_id"]), a["valid_from"], camera,
                                None if setup is None else setup.at,
                                None if setup is None else setup.retention.max_age, flag))
    for node, setup in setups.items():
        for camera in setup.cameras:
            if (node, camera.id) not in assigned:
                rows.append(RegisterRow(node, camera.id, None, None, camera, setup.at, setup.retention.max_age,
                                        "unassigned"))
    if districts is not None:
        rows = [r for r in rows if r.district is not None and r.district in districts]
    return sorted(rows, key=_order)
