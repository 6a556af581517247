"""Node health for the places page: which cameras watch a place now, and how their
nodes are (from the `nodes` table: retained status, Last Will and heartbeats)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

NodeState = Literal["online", "offline", "unknown"]


@dataclass(frozen=True)
class CameraHealth:
    node_id: str
    camera_id: str
    state: NodeState
    reason: str  # why: "heartbeat", "status", "stale", "never"
    heartbeat_at: datetime | None
    outbox_depth: int | None
    temperature_c: float | None
    dropped_frames: int | None
    fps: float | None


def node_state(node: Mapping[str, Any] | None, now: datetime, offline_after: timedelta) -> tuple[NodeState, str]:
    """online: a fresh heartbeat and no offline status; offline: the node said so (or its
    Last Will did), or its heartbeats stopped; unknown: never heard from."""
    if node is None or (node.get("heartbeat_at") is None and node.get("state") is None):
        return "unknown", "never"
    if node.get("state") == "offline":
        return "offline", "status"
    beat = node.get("heartbeat_at")
    if beat is None or now - beat > offline_after:
        return "offline", "stale"
    return "online", "heartbeat"


def current_cameras(assignments: Iterable[Mapping[str, Any]], now: datetime) -> dict[str, list[tuple[str, str]]]:
    """place id → [(node, camera)] assigned to it at `now`."""
    out: dict[str, list[tuple[str, str]]] = {}
    for a in assignments:
        if a["valid_from"] <= now and (a["valid_to"] is None or a["valid_to"] > now):
            out.setdefault(a["place_id"], []).append((a["node_id"], a["camera_id"]))
    return out


def camera_health(node_id: str, camera_id: str, node: Mapping[str, Any] | None, now: datetime,
                  offline_after: timedelta) -> CameraHealth:
    state, reason = node_state(node, now, offline_after)
    hb: Mapping[str, Any] = (node or {}).get("heartbeat") or {}
    dropped = hb.get("dropped_frames", {}).get(camera_id)
    fps = hb.get("fps", {}).get(camera_id)
    return CameraHealth(
        node_id=node_id, camera_id=camera_id, state=state, reason=reason,
        heartbeat_at=(node or {}).get("heartbeat_at"),
        outbox_depth=hb.get("outbox_depth"), temperature_c=hb.get("cpu_temp_c"),
        dropped_frames=None if dropped is None else int(dropped), fps=None if fps is None else float(fps),
    )
