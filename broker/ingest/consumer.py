"""Ingest, steps two and three: batch node messages from MQTT into the place log, then acknowledge.

Parsing is `vaktpost.broker.ingest.parse`; starting the service is `vaktpost.broker.service`.

Delivery (docs/central.md, "Delivery"): the consumer holds a persistent MQTT v5
session (clean_start false, session expiry) and acknowledges each QoS 1 PUBLISH
itself, *after* the database commit that stores it. A crash between receipt and
commit therefore loses nothing: the broker still holds the unacknowledged
messages and delivers them again on reconnection; the store's idempotent upsert
absorbs the repeats. After each commit the nodes get an `Ack` on their acks
topic, and only then may they forget the events.

Messages are handled in batches by one worker thread (one transaction per batch),
so paho's network thread never waits for the database:

    paho thread: on_message → queue
    worker:      parse → one transaction → commit → Ack to nodes → PUBACK to broker

Malformed messages go to `dead_letters` (raw bytes, topic, error) in the same
transaction and are acknowledged; the stream goes on. Any other failure of a batch
that is not the database's (a value the database refuses, an unexpected error)
sends the batch through a one-message-at-a-time path that dead-letters the culprit
alone, so one message can never stall ingest. When the database fails (down,
locked), nothing is acknowledged: the batch is retried with backoff, and meanwhile
the broker stops sending once its in-flight window is full.

Status, heartbeats and the retained `config` also maintain the node's online
intervals and its config history (vaktpost.broker.coverage) for the exposure hours.

Snapshots (raw JPEG on `snapshots/<event_id>`) take the same path: checked
(broker.jpeg), stored, acked to the node as `<event_id>/snapshot`. A second
thread runs the retention purge at start and every `retention.purge_interval`.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import defaultdict
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, SQLAlchemyError, StatementError

from vaktpost.broker import coverage
from vaktpost.broker.config import CentralConfig
from vaktpost.broker.incidents import retention
from vaktpost.broker.incidents.grouping import Grouper
from vaktpost.broker.incidents.watch import HeartbeatWatch
from vaktpost.broker.ingest.parse import Parsed, Rejected, Snapshot, ack_id, node_of, parse_message
from vaktpost.broker.store import PurgeResult, Store, StoreTx, utcnow
from vaktpost.contract.events import BaseEvent
from vaktpost.contract.messages import Ack, Heartbeat, NodeSetup, Status
from vaktpost.contract.topics import CONSUMER_FILTERS, Topic

log = logging.getLogger(__name__)

BATCH_MAX = 500
# Snapshots are up to megabytes each: a batch also ends once it holds this many
# payload bytes, which bounds the size of one transaction.
BATCH_MAX_BYTES = 64 * 1024 * 1024
# After a failed purge, try again this soon (or at the normal interval, if shorter).
PURGE_RETRY_SECONDS = 300.0
RETRY_MIN_SECONDS = 0.5
RETRY_MAX_SECONDS = 30.0


def subscriptions(shared_group: str | None) -> list[str]:
    """The consumer's subscription filters, shared within `shared_group` if set."""
    return [f.shared(shared_group) for f in CONSUMER_FILTERS]


@dataclass(frozen=True)
class Inbound:
    generation: int  # connection the message came on; its mid means nothing on another
    mid: int
    qos: int
    topic: str
    payload: bytes


@dataclass
class Stats:
    received: int = 0
    stored: int = 0  # events inserted or made more final
    duplicates: int = 0  # redeliveries and stale copies
    dead_letters: int = 0
    id_clashes: int = 0  # events and snapshots whose id another node also sent
    node_updates: int = 0  # status and heartbeat messages
    snapshots: int = 0  # snapshots stored (redeliveries count as duplicates)
    batches: int = 0
    db_errors: int = 0
    connect_failures: int = 0  # attempts to reach the broker that failed
    purges: int = 0  # retention purges completed
    purge_errors: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for k, v in counts.items():
                setattr(self, k, getattr(self, k) + v)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}


