"""The node's `config` message (`NodeSetup`, docs/mqtt.md "Config"): what it watches,
built from its config. No images: the share of each view under privacy masks, the
zones with their schedules as evaluated here, the rules and policies."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import cv2
import numpy as np

from vaktpost.contract.events import EventType
from vaktpost.contract.messages import CameraSetup, NodeSetup, PeopleRules, Retention, ZoneSetup
from vaktpost.contract.schedule import ArmedSchedule
from vaktpost.edge.config import Camera, NodeConfig, Zone

# Holidays and dates are sent for this long ahead (about 13 months); the node sends
# its config again each day, so the window moves along.
WINDOW_DAYS = 400
_GRID = 1000  # masks are rasterised on this grid to measure their union (±0.1 %)


def masked_share(masks: list[list[list[float]]]) -> float:
    """The share (0..1) of the view covered by the union of `masks` (normalised polygons)."""
    if not masks:
        return 0.0
    canvas = np.zeros((_GRID, _GRID), np.uint8)
    for m in masks:  # one at a time: in one call, overlaps would cancel out (even-odd rule)
        cv2.fillPoly(canvas, [np.round(np.asarray(m, np.float64) * _GRID).astype(np.int32)], 1)
    return round(float(canvas.mean()), 4)


def _window(dates: list[date], first: date, last: date) -> list[date]:
    return sorted(d for d in set(dates) if first <= d <= last)


def schedule_window(schedule: ArmedSchedule, first: date) -> ArmedSchedule:
    """`schedule` with its dates cut to the message's window from `first`."""
    last = first + timedelta(days=WINDOW_DAYS)
    return ArmedSchedule.model_validate({
        **schedule.model_dump(by_alias=True),
        **{k: _window(getattr(schedule, k), first, last) for k in ("exceptions", "armed_dates", "holidays")}})


def _people_rules(cam: Camera, zone: Zone) -> PeopleRules:
    r = cam.rules
    loiter = r.loiter_seconds_by_zone.get(zone.name, r.loiter_seconds) if r.loitering else None
    return PeopleRules(intrusion=r.intrusion, intrusion_min_seconds=r.intrusion_min_seconds,
                       loiter_seconds=loiter, loiter_armed_only=r.loiter_armed_only)


def camera_setup(cam: Camera, tz: str, today: date) -> CameraSetup:
    return CameraSetup(
        id=cam.id, timezone=tz, fps=cam.fps, masked_share=masked_share(cam.privacy_masks),
        zones=[ZoneSetup(name=z.name, schedule=schedule_window(z.schedule, today),
                         people_rules=_people_rules(cam, z)) for z in cam.zones],
        snapshots={EventType(k): v for k, v in cam.snapshots.model_dump().items()},
    )


def node_setup(cfg: NodeConfig, at: datetime) -> NodeSetup:
    """The config message of `cfg`, sent at `at` (aware)."""
    tz = cfg.node.timezone
    today = at.astimezone(ZoneInfo(tz)).date()
    return NodeSetup(node_id=cfg.node.id, at=at, cameras=[camera_setup(c, tz, today) for c in cfg.cameras],
                     retention=Retention(max_age=cfg.retention.max_age))
