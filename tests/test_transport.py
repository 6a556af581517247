"""Publisher + outbox against a real Mosquitto (the `broker` fixture).

The central consumer is played by a plain paho client with the consumer account
(`Consumer` below): it records events and, unless told not to, acknowledges each
on the node's acks topic, as broker/ingest/consumer.py does.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from mqtt_harness import Broker, MqttTestClient, wait_until

from vaktpost.broker.mosquitto import MAX_PACKET_SIZE
from vaktpost.contract.events import Event, EventType, Phase, uuid7
from vaktpost.contract.messages import Ack, Heartbeat, Status
from vaktpost.contract.topics import ANY, Topic
from vaktpost.edge.config import MqttSection
from vaktpost.edge.delivery.outbox import Outbox
from vaktpost.edge.delivery.transport import Publisher

NODE = "node-a"
CAM = "cam1"
T = 30.0  # generous deadline: two shared cores


class Consumer:
    """Stands in for the central consumer: persistent session, records every event
    delivery (duplicates included) and acks each event unless `ack=False`."""

    def __init__(self, broker: Broker, *, ack: bool = True, username: str = "central"):
        self.ack = ack
        self.username = username
        self.deliveries: list[Event] = []
        self._lock = threading.Lock()
        self.client: MqttTestClient | None = None
        self.connect(broker)

    def connect(self, broker: Broker) -> None:
        """(Re)connect, e.g. after the broker restarted; the session keeps queued events.
        The previous client goes first: left open, paho would reconnect it and the two
        would take the session from each other."""
        if self.client is not None:
            self.client.close()
        c = broker.client(self.username, clean_start=False,
                          session_expiry=3600, connect=False)
        c.paho.on_message = self._on_message  # before connecting: queued events arrive at once
        rc = c.connect()
        assert not rc.is_failure, rc
        assert c.subscribe_wait(Topic.events(ANY, ANY), qos=1) == 1
        self.client = c

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        ev = Event.from_payload(msg.payload)
        with self._lock:
            self.deliveries.append(ev)
        if self.ack:
            client.publish(Topic.acks(ev.node_id), Ack(event_ids=[ev.event_id]).model_dump_json(), qos=1)

    def ids(self) -> set[str]:
        with self._lock:
            return {e.event_id for e in self.deliveries}

    def counts(self) -> Counter[str]:
        with self._lock:
            return Counter(e.event_id for e in self.deliveries)

    def latest(self, event_id: str) -> Event:
        with self._lock:
            return [e for e in self.deliveries if e.event_id == event_id][-1]


def make_event(outbox: Outbox, node: str = NODE, **kw) -> Event:
    fields = dict(event_id=uuid7(), seq=outbox.next_seq(), node_id=node, camera_id=CAM, type=EventType.motion,
                  started_at=datetime.now(UTC), confidence=0.9, phase="start")
    fields.update(kw)
    return Event(**fields)


def put(outbox: Outbox, publisher: Publisher | None = None, ev: Event | None = None,
        topic: str | None = None) -> Event:
    ev = ev or make_event(outbox)
    assert outbox.put(ev.event_id, topic or Topic.events(ev.node_id, CAM), ev.to_payload())
    if publisher is not None:
        publisher.notify()
    return ev


def mqtt_config(broker: Broker, node: str = NODE, **kw) -> MqttSection:
    return MqttSection(host=broker.host, port=broker.port, password=broker.password(node), **kw)


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    ob = Outbox(tmp_path / "outbox.db", 1000)
    yield ob
    ob.close()


@pytest.fixture
def make_publisher(broker: Broker) -> Iterator[Callable[..., Publisher]]:
    """Started publishers for `outbox`; all stopped at teardown."""
    made: list[Publisher] = []

    def make(outbox: Outbox, *, node: str = NODE, config: MqttSection | None = None, wait: bool = True,
             **kw) -> Publisher:
        p = Publisher(node, config or mqtt_config(broker, node), outbox, **kw)
        made.append(p)
        p.start()
        if wait:
            assert p.wait_connected(T), p.last_error
        return p

    yield make
    for p in made:
        p.stop(timeout=2)


# --- (a) normal flow -------------------------------------------------------------------


def test_events_reach_consumer_and_acks_empty_the_outbox(broker: Broker, outbox: Outbox, make_publisher,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="vaktpost.edge.delivery.transport")
    consumer = Consumer(broker)
    pub = make_publisher(outbox)
    assert pub.wait_subscribed(T)
    # Malformed acks are logged and ignored; the publisher keeps working.
    assert consumer.client.publish_wait(Topic.acks(NODE), b"not json") == 0
    assert consumer.client.publish_wait(Topic.acks(NODE), b'{"event_ids": []}') == 0
    sent = [put(outbox, pub) for _ in range(120)]  # more than the in-flight window (50)
    wait_until(lambda: consumer.ids() >= {e.event_id for e in sent}, T, message="all events delivered")
    wait_until(lambda: outbox.depth() == 0, T, message="outbox drained by acks")
    for ev in sent:
        assert consumer.latest(ev.event_id) == ev  # delivered unchanged
    assert pub.counters()["acked"] == 120
    assert outbox.counters() == {"depth": 0, "dropped": 0, "failed": 0, "expired": 0}
    assert sum("malformed ack" in r.getMessage() for r in caplog.records) == 2


def test_an_updated_event_is_delivered_in_its_newest_state(broker: Broker, outbox: Outbox,
                                                            make_publisher) -> None:
    consumer = Consumer(broker)
    pub = make_publisher(outbox)
    start = put(outbox, pub)
    wait_until(lambda: start.event_id in consumer.ids(), T)
    end = start.model_copy(update={"ended_at": datetime.now(UTC), "confidence": 0.95, "phase": Phase.end})
    put(outbox, pub, end)
    wait_until(lambda: consumer.latest(start.event_id) == end, T, message="end state delivered")
    wait_until(lambda: outbox.depth() == 0, T)


def test_puback_arriving_before_publish_returns_is_not_lost(broker: Broker, outbox: Outbox,
                                                            make_publisher) -> None:
    # Force the race: publish() returns only after paho has run on_publish for it.
    consumer = Consumer(broker)
    pub = make_publisher(outbox, puback_timeout=3600)  # a leaked window slot would never come back
    real_publish = pub._client.publish

    def late_publish(*args, **kwargs) -> mqtt.MQTTMessageInfo:
        info = real_publish(*args, **kwargs)
        # Only in the sender thread: paho's network thread must stay free to read the PUBACK.
        if threading.current_thread() is pub._sender and info.rc == mqtt.MQTT_ERR_SUCCESS:
            info.wait_for_publish(T)
        return info

    pub._client.publish = late_publish
    sent = [put(outbox, pub) for _ in range(60)]  # more than the window: slots must be freed
    wait_until(lambda: consumer.ids() >= {e.event_id for e in sent}, T, message="all events delivered")
    wait_until(lambda: outbox.depth() == 0, T)
    assert pub.counters()["inflight"] == 0


# --- (b) broker outage ------------------------------------------------------------------


def test_nothing_is_lost_across_a_broker_outage(broker: Broker, outbox: Outbox, make_publisher) -> None:
    consumer = Consumer(broker)
    pub = make_publisher(outbox)
    before = [put(outbox, pub) for _ in range(5)]
    wait_until(lambda: outbox.depth() == 0, T)
    in_flight = [put(outbox, pub) for _ in range(5)]  # some of these race the shutdown
    broker.stop()
    wait_until(lambda: not pub.connected, T, message="publisher noticed the outage")
    during = [put(outbox, pub) for _ in range(10)]
    assert outbox.depth() >= 10
    broker.start()
    consumer.connect(broker)  # same persistent session
    every = {e.event_id for e in before + in_flight + during}
    wait_until(lambda: consumer.ids() >= every, 60, message="every event delivered after the outage")
    wait_until(lambda: outbox.depth() == 0, T, message="outbox drained after the outage")
    assert outbox.counters()["dropped"] == 0


def test_events_the_broker_acknowledged_then_lost_in_a_crash_are_resent(broker: Broker, outbox: Outbox,
                                                                        make_publisher) -> None:
    # The reason for end-to-end acks: a PUBACK only means "in the broker's memory".
    consumer = Consumer(broker)
    consumer.client.close()  # offline: the broker must queue events for its session
    broker.restart()  # clean stop saves that session, so only the events are at risk below
    pub = make_publisher(outbox, resend_after=3600)  # only the reconnect can resend
    evs = [put(outbox, pub) for _ in range(10)]
    wait_until(lambda: not outbox.pending(resend_after=3600) and pub.counters()["inflight"] == 0, T,
               message="all events PUBACKed by the broker")
    broker.kill()  # before its autosave: the queued events are gone
    broker.start()
    consumer.connect(broker)
    wait_until(lambda: consumer.ids() >= {e.event_id for e in evs}, 60, message="events resent after the crash")
    wait_until(lambda: outbox.depth() == 0, T)


# --- (c) no consumer acks -----------------------------------------------------------------


def test_unacknowledged_events_are_resent_after_resend_after(broker: Broker, outbox: Outbox,
                                                              make_publisher) -> None:
    consumer = Consumer(broker, ack=False)
    pub = make_publisher(outbox, resend_after=0.5)
    evs = [put(outbox, pub) for _ in range(3)]
    wait_until(lambda: all(consumer.counts()[e.event_id] >= 3 for e in evs), T, message="events resent")
    assert outbox.depth() == 3  # PUBACKs do not delete anything
    assert all(outbox.get(e.event_id).attempts >= 3 for e in evs)
    assert pub.counters()["resent"] >= 6


def test_unacknowledged_events_are_resent_after_reconnect(broker: Broker, outbox: Outbox,
                                                           make_publisher) -> None:
    consumer = Consumer(broker, ack=False)
    pub = make_publisher(outbox, resend_after=3600)  # only the reconnect can cause a resend
    evs = [put(outbox, pub) for _ in range(3)]
    wait_until(lambda: consumer.ids() >= {e.event_id for e in evs}, T)
    wait_until(lambda: pub.counters()["inflight"] == 0, T, message="PUBACKs received")
    assert pub.counters()["resent"] == 0
    broker.restart()
    consumer.connect(broker)
    wait_until(lambda: all(consumer.counts()[e.event_id] >= 2 for e in evs), 60, message="resent after reconnect")
    assert pub.counters()["resent"] >= 3
    assert outbox.depth() == 3


# --- (d) refused publishes ----------------------------------------------------------------


def test_refused_publish_fails_once_and_later_events_flow(broker: Broker, outbox: Outbox, make_publisher) -> None:
    consumer = Consumer(broker)
    pub = make_publisher(outbox, resend_after=0.5)
    foreign = make_event(outbox, node="node-b")  # the ACL lets node-a write only its own subtree
    put(outbox, pub, foreign)
    wait_until(lambda: outbox.get(foreign.event_id).state == "failed", T, message="refused row marked failed")
    row = outbox.get(foreign.event_id)
    assert "0x87" in row.fail_reason, row.fail_reason
    good = put(outbox, pub)
    wait_until(lambda: good.event_id in consumer.ids(), T)
    # A reconnect makes every unacknowledged row due again: never the failed one.
    broker.restart()
    consumer.connect(broker)
    later = put(outbox, pub)
    wait_until(lambda: later.event_id in consumer.ids(), 60)
    wait_until(lambda: outbox.depth() == 0, T)
    assert outbox.get(foreign.event_id).attempts == 1
    assert foreign.event_id not in consumer.ids()
    assert outbox.counters() == {"depth": 0, "dropped": 0, "failed": 1, "expired": 0}
    assert pub.counters()["refused"] == 1


def test_message_above_the_broker_packet_limit_fails_at_the_node_and_is_never_sent(broker: Broker, outbox: Outbox,
                                                                                  make_publisher) -> None:
    # The project's own broker config announces max_packet_size in CONNACK; paho does not
    # enforce it, so the publisher must: Mosquitto would cut the node off for the packet.
    consumer = Consumer(broker)
    pub = make_publisher(outbox, resend_after=0.5)
    huge = make_event(outbox)
    topic = Topic.events(NODE, CAM)
    payload = huge.to_payload() + b" " * MAX_PACKET_SIZE  # still valid JSON, but over the limit
    assert outbox.put(huge.event_id, topic, payload)
    pub.notify()
    wait_until(lambda: outbox.get(huge.event_id).state == "failed", T, message="oversize row failed")
    row = outbox.get(huge.event_id)
    assert f"> {MAX_PACKET_SIZE} bytes" in row.fail_reason, row.fail_reason
    good = put(outbox, pub)
    wait_until(lambda: good.event_id in consumer.ids(), T)
    assert pub.counters()["connects"] == 1 and pub.connected  # never cut off
    assert "oversize" not in broker.log_text()
    # A reconnect makes every unacknowledged row due again: never the failed one.
    broker.restart()
    consumer.connect(broker)
    later = put(outbox, pub)
    wait_until(lambda: later.event_id in consumer.ids(), 60)
    wait_until(lambda: outbox.depth() == 0, T)
    assert outbox.get(huge.event_id).attempts == 0  # never handed to MQTT
    assert pub.counters()["refused"] == 1


# --- (e) status and Last Will -------------------------------------------------------------

_NODE_SCRIPT = textwrap.dedent("""
    import json, sys, threading
    from vaktpost.contract.topics import Topic
    from vaktpost.edge.config import MqttSection
    from vaktpost.contract.events import Event, EventType, Phase, uuid7
    from vaktpost.edge.delivery.outbox import Outbox
    from vaktpost.edge.delivery.transport import Publisher
    from datetime import datetime, timezone

    args = json.loads(sys.argv[1])
    outbox = Outbox(args["outbox"], 1000)
    pub = Publisher(args["node"], MqttSection(**args["mqtt"]), outbox, resend_after=3600)
    pub.start()
    if not pub.wait_connected(30):
        sys.exit("not connected: %s" % pub.last_error)
    print("connected", flush=True)
    for _ in range(args["events"]):
        ev = Event(event_id=uuid7(), seq=outbox.next_seq(), node_id=args["node"], camera_id="cam1",
                   type=EventType.motion, started_at=datetime.now(timezone.utc), confidence=0.5,
                   phase="start")
        outbox.put(ev.event_id, Topic.events(args["node"], "cam1"), ev.to_payload())
        pub.notify()
    done = threading.Event()
    # A row is marked sent just before it is handed to paho: wait for the publishes, then their PUBACKs.
    while not (pub.counters()["published"] >= args["events"] and pub.counters()["inflight"] == 0):
        done.wait(0.05)
    print("sent", flush=True)
    done.wait()  # until killed
