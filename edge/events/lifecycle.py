"""Event lifecycle: turn per-frame observations into events with a start, updates and an end.

An event starts once the observation has lasted `min_duration`, sends an update every
`update_interval` while it lasts, and ends after `merge_gap` seconds without it, so
short pauses inside one burst of activity do not split it into many events.
All state changes come out as `Event` objects with the same `event_id`; the last one
has `ended_at` set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable, Literal

from vaktpost.contract.events import Event, EventType, uuid7

Box = tuple[float, float, float, float]
Phase = Literal["start", "update", "end"]


@dataclass(frozen=True)
class Update:
    phase: Phase
    event: Event
    snapshot: bytes | None = None  # anonymised JPEG for this event, at most once per event


@dataclass(frozen=True)
class EventIdentity:
    node_id: str
    camera_id: str
    type: EventType
    subtype: str | None = None


def union(a: Box | None, b: Box) -> Box:
    if a is None:
        return b
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


@dataclass
class _Open:
    first_seen: datetime
    last_seen: datetime
    region: Box | None
    confidence: float
    zone: str | None
    event_id: str | None = None  # set once the event has started
    seq: int | None = None
    last_sent: datetime | None = None


@dataclass
class Lifecycle:
    """One running event at a time for one (camera, type)."""

    identity: EventIdentity
    next_seq: Callable[[], int]
    min_duration: float
    merge_gap: float
    update_interval: float
    _open: _Open | None = field(default=None, init=False)

    def step(self, t: datetime, active: bool, *, region: Box | None = None,
             confidence: float = 0.0, zone: str | None = None) -> list[Update]:
        """Feed one observation at time `t` (timezone-aware)."""
        out: list[Update] = []
        o = self._open
        if o is not None and t - o.last_seen > timedelta(seconds=self.merge_gap):
            out += self._close()
            o = None
        if active:
            if o is None:
                o = self._open = _Open(first_seen=t, last_seen=t, region=region,
                                       confidence=confidence, zone=zone)
            else:
                o.last_seen = t
                if region is not None:
                    o.region = union(o.region, region)
                o.confidence = max(o.confidence, confidence)
                o.zone = o.zone or zone
            if o.event_id is None:
                if t - o.first_seen >= timedelta(seconds=self.min_duration):
                    o.event_id = uuid7(int(o.first_seen.timestamp() * 1000))
                    o.seq = self.next_seq()
                    o.last_sent = t
                    out.append(Update("start", self._event(o, ended=False)))
            elif t - (o.last_sent or t) >= timedelta(seconds=self.update_interval):
                o.last_sent = t
                out.append(Update("update", self._event(o, ended=False)))
        return out

    def finish(self) -> list[Update]:
        """End the running event now (source ended, node stopping)."""
        return self._close()

    @property
    def running(self) -> bool:
        return self._open is not None and self._open.event_id is not None

    def _close(self) -> list[Update]:
        o, self._open = self._open, None
        if o is None or o.event_id is None:
            return []  # too short to count: never reported
        return [Update("end", self._event(o, ended=True))]

    def _event(self, o: _Open, *, ended: bool) -> Event:
        i = self.identity
        return Event(
            event_id=o.event_id, seq=o.seq, node_id=i.node_id, camera_id=i.camera_id,
            type=i.type, subtype=i.subtype, zone=o.zone, started_at=o.first_seen,
            ended_at=o.last_seen if ended else None, confidence=round(o.confidence, 3),
            region=list(o.region) if o.region else None,
        )
