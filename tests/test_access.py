"""Access on a real broker with the project's config, tried as an attacker holding one
account's credentials would (docs/mqtt.md, "Accounts" and "The ACL").

Every refused attempt is followed by a sentinel message on a topic the watching client
may read; Mosquitto routes one publisher's messages in order, so when the sentinel
arrives first, nothing of the refused attempt was delivered.
"""

from __future__ import annotations

import pytest
from mqtt_harness import Broker, MqttTestClient

from vaktpost.contract.messages import Ack, Status
from vaktpost.contract.topics import ANY, CONSUMER_FILTERS, ROOT, Topic

NOT_AUTHORIZED = 0x87
EVENT_ID = "019abf3c-6a2e-7c41-9d0e-5b7f2a1c3e88"


def everything(broker: Broker, username: str = "central") -> MqttTestClient:
    """A client of `username` subscribed to every node topic, `#` and `$SYS/#`."""
    c = broker.client(username)
    for f in [*map(str, CONSUMER_FILTERS), "#", "$SYS/#"]:
        c.subscribe_wait(f)  # Mosquitto 2.0 grants them all and checks read access per message
    c.drain()  # retained status messages from before
    return c


def only_sentinel(client: MqttTestClient, topic: str, payload: bytes) -> None:
    """The next message `client` receives is the sentinel, and nothing else came before it."""
    msg = client.expect_message()
    assert (msg.topic, msg.payload) == (topic, payload), f"delivered although refused: {msg.topic} {msg.payload!r}"


def node_topics(node: str) -> list[str]:
    return [Topic.events(node, "cam1"), Topic.snapshots(node, EVENT_ID), Topic.status(node),
            Topic.heartbeat(node), Topic.config(node), Topic.acks(node)]


def test_node_cannot_publish_to_another_nodes_topics(broker: Broker) -> None:
    watch = everything(broker)
    with broker.client("node-b") as b:
        for topic in [*node_topics("node-a"), Topic.acks("node-b"), f"{ROOT}/x", "$SYS/broker/x", "other"]:
            assert b.publish_wait(topic, b"forged") == NOT_AUTHORIZED, topic
        assert b.publish_wait(Topic.heartbeat("node-b"), b"sentinel") < 0x80
    only_sentinel(watch, Topic.heartbeat("node-b"), b"sentinel")


def test_node_cannot_read_another_nodes_topics_nor_everything(broker: Broker) -> None:
    b = broker.client("node-b")
    for topic in [*node_topics("node-a"), Topic.events(ANY, ANY), "#", f"{ROOT}/#", "$SYS/#"]:
        b.subscribe_wait(topic)  # granted or refused: either way nothing may arrive
    with broker.client("node-a") as a:
        for topic in node_topics("node-a")[:5]:
            assert a.publish_wait(topic, b"private") < 0x80
    with broker.client("central") as central:
        assert central.publish_wait(Topic.acks("node-a"), Ack(event_ids=[EVENT_ID]).model_dump_json()) < 0x80
        assert central.publish_wait(Topic.acks("node-b"), b"sentinel") < 0x80
    only_sentinel(b, Topic.acks("node-b"), b"sentinel")


@pytest.mark.parametrize("victim", ["node-a", "central"])
def test_session_takeover_with_another_accounts_client_id_is_refused(broker: Broker, victim: str) -> None:
    """node-b connects with client ids the victim uses or could use: the victim stays
    connected, and no Last Will says it went offline."""
    watch = everything(broker, "watcher")
    will = (Topic.status("node-a"), Status(node_id="node-a", state="offline").model_dump_json().encode(), 1, True)
    target = broker.client(victim, client_id=f"vaktpost-{victim}", clean_start=False, session_expiry=3600,
                           will=will if victim == "node-a" else None)
    for client_id in [f"vaktpost-{victim}", victim]:
        broker.client("node-b", client_id=client_id, takeover=True).close()
    # Had the broker closed its connection, paho would have reconnected it (on_disconnect
    # first) before this PUBACK could come: the broker handled node-b's CONNECT before.
    sentinel = Topic.heartbeat("node-a") if victim == "node-a" else Topic.acks("node-a")
    assert target.publish_wait(sentinel, b"sentinel") < 0x80
    assert target.disconnect_reason is None, f"{victim} was kicked off: {target.disconnect_reason}"
    if victim == "node-a":
        only_sentinel(watch, sentinel, b"sentinel")  # no Last Will before it


