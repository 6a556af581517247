"""Retire a consumer: end its MQTT session on the broker (`vaktpost central retire`).

A consumer's session outlives the process (clean_start false, session expiry): the broker
keeps queueing for it and, in a shared group, keeps handing it its share of the events
(docs/central.md, "Several consumers"). Connecting once more with its account, clean start
and session expiry 0 makes the broker discard that session and all it queued; the nodes
resend from their outboxes what no consumer acknowledged. The password comes from the
consumer's config file, never from the command line.

Stop the consumer first: the broker binds the client id to the username, so a consumer
still running would be disconnected by this and reconnect with a new session.
"""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from vaktpost.broker.config import CentralMqtt

RETIRE_TIMEOUT = 15.0


class RetireError(RuntimeError):
    """The session could not be ended; the message says why."""


def _connect_properties() -> Properties:
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 0  # the session ends with this connection
    return props


def retire_consumer(m: CentralMqtt, timeout: float = RETIRE_TIMEOUT, *, client_id: str | None = None) -> None:
    """End the session of consumer account `m.username` on the broker `m` names.
    `client_id`: a session an older release kept under another client id; only a broker
    without use_username_as_clientid (the config of before) honours it."""
    where = f"{m.host}:{m.port}"
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or m.username, protocol=mqtt.MQTTv5)
    client.username_pw_set(m.username, m.resolved_password())
    if m.tls is not None:
        client.tls_set(ca_certs=str(m.tls.ca_file), certfile=str(m.tls.cert_file) if m.tls.cert_file else None,
                       keyfile=str(m.tls.key_file) if m.tls.key_file else None)
    answered = threading.Event()
    result: list[ReasonCode] = []

    def on_connect(client: mqtt.Client, userdata: object, flags: object, reason_code: ReasonCode,
                   properties: object) -> None:
        result.append(reason_code)
        answered.set()

    client.on_connect = on_connect
    try:
        client.connect(m.host, m.port, keepalive=m.keepalive, clean_start=True, properties=_connect_properties())
    except OSError as e:
        raise RetireError(f"cannot reach the broker at {where}: {e}") from None
    client.loop_start()
    try:
        if not answered.wait(timeout):
            raise RetireError(f"no answer from the broker at {where} within {timeout:.0f} s")
        if result[0].is_failure:
            raise RetireError(f"broker {where} refused account {m.username!r}: {result[0]}")
        client.disconnect()
    finally:
        client.loop_stop()
