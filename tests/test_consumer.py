"""The central consumer against a real Mosquitto: store, ack, dead letters, crash safety."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from mqtt_harness import Broker, MqttTestClient, free_port, wait_until

from vaktpost.broker.config import CentralConfig, load_central
from vaktpost.broker.ingest.consumer import Consumer, subscriptions
from vaktpost.broker.ingest.parse import Rejected, parse_message
from vaktpost.broker.store import Store
from vaktpost.contract.config import ConfigError
from vaktpost.contract.events import Event, EventV1, uuid7
from vaktpost.contract.messages import Ack, Heartbeat, Status
from vaktpost.contract.topics import ANY, Topic

REPO = Path(__file__).resolve().parent.parent
UTC = UTC
T0 = datetime(2024, 9, 2, 8, 0, tzinfo=UTC)

PLACES = {
    "places": [
        {"id": "ekbacken-schoolyard", "name": "Ekbacken schoolyard", "kind": "schoolyard"},
        {"id": "lindparken", "name": "Lindparken", "kind": "park"},
    ],
    "cameras": [
        {"node": "node-a", "camera": "yard", "place": "ekbacken-schoolyard", "from": "2024-08-01"},
        {"node": "node-b", "camera": "park", "place": "lindparken", "from": "2024-08-01"},
    ],
}


# --- helpers --------------------------------------------------------------------------


def write_config(broker: Broker, tmp_path: Path, *, database: str | None = None, name: str = "central.yaml",
                 **mqtt: object) -> Path:
    """A central.yaml for `broker`, password in a file next to it (as in production)."""
    username = str(mqtt.pop("username", "central"))
    (tmp_path / f"{username}.password").write_text(broker.password(username) + "\n")
    (tmp_path / "places.yaml").write_text(yaml.safe_dump(PLACES))
    doc = {
        "database": database or f"sqlite:///{tmp_path / 'central.db'}",
        "mqtt": {"host": broker.host, "port": broker.port, "username": username,
                 "password_file": f"{username}.password", "reconnect_max_seconds": 2, **mqtt},
        "places_file": "places.yaml",
        # The consumer purges at start; these tests' events date from 2024.
        "retention": {"events": "36500d"},
    }
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return path


def make_event(node: str = "node-a", camera: str | None = "yard", *, offset_s: float = 0, seq: int = 1,
               **kw) -> Event:
    t = T0 + timedelta(seconds=offset_s)
    return Event(event_id=uuid7(int(t.timestamp() * 1000)), seq=seq, node_id=node, camera_id=camera,
                 type=kw.pop("type", "motion"), started_at=t, confidence=kw.pop("confidence", 0.8),
                 phase=kw.pop("phase", "end" if kw.get("ended_at") else "start"), **kw)


@contextmanager
def running_consumer(config_path: Path, **store_kw) -> Iterator[tuple[Consumer, Store]]:
    from vaktpost.broker.places import import_places

    cfg = load_central(config_path)
    store = Store(cfg.database, **store_kw)
    store.create_all()
    import_places(store, cfg.places_file)
    consumer = Consumer(cfg, store).start()
    try:
        assert consumer.ready.wait(15), "consumer did not subscribe"
        yield consumer, store
    finally:
        consumer.stop()
        store.close()


def node_client(broker: Broker, node: str = "node-a") -> MqttTestClient:
    c = broker.client(node)
    assert c.subscribe_wait(Topic.acks(node)) == 1
    return c


def acked_ids(client: MqttTestClient, expected: set[str], timeout: float = 20.0) -> set[str]:
    """Collect Ack messages until they cover `expected` (or the timeout)."""
    got: set[str] = set()

    def covered() -> bool:
        for msg in client.drain():
            got.update(Ack.model_validate_json(msg.payload).event_ids)
        return expected <= got

    wait_until(covered, timeout, message=f"acks for {len(expected)} events")
    return got


# --- parsing and config (no broker) ------------------------------------------------------


def test_parse_message_outcomes() -> None:
    ev = make_event()
    assert parse_message(Topic.events("node-a", "yard"), ev.to_payload()) == ev
    spoof = parse_message(Topic.events("node-b", "yard"), ev.to_payload())
    assert isinstance(spoof, Rejected) and "cannot speak for another" in spoof.error
    assert spoof.event_id == ev.event_id
    wrong_cam = parse_message(Topic.events("node-a", "gate"), ev.to_payload())
    assert isinstance(wrong_cam, Rejected) and "camera_id 'yard'" in wrong_cam.error
    node_level = make_event(camera=None, type="health", subtype="camera_lost")
    assert parse_message(Topic.events("node-a", "any"), node_level.to_payload()) == node_level
    # An event of an older version the consumer still accepts (docs/mqtt.md, "Versions").
    v1 = EventV1(**ev.model_dump(exclude={"schema_", "phase"}))
    assert v1.to_payload().startswith(b'{"schema":"vaktpost.event/1"')
    assert parse_message(Topic.events("node-a", "yard"), v1.to_payload()) == v1
    v3 = parse_message(Topic.events("node-a", "yard"), ev.to_payload().replace(b"event/2", b"event/3"))
    assert isinstance(v3, Rejected) and "known event version" in v3.error and v3.event_id == ev.event_id

    bad = parse_message(Topic.events("node-a", "yard"), b'{"event_id": "abc", "seq": -1}')
    assert isinstance(bad, Rejected) and bad.event_id == "abc" and "seq:" in bad.error
    junk = parse_message(Topic.events("node-a", "yard"), b"\xff\xfe not json")
    assert isinstance(junk, Rejected) and junk.event_id is None and "invalid event" in junk.error

    st = Status(node_id="node-a", state="online", at=T0)
    assert parse_message(Topic.status("node-a"), st.model_dump_json().encode()) == st
    assert parse_message(Topic.status("node-a"), b"") is None  # retained status cleared
    assert isinstance(parse_message(Topic.status("node-b"), st.model_dump_json().encode()), Rejected)
    hb = Heartbeat(node_id="node-a", at=T0, outbox_depth=3)
    assert parse_message(Topic.heartbeat("node-a"), hb.model_dump_json().encode()) == hb
    assert isinstance(parse_message("elsewhere/x", b"{}"), Rejected)
    assert isinstance(parse_message(Topic.node_prefix("node-a") + "/events", b"{}"), Rejected)


def test_shared_group_subscriptions() -> None:
    assert subscriptions(None) == [Topic.events(ANY, ANY), Topic.status(ANY), Topic.heartbeat(ANY),
                                   Topic.snapshots(ANY, ANY), Topic.config(ANY)]
    assert subscriptions("g1")[0] == f"$share/g1/{Topic.events(ANY, ANY)}"


def test_central_config_defaults_and_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "empty.yaml").write_text("")
    cfg = load_central(tmp_path / "empty.yaml")
    assert cfg.database == f"sqlite:///{tmp_path / 'vaktpost-central.db'}"
    assert (cfg.mqtt.username, cfg.mqtt.shared_group) == ("central", None)
    assert cfg.mqtt.session_expiry_seconds == 7 * 24 * 3600
    assert (cfg.retention.snapshots_age, cfg.retention.events_age, cfg.retention.purge_interval) == (
        timedelta(days=30), timedelta(days=365), 24 * 3600)
    assert cfg.snapshots.max_bytes == 2 * 1024 * 1024

    (tmp_path / "pw").write_text("s3cret\n")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({
        "database": "postgresql://vaktpost@db/vaktpost",
        "mqtt": {"password_file": "pw", "shared_group": "central", "tls": {"ca_file": "ca.crt"}},
        "places_file": "places.yaml",
    }))
    cfg = load_central(tmp_path / "c.yaml")
    assert cfg.mqtt.session_expiry_seconds == 60  # a group member: the others take its share (docs/central.md)
    assert cfg.database == "postgresql://vaktpost@db/vaktpost"
    assert cfg.mqtt.resolved_password() == "s3cret"
    assert cfg.mqtt.tls.ca_file == tmp_path / "ca.crt"
    assert cfg.places_file == tmp_path / "places.yaml"


@pytest.mark.parametrize(
    "doc, expected",
    [
        ({"mqtt": {"port": 70000}}, "mqtt.port: Input should be less than or equal to 65535"),
        ({"mqtt": {"shared_group": "a/b"}}, "mqtt.shared_group: String should match pattern"),
        ({"mqtt": {"password": "x", "password_file": "y"}}, "mqtt: give password or password_file, not both"),
        ({"mqtt": {"tls": {}}}, "mqtt.tls.ca_file: Field required"),
        ({"databse": "sqlite:///x.db"}, "databse: Extra inputs are not permitted"),
        ({"database": "not a url"}, "database: not a SQLAlchemy database URL"),
        ({"mqtt": {"session_expiry_seconds": -1}}, "mqtt.session_expiry_seconds: Input should be greater"),
        ({"mqtt": {"client_id": "vaktpost-central"}},
         "mqtt: client_id is no longer used: the broker takes the username as client id. Give each consumer "
         "process its own account (vaktpost broker init --consumer NAME) and set mqtt.username to it"),
        ({"retention": {"snapshots": 30}}, "retention.snapshots: must be between 1d and 36500d (a bare number is"),
        ({"retention": {"events": "36501d"}}, "retention.events: must be between 1d and 36500d"),
        ({"retention": {"purge_interval": 0}}, "retention.purge_interval: Input should be greater"),
        ({"retention": {"snapshots_days": 30}}, "retention: snapshots_days is now snapshots, a duration such as 30d"),
        ({"retention": {"event_days": 9}}, "retention.event_days: Extra inputs are not permitted"),
        (["a"], "expected a mapping"),
    ],
)
def test_central_config_errors_name_the_key(tmp_path: Path, doc: object, expected: str) -> None:
    path = tmp_path / "central.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError) as info:
        load_central(path)
    assert str(info.value).startswith(str(path))
    assert expected in str(info.value)


def test_example_config_is_valid() -> None:
    cfg = load_central(REPO / "examples" / "central.yaml")
    assert isinstance(cfg, CentralConfig) and cfg.places_file == REPO / "examples" / "places.yaml"


# --- with a real broker --------------------------------------------------------------


def test_events_stored_with_place_and_acked(broker: Broker, tmp_path: Path) -> None:
    with running_consumer(write_config(broker, tmp_path)) as (consumer, store):
        node_a, node_b = node_client(broker, "node-a"), node_client(broker, "node-b")
        evs = [make_event(offset_s=i, seq=i) for i in range(5)]
        park = make_event("node-b", "park", offset_s=9)
        for ev in evs:
            assert node_a.publish_wait(Topic.events("node-a", "yard"), ev.to_payload()) == 0
        assert node_b.publish_wait(Topic.events("node-b", "park"), park.to_payload()) == 0

        wait_until(lambda: store.count_events() == 6, 20, message="6 events stored")
        rows = {r["event_id"]: r for r in store.query_events()}
        assert {rows[e.event_id]["place_name"] for e in evs} == {"Ekbacken schoolyard"}
        assert rows[park.event_id]["place_name"] == "Lindparken"
        assert rows[evs[0].event_id]["started_at"] == T0
        assert acked_ids(node_a, {e.event_id for e in evs}) == {e.event_id for e in evs}
        assert acked_ids(node_b, {park.event_id}) == {park.event_id}  # each node gets only its own

        # A redelivered copy is acknowledged again but stored once.
        assert node_a.publish_wait(Topic.events("node-a", "yard"), evs[0].to_payload()) == 0
        assert acked_ids(node_a, {evs[0].event_id}) == {evs[0].event_id}
        assert store.count_events() == 6
        assert consumer.stats.snapshot()["duplicates"] == 1

        # Status and heartbeat land in the nodes table.
        st = Status(node_id="node-a", state="online", at=T0)
        assert node_a.publish_wait(Topic.status("node-a"), st.model_dump_json(), retain=True) == 0
        hb = Heartbeat(node_id="node-a", at=T0 + timedelta(seconds=30), outbox_depth=7)
        assert node_a.publish_wait(Topic.heartbeat("node-a"), hb.model_dump_json()) == 0
        wait_until(lambda: any(n["heartbeat_at"] and n["state"] for n in store.list_nodes()), 20,
                   message="node status and heartbeat stored")
        (node,) = store.list_nodes()
        assert (node["node_id"], node["state"], node["heartbeat"]["outbox_depth"]) == ("node-a", "online", 7)
        assert store.query_dead_letters() == []


def test_malformed_payloads_are_dead_lettered_and_stream_continues(broker: Broker, tmp_path: Path) -> None:
    yard = Topic.events("node-a", "yard")
    with running_consumer(write_config(broker, tmp_path)) as (consumer, store):
        node_a = node_client(broker, "node-a")
        junk = b"\x00\xffnot json at all"
        assert node_a.publish_wait(yard, junk) == 0  # the node's own connection: one per account
        spoofed = make_event("node-b", "yard")  # node-a claiming to be node-b
        assert node_a.publish_wait(yard, spoofed.to_payload()) == 0
        good = make_event(offset_s=1)
        assert node_a.publish_wait(yard, good.to_payload()) == 0

        wait_until(lambda: store.count_events() == 1, 20, message="valid event after junk stored")
        letters = sorted(store.query_dead_letters(), key=lambda r: r["id"])
        assert [(r["topic"], r["payload"]) for r in letters] == [(yard, junk), (yard, spoofed.to_payload())]
        assert "invalid event" in letters[0]["error"]
        assert "cannot speak for another" in letters[1]["error"]
        assert store.query_events()[0]["event_id"] == good.event_id
        # The spoofed event is kept (as a dead letter) and acked, so node-a's outbox can let go.
        assert acked_ids(node_a, {good.event_id, spoofed.event_id}) >= {good.event_id, spoofed.event_id}
        assert consumer.stats.snapshot()["dead_letters"] == 2


def test_nothing_is_acked_while_the_database_refuses(broker: Broker, tmp_path: Path) -> None:
    db = tmp_path / "central.db"
    with running_consumer(write_config(broker, tmp_path), sqlite_busy_timeout_ms=50) as (consumer, store):
        node_a = node_client(broker, "node-a")
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds the database: "database is locked"
        try:
            evs = [make_event(offset_s=i) for i in range(3)]
            for ev in evs:
                assert node_a.publish_wait(Topic.events("node-a", "yard"), ev.to_payload()) == 0
            wait_until(lambda: consumer.stats.snapshot()["db_errors"] >= 2, 20, message="retried db errors")
            assert node_a.drain() == [], "no Ack may be sent before the commit"
            assert store.count_events() == 0
        finally:
            blocker.rollback()
            blocker.close()
        wait_until(lambda: store.count_events() == 3, 20, message="events stored after the database is back")
        assert acked_ids(node_a, {e.event_id for e in evs}) == {e.event_id for e in evs}


def _start_subprocess_consumer(config: Path, log_path: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "vaktpost.broker.service", "--config", str(config)],
                                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)


def test_consumer_killed_mid_stream_loses_and_duplicates_nothing(broker: Broker, tmp_path: Path) -> None:
    n = 1000
    config = write_config(broker, tmp_path)
    log_path = tmp_path / "consumer.log"
    store = Store(load_central(config).database)
    store.create_all()
    yard = Topic.events("node-a", "yard")
    proc = _start_subprocess_consumer(config, log_path)
    try:
        node_a = node_client(broker, "node-a")
        # Re-send the (idempotent) warm-up event until the consumer, once subscribed, has stored it:
        # what is published before its session exists is not queued for it.
        warmup = make_event(offset_s=-1)
        wait_until(lambda: node_a.publish_wait(yard, warmup.to_payload()) < 0x80 and store.count_events() == 1,
                   30, interval=0.2, message=f"warm-up event stored; log:\n{log_path}")

        evs = [make_event(offset_s=i, seq=i + 1) for i in range(n)]
        infos = [node_a.paho.publish(yard, ev.to_payload(), qos=1) for ev in evs]
        at_kill = wait_until(lambda: (c := store.count_events()) > 50 and c, 30, interval=0.005,
                             message="stream under way")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert at_kill < n + 1, "the consumer finished before it was killed: the test proved nothing"
        for info in infos:  # the broker has every event (it stays queued for the dead consumer's session)
            info.wait_for_publish(30)
            assert info.rc == 0

        proc = _start_subprocess_consumer(config, log_path)
        wait_until(lambda: store.count_events() >= n + 1, 60, message=f"all events stored; log: {log_path}")
        ids = {r["event_id"] for r in store.query_events(limit=10 * n)}
        assert store.count_events() == n + 1
        assert ids == {e.event_id for e in evs} | {warmup.event_id}
        # Events committed just before the kill were acked after the restart at the latest.
        assert acked_ids(node_a, ids, timeout=30) >= ids
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        store.close()
    assert proc.returncode == 0, log_path.read_text()  # SIGTERM is a clean stop


def test_shared_group_splits_the_load(broker: Broker, tmp_path: Path) -> None:
    # Two consumers with their own accounts in one group, writing one SQLite file.
    broker.add_accounts(consumers=["central-b"])
    cfg_a = write_config(broker, tmp_path, name="a.yaml", shared_group="central")
    cfg_b = write_config(broker, tmp_path, name="b.yaml", username="central-b", shared_group="central")
    with running_consumer(cfg_a) as (ca, store), running_consumer(cfg_b) as (cb, _):
        node_a = node_client(broker, "node-a")
        evs = [make_event(offset_s=i, seq=i) for i in range(60)]
        for ev in evs:
            assert node_a.publish_wait(Topic.events("node-a", "yard"), ev.to_payload()) == 0
        wait_until(lambda: store.count_events() == 60, 30, message="60 events stored")
        assert acked_ids(node_a, {e.event_id for e in evs}) == {e.event_id for e in evs}
        a, b = ca.stats.snapshot(), cb.stats.snapshot()
        assert a["stored"] + b["stored"] == 60 and a["duplicates"] + b["duplicates"] == 0
        assert a["stored"] > 0 and b["stored"] > 0, (a, b)


def test_postgresql_place_log(broker: Broker, tmp_path: Path, pg_url_fresh: str) -> None:
    with running_consumer(write_config(broker, tmp_path, database=pg_url_fresh)) as (consumer, store):
        assert store.dialect == "postgresql"
        node_a = node_client(broker, "node-a")
        evs = [make_event(offset_s=i, seq=i) for i in range(20)]
        for ev in evs:
            assert node_a.publish_wait(Topic.events("node-a", "yard"), ev.to_payload()) == 0
        assert node_a.publish_wait(Topic.events("node-a", "yard"), b"{\x00}") == 0
        wait_until(lambda: store.count_events() == 20 and store.query_dead_letters(), 20,
                   message="events and dead letter in PostgreSQL")
        assert store.summary_by_place() == [
            {"place_id": "ekbacken-schoolyard", "place_name": "Ekbacken schoolyard", "type": "motion", "count": 20}]
        assert store.query_dead_letters()[0]["payload"] == b"{\x00}"
        assert acked_ids(node_a, {e.event_id for e in evs}) == {e.event_id for e in evs}


def test_consumer_logs_an_unreachable_broker_with_backoff(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()  # nothing listens there
    cfg = CentralConfig.model_validate({"database": f"sqlite:///{tmp_path / 'central.db'}",
                                        "mqtt": {"host": "127.0.0.1", "port": port, "password": "x",
                                                 "reconnect_max_seconds": 2}})
    store = Store(cfg.database)
    store.create_all()
    consumer = Consumer(cfg, store)
    caplog.set_level("WARNING", logger="vaktpost.broker.ingest.consumer")
    consumer.start()
    try:
        wait_until(lambda: consumer.stats.snapshot()["connect_failures"] >= 2, 20, message="two failed attempts")
    finally:
        consumer.stop()
        store.close()
    lines = [r.getMessage() for r in caplog.records if "cannot reach broker" in r.getMessage()]
    assert len(lines) >= 2
    assert lines[0].startswith(f"cannot reach broker 127.0.0.1:{port}") and "retrying" in lines[0]