def test_one_account_has_one_session(broker: Broker) -> None:
    """The client id is the username: a second connection of the same account takes the
    session over (a restarted process resumes its own session), whatever id it gives."""
    first = broker.client("node-a", client_id="first", clean_start=False, session_expiry=3600)
    assert first.subscribe_wait(Topic.acks("node-a")) == 1
    first.close()
    second = broker.client("node-a", client_id="second", clean_start=False, session_expiry=3600)
    assert second.connack_flags.session_present  # same session, though another client id was given


@pytest.mark.parametrize("username,password", [(None, None), ("node-a", "wrong"), ("nobody", "x"),
                                               ("observer-1", ""), ("", "")])
def test_anonymous_unknown_and_wrong_passwords_are_refused(broker: Broker, username: str | None,
                                                           password: str | None) -> None:
    assert broker.connack(username, password).value == NOT_AUTHORIZED


def test_observer_reads_events_status_heartbeat_only(broker: Broker) -> None:
    obs = broker.client("watcher")
    for topic in [Topic.events(ANY, ANY), Topic.status(ANY), Topic.heartbeat(ANY)]:
        assert obs.subscribe_wait(topic) == 1
    for topic in [Topic.snapshots(ANY, ANY), Topic.acks(ANY), "$SYS/#"]:
        obs.subscribe_wait(topic)  # granted or refused: nothing may arrive on it
    with broker.client("node-a") as a:
        assert a.publish_wait(Topic.snapshots("node-a", EVENT_ID), b"\xff\xd8image\xff\xd9") < 0x80
        assert a.publish_wait(Topic.events("node-a", "cam1"), b"event") < 0x80
        assert a.publish_wait(Topic.heartbeat("node-a"), b"heartbeat") < 0x80
    with broker.client("central") as central:
        assert central.publish_wait(Topic.acks("node-a"), b"ack") < 0x80
    with broker.client("node-b") as b:
        assert b.publish_wait(Topic.status("node-b"), b"status") < 0x80
    got = [obs.expect_message().topic for _ in range(3)]
    assert got == [Topic.events("node-a", "cam1"), Topic.heartbeat("node-a"), Topic.status("node-b")]


@pytest.mark.parametrize("account", ["watcher", "inbox"])
def test_observer_and_inbox_write_nothing(broker: Broker, account: str) -> None:
    watch = everything(broker)
    with broker.client(account) as obs:
        for topic in [*node_topics("node-a"), *node_topics(account), f"{ROOT}/x", "other"]:
            assert obs.publish_wait(topic, b"forged") == NOT_AUTHORIZED, topic
    with broker.client("node-b") as b:
        assert b.publish_wait(Topic.heartbeat("node-b"), b"sentinel") < 0x80
    only_sentinel(watch, Topic.heartbeat("node-b"), b"sentinel")


def test_inbox_reads_status_and_heartbeat_only(broker: Broker) -> None:
    inbox = broker.client("inbox")
    for topic in [Topic.status(ANY), Topic.heartbeat(ANY)]:
        assert inbox.subscribe_wait(topic) == 1
    for topic in [Topic.events(ANY, ANY), Topic.snapshots(ANY, ANY), Topic.acks(ANY)]:
        inbox.subscribe_wait(topic)
    with broker.client("node-a") as a:
        assert a.publish_wait(Topic.events("node-a", "cam1"), b"event") < 0x80
        assert a.publish_wait(Topic.snapshots("node-a", EVENT_ID), b"image") < 0x80
        assert a.publish_wait(Topic.heartbeat("node-a"), b"heartbeat") < 0x80
    msg = inbox.expect_message()
    assert (msg.topic, msg.payload) == (Topic.heartbeat("node-a"), b"heartbeat")


@pytest.mark.parametrize("reader", ["central", "inbox", "watcher"])
def test_node_config_is_retained_and_read_by_consumer_inbox_and_observers(broker: Broker, reader: str) -> None:
    with broker.client("node-b") as b:
        assert b.publish_wait(Topic.config("node-a"), b"forged", retain=True) == NOT_AUTHORIZED
    with broker.client("node-a") as a:
        assert a.publish_wait(Topic.config("node-a"), b"setup", retain=True) < 0x80
    c = broker.client(reader)  # connects after the publish: gets the retained copy
    assert c.subscribe_wait(Topic.config(ANY)) == 1
    msg = c.expect_message()
    assert (msg.topic, msg.payload, msg.retain) == (Topic.config("node-a"), b"setup", True)
    with broker.client("node-a") as a:  # clear it for the other tests
        assert a.publish_wait(Topic.config("node-a"), b"", retain=True) < 0x80