class TransientDbError(Exception):
    """The database could not take the batch; retry later, acknowledge nothing."""


class Consumer:
    def __init__(self, config: CentralConfig, store: Store, *, batch_max: int = BATCH_MAX) -> None:
        self.config = config
        self.store = store
        self.batch_max = batch_max
        self.stats = Stats()
        self.ready = threading.Event()  # set once the subscriptions are confirmed
        self._queue: queue.Queue[Inbound] = queue.Queue()
        self._stop = threading.Event()
        self._gen_lock = threading.Lock()
        self._generation = 0
        self._worker: threading.Thread | None = None
        self._purger: threading.Thread | None = None
        self._client = self._make_client()
        # Incidents: grouped in each batch's transaction, missed heartbeats on a timer.
        self.incidents = Grouper(config.incidents)
        # Online intervals (exposure): a heartbeat this long after the last sign of life
        # still continues the interval; the inbox shows a node offline after as long.
        self._online_gap = timedelta(seconds=config.inbox.node_offline_after)
        self._heartbeat_watch = HeartbeatWatch(store, self.incidents, self._stop)

    # -- MQTT ---------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        m = self.config.mqtt
        # The broker takes the username as client id anyway (use_username_as_clientid).
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=m.username, protocol=mqtt.MQTTv5,
                        manual_ack=True)
        c.username_pw_set(m.username, m.resolved_password())
        if m.tls is not None:
            c.tls_set(ca_certs=str(m.tls.ca_file),
                      certfile=str(m.tls.cert_file) if m.tls.cert_file else None,
                      keyfile=str(m.tls.key_file) if m.tls.key_file else None)
        c.reconnect_delay_set(1, m.reconnect_max_seconds)
        c.on_connect = self._on_connect
        c.on_connect_fail = self._on_connect_fail
        c.on_disconnect = self._on_disconnect
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        return c

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags, reason_code: ReasonCode,
                    properties: Properties | None) -> None:
        if reason_code.is_failure:
            log.error("broker %s:%d refused the connection: %s", self.config.mqtt.host, self.config.mqtt.port,
                      reason_code)
            return
        with self._gen_lock:
            self._generation += 1
        log.info("connected to %s:%d (session present: %s)", self.config.mqtt.host, self.config.mqtt.port,
                 flags.session_present)
        # Also with a session present: subscribing again is harmless and covers a
        # changed shared_group or a session the broker dropped.
        client.subscribe([(f, SubscribeOptions(qos=1)) for f in subscriptions(self.config.mqtt.shared_group)])

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        # paho retries with backoff (reconnect_delay_set: 1 s doubling up to reconnect_max_seconds).
        self.stats.add(connect_failures=1)
        log.warning("cannot reach broker %s:%d; retrying with backoff (at most %d s apart)", self.config.mqtt.host,
                    self.config.mqtt.port, self.config.mqtt.reconnect_max_seconds)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: list[ReasonCode],
                      properties: Properties | None) -> None:
        refused = [str(rc) for rc in reason_codes if rc.is_failure]
        if refused:
            log.error("subscription refused (%s): check the broker ACL for %r", ", ".join(refused),
                      self.config.mqtt.username)
            return
        self.ready.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: mqtt.DisconnectFlags,
                       reason_code: ReasonCode, properties: Properties | None) -> None:
        # New generation first: no PUBACK for this connection's mids may go out on the next one.
        with self._gen_lock:
            self._generation += 1
        self.ready.clear()
        if not self._stop.is_set():
            log.warning("disconnected from broker (%s); reconnecting", reason_code)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:  # Mosquitto refuses such topics; be safe anyway
            topic = msg._topic.decode("utf-8", "replace")
        with self._gen_lock:
            gen = self._generation
        self._queue.put(Inbound(gen, msg.mid, msg.qos, topic, bytes(msg.payload)))

    def _puback(self, batch: list[Inbound]) -> int:
        sent = 0
        with self._gen_lock:  # held so a reconnect cannot slip between check and send
            for m in batch:
                if m.qos > 0 and m.generation == self._generation:
                    self._client.ack(m.mid, m.qos)
                    sent += 1
        return sent

    def _send_acks(self, acks: dict[str, list[str]]) -> None:
        for node, ids in acks.items():
            payload = Ack(event_ids=list(dict.fromkeys(ids))).model_dump_json().encode()
            self._client.publish(Topic.acks(node), payload, qos=1)

    # -- storing --------------------------------------------------------------------

    def _parse(self, m: Inbound) -> Parsed:
        try:
            return parse_message(m.topic, m.payload, max_snapshot_bytes=self.config.snapshots.max_bytes)
        except Exception as e:  # parse_message never raises; if it does, only this message is lost to ingest
            return Rejected(f"could not parse message: {type(e).__name__}: {str(e)[:200]}")

    def _store_events(self, tx: StoreTx, items: list[tuple[Inbound, Parsed]], acks: dict[str, list[str]],
                      counts: dict[str, int], clashes: list[str]) -> None:
        """The batch's events in one multi-row upsert. An id clash is reported as if the
        events were stored one after another: against the nodes that had sent the id
        before this batch and those earlier in it."""
        evs = [(m, p) for m, p in items if isinstance(p, BaseEvent)]
        if not evs:
            return
        senders = tx.senders([p.event_id for _, p in evs])
        stored = tx.insert_events([(p, m.topic) for m, p in evs])
        for i, (_, p) in enumerate(evs):
            acks[p.node_id].append(p.event_id)
            if i not in stored:
                counts["duplicates"] += 1
                continue
            counts["stored"] += 1
            nodes = senders.setdefault(p.event_id, set())
            clashes += _clash_message("event", p.event_id, p.node_id, nodes - {p.node_id})
            nodes.add(p.node_id)

    def _apply(self, tx: StoreTx, m: Inbound, p: Parsed, acks: dict[str, list[str]], counts: dict[str, int],
               clashes: list[str]) -> None:
        """Any message but an event (those go together: _store_events)."""
        if isinstance(p, Snapshot):
            if tx.insert_snapshot(p.event_id, p.node_id, p.data):
                counts["snapshots"] += 1
                clashes += _clash(tx, "snapshot", p.event_id, p.node_id)
            else:
                counts["duplicates"] += 1
            acks[p.node_id].append(p.ack_id)
        elif isinstance(p, Rejected):
            tx.dead_letter(m.topic, m.payload if p.stored_payload is None else p.stored_payload, p.error)
            counts["dead_letters"] += 1
            node = node_of(m.topic)
            if p.event_id and node:
                acks[node].append(p.event_id)
        elif isinstance(p, Status):
            tx.record_status(p)
            coverage.record_status(tx.conn, p, utcnow(), self._online_gap)
            counts["node_updates"] += 1
        elif isinstance(p, Heartbeat):
            tx.record_heartbeat(p)
            coverage.record_heartbeat(tx.conn, p, self._online_gap)
            counts["node_updates"] += 1
        elif isinstance(p, NodeSetup):
            if coverage.record_setup(tx.conn, p, utcnow()):
                log.info("node %s: new config (%d cameras)", p.node_id, len(p.cameras))
            counts["node_updates"] += 1

    def _commit(self, items: list[tuple[Inbound, Parsed]]) -> dict[str, list[str]]:
        """Store `items` in one transaction; returns the event ids to ack per node."""
        acks: dict[str, list[str]] = defaultdict(list)
        counts: dict[str, int] = defaultdict(int)
        clashes: list[str] = []
        with self.store.begin() as tx:
            self._store_events(tx, items, acks, counts, clashes)
            for m, p in items:
                self._apply(tx, m, p, acks, counts, clashes)
            self.incidents.record(tx.conn, [p for _, p in items])  # atomic with the events
        self.stats.add(id_clashes=len(clashes), **counts)
        for clash in clashes:
            log.warning("%s", clash)
        for m, p in items:  # logged once committed, not on every retry
            if isinstance(p, Rejected):
                log.warning("dead letter from %s: %s", m.topic, p.error.replace("\n", "; "))
        return acks

    def _commit_each(self, items: list[tuple[Inbound, Parsed]]) -> dict[str, list[str]]:
        """After a batch failed for a reason that is not the database itself: store the
        messages one at a time and dead-letter the one(s) that fail alone. If even the
        dead letter cannot be written the database itself is the problem."""
        acks: dict[str, list[str]] = defaultdict(list)
        for m, p in items:
            try:
                one = self._commit([(m, p)])
            except Exception as e:
                if _is_database_problem(e):
                    raise TransientDbError(str(e)) from e
                one = self._dead_letter_alone(m, p, _why_refused(e))
            for node, ids in one.items():
                acks[node] += ids
        return acks

    def _dead_letter_alone(self, m: Inbound, p: Parsed, error: str) -> dict[str, list[str]]:
        try:
            return self._commit([(m, Rejected(error, ack_id(p)))])
        except Exception as e:
            raise TransientDbError(str(e)) from e

    def _store_batch(self, items: list[tuple[Inbound, Parsed]]) -> dict[str, list[str]]:
        try:
            return self._commit(items)
        except Exception as e:
            if _is_database_problem(e):
                raise TransientDbError(str(e)) from e
            log.error("batch of %d failed (%s); storing one by one", len(items), _why_refused(e))
            return self._commit_each(items)

    def _live(self, items: list[tuple[Inbound, Parsed]]) -> list[tuple[Inbound, Parsed]]:
        """Items from the live connection; the broker redelivers the others itself."""
        with self._gen_lock:
            return [(m, p) for m, p in items if m.generation == self._generation]

    def handle_batch(self, batch: list[Inbound]) -> bool:
        """Store, ack to nodes, PUBACK. Retries while the database fails; returns
        False if it gave up (stopping, or the connection the batch came on is gone)."""
        items = [(m, self._parse(m)) for m in batch]
        delay = RETRY_MIN_SECONDS
        while items:
            try:
                acks = self._store_batch(items)
                break
            except TransientDbError as e:
                self.stats.add(db_errors=1)
                log.error("database unavailable, %d messages wait unacknowledged (retry in %.1fs): %s",
                          len(items), delay, str(e).splitlines()[0])
            if self._stop.wait(delay):
                return False
            delay = min(delay * 2, RETRY_MAX_SECONDS)
            items = self._live(items)
        else:
            return False
        self.stats.add(batches=1)
        self._send_acks(acks)
        self._puback([m for m, _ in items])
        return True

    def _take_batch(self) -> list[Inbound]:
        try:
            batch = [self._queue.get(timeout=0.2)]
        except queue.Empty:
            return []
        size = len(batch[0].payload)
        while len(batch) < self.batch_max and size < BATCH_MAX_BYTES:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
            size += len(batch[-1].payload)
        self.stats.add(received=len(batch))
        return batch

    def _work(self) -> None:
        while not self._stop.is_set():
            batch = self._take_batch()
            delay = RETRY_MIN_SECONDS
            while batch:
                try:
                    self.handle_batch(batch)
                    break
                except Exception:
                    # A bug must neither stop ingest nor drop the batch: left unacknowledged
                    # it would hold the broker's in-flight slots until the next reconnect.
                    log.exception("unexpected error handling %d messages; retrying", len(batch))
                if self._stop.wait(delay):
                    return
                delay = min(delay * 2, RETRY_MAX_SECONDS)
                with self._gen_lock:
                    batch = [m for m in batch if m.generation == self._generation]

    # -- retention ------------------------------------------------------------------

    def purge_once(self, now: datetime | None = None) -> PurgeResult:
        return retention.purge(self.store, self.config.retention, now or utcnow(), cancel=self._stop.is_set)

    def _purge_loop(self) -> None:
        interval = self.config.retention.purge_interval
        while not self._stop.is_set():
            wait = interval
            try:
                self.purge_once()
                self.stats.add(purges=1)
            except Exception:
                # Never let retention take ingest down; try again sooner than usual.
                self.stats.add(purge_errors=1)
                wait = min(interval, PURGE_RETRY_SECONDS)
                log.exception("retention purge failed; next attempt in %.0f s", wait)
            if self._stop.wait(wait):
                return

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> Consumer:
        m = self.config.mqtt
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = m.session_expiry_seconds
        # Bounds the unacknowledged messages the broker pushes at us (Mosquitto honours
        # a v5 client's Receive Maximum): one batch in the works, the next arriving.
        props.ReceiveMaximum = min(2 * self.batch_max, 65535)
        self._stop.clear()
        self._worker = threading.Thread(target=self._work, name="consumer-worker", daemon=True)
        self._worker.start()
        # Its own thread: a purge of many rows must not hold up ingest.
        self._purger = threading.Thread(target=self._purge_loop, name="consumer-purge", daemon=True)
        self._purger.start()
        self.incidents.started_at = utcnow()
        self._heartbeat_watch.start()
        # connect_async + loop_start: paho keeps retrying until the broker answers.
        self._client.connect_async(m.host, m.port, keepalive=m.keepalive, clean_start=False, properties=props)
        self._client.loop_start()
        log.info("consumer %r starting (broker %s:%d, shared group %s)", m.username, m.host, m.port,
                 m.shared_group or "none")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the batch in hand, then disconnect; queued messages stay with the broker."""
        self._stop.set()
        for t in (self._worker, self._purger):
            if t is not None:
                t.join(timeout)  # a running purge stops after its current chunk
        self._worker = self._purger = None
        self._heartbeat_watch.join(timeout)
        self._client.disconnect()
        self._client.loop_stop()
        log.info("consumer stopped: %s", self.stats.snapshot())

    def run(self, stop_event: threading.Event) -> None:
        self.start()
        try:
            stop_event.wait()
        finally:
            self.stop()


def _clash(tx: StoreTx, what: str, event_id: str, node_id: str) -> list[str]:
    """A warning if another node sent the same event id: stored apart (rows are keyed by
    node), but one of the two is forging or replaying ids (docs/central.md)."""
    return _clash_message(what, event_id, node_id, set(tx.other_nodes(event_id, node_id)))


def _clash_message(what: str, event_id: str, node_id: str, others: set[str]) -> list[str]:
    if not others:
        return []
    return [f"{node_id} sent {what} {event_id}, an event id {', '.join(sorted(others))} also sent; "
            "stored as its own, the other node's rows are untouched"]


def _is_database_problem(e: Exception) -> bool:
    """Whether `e` says the database cannot take writes now (retry the batch, ack
    nothing) rather than that a message cannot be stored (dead-letter it). Only data
    and constraint errors, errors binding a value, and errors outside SQLAlchemy are
    about a message; anything else (server down, SQLite locked, missing table, no
    permission) is the database's problem: retry rather than dead-letter good events."""
    if isinstance(e, DBAPIError):
        return not isinstance(e, (DataError, IntegrityError))
    if isinstance(e, StatementError):  # raised while binding a message's values
        return False
    return isinstance(e, SQLAlchemyError)


def _why_refused(e: Exception) -> str:
    """One line for a dead letter: what went wrong storing one message."""
    if isinstance(e, DBAPIError):
        return f"database refused message: {str(e.orig or e).splitlines()[0][:300]}"
    cause = e.orig if isinstance(e, StatementError) and e.orig is not None else e
    text = str(cause).splitlines()[0][:300] if str(cause) else ""
    return f"could not store message: {type(cause).__name__}: {text}"
