"""The text of a notification. Deliberately little: the incident's type, priority,
place name and district, local time and a link to the inbox; never an image, a zone,
a camera, an owner, a comment or anything else about a person. Whoever follows the
link logs in and sees what their scope allows.

Texts are the inbox's gettext catalogue (`inbox.i18n`), Swedish by default.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime, tzinfo
from typing import Any

from pydantic import BaseModel, ConfigDict

from vaktpost.broker.inbox.i18n import load_translations
from vaktpost.broker.incidents.labels import priority_labels, type_labels
from vaktpost.broker.incidents.service import Incident

PREFIX = "[Vaktpost]"


class Message(BaseModel):
    """What a sender sends: `subject` and `text` for email, `data` as the webhook's JSON body."""

    model_config = ConfigDict(frozen=True)

    subject: str
    text: str
    data: dict[str, Any]


class Texts:
    """The words of messages in one language."""

    def __init__(self, lang: str) -> None:
        self.lang = lang
        self.gettext: Callable[[str], str] = load_translations(lang).gettext
        self.types = type_labels(self.gettext)
        self.priorities = priority_labels(self.gettext)


def _where(incident: Incident, texts: Texts) -> str:
    if not incident.places:
        return texts.gettext("no place (unassigned camera)")
    return ", ".join(f"{p.name} ({p.district})" if p.district else p.name for p in incident.places)


def _local(t: datetime, zone: tzinfo) -> str:
    return t.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def link(base: str, incident_id: int) -> str:
    return f"{base}/incidents/{incident_id}"


def _summary(incident: Incident, base: str, zone: tzinfo) -> dict[str, Any]:
    return {"id": incident.id, "type": incident.type.value, "priority": incident.priority.name,
            "places": [{"name": p.name, "district": p.district} for p in incident.places],
            "opened_at": incident.opened_at.astimezone(zone).isoformat(), "url": link(base, incident.id)}


def incident_message(incident: Incident, *, base: str, zone: tzinfo, texts: Texts) -> Message:
    """One new incident."""
    _ = texts.gettext
    what, priority, where = texts.types[incident.type], texts.priorities[incident.priority], _where(incident, texts)
    lines = [
        _("New incident: %(type)s, %(priority)s") % {"type": what, "priority": priority},
        _("Place: %(place)s") % {"place": where},
        _("Time: %(time)s") % {"time": _local(incident.opened_at, zone)},
        "",
        _("Open it in the inbox: %(url)s") % {"url": link(base, incident.id)},
    ]
    text = "\n".join(lines) + "\n"
    subject = f"{PREFIX} {what} ({priority}): {where}"
    return Message(subject=subject, text=text, data={"kind": "incident", "incident": _summary(incident, base, zone),
                                                     "text": text})


def digest_message(incidents: Sequence[Incident], day: date, *, base: str, zone: tzinfo, texts: Texts) -> Message:
    """The day's incidents of a digest subscription, as links."""
    _ = texts.gettext
    head = _("New incidents since the last summary: %(count)d") % {"count": len(incidents)}
    lines = [head, ""] + [f"- {_local(i.opened_at, zone)} {texts.types[i.type]}, {_where(i, texts)}: "
                          f"{link(base, i.id)}" for i in incidents]
    text = "\n".join(lines) + "\n"
    subject = f"{PREFIX} " + _("Daily summary %(date)s: %(count)d incidents") % {"date": day.isoformat(),
                                                                                  "count": len(incidents)}
    return Message(subject=subject, text=text, data={
        "kind": "digest", "date": day.isoformat(), "incidents": [_summary(i, base, zone) for i in incidents],
        "text": text})