""")


def run_node_process(broker: Broker, outbox_path: Path, events: int = 0) -> subprocess.Popen:
    args = {"node": NODE, "outbox": str(outbox_path), "events": events,
            "mqtt": {"host": broker.host, "port": broker.port, "password": broker.password(NODE)}}
    return subprocess.Popen([sys.executable, "-c", _NODE_SCRIPT, json.dumps(args)], stdout=subprocess.PIPE,
                            text=True, cwd=Path(__file__).resolve().parents[1], env={**os.environ})


def expect_line(proc: subprocess.Popen, line: str) -> None:
    got = proc.stdout.readline().strip()  # the child exits (EOF) if it cannot get there
    assert got == line, f"child said {got!r}, exit code {proc.poll()}"


def status_of(msg: mqtt.MQTTMessage) -> Status:
    return Status.model_validate_json(msg.payload)


def test_status_online_retained_and_offline_on_clean_stop(broker: Broker, outbox: Outbox) -> None:
    watcher = broker.client("watcher")
    assert watcher.subscribe_wait(Topic.status(NODE)) == 1
    pub = Publisher(NODE, mqtt_config(broker), outbox)
    pub.start()
    try:
        assert status_of(watcher.expect_message(T)).state == "online"
        late = broker.client("central")  # subscribes after the fact
        assert late.subscribe_wait(Topic.status(NODE)) == 1
        msg = late.expect_message(T)
        assert msg.retain and status_of(msg).state == "online"
    finally:
        assert pub.stop(timeout=5)
    offline = status_of(watcher.expect_message(T))
    assert offline.state == "offline" and offline.at is not None  # ours, not the Last Will


def test_heartbeat_carries_outbox_counters(broker: Broker, outbox: Outbox) -> None:
    watcher = broker.client("watcher")
    assert watcher.subscribe_wait(Topic.heartbeat(NODE)) == 1
    pub = Publisher(NODE, mqtt_config(broker), outbox)
    hb = Heartbeat(node_id=NODE, at=datetime.now(UTC))
    assert pub.heartbeat(hb) is False  # not connected: nothing queued
    pub.start()
    try:
        assert pub.wait_connected(T)
        c = outbox.counters()
        hb = Heartbeat(node_id=NODE, at=datetime.now(UTC), outbox_depth=c["depth"],
                       outbox_dropped=c["dropped"], outbox_failed=c["failed"], fps={CAM: 4.9})
        assert pub.heartbeat(hb) is True
        got = Heartbeat.model_validate_json(watcher.expect_message(T, Topic.heartbeat(NODE)).payload)
        assert got == hb
    finally:
        pub.stop(timeout=2)


def test_last_will_marks_a_killed_node_offline(broker: Broker, tmp_path: Path) -> None:
    watcher = broker.client("watcher")
    assert watcher.subscribe_wait(Topic.status(NODE)) == 1
    proc = run_node_process(broker, tmp_path / "outbox.db")
    try:
        expect_line(proc, "connected")
        expect_line(proc, "sent")
        assert status_of(watcher.expect_message(T)).state == "online"
        proc.send_signal(signal.SIGKILL)
        proc.wait(T)
        will = status_of(watcher.expect_message(T))
        assert will.state == "offline" and will.at is None  # the Last Will carries no time
        late = broker.client("central")
        assert late.subscribe_wait(Topic.status(NODE)) == 1
        msg = late.expect_message(T)
        assert msg.retain and status_of(msg).state == "offline"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()


# --- (f) node restart -----------------------------------------------------------------------


def test_rows_of_a_killed_node_are_resent_by_the_next_process(broker: Broker, tmp_path: Path,
                                                              make_publisher) -> None:
    path = tmp_path / "outbox.db"
    broker.add_accounts(consumers=["silent"])  # one account per client: the username is the client id
    silent = Consumer(broker, ack=False, username="silent")
    proc = run_node_process(broker, path, events=5)
    try:
        expect_line(proc, "connected")
        expect_line(proc, "sent")
        proc.send_signal(signal.SIGKILL)
        proc.wait(T)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
    # The broker took all five (PUBACK) before the kill; its deliveries to the consumer may still be under way.
    wait_until(lambda: len(silent.ids()) == 5, T, message="5 deliveries")  # delivered, never acknowledged

    outbox = Outbox(path, 1000)
    try:
        rows = outbox.rows()
        assert len(rows) == 5 and {r.state for r in rows} == {"sent"}
        consumer = Consumer(broker)
        make_publisher(outbox, resend_after=3600)  # only the new connection can make them due
        wait_until(lambda: consumer.ids() >= {r.event_id for r in rows}, T, message="old rows resent")
        wait_until(lambda: outbox.depth() == 0, T)
    finally:
        outbox.close()


# --- connection refused -------------------------------------------------------------------


def test_wrong_password_is_logged_and_retried_not_fatal(broker: Broker, outbox: Outbox,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="vaktpost.edge.delivery.transport")
    pub = Publisher(NODE, MqttSection(host=broker.host, port=broker.port, password="wrong"), outbox)
    put(outbox)
    pub.start()
    try:
        wait_until(lambda: pub.counters()["connect_refusals"] >= 2, T, message="connection retried")
        assert not pub.connected
        assert "refused" in (pub.last_error or "")
        assert any("refused node node-a" in r.getMessage() for r in caplog.records)
        assert outbox.depth() == 1
    finally:
        pub.stop(timeout=2)
