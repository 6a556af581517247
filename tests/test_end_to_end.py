"""The spine end to end: video file → node → real Mosquitto → consumer → place log.

The node plays its file unpaced (`pace: false`): frames on the file's own clock, so
what it sends does not depend on how busy the machine is."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from mqtt_harness import Broker, make_test_ca, running_central, wait_until

from vaktpost.contract.events import Event, uuid7
from vaktpost.contract.topics import Topic
from vaktpost.edge.analyze import analyze
from vaktpost.edge.config import parse
from vaktpost.edge.delivery.outbox import Outbox
from vaktpost.edge.delivery.transport import Publisher
from vaktpost.edge.node import Node
from vaktpost.scenes import Figure, Scene, write_video

START = datetime(2024, 5, 14, 19, 0, tzinfo=UTC)
PLACES = {
    "places": [{"id": "ekbacken-yard", "name": "Ekbacken schoolyard", "kind": "schoolyard", "district": "Norra"}],
    "cameras": [{"node": "node-a", "camera": "yard", "place": "ekbacken-yard", "from": "2020-01-01"}],
}


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    # Two walkers 4 s apart: two motion events.
    scene = Scene(duration_s=12, fps=10, seed=3, figures=[
        Figure(0.5, 4.0, [(0.1, 0.7), (0.9, 0.75)]),
        Figure(7.5, 11.0, [(0.9, 0.8), (0.2, 0.7)]),
    ])
    return write_video(scene, tmp_path_factory.mktemp("e2e") / "yard.avi")


def node_config(broker: Broker, tmp_path: Path, video: Path, *, node_id="node-a", username="node-a") -> dict:
    return {
        "node": {"id": node_id},
        "mqtt": {**broker.mqtt_config(username), "heartbeat_seconds": 1},
        "spool": {"path": str(tmp_path / f"{node_id}-outbox.db")},
        "cameras": [{"id": "yard", "source": str(video), "fps": 5, "pace": False, "start_time": START.isoformat()}],
    }


def expected_events(video: Path, cfg) -> list:
    return analyze(video, cfg, cfg.cameras[0], START).events


def test_video_to_place_log(broker: Broker, tmp_path: Path, video: Path) -> None:
    cfg = parse(node_config(broker, tmp_path, video))
    expected = expected_events(video, cfg)
    assert len(expected) == 2
    with running_central(broker, tmp_path, PLACES) as store:
        node = Node(cfg)
        node.run(drain_timeout=30)
        rows = store.query_events()
        assert len(rows) == len(expected)
        assert {r["place_id"] for r in rows} == {"ekbacken-yard"}
        assert all(r["type"] == "motion" and r["ended_at"] is not None for r in rows)
        assert node.outbox.depth() == 0, "every event acknowledged end to end and deleted"
        assert store.query_dead_letters() == []
        # Status and heartbeat reached the consumer too; the node left cleanly.
        def node_row():
            rows = [n for n in store.list_nodes() if n["node_id"] == "node-a"]
            return rows[0] if rows and rows[0]["state"] == "offline" else None
        node_row = wait_until(node_row, 10, message="offline status stored")
        assert node_row["heartbeat"]["fps"]["yard"] > 0
        assert node_row["heartbeat"]["outbox_depth"] == 0


def test_node_cannot_publish_as_another_node(broker: Broker, tmp_path: Path, video: Path) -> None:
    # Configured as node-b but holding node-a's credentials: the ACL refuses every event.
    cfg = parse(node_config(broker, tmp_path, video, node_id="node-b", username="node-a"))
    with running_central(broker, tmp_path, PLACES) as store:
        node = Node(cfg)
        node.run(drain_timeout=5)
        failed = node.outbox.rows(state="failed")
        assert failed, "refused events are marked failed, not resent forever"
        assert all("0x87" in (r.fail_reason or "") or "authori" in (r.fail_reason or "").lower() for r in failed)
        assert store.count_events() == 0
        assert node.outbox.counters()["failed"] >= len(failed)  # counts refused publishes (start and end)


def test_broker_outage_loses_nothing(broker: Broker, tmp_path: Path, video: Path) -> None:
    cfg = parse(node_config(broker, tmp_path, video))
    expected = expected_events(video, cfg)
    with running_central(broker, tmp_path, PLACES) as store:
        # The broker is away while the node analyses the whole clip: every event waits in
        # the outbox. (Losing a connection mid-run is tests/test_transport.py's part.)
        broker.stop()
        node = Node(cfg)
        node.run(drain_timeout=0)
        assert node.outbox.depth() >= len(expected) == 2, "spooled during the outage"
        # Back again: the node's next start delivers what was spooled.
        broker.start()
        publisher = Publisher("node-a", cfg.mqtt, node.outbox)
        publisher.start()
        try:
            wait_until(lambda: node.outbox.depth() == 0, 30, message="outbox drained after the outage")
        finally:
            publisher.stop()
        wait_until(lambda: store.count_events() == len(expected), 30, message="all events stored")
        rows = store.query_events()
        assert len({r["event_id"] for r in rows}) == len(expected) == 2


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_node_and_consumer_over_tls(broker_factory, tmp_path: Path) -> None:
    """The node's publisher and the central consumer, each with their TLS settings."""
    ca_crt, crt, key = make_test_ca(tmp_path)
    b = broker_factory(["node-a"], tls={"certfile": str(crt), "keyfile": str(key)})
    mqtt = {**b.mqtt_config("node-a"), "tls": {"ca_file": str(ca_crt)}}
    cfg = parse({"node": {"id": "node-a"}, "mqtt": mqtt, "spool": {"path": str(tmp_path / "outbox.db")},
                 "cameras": [{"id": "yard", "source": "unused.avi"}]})
    outbox = Outbox(cfg.spool.path, cfg.spool.max_events, cfg.spool.when_full)
    ev = Event(event_id=uuid7(), seq=outbox.next_seq(), node_id="node-a", camera_id="yard", type="motion",
               started_at=datetime.now(UTC), ended_at=datetime.now(UTC), confidence=0.7,
               phase="end")
    outbox.put(ev.event_id, Topic.events("node-a", "yard"), ev.to_payload())
    with running_central(b, tmp_path, PLACES, tls_ca=ca_crt) as store:
        publisher = Publisher("node-a", cfg.mqtt, outbox)
        publisher.start()
        try:
            wait_until(lambda: outbox.depth() == 0, 20, message="event acknowledged over TLS")
        finally:
            publisher.stop()
        (row,) = store.query_events()
        assert (row["event_id"], row["place_id"]) == (ev.event_id, "ekbacken-yard")
