"""Exposure hours: how long each camera and zone was online, and armed, in a period
(docs/central.md, "Exposure"). Counts of events mean little without them: a camera
offline half the month, or a zone disarmed, sees less.

- Online: the node's online intervals (vaktpost.broker.coverage, from status and
  heartbeats), within the camera's assignment to a place (camera_assignments).
- Armed: online ∩ the zone's armed intervals (vaktpost.contract.schedule), by the
  schedule in force at each moment (the node's config history, `node_setups`). Time
  before a node's first config message has online hours but no armed hours.

One row per camera and place with `zone` None (the camera as a whole: its
`armed_hours` is the time any of its zones was armed), and one per zone. Cameras not
assigned to a place are left out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select

from vaktpost.broker.coverage import node_online, node_setups
from vaktpost.broker.store import Store, as_utc, camera_assignments
from vaktpost.contract.messages import NodeSetup
from vaktpost.contract.schedule import Interval, armed_intervals, hours, intersect, merge


@dataclass(frozen=True)
class CameraExposure:
    node_id: str
    camera_id: str
    place_id: str
    zone: str | None  # None: the camera as a whole
    online_hours: float
    armed_hours: float


@dataclass(frozen=True)
class _SetupSpan:
    start: datetime
    end: datetime
    setup: NodeSetup


def _clip(intervals: list[Interval], start: datetime, end: datetime) -> list[Interval]:
    return [(max(a, start), min(b, end)) for a, b in intervals if a < end and b > start]


def exposure(store: Store, start: datetime, end: datetime, *,
             places: Collection[str] | None = None) -> list[CameraExposure]:
    """Online and armed hours per camera (and zone) and place within [start, end) (aware);
    `places` limits it to those place ids. Sorted by place, node, camera, zone."""
    start, end = as_utc(start), as_utc(end)
    if end <= start:
        return []
    assignments = _assignments(store, start, end, places)
    nodes = sorted({a["node_id"] for a in assignments})
    online = _online(store, nodes, start, end)
    setups = _setups(store, nodes, start, end)
    online_h: dict[tuple[str, str, str, str | None], float] = defaultdict(float)
    armed_h: dict[tuple[str, str, str, str | None], float] = defaultdict(float)
    for a in assignments:
        node, cam, place = a["node_id"], a["camera_id"], a["place_id"]
        w0, w1 = max(start, a["valid_from"]), min(end, a["valid_to"] or end)
        up = _clip(online.get(node, []), w0, w1)
        online_h[(place, node, cam, None)] += hours(up)
        any_zone: list[Interval] = []
        for span in setups.get(node, []):
            s0, s1 = max(w0, span.start), min(w1, span.end)
            camera = next((c for c in span.setup.cameras if c.id == cam), None)
            if s0 >= s1 or camera is None:
                continue
            up_here = _clip(up, s0, s1)
            for zone in camera.zones:
                armed = intersect(up_here, armed_intervals(zone.schedule, s0, s1, camera.timezone))
                any_zone += armed
                online_h[(place, node, cam, zone.name)] += hours(up_here)
                armed_h[(place, node, cam, zone.name)] += hours(armed)
        armed_h[(place, node, cam, None)] += hours(merge(any_zone))
    return [CameraExposure(node, cam, place, zone, round(h, 6), round(armed_h[(place, node, cam, zone)], 6))
            for (place, node, cam, zone), h in sorted(online_h.items(), key=lambda kv: _order(kv[0]))]


def _order(key: tuple[str, str, str, str | None]) -> tuple[str, str, str, int, str]:
    place, node, cam, zone = key
    return place, node, cam, zone is not None, zone or ""


def _assignments(store: Store, start: datetime, end: datetime,
                 places: Collection[str] | None) -> list[dict[str, Any]]:
    ca = camera_assignments.c
    q = select(camera_assignments).where(ca.valid_from < end, or_(ca.valid_to.is_(None), ca.valid_to > start))
    if places is not None:
        q = q.where(ca.place_id.in_(list(places)))
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q.order_by(ca.node_id, ca.camera_id, ca.valid_from))]


def _online(store: Store, nodes: list[str], start: datetime, end: datetime) -> dict[str, list[Interval]]:
    if not nodes:
        return {}
    no = node_online.c
    q = (select(no.node_id, no.started_at, no.ended_at)
         .where(no.node_id.in_(nodes), no.started_at < end, no.ended_at > start))
    out: dict[str, list[Interval]] = defaultdict(list)
    with store.engine.connect() as conn:
        for node, a, b in conn.execute(q):
            out[node].append((a, b))
    return {n: merge(v) for n, v in out.items()}


def _setups(store: Store, nodes: list[str], start: datetime, end: datetime) -> dict[str, list[_SetupSpan]]:
    if not nodes:
        return {}
    ns = node_setups.c
    q = (select(ns.node_id, ns.valid_from, ns.valid_to, ns.setup)
         .where(ns.node_id.in_(nodes), ns.valid_from < end, or_(ns.valid_to.is_(None), ns.valid_to > start))
         .order_by(ns.node_id, ns.valid_from))
    out: dict[str, list[_SetupSpan]] = defaultdict(list)
    with store.engine.connect() as conn:
        for node, vf, vt, setup in conn.execute(q):
            out[node].append(_SetupSpan(vf, vt or end + timedelta(seconds=1), NodeSetup.model_validate(setup)))
    return out


def latest_setups(store: Store) -> dict[str, NodeSetup]:
    """The config in force of every node that sent one, by node id."""
    ns = node_setups.c
    with store.engine.connect() as conn:
        rows = conn.execute(select(ns.node_id, ns.setup).where(ns.valid_to.is_(None)).order_by(ns.node_id))
        return {node: NodeSetup.model_validate(setup) for node, setup in rows}


def setup_history(store: Store, node_id: str) -> list[tuple[datetime, datetime | None, NodeSetup]]:
    """Every config of `node_id`: (valid_from, valid_to or None, setup), oldest first."""
    ns = node_setups.c
    q = select(ns.valid_from, ns.valid_to, ns.setup).where(ns.node_id == node_id).order_by(ns.valid_from)
    with store.engine.connect() as conn:
        return [(vf, vt, NodeSetup.model_validate(s)) for vf, vt, s in conn.execute(q)]
