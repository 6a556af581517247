"""The words people read for incident types and priorities, in any language: each
function takes the language's `gettext`. One wording for the inbox's pages and the
notifications; the strings are in the inbox's catalogue (docs/inbox.md, "Languages")."""

from __future__ import annotations

from collections.abc import Callable

from vaktpost.broker.incidents.kinds import IncidentType, Priority


def type_labels(gettext: Callable[[str], str]) -> dict[IncidentType, str]:
    # Spelled out so that extraction (docs/inbox.md, "Languages") finds them.
    return {IncidentType.motion: gettext("Motion"), IncidentType.intrusion: gettext("Intrusion"),
            IncidentType.loitering: gettext("Loitering"), IncidentType.scene_change: gettext("Scene change"),
            IncidentType.tamper: gettext("Camera tampering"), IncidentType.health: gettext("Camera fault"),
            IncidentType.node_offline: gettext("Node offline")}


def priority_labels(gettext: Callable[[str], str]) -> dict[Priority, str]:
    return {Priority.low: gettext("low priority"), Priority.normal: gettext("normal priority"),
            Priority.high: gettext("high priority")}
