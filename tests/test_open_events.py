"""A node killed mid-event closes that event when it starts again (issue 8, defect 6).

The outbox keeps a table of the events the node started and has not ended (the last
message of each and when it was last known to go on); at start the node sends their
`end`, restated through the event factory, so no event stays open in the place log."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from mqtt_harness import Broker, running_central, wait_until

from vaktpost.contract.events import Event, EventType, Phase, uuid7
from vaktpost.contract.topics import Topic
from vaktpost.edge.delivery.outbox import Outbox

NODE = "node-a"
T = 60.0  # two shared cores, a node process starting (cv2, paho)


def _event(**kw) -> Event:
    fields = dict(event_id=uuid7(), seq=1, node_id=NODE, camera_id="yard", type=EventType.motion,
                  started_at=datetime(2024, 5, 14, 19, 0, tzinfo=UTC), confidence=0.5, phase=Phase.start)
    return Event(**{**fields, **kw})


def test_outbox_remembers_open_events_until_their_end(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    ob = Outbox(path)
    start = _event()
    topic = Topic.events(NODE, "yard")
    t0 = start.started_at.timestamp()
    ob.put(start.event_id, topic, start.to_payload(), running=True, at=t0)
    moment = _event(event_id=uuid7(), ended_at=start.started_at, phase=Phase.end)
    ob.put(moment.event_id, topic, moment.to_payload(), running=False, at=t0)
    ob.ack([start.event_id])  # not sent yet: stays; the open record stays either way
    ob.alive(topic, t0 + 7)
    ob.alive(Topic.events(NODE, "other"), t0 + 99)  # another camera's clock
    ob.close()

    ob = Outbox(path)  # a new process
    [left] = ob.open_events()
    assert left.event_id == start.event_id and left.topic == topic
    assert Event.from_payload(left.payload) == start and left.alive_at == t0 + 7
    end = _event(event_id=start.event_id, ended_at=start.started_at + timedelta(seconds=7), phase=Phase.end)
    ob.put(end.event_id, topic, end.to_payload(), running=False)
    assert ob.open_events() == []
    ob.close()


def _node_config(broker: Broker, tmp_path: Path) -> Path:
    # A camera that never delivers a frame: after a second the node starts a lasting
    # camera_lost event that only ends when frames come (never) or the node stops.
    cfg = {
        "node": {"id": NODE},
        "mqtt": {**broker.mqtt_config(NODE), "heartbeat_seconds": 1},
        "spool": {"path": str(tmp_path / "outbox.db")},
        "cameras": [{"id": "yard", "source": "rtsp://127.0.0.1:1/none", "lost_after_seconds": 1,
                     "detector": {"kind": "none"}}],
    }
    path = tmp_path / "node.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _start_node(config: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vaktpost.cli", "node", "run", "--config", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=config.parent,
                            env={**os.environ})


def _lost_events(store) -> list[dict]:
    return [r for r in store.query_events(node=NODE, type="health") if r["subtype"] == "camera_lost"]


def test_event_left_open_by_a_killed_node_is_ended_by_its_next_start(broker: Broker, tmp_path: Path) -> None:
    config = _node_config(broker, tmp_path)
    with running_central(broker, tmp_path) as store:
        node = _start_node(config)
        try:
            [open_row] = wait_until(lambda: _lost_events(store), T, message="camera_lost stored")
            assert open_row["ended_at"] is None
            killed_at = datetime.now(UTC)
            node.send_signal(signal.SIGKILL)
            node.wait(T)
            assert [r["ended_at"] for r in _lost_events(store)] == [None], "nothing could end it"

            node = _start_node(config)
            row = wait_until(lambda: next((r for r in _lost_events(store) if r["event_id"] == open_row["event_id"]
                                           and r["ended_at"] is not None), None), T,
                             message="the killed node's event ended by its next start")
            assert open_row["started_at"] <= row["ended_at"] <= killed_at
            node.send_signal(signal.SIGTERM)
            assert node.wait(T) == 0
            # The second run's own camera_lost ended on its clean stop: nothing is left open.
            wait_until(lambda: all(r["ended_at"] is not None for r in _lost_events(store)), T,
                       message="every camera_lost ended")
        finally:
            if node.poll() is None:
                node.kill()
            node.wait()
    ob = Outbox(tmp_path / "outbox.db")
    try:
        assert ob.open_events() == [] and ob.depth() == 0
    finally:
        ob.close()
