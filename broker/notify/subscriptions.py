"""Subscriptions: who gets told about which new incidents, how and when.

A subscription belongs to an inbox user and never reaches past the user's scope
(`inbox.scope`): its districts and places must be the user's, and every incident is
checked against the user's scope again when it is matched. The filters narrow:
districts and places (an incident matches through any of its places, in any listed
district *or* any listed place; none listed = the whole scope), types, a minimum
priority and local hours. `mode` is `immediate` (a message per incident) or `digest`
(one a day, `notifications.digest_hour`).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, tzinfo
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict
from sqlalchemy import delete, func, select
from sqlalchemy.engine import Engine

from vaktpost.broker.inbox.accounts import Account, users
from vaktpost.broker.inbox.scope import sees_district, sees_incident
from vaktpost.broker.incidents.kinds import IncidentType, Priority
from vaktpost.broker.incidents.service import Incident
from vaktpost.broker.notify.tables import outbox, subscriptions

Channel = Literal["email", "webhook"]
Mode = Literal["immediate", "digest"]
CHANNELS: tuple[Channel, ...] = get_args(Channel)
MODES: tuple[Mode, ...] = get_args(Mode)
# No spaces, control characters (header injection) or a second @.
_EMAIL = re.compile(r"^[^@\s\x00-\x1f\x7f<>,;]+@[A-Za-z0-9.-]+\.[A-Za-z0-9-]+$")
_HOURS = re.compile(r"^(\d{1,2})-(\d{1,2})$")
MAX_TARGET = 2000


class SubscriptionError(ValueError):
    """A subscription cannot be added or removed; the message says why in one line."""


class NewSubscription(BaseModel):
    """What a person asks for (CLI or inbox page), before it is checked."""

    model_config = ConfigDict(frozen=True)

    channel: Channel
    target: str
    districts: tuple[str, ...] = ()
    places: tuple[str, ...] = ()
    types: tuple[IncidentType, ...] = ()
    min_priority: Priority = Priority.low
    hours: tuple[int, int] | None = None
    mode: Mode = "immediate"


class Subscription(NewSubscription):
    id: int
    user_name: str
    secret: str | None  # the webhook's HMAC key
    created_at: datetime

    def describe(self) -> str:
        """The filters in one line (CLI)."""
        parts = [f"districts={','.join(self.districts)}" if self.districts else "",
                 f"places={','.join(self.places)}" if self.places else "",
                 f"types={','.join(t.value for t in self.types)}" if self.types else "",
                 f"min-priority={self.min_priority.name}" if self.min_priority > Priority.low else "",
                 f"hours={self.hours[0]:02d}-{self.hours[1]:02d}" if self.hours else ""]
        return " ".join(p for p in parts if p) or "everything in scope"


def parse_hours(text: str) -> tuple[int, int]:
    """'17-07' → (17, 7): from 17:00 to 07:00 local time (overnight when from > to)."""
    m = _HOURS.fullmatch(text.strip())
    if not m or not (0 <= int(m[1]) <= 23 and 0 <= int(m[2]) <= 24) or int(m[1]) == int(m[2]):
        raise SubscriptionError(f"hours must be FROM-TO in whole local hours, e.g. 17-07 or 08-16, got {text!r}")
    return int(m[1]), int(m[2])


def parse_priority(text: str) -> Priority:
    if text not in Priority.__members__:
        raise SubscriptionError(f"priority must be one of {', '.join(Priority.__members__)}, got {text!r}")
    return Priority[text]


def parse_types(values: Iterable[str]) -> tuple[IncidentType, ...]:
    out = []
    for v in values:
        try:
            out.append(IncidentType(v))
        except ValueError:
            raise SubscriptionError(f"unknown incident type {v!r} (one of "
                                    f"{', '.join(t.value for t in IncidentType)})") from None
    return tuple(dict.fromkeys(out))


def in_hours(hours: tuple[int, int] | None, local: datetime) -> bool:
    if hours is None:
        return True
    start, end = hours
    return start <= local.hour < end if start < end else local.hour >= start or local.hour < end


def _check_target(channel: str, target: str) -> None:
    if len(target) > MAX_TARGET:
        raise SubscriptionError(f"{channel} target is longer than {MAX_TARGET} characters")
    if channel == "email":
        if not _EMAIL.fullmatch(target):
            raise SubscriptionError(f"not an email address: {target!r}")
        return
    parts = urlsplit(target)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in target):
        raise SubscriptionError(f"webhook must be an http:// or https:// URL, got {target!r}")


def check_new(account: Account, spec: NewSubscription, places: Sequence[Mapping[str, Any]]) -> None:
    """SubscriptionError unless `spec` is well formed and within `account`'s scope."""
    _check_target(spec.channel, spec.target)
    for d in spec.districts:
        if not sees_district(account, d):
            raise SubscriptionError(f"district {d!r} is not in {account.name}'s scope")
    by_id = {p["id"]: p for p in places}
    for place_id in spec.places:
        place = by_id.get(place_id)
        if place is None or not sees_district(account, place.get("district")):
            # Out of scope reads exactly like missing (as in the inbox).
            raise SubscriptionError(f"no place {place_id!r} in {account.name}'s scope")


