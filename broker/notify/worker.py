"""The notification worker of the central service: it finds new incidents, queues a
message per matching subscription in the outbox, bundles the digests and sends what
is due, retrying with exponential backoff. It runs in its own thread of
`vaktpost central` (`NotifyWorker`); web requests never send anything.

New incidents are found by id above a cursor row, so a restart goes on where the
last run stopped; incidents created in the last `LOOKBACK` are scanned again on
every round, because on PostgreSQL a transaction holding a lower id may commit after
a higher one was seen. Queuing is idempotent (unique subscription and incident), so
rescanning never queues a message twice. An incident is one message, however many
events join it: only its creation is a notification.

Sending claims a row by moving its `next_attempt_at` past the send (a conditional
update), so two central services on one database never send the same row twice; a
service killed in mid-send leaves the row to be retried after that lease.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from vaktpost.broker.config import NotificationsSection
from vaktpost.broker.inbox.accounts import Account
from vaktpost.broker.incidents.service import Incident, _incident, _places_of
from vaktpost.broker.incidents.tables import incidents
from vaktpost.broker.notify.message import Message, Texts, digest_message, incident_message
from vaktpost.broker.notify.senders import Sender, SendError, SmtpSender, WebhookSender
from vaktpost.broker.notify.subscriptions import Subscription, account_of, list_subscriptions, matches
from vaktpost.broker.notify.tables import create_tables, cursor, outbox, subscriptions
from vaktpost.broker.store import Store, as_utc, utcnow

log = logging.getLogger(__name__)

LOOKBACK = timedelta(minutes=5)  # incidents this recent are scanned again (see the module's docstring)
SCAN_BATCH = 500
SEND_BATCH = 100
HELD, BUNDLED, PENDING, SENT, FAILED = "held", "bundled", "pending", "sent", "failed"


@dataclass
class Round:
    """What one round of the worker did."""

    queued: int = 0
    digests: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0


def _insert(conn: Connection) -> Any:
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


def _incidents(conn: Connection, ids: Sequence[int]) -> dict[int, Incident]:
    if not ids:
        return {}
    rows = conn.execute(select(incidents).where(incidents.c.id.in_(ids))).mappings().all()
    refs = _places_of(conn, ids)
    return {int(r["id"]): _incident(r, refs.get(int(r["id"]), [])) for r in rows}


@dataclass
class Notifier:
    """One round at a time (`run_round`), on the store's database; the clock is injected."""

    store: Store
    settings: NotificationsSection
    zone: ZoneInfo
    senders: Mapping[str, Sender]
    clock: Callable[[], datetime] = utcnow
    texts: Texts = field(init=False)
    _warned: set[str] = field(default_factory=set, init=False)

    def __post_init__(self) -> None:
        self.texts = Texts(self.settings.language)
        create_tables(self.store.engine)

    @classmethod
    def from_settings(cls, store: Store, settings: NotificationsSection, zone: str,
                      clock: Callable[[], datetime] = utcnow) -> Notifier:
        senders: dict[str, Sender] = {"webhook": WebhookSender(settings.webhook_timeout, clock)}
        if settings.smtp is not None:
            senders["email"] = SmtpSender(settings.smtp, clock)
        return cls(store, settings, ZoneInfo(zone), senders, clock)

    def close(self) -> None:
        hook = self.senders.get("webhook")
        if isinstance(hook, WebhookSender):
            hook.close()

    # --- when ---------------------------------------------------------------------

    def active(self) -> bool:
        """`enabled`, or when unset: an SMTP server is configured or a webhook subscription exists."""
        if self.settings.enabled is not None:
            return self.settings.enabled
        if self.settings.smtp is not None:
            return True
        with self.store.engine.connect() as conn:
            return conn.execute(select(subscriptions.c.id).where(subscriptions.c.channel == "webhook")
                                .limit(1)).first() is not None

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("%s", message)

    def run_round(self) -> Round:
        """Scan, bundle digests, send; nothing while inactive."""
        r = Round()
        if not self.active():
            return r
        if self.settings.link_base is None:
            self._warn_once("url", "notifications.public_url is not set: no notifications are sent")
            return r
        now = as_utc(self.clock())
        r.queued = self.scan(now)
        r.digests = self.make_digests(now)
        self.send_due(now, r)
        return r

    # --- new incidents → outbox -----------------------------------------------------

    def _deliverable(self, sub: Subscription) -> bool:
        if sub.channel in self.senders:
            return True
        self._warn_once(f"channel:{sub.channel}", f"{sub.channel} subscriptions get nothing: "
                        "notifications.smtp is not set")
        return False

    def _start_after(self, conn: Connection, now: datetime) -> int:
        last = conn.execute(select(cursor.c.last_incident_id).where(cursor.c.id == 1)).scalar()
        if last is None:
            conn.execute(cursor.insert().values(id=1, last_incident_id=0))
            last = 0
        recent = conn.execute(select(func.min(incidents.c.id))
                              .where(incidents.c.created_at >= now - LOOKBACK)).scalar()
        return min(int(last), int(recent) - 1) if recent is not None else int(last)

    def scan(self, now: datetime) -> int:
        """Queue a message (or a digest entry) for every new incident and subscription that matches it."""
        subs = [s for s in list_subscriptions(self.store.engine) if self._deliverable(s)]
        owners: dict[str, Account | None] = {}
        oldest = now - timedelta(seconds=self.settings.max_age)  # older incidents would only fail
        queued = 0
        with self.store.begin() as tx:
            conn = tx.conn
            after = self._start_after(conn, now)
            highest = after
            while True:
                rows = conn.execute(select(incidents.c.id, incidents.c.created_at)
                                    .where(incidents.c.id > after, incidents.c.created_at >= oldest)
                                    .order_by(incidents.c.id).limit(SCAN_BATCH)).all()
                if not rows:
                    break
                found = _incidents(conn, [int(r.id) for r in rows])
                for r in rows:
                    for sub in subs:
                        if sub.created_at > r.created_at:  # told only about incidents after subscribing
                            continue
                        if sub.user_name not in owners:
                            owners[sub.user_name] = account_of(self.store.engine, sub.user_name)
                        owner = owners[sub.user_name]
                        if owner is not None and matches(sub, owner, found[int(r.id)], self.zone):
                            queued += self._queue(conn, sub, found[int(r.id)], now)
                after = int(rows[-1].id)
                highest = max(highest, after)
                if len(rows) < SCAN_BATCH:
                    break
            conn.execute(update(cursor).where(cursor.c.id == 1, cursor.c.last_incident_id < highest)
                         .values(last_incident_id=highest))
        return queued

    def _queue(self, conn: Connection, sub: Subscription, incident: Incident, now: datetime) -> int:
        base = self.settings.link_base or ""
        values: dict[str, Any] = {"subscription_id": sub.id, "incident_id": incident.id, "attempts": 0,
                                  "next_attempt_at": now, "created_at": now}
        if sub.mode == "digest":
            values.update(state=HELD, message=None)
        else:
            message = incident_message(incident, base=base, zone=self.zone, texts=self.texts)
            values.update(state=PENDING, message=message.model_dump(mode="json"))
        ins = _insert(conn)(outbox).values(**values).on_conflict_do_nothing(
            index_elements=[outbox.c.subscription_id, outbox.c.incident_id])
        return int(conn.execute(ins).rowcount or 0)

    # --- digests --------------------------------------------------------------------

    def last_digest_time(self, now: datetime) -> tuple[date, datetime]:
        """The latest digest moment at or before `now`: its local date and its time (UTC)."""
        local = now.astimezone(self.zone)
        day = local.date()
        at = datetime.combine(day, time(self.settings.digest_hour), tzinfo=self.zone)
        if at > local:
            day -= timedelta(days=1)
            at = datetime.combine(day, time(self.settings.digest_hour), tzinfo=self.zone)
        return day, as_utc(at)

    def make_digests(self, now: datetime) -> int:
        """Bundle what each digest subscription held before the last digest moment into one message."""
        day, at = self.last_digest_time(now)
        o = outbox.c
        made = 0
        with self.store.engine.connect() as conn:
            sub_ids = [int(i) for i in conn.execute(select(o.subscription_id).distinct()
                                                     .where(o.state == HELD, o.created_at < at)).scalars()]
        for sub_id in sub_ids:
            with self.store.begin() as tx:
                made += self._bundle(tx.conn, sub_id, day, at, now)
        return made

    def _bundle(self, conn: Connection, sub_id: int, day: date, at: datetime, now: datetime) -> int:
        o = outbox.c
        held = and_(o.subscription_id == sub_id, o.state == HELD, o.created_at < at)
        ids = [int(i) for i in conn.execute(select(o.incident_id).where(held).order_by(o.incident_id)).scalars()]
        found = _incidents(conn, ids)
        listed = sorted(found.values(), key=lambda i: (i.opened_at, i.id))
        if not listed:
            return 0
        message = digest_message(listed, day, base=self.settings.link_base or "", zone=self.zone, texts=self.texts)
        ins = _insert(conn)(outbox).values(
            subscription_id=sub_id, incident_id=None, digest_date=day.isoformat(), state=PENDING,
            message=message.model_dump(mode="json"), attempts=0, next_attempt_at=now, created_at=now,
        ).on_conflict_do_nothing(index_elements=[o.subscription_id, o.digest_date])
        if not conn.execute(ins).rowcount:
            return 0  # today's digest is out already (another service made it)
        digest_id = conn.execute(select(o.id).where(o.subscription_id == sub_id,
                                                    o.digest_date == day.isoformat())).scalar_one()
        conn.execute(update(outbox).where(held).values(state=BUNDLED, digest_id=digest_id))
        return 1

    # --- sending --------------------------------------------------------------------

    def _lease(self) -> timedelta:
        smtp = self.settings.smtp.timeout if self.settings.smtp else 0.0
        return timedelta(seconds=2 * max(smtp, self.settings.webhook_timeout) + 60)

    def send_due(self, now: datetime, r: Round | None = None) -> Round:
        """Send every pending row whose time has come; reschedule failures, give up after max_age."""
        r = r or Round()
        o = outbox.c
        max_age = timedelta(seconds=self.settings.max_age)
        q = (select(outbox).where(o.state == PENDING, o.next_attempt_at <= now)
             .order_by(o.next_attempt_at, o.id).limit(SEND_BATCH))
        with self.store.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        subs = {s.id: s for s in list_subscriptions(self.store.engine)} if rows else {}
        down: dict[str, str] = {}  # destination → its error this round: the rest of its rows wait with it
        for row in rows:
            if now >= as_utc(row["created_at"]) + max_age:
                self._finish(row["id"], state=FAILED, last_error=f"not delivered within max_age; last error: "
                             f"{row['last_error'] or 'none'}")
                r.failed += 1
                continue
            sub = subs.get(int(row["subscription_id"]))
            if sub is None:  # removed since (its rows go with it)
                continue
            if not self._claim(row["id"], row["next_attempt_at"], now):
                continue
            sender = self.senders.get(sub.channel)
            dest = "smtp" if sub.channel == "email" else sub.target
            try:
                if sender is None:
                    raise SendError(f"no {sub.channel} sender configured")
                if dest in down:
                    raise SendError(down[dest])
                sender.send(sub, Message.model_validate(row["message"]), int(row["id"]))
            except SendError as e:
                if e.destination_down:
                    down.setdefault(dest, str(e))
                self._retry(row["id"], int(row["attempts"]) + 1, str(e), now)
                r.retried += 1
                log.info("notification %d to subscription %d not delivered: %s", row["id"], sub.id, e)
                continue
            self._finish(row["id"], state=SENT, last_error=None, sent_at=as_utc(self.clock()),
                         attempts=int(row["attempts"]) + 1)
            r.sent += 1
        return r

    def _claim(self, row_id: int, due: datetime, now: datetime) -> bool:
        o = outbox.c
        with self.store.begin() as tx:
            return bool(tx.conn.execute(update(outbox).where(o.id == row_id, o.state == PENDING,
                                                             o.next_attempt_at == due)
                                        .values(next_attempt_at=now + self._lease())).rowcount)

    def _retry(self, row_id: int, attempts: int, error: str, now: datetime) -> None:
        s = self.settings
        delay = min(s.retry_initial * 2 ** min(attempts - 1, 30), s.retry_max)
        with self.store.begin() as tx:
            tx.conn.execute(update(outbox).where(outbox.c.id == row_id).values(
                attempts=attempts, last_error=error, next_attempt_at=now + timedelta(seconds=delay)))

    def _finish(self, row_id: int, **values: Any) -> None:
        with self.store.begin() as tx:
            tx.conn.execute(update(outbox).where(outbox.c.id == row_id).values(**values))


class NotifyWorker:
    """Runs `Notifier.run_round` at start and every `poll_interval` until `stop` is set."""

    def __init__(self, notifier: Notifier, stop: threading.Event, every: float) -> None:
        self.notifier, self.stop, self.every = notifier, stop, every
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                r = self.notifier.run_round()
                if r.queued or r.sent or r.failed:
                    log.info("notifications: %s", r)
            except Exception:
                # A database hiccup must not end the worker; the next round tries again.
                log.exception("notification round failed")
            if self.stop.wait(self.every):
                break

    def start(self) -> NotifyWorker:
        self._thread = threading.Thread(target=self._run, name="notifications", daemon=True)
        self._thread.start()
        return self

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.notifier.close()
