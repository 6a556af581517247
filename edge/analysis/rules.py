"""People rules: intrusion and loitering events from confirmed tracks, zones and schedules.

Where a person is: the *foot point*, the bottom centre of the box, because that is
where they stand; a head leaning over a fence line does not put anyone inside.

Each (track, zone, rule) gets its own `Lifecycle`:

* intrusion: active while the foot point is inside the zone and the zone is armed
  (its schedule at the sighting's wall-clock time, node time zone); starts after
  `intrusion_min_seconds`.
* loitering: active while the foot point is inside the zone (and, with
  `loiter_armed_only`, the zone is armed); starts once the person has been there
  `loiter_seconds`. `started_at` is when they *entered*, the event is published
  only when the threshold is crossed.

The lifecycle's `merge_gap` is `reenter_gap`: leaving and coming back within it
continues the same event. An event ends when the person has been seen outside the
zone for longer than `reenter_gap`, or when the tracker drops the track; `ended_at`
is the last sighting inside the zone.

Only *new sightings* count: a track whose `last_seen` did not change since the
previous step (the detector did not run, or missed them) is no information, not
absence. A track seen for the first time brings the sightings that led to its
confirmation; they are replayed at their own times, so a dwell counts from the
first detection and confirming a person costs no intrusion time. Track ids stay
inside this module; events carry zone and region only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from vaktpost.contract.events import EventType
from vaktpost.contract.schedule import is_armed
from vaktpost.edge.config import Zone
from vaktpost.edge.config.rules import RulesSettings
from vaktpost.edge.events.factory import EventIdentity
from vaktpost.edge.events.lifecycle import Lifecycle, Update
from vaktpost.edge.geometry import Box, foot_point, point_in_polygon


class TrackLike(Protocol):
    """What the rules read from vaktpost.edge.analysis.track.Track."""

    @property
    def id(self) -> int: ...  # pragma: no cover

    @property
    def box(self) -> Box: ...  # pragma: no cover

    @property
    def score(self) -> float: ...  # pragma: no cover

    @property
    def last_seen(self) -> float: ...  # pragma: no cover

    @property
    def sightings(self) -> Sequence[tuple[float, Box, float]]: ...  # pragma: no cover


# ---- pure helpers --------------------------------------------------------


def zone_rules(zone: str, s: RulesSettings) -> list[tuple[EventType, float, bool]]:
    """(event type, seconds before it starts, needs the zone armed) for one zone."""
    out = []
    if s.intrusion:
        out.append((EventType.intrusion, s.intrusion_min_seconds, True))
    if s.loitering:
        seconds = s.loiter_seconds_by_zone.get(zone, s.loiter_seconds)
        if seconds is not None:
            out.append((EventType.loitering, seconds, s.loiter_armed_only))
    return out


# ---- state ---------------------------------------------------------------


class PeopleRules:
    """Intrusion and loitering for one camera. Feed it the output of one `Tracker`;
    recreate both together (track ids restart with a new tracker)."""

    def __init__(self, node_id: str, camera_id: str, zones: Sequence[Zone], tz: str,
                 settings: RulesSettings | None, next_seq: Callable[[], int]):
        self.settings = s = settings or RulesSettings()
        names = {z.name for z in zones}
        unknown = sorted(set(s.loiter_seconds_by_zone) - names)
        if unknown:
            raise ValueError(f"loiter_seconds_by_zone names unknown zones: {', '.join(unknown)}")
        self._zones = list(zones)
        self._rules = {z.name: zone_rules(z.name, s) for z in zones}
        self._tz = ZoneInfo(tz)
        self._next_seq = next_seq
        self._identity = {k: EventIdentity(node_id, camera_id, k) for k in (EventType.intrusion, EventType.loitering)}
        self._seen: dict[int, float] = {}  # track id -> last_seen already processed
        self._cycles: dict[int, dict[tuple[str, EventType], Lifecycle]] = {}

    def step(self, tracks: Sequence[TrackLike], t: datetime) -> list[Update]:
        """Feed the tracker's current tracks at wall-clock time `t` (timezone-aware)."""
        if t.tzinfo is None:
            raise ValueError("PeopleRules.step needs a timezone-aware datetime")
        out: list[Update] = []
        present = {tr.id for tr in tracks}
        for tid in sorted(set(self._seen) - present):
            out += self._drop(tid)
        armed: dict[str, bool] = {}  # evaluated at most once per zone and step
        for tr in sorted(tracks, key=lambda tr: tr.id):
            if self._seen.get(tr.id) == tr.last_seen:
                continue  # no new sighting: neither presence nor absence
            if tr.id not in self._seen:
                out += self._replay(tr, t)
            self._seen[tr.id] = tr.last_seen
            out += self._sighting(tr.id, tr.box, tr.score, t, armed)
        return out

    def _replay(self, tr: TrackLike, t: datetime) -> list[Update]:
        # Sightings before the confirmation, on the track's clock; `t` is the wall time of last_seen.
        out: list[Update] = []
        for ts, box, score in tr.sightings:
            if ts < tr.last_seen:
                out += self._sighting(tr.id, box, score, t - timedelta(seconds=tr.last_seen - ts), {})
        return out

    def finish(self) -> list[Update]:
        """End every running event (source ended, node stopping)."""
        out: list[Update] = []
        for tid in sorted(self._seen):
            out += self._drop(tid)
        return out

    def _sighting(self, tid: int, box: Box, score: float, t: datetime, armed: dict[str, bool]) -> list[Update]:
        out: list[Update] = []
        x, y = foot_point(box)
        cycles = self._cycles.setdefault(tid, {})
        for zone in self._zones:
            inside = point_in_polygon(x, y, zone.polygon)
            for kind, seconds, needs_armed in self._rules[zone.name]:
                active = inside
                if active and needs_armed:
                    if zone.name not in armed:
                        armed[zone.name] = is_armed(zone.schedule, t, self._tz)
                    active = armed[zone.name]
                key = (zone.name, kind)
                lc = cycles.get(key)
                if lc is None:
                    if not active:
                        continue
                    lc = cycles[key] = Lifecycle(self._identity[kind], self._next_seq, seconds,
                                                 self.settings.reenter_gap, self.settings.update_interval)
                out += lc.step(t, active, region=box if active else None,
                               confidence=score, zone=zone.name)
        return out

    def _drop(self, tid: int) -> list[Update]:
        # Track lost: its events end at the last sighting inside the zone.
        self._seen.pop(tid, None)
        out: list[Update] = []
        for lc in self._cycles.pop(tid, {}).values():
            out += lc.finish()
        return out
