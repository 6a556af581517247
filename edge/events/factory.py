"""The one place the node builds an `Event`.

A new event gets its id (the UUIDv7 of its start) and its per-node `seq` here, once;
every later message of it (update, end, snapshot fields) is `restate`d from the first,
so id, seq, node, camera, type, subtype and start can never drift between messages.

Health events follow one rule: a moment (`detector_unavailable`, `snapshot_withheld`)
is one message with `ended_at == started_at`; a lasting condition (`camera_lost`)
starts with `ended_at` null and ends, restated, when it clears, like any other event.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from vaktpost.contract.events import Event, EventType, Phase, uuid7


@dataclass(frozen=True)
class EventIdentity:
    """What every message of one kind of event shares: who saw what."""

    node_id: str
    camera_id: str | None
    type: EventType
    subtype: str | None = None


def new_event(identity: EventIdentity, next_seq: Callable[[], int], started_at: datetime, *,
              confidence: float, ended_at: datetime | None = None, zone: str | None = None,
              region: Sequence[float] | None = None) -> Event:
    """The first message of a new event (`ended_at` set: an event that is over at once,
    one message in phase `end`)."""
    i = identity
    # Validated from a mapping: the identity's subtype is a plain name, checked here against its type.
    return Event.model_validate(dict(
        event_id=uuid7(int(started_at.timestamp() * 1000)), seq=next_seq(), node_id=i.node_id,
        camera_id=i.camera_id, type=i.type, subtype=i.subtype, zone=zone, started_at=started_at,
        ended_at=ended_at, confidence=round(confidence, 3), region=list(region) if region else None,
        phase=Phase.start if ended_at is None else Phase.end,
    ))


def restate(event: Event, **changes: Any) -> Event:
    """A later message of `event`: the same event with `changes` (validated, like the first).
    Its phase follows `ended_at`: `end` once set, `update` before."""
    if "confidence" in changes:
        changes["confidence"] = round(changes["confidence"], 3)
    if changes.get("region") is not None:
        changes["region"] = list(changes["region"])
    merged = {**event.model_dump(by_alias=True), **changes}
    if "phase" not in changes:
        merged["phase"] = Phase.end if merged.get("ended_at") is not None else Phase.update
    return Event.model_validate(merged)


def health_event(node_id: str, camera_id: str | None, subtype: str, next_seq: Callable[[], int],
                 at: datetime, *, lasting: bool = False) -> Event:
    """A health event at `at`: a moment, or (`lasting`) the start of a condition that
    ends with `restate(event, ended_at=...)` when it clears."""
    return new_event(EventIdentity(node_id, camera_id, EventType.health, subtype), next_seq, at,
                     confidence=1.0, ended_at=None if lasting else at)
