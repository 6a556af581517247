"""The words of incidents: their types, priorities, states and outcomes (no I/O)."""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Final

from vaktpost.contract.events import EventType

SYSTEM: Final = "system"  # the actor of changes the consumer makes (opened, auto-closed)
DISPLAY_TZ: Final = "Europe/Stockholm"  # times shown to people; storage stays UTC


class IncidentType(StrEnum):
    """An event type, or a node that went silent."""

    motion = "motion"
    intrusion = "intrusion"
    loitering = "loitering"
    scene_change = "scene_change"
    tamper = "tamper"
    health = "health"
    node_offline = "node_offline"


# Every event type is an incident type of the same name.
assert {t.value for t in EventType} <= {t.value for t in IncidentType}

# People events: incidents of these split by zone as well.
PEOPLE_TYPES: Final = frozenset({IncidentType.intrusion, IncidentType.loitering})


class Priority(IntEnum):
    """Stored as its number so the inbox can sort and index on it."""

    low = 1
    normal = 2
    high = 3


DEFAULT_PRIORITY: Final[dict[IncidentType, Priority]] = {
    IncidentType.motion: Priority.low,
    IncidentType.intrusion: Priority.high,
    IncidentType.loitering: Priority.normal,
    IncidentType.scene_change: Priority.normal,
    IncidentType.tamper: Priority.high,
    IncidentType.health: Priority.normal,
    IncidentType.node_offline: Priority.high,
}


class State(StrEnum):
    new = "new"
    acknowledged = "acknowledged"
    resolved = "resolved"


OPEN_STATES: Final = (State.new, State.acknowledged)


class Outcome(StrEnum):
    """Why an incident was resolved. `auto_closed`: the consumer closed it (the node is back)."""

    false_alarm = "false_alarm"
    damage_found = "damage_found"
    police_report = "police_report"
    cleaned_or_repaired = "cleaned_or_repaired"
    other = "other"
    auto_closed = "auto_closed"


class Action(StrEnum):
    """What an audit row records."""

    opened = "opened"
    acknowledged = "acknowledged"
    resolved = "resolved"
    auto_closed = "auto_closed"
    reopened = "reopened"
    assigned = "assigned"
    commented = "commented"
    snapshot_viewed = "snapshot_viewed"
    # an admin's changes, from the inbox's pages
    user_added = "user_added"
    user_removed = "user_removed"
    places_imported = "places_imported"
    token_added = "token_added"
    token_removed = "token_removed"