def _row(r: Any) -> Subscription:
    hours = (int(r["hours_from"]), int(r["hours_to"])) if r["hours_from"] is not None else None
    return Subscription(id=r["id"], user_name=r["user_name"], channel=r["channel"], target=r["target"],
                        secret=r["secret"], districts=tuple(r["districts"]), places=tuple(r["places"]),
                        types=tuple(IncidentType(t) for t in r["types"]), min_priority=Priority(r["min_priority"]),
                        hours=hours, mode=r["mode"], created_at=r["created_at"])


def add(engine: Engine, account: Account, spec: NewSubscription, places: Sequence[Mapping[str, Any]], *,
        now: datetime) -> Subscription:
    """Check `spec` and store it for `account`; a webhook gets a new random secret."""
    check_new(account, spec, places)
    secret = secrets.token_hex(32) if spec.channel == "webhook" else None
    with engine.begin() as conn:
        new_id = conn.execute(subscriptions.insert().values(
            user_name=account.name, channel=spec.channel, target=spec.target, secret=secret,
            districts=sorted(set(spec.districts)), places=sorted(set(spec.places)),
            types=[t.value for t in spec.types], min_priority=int(spec.min_priority),
            hours_from=spec.hours[0] if spec.hours else None, hours_to=spec.hours[1] if spec.hours else None,
            mode=spec.mode, created_at=now).returning(subscriptions.c.id)).scalar_one()
        return _row(conn.execute(select(subscriptions).where(subscriptions.c.id == new_id)).mappings().one())


def account_of(engine: Engine, user_name: str) -> Account | None:
    """The inbox account `user_name` (read directly: `Accounts` hashes a password to start)."""
    with engine.connect() as conn:
        row = conn.execute(select(users.c.role, users.c.districts).where(users.c.name == user_name)).first()
    return None if row is None else Account(user_name, row.role, frozenset(row.districts))


def add_for(engine: Engine, user_name: str, spec: NewSubscription, places: Sequence[Mapping[str, Any]], *,
            now: datetime) -> Subscription:
    account = account_of(engine, user_name)
    if account is None:
        raise SubscriptionError(f"no user {user_name!r} (vaktpost users add)")
    return add(engine, account, spec, places, now=now)


def list_subscriptions(engine: Engine, user_name: str | None = None) -> list[Subscription]:
    q = select(subscriptions).order_by(subscriptions.c.user_name, subscriptions.c.id)
    if user_name is not None:
        q = q.where(subscriptions.c.user_name == user_name)
    with engine.connect() as conn:
        return [_row(r) for r in conn.execute(q).mappings()]


def remove(engine: Engine, subscription_id: int, user_name: str | None = None) -> None:
    """Remove a subscription and its queued messages; `user_name` limits it to that user's own."""
    with engine.begin() as conn:
        q = select(subscriptions.c.user_name).where(subscriptions.c.id == subscription_id)
        owner = conn.execute(q).scalar()
        if owner is None or (user_name is not None and owner != user_name):
            raise SubscriptionError(f"no subscription {subscription_id}")
        conn.execute(delete(outbox).where(outbox.c.subscription_id == subscription_id))
        conn.execute(delete(subscriptions).where(subscriptions.c.id == subscription_id))


def outbox_counts(engine: Engine) -> dict[int, dict[str, int]]:
    """Per subscription: rows per outbox state (held, pending, sent, failed, bundled)."""
    o = outbox.c
    with engine.connect() as conn:
        rows = conn.execute(select(o.subscription_id, o.state, func.count()).group_by(o.subscription_id, o.state))
        out: dict[int, dict[str, int]] = {}
        for sub_id, state, n in rows:
            out.setdefault(int(sub_id), {})[state] = int(n)
    return out


def last_errors(engine: Engine) -> dict[int, str]:
    """Per subscription: the error of its newest failed or retrying message."""
    o = outbox.c
    q = (select(o.subscription_id, o.last_error).where(o.last_error.is_not(None), o.state.in_(["pending", "failed"]))
         .order_by(o.id))
    with engine.connect() as conn:
        return {int(sub_id): str(err) for sub_id, err in conn.execute(q)}


def matches(sub: Subscription, account: Account, incident: Incident, zone: tzinfo) -> bool:
    """Whether `incident` is one `sub` (of `account`) asks to hear about."""
    if not sees_incident(account, incident):
        return False
    if (sub.districts or sub.places) and not any(p.district in sub.districts or p.id in sub.places
                                                 for p in incident.places):
        return False
    if sub.types and incident.type not in sub.types:
        return False
    return incident.priority >= sub.min_priority and in_hours(sub.hours, incident.opened_at.astimezone(zone))
