"""The node's MQTT side: drains the outbox to the broker and forgets an event only
when the central consumer acknowledges it (docs/delivery.md).

Threads: paho's network thread runs the callbacks (connect, PUBACK, ack messages);
our sender thread reads due rows from the outbox and publishes them. They share
the mid → row map below under `_lock`, which is never held while calling paho or
the outbox, so neither thread can wait on the other's lock.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import ValidationError

from vaktpost.contract.config import ConfigError
from vaktpost.contract.messages import Ack, Heartbeat, NodeSetup, Status
from vaktpost.contract.topics import Topic
from vaktpost.edge.config import MqttSection
from vaktpost.edge.delivery.outbox import Outbox, Row

log = logging.getLogger(__name__)
_paho_log = logging.getLogger("vaktpost.paho")

DEFAULT_RESEND_AFTER = 30.0
DEFAULT_RESEND_MAX = 600.0
DEFAULT_WINDOW = 50
# The broker keeps our ack subscription and queues acks while we are away; its own
# persistent_client_expiration (30 days in broker/mosquitto.py) may cut this shorter.
DEFAULT_SESSION_EXPIRY = 7 * 24 * 3600
DEFAULT_PUBACK_TIMEOUT = 60.0
_OK = (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN)  # NO_CONN: paho queued it for the next connection


@dataclass
class _Pub:
    """A publish waiting for its PUBACK."""

    topic: str
    event_id: str | None  # None: status or heartbeat
    seq: int | None
    since: float  # monotonic


def packet_size(topic: str, payload: bytes) -> int:
    """Size of the PUBLISH packet (QoS 1, no properties) that carries `payload`."""
    remaining = 2 + len(topic.encode()) + 2 + 1 + len(payload)  # topic, packet id, property length
    length_bytes = 1 if remaining < 128 else 2 if remaining < 16_384 else 3 if remaining < 2_097_152 else 4
    return 1 + length_bytes + remaining


def _code(rc: Any) -> int:
    return int(getattr(rc, "value", rc) or 0)


class Publisher:
    """Publishes outbox rows at QoS 1 and deletes them on the consumer's `Ack`.

    `resend_after`: seconds after which a row sent but not acknowledged by the consumer
    is sent again (duplicates are dropped centrally by event_id); the wait doubles with
    each attempt up to `resend_max`. A (re)connect makes every such row due at once.
    `window`: event publishes waiting for a PUBACK at most (lowered to the broker's
    Receive Maximum). `puback_timeout`: a PUBACK missing this long (while connected)
    frees its window slot; the row is then resent by the resend_after rule.
    `session_expiry`: seconds the broker keeps our session (ack subscription, queued
    acks) while we are disconnected.
    """

    def __init__(self, node_id: str, mqtt_config: MqttSection, outbox: Outbox, *, client_id: str | None = None,
                 resend_after: float = DEFAULT_RESEND_AFTER, resend_max: float = DEFAULT_RESEND_MAX,
                 window: int = DEFAULT_WINDOW,
                 session_expiry: int = DEFAULT_SESSION_EXPIRY, puback_timeout: float = DEFAULT_PUBACK_TIMEOUT):
        if window < 1:
            raise ValueError("window must be at least 1")
        self.node_id = node_id
        self.config = mqtt_config
        self.outbox = outbox
        self.resend_after = resend_after
        self.resend_max = max(resend_max, resend_after)
        self.window = window
        self.session_expiry = session_expiry
        self.puback_timeout = puback_timeout
        self.username = mqtt_config.username or node_id
        self.acks_topic = Topic.acks(node_id)
        self.status_topic = Topic.status(node_id)

        self._lock = threading.Lock()
        self._inflight: dict[int, _Pub] = {}
        self._early: dict[int, tuple[Any, float]] = {}  # PUBACKs that beat publish() returning
        self._connected = threading.Event()
        self._subscribed = threading.Event()  # the broker confirmed our acks subscription
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._sender: threading.Thread | None = None
        self._max_packet: int | None = None
        self._setup: bytes | None = None  # the retained config message (NodeSetup)
        self._window_now = window
        self._stats = {"published": 0, "resent": 0, "refused": 0, "acked": 0, "connects": 0,
                       "connect_refusals": 0}
        self.last_error: str | None = None

        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"vaktpost-{node_id}",
                                   protocol=mqtt.MQTTv5)
        # paho's own messages at DEBUG only: what matters is logged by our callbacks, and
        # paho reports a normal shutdown race as an error.
        self._client.on_log = lambda client, userdata, level, buf: _paho_log.debug(buf)
        self._client.username_pw_set(self.username, mqtt_config.resolved_password())
        if mqtt_config.tls is not None:
            t = mqtt_config.tls
            try:
                self._client.tls_set(ca_certs=str(t.ca_file), certfile=str(t.cert_file) if t.cert_file else None,
                                     keyfile=str(t.key_file) if t.key_file else None)
            except (OSError, ValueError) as e:  # ssl.SSLError is an OSError: a missing or unreadable file
                files = ", ".join(str(f) for f in (t.ca_file, t.cert_file, t.key_file) if f)
                raise ConfigError(f"mqtt.tls: cannot load {files}: {e}") from None
        # The broker publishes this if we vanish without a clean disconnect.
        self._client.will_set(self.status_topic, self._status_payload("offline", stamp=False), qos=1, retain=True)
        self._client.reconnect_delay_set(1, 30)
        self._client.max_inflight_messages_set(window)
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    # -- public ----------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float | None = None) -> bool:
        return self._connected.wait(timeout)

    def wait_subscribed(self, timeout: float | None = None) -> bool:
        """Until the broker confirmed the acks subscription of this connection."""
        return self._subscribed.wait(timeout)

    def start(self) -> None:
        """Connect in the background (retrying with backoff) and start sending."""
        if self._sender is not None:
            raise RuntimeError("publisher already started")
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry
        # clean_start=False: the broker keeps our ack subscription and queued acks across reconnects.
        self._client.connect_async(self.config.host, self.config.port, self.config.keepalive,
                                   clean_start=False, properties=props)
        self._client.loop_start()
        self._sender = threading.Thread(target=self._run, name=f"publisher-{self.node_id}", daemon=True)
        self._sender.start()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop sending, publish the retained offline status and disconnect cleanly.
        Unacknowledged events stay in the outbox. True if the offline status was confirmed."""
        self._stopping.set()
        self._wake.set()
        if self._sender is not None:
            self._sender.join(timeout)
        confirmed = False
        if self.connected:
            info = self.publish_status("offline")
            if info is not None:
                try:
                    info.wait_for_publish(timeout)
                    confirmed = info.is_published()
                except (RuntimeError, ValueError) as e:
                    log.warning("offline status not sent: %s", e)
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()
        return confirmed

    def notify(self) -> None:
        """New rows in the outbox: wake the sender now rather than at its next tick."""
        self._wake.set()

    def publish_status(self, state: Literal["online", "offline"]) -> mqtt.MQTTMessageInfo | None:
        return self._publish(self.status_topic, self._status_payload(state), qos=1, retain=True)

    def set_setup(self, setup: NodeSetup) -> None:
        """What the node watches (docs/mqtt.md, "Config"): published retained now if
        connected, and again at every connect, so the broker keeps the latest across
        restarts and a consumer that was away reads it."""
        with self._lock:
            self._setup = setup.to_payload()
        if self.connected:
            self.publish_setup()

    def publish_setup(self) -> mqtt.MQTTMessageInfo | None:
        with self._lock:
            payload = self._setup
        if payload is None:
            return None
        return self._publish(Topic.config(self.node_id), payload, qos=1, retain=True)

    def heartbeat(self, hb: Heartbeat) -> bool:
        """Publish a heartbeat at QoS 1 (docs/mqtt.md). Skipped, returning False, while
        offline: the next one supersedes it, so there is no point queueing it."""
        if not self.connected:
            return False
        info = self._publish(Topic.heartbeat(self.node_id), hb.model_dump_json().encode(), qos=1)
        return info is not None and info.rc == mqtt.MQTT_ERR_SUCCESS

    def counters(self) -> dict[str, int]:
        """published/resent: rows handed to MQTT (resent: not the first time); refused:
        PUBACKs ≥ 0x80; acked: rows deleted on consumer acks; connects; connect_refusals;
        inflight: publishes awaiting PUBACK."""
        with self._lock:
            return {**self._stats, "inflight": len(self._inflight)}

    # -- publishing ------------------------------------------------------------------

    def _status_payload(self, state: Literal["online", "offline"], *, stamp: bool = True) -> bytes:
        at = datetime.now(UTC) if stamp else None  # a Last Will cannot know when it fires
        return Status(node_id=self.node_id, state=state, at=at).model_dump_json().encode()

    def _publish(self, topic: str, payload: bytes, *, qos: int, retain: bool = False,
                 row: Row | None = None) -> mqtt.MQTTMessageInfo | None:
        """client.publish plus PUBACK tracking; None if paho refused the message outright."""
        try:
            info = self._client.publish(topic, payload, qos=qos, retain=retain)
        except ValueError as e:  # wildcard in topic, payload beyond MQTT's limit: never publishable
            if row is not None:
                self._refused(row.event_id, row.seq, topic, f"not publishable: {e}")
            else:
                log.error("cannot publish to %s: %s", topic, e)
            return None
        if info.rc not in _OK:
            log.warning("publish to %s not queued: %s", topic, mqtt.error_string(info.rc))
            return info
        if qos == 0 and info.rc != mqtt.MQTT_ERR_SUCCESS:
            return info  # dropped by paho: no callback will come
        pub = _Pub(topic, row.event_id if row else None, row.seq if row else None, time.monotonic())
        with self._lock:
            early = self._early.pop(info.mid, None)
            if early is None:
                self._inflight[info.mid] = pub
        if early is not None:
            self._settle(pub, early[0])
        return info

    def _send_row(self, row: Row) -> None:
        if self._max_packet is not None and packet_size(row.topic, row.payload) > self._max_packet:
            # paho (2.2) does not enforce the Maximum Packet Size of the CONNACK itself, and
            # Mosquitto disconnects a client that sends more: resending after reconnecting
            # would loop forever, so the row fails here without being sent.
            self._refused(row.event_id, row.seq, row.topic,
                          f"packet too large ({packet_size(row.topic, row.payload)} > {self._max_packet} bytes, 0x95)")
            return
        # Marked before publishing, so a PUBACK failure always lands after it.
        if not self.outbox.mark_sent(row.event_id, row.seq):
            self._wake.set()  # replaced or acked meanwhile: look again
            return
        info = self._publish(row.topic, row.payload, qos=1, row=row)
        if info is not None and info.rc in _OK:
            with self._lock:
                self._stats["published"] += 1
                if row.attempts:
                    self._stats["resent"] += 1

    def _refused(self, event_id: str, seq: int | None, topic: str, reason: str) -> None:
        if self.outbox.mark_failed(event_id, reason, seq):
            with self._lock:
                self._stats["refused"] += 1
            log.error("event %s on %s refused: %s; kept in the outbox as failed and not resent "
                      "(outbox_failed in the heartbeat)", event_id, topic, reason)

    def _settle(self, pub: _Pub, reason_code: Any) -> None:
        """A PUBACK arrived for `pub`."""
        code = _code(reason_code)
        if code >= 0x80:
            if pub.event_id is not None:
                self._refused(pub.event_id, pub.seq, pub.topic, f"broker refused: {reason_code} (0x{code:02X})")
            else:
                log.error("broker refused publish to %s: %s (0x%02X)", pub.topic, reason_code, code)
        self._wake.set()  # a window slot is free

    # -- sender thread ---------------------------------------------------------------

    def _tick(self) -> float:
        return max(0.05, min(self.resend_after / 4, 5.0))

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self._tick())
            self._wake.clear()
            if self._stopping.is_set():
                break
            try:
                self._drain_once()
            except Exception:  # e.g. an outbox I/O error: log, pause, try again
                log.exception("sending from the outbox failed; retrying")
                self._stopping.wait(1.0)

    def _drain_once(self) -> None:
        if not self.connected:
            return
        now = time.monotonic()
        with self._lock:
            for mid, pub in list(self._inflight.items()):
                if now - pub.since > self.puback_timeout:
                    del self._inflight[mid]
                    log.warning("no PUBACK for %s within %.0f s; will resend", pub.event_id or pub.topic,
                                self.puback_timeout)
            for mid, (_, at) in list(self._early.items()):
                if now - at > self.puback_timeout:
                    del self._early[mid]
            busy = {p.event_id for p in self._inflight.values() if p.event_id is not None}
            room = self._window_now - len(busy)
        if room <= 0:
            return
        rows = self.outbox.pending(room + len(busy), resend_after=self.resend_after, resend_max=self.resend_max)
        rows = [r for r in rows if r.event_id not in busy][:room]
        for row in rows:
            if self._stopping.is_set() or not self.connected:
                return
            self._send_row(row)

    # -- paho callbacks (network thread; never raise) -----------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any,
                    properties: Properties | None) -> None:
        try:
            if _code(reason_code) >= 0x80:
                self.last_error = f"connection refused: {reason_code}"
                with self._lock:
                    self._stats["connect_refusals"] += 1
                log.error("broker %s:%d refused node %s as user %r: %s (0x%02X). Check mqtt.username and "
                          "mqtt.password/password_file against the broker's accounts; retrying with backoff",
                          self.config.host, self.config.port, self.node_id, self.username, reason_code,
                          _code(reason_code))
                return
            self.last_error = None
            self._max_packet = getattr(properties, "MaximumPacketSize", None)
            receive_max = getattr(properties, "ReceiveMaximum", None)
            # Keep two of the broker's receive slots for status and heartbeat.
            self._window_now = max(1, min(self.window, receive_max - 2)) if receive_max else self.window
            client.subscribe(self.acks_topic, qos=1)
            now = time.monotonic()
            with self._lock:
                self._stats["connects"] += 1
                for pub in self._inflight.values():
                    pub.since = now  # paho retransmits these itself
                busy = {p.event_id for p in self._inflight.values() if p.event_id is not None}
            # The broker may have lost what it acknowledged before (its persistence is a
            # periodic snapshot): send every unacknowledged row again.
            try:
                reset = self.outbox.reset_inflight(exclude=busy)
            except Exception:  # a broken outbox must not keep status and heartbeats off the air
                log.exception("could not mark unacknowledged events due again")
                reset = 0
            self.publish_status("online")
            self.publish_setup()
            self._connected.set()
            log.info("connected to %s:%d as %s (session present: %s, %d unacknowledged event(s) due again)",
                     self.config.host, self.config.port, self.username,
                     getattr(flags, "session_present", "?"), reset)
            self._wake.set()
        except Exception:
            log.exception("on_connect failed")

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self.last_error = f"cannot reach {self.config.host}:{self.config.port}"
        log.warning("cannot reach broker %s:%d; retrying with backoff", self.config.host, self.config.port)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any,
                       properties: Properties | None) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        self._subscribed.clear()
        if was and not self._stopping.is_set():
            log.warning("disconnected from broker: %s; reconnecting with backoff", reason_code)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason_code: Any,
                    properties: Properties | None) -> None:
        try:
            with self._lock:
                pub = self._inflight.pop(mid, None)
                if pub is None:  # publish() has not returned yet: _publish settles it
                    self._early[mid] = (reason_code, time.monotonic())
                    return
            self._settle(pub, reason_code)
        except Exception:
            log.exception("on_publish failed for mid %d", mid)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: list[Any],
                      properties: Properties | None) -> None:
        try:
            refused = [rc for rc in reason_codes if _code(rc) >= 0x80]
            if not refused:
                self._subscribed.set()
                return
            self.last_error = f"subscription to {self.acks_topic} refused: {refused[0]}"
            log.error("broker refused our subscription to %s (%s): acks cannot arrive, so the outbox "
                      "will not drain; check the broker ACL", self.acks_topic, refused[0])
        except Exception:
            log.exception("on_subscribe failed")

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            if message.topic != self.acks_topic:
                log.warning("ignoring message on unexpected topic %s", message.topic)
                return
            try:
                ack = Ack.model_validate_json(message.payload)
            except ValidationError as e:
                log.warning("ignoring malformed ack (%d bytes): %s", len(message.payload),
                            e.errors()[0]["msg"] if e.errors() else e)
                return
            deleted = self.outbox.ack(ack.event_ids)
            with self._lock:
                self._stats["acked"] += deleted
            log.debug("consumer acknowledged %d event(s), %d deleted", len(ack.event_ids), deleted)
        except Exception:
            # paho sends the PUBACK after we return; an ack lost here is harmless (the
            # events are resent and acknowledged again).
            log.exception("handling ack failed")
