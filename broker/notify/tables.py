"""The notification tables, on their own MetaData (`create_tables` makes them).

- `notify_subscriptions`: a user's subscription (channel, target, filters, mode); removing
  the user removes them (foreign key to `inbox_users`, ON DELETE CASCADE).
- `notification_outbox`: one row per message to send, or per incident held for a digest.
  Unique (subscription, incident): an incident is queued once per subscription however
  often it is scanned; unique (subscription, digest_date): one digest a day.
- `notify_cursor`: the highest incident id scanned (one row), so a restart goes on where
  the last run stopped.
"""

from __future__ import annotations

from sqlalchemy import JSON, Column, ForeignKey, Integer, MetaData, SmallInteger, String, Table, Text, UniqueConstraint
from sqlalchemy.engine import Engine

from vaktpost.broker.inbox.accounts import metadata as accounts_metadata
from vaktpost.broker.inbox.accounts import users
from vaktpost.broker.store import UtcDateTime

metadata = MetaData()

subscriptions = Table(
    "notify_subscriptions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_name", String(64), ForeignKey(users.c.name, ondelete="CASCADE"), nullable=False, index=True),
    Column("channel", String(16), nullable=False),  # email | webhook
    Column("target", String(2000), nullable=False),  # address or URL
    Column("secret", String(200)),  # webhook HMAC key; null for email
    Column("districts", JSON, nullable=False),  # [] = any in scope
    Column("places", JSON, nullable=False),  # place ids; [] = any in scope
    Column("types", JSON, nullable=False),  # incident types; [] = every type
    Column("min_priority", SmallInteger, nullable=False),  # kinds.Priority
    Column("hours_from", SmallInteger),  # local hours [from, to), overnight when from > to; null = always
    Column("hours_to", SmallInteger),
    Column("mode", String(16), nullable=False),  # immediate | digest
    Column("created_at", UtcDateTime(), nullable=False),
)

outbox = Table(
    "notification_outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("subscription_id", Integer, ForeignKey(subscriptions.c.id, ondelete="CASCADE"), nullable=False),
    Column("incident_id", Integer),  # null for a digest
    Column("digest_date", String(10)),  # local date of a digest, YYYY-MM-DD
    Column("digest_id", Integer),  # a held row: the digest row it went out in
    # held (waits for the digest) → bundled; pending → sent | failed
    Column("state", String(16), nullable=False, index=True),
    Column("message", JSON(none_as_null=True)),  # notify.message.Message, for pending rows
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", UtcDateTime(), nullable=False, index=True),
    Column("last_error", Text),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("sent_at", UtcDateTime()),
    UniqueConstraint("subscription_id", "incident_id", name="uq_notification_incident"),
    UniqueConstraint("subscription_id", "digest_date", name="uq_notification_digest"),
)

cursor = Table(
    "notify_cursor",
    metadata,
    Column("id", Integer, primary_key=True),  # always 1
    Column("last_incident_id", Integer, nullable=False),
)


def create_tables(engine: Engine) -> None:
    """The accounts' tables (the subscriptions point at users) and the notification tables."""
    accounts_metadata.create_all(engine)
    metadata.create_all(engine)
