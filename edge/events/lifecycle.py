"""Event lifecycle: turn per-frame observations into events with a start, updates and an end.

An event starts once the observation has lasted `min_duration`, sends an update every
`update_interval` while it lasts, and ends after `merge_gap` seconds without it, so
short pauses inside one burst of activity do not split it into many events.
All state changes come out as `Event` objects with the same `event_id`; the last one
has `ended_at` set.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from vaktpost.contract.events import Event, Phase
from vaktpost.edge.events.factory import EventIdentity, new_event, restate
from vaktpost.edge.geometry import Box, union


@dataclass(frozen=True)
class Update:
    phase: Phase
    event: Event
    snapshot: bytes | None = None  # anonymised JPEG for this event, at most once per event


@dataclass
class _Open:
    first_seen: datetime
    last_seen: datetime
    region: Box | None
    confidence: float
    zone: str | None
    first: Event | None = None  # the start message, once the event has started
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
        # Seconds as floats: merge_gap may be infinite (an event ended only by `end`).
        if o is not None and (t - o.last_seen).total_seconds() > self.merge_gap:
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
            if o.first is None:
                if t - o.first_seen >= timedelta(seconds=self.min_duration):
                    o.first = new_event(self.identity, self.next_seq, o.first_seen, confidence=o.confidence,
                                        zone=o.zone, region=o.region)
                    o.last_sent = t
                    out.append(Update(Phase.start, o.first))
            elif t - (o.last_sent or t) >= timedelta(seconds=self.update_interval):
                o.last_sent = t
                out.append(Update(Phase.update, self._event(o, ended=False)))
        return out

    def finish(self) -> list[Update]:
        """End the running event now (source ended, node stopping)."""
        return self._close()

    def end(self, t: datetime) -> list[Update]:
        """End the running event at `t`: the condition is known to be over (e.g. frames returned)."""
        if self._open is not None:
            self._open.last_seen = max(self._open.last_seen, t)
        return self._close()

    @property
    def running(self) -> bool:
        return self._open is not None and self._open.first is not None

    def _close(self) -> list[Update]:
        o, self._open = self._open, None
        if o is None or o.first is None:
            return []  # too short to count: never reported
        return [Update(Phase.end, self._event(o, ended=True))]

    def _event(self, o: _Open, *, ended: bool) -> Event:
        assert o.first is not None
        return restate(o.first, ended_at=o.last_seen if ended else None, confidence=o.confidence,
                       zone=o.zone, region=o.region)
