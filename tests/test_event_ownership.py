"""No node can rewrite, pre-empt or squat another node's events and snapshots
(issue 8, defect 2): the place log keys both by (event_id, node_id), so a node's
message only ever reaches that node's own rows, whichever node comes first. SQLite
and PostgreSQL (`place_store`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Column, MetaData, Table, inspect

from vaktpost.broker.config import CentralConfig
from vaktpost.broker.ingest.consumer import Consumer, Inbound
from vaktpost.broker.store import Store, events, snapshots
from vaktpost.contract.events import Event, uuid7
from vaktpost.contract.topics import Topic

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def ev(node: str, event_id: str, *, seq: int = 1, ended: bool = False, confidence: float = 0.5,
       camera: str = "yard") -> Event:
    return Event(event_id=event_id, seq=seq, node_id=node, camera_id=camera, type="intrusion", started_at=T0,
                 ended_at=T0 + timedelta(seconds=30) if ended else None, confidence=confidence,
                 phase="end" if ended else "start", snapshot="attached")


def put(store: Store, e: Event) -> bool:
    with store.begin() as tx:
        return tx.insert_event(e, topic=Topic.events(e.node_id, e.camera_id or "yard"))


def rows(store: Store, node: str) -> dict[str, dict[str, object]]:
    return {r["event_id"]: r for r in store.query_events(node=node)}


def test_another_node_cannot_rewrite_an_event(place_store: Store) -> None:
    x = uuid7()
    assert put(place_store, ev("node-a", x, confidence=0.4))
    before = rows(place_store, "node-a")[x]
    # node-b, on its own topic and in its own name, sends node-a's id as a "more final" copy.
    put(place_store, ev("node-b", x, seq=99, ended=True, confidence=1.0, camera="gate"))
    assert rows(place_store, "node-a")[x] == before
    # node-a's own more final copy still wins (today's rule).
    assert put(place_store, ev("node-a", x, ended=True, confidence=0.9))
    mine = rows(place_store, "node-a")[x]
    assert (mine["confidence"], mine["ended_at"]) == (0.9, T0 + timedelta(seconds=30))


def test_a_squatter_cannot_pre_empt_an_event(place_store: Store) -> None:
    x = uuid7()
    put(place_store, ev("node-b", x, ended=True, camera="gate"))  # node-b claims the id first
    assert put(place_store, ev("node-a", x)) is True  # node-a's real event is stored all the same
    mine = rows(place_store, "node-a")[x]
    assert (mine["node_id"], mine["camera_id"], mine["ended_at"]) == ("node-a", "yard", None)
    assert put(place_store, ev("node-a", x)) is False  # and its redelivery is one


def test_snapshots_belong_to_their_node(place_store: Store) -> None:
    x, y = uuid7(), uuid7()
    put(place_store, ev("node-a", x))
    assert place_store.insert_snapshot(x, "node-a", b"a-real")
    place_store.insert_snapshot(x, "node-b", b"b-fake")  # after the owner: changes nothing of node-a's
    assert place_store.get_snapshot(x) == b"a-real"
    assert place_store.get_snapshot(x, node_id="node-a") == b"a-real"

    assert place_store.insert_snapshot(y, "node-b", b"b-squat")  # before the owner
    put(place_store, ev("node-a", y))
    assert place_store.insert_snapshot(y, "node-a", b"a-real") is True
    assert place_store.get_snapshot(y) == b"a-real"  # the snapshot of the event's own node
    assert rows(place_store, "node-a")[y]["has_snapshot"] is True


def test_purge_keeps_other_nodes_rows_apart(place_store: Store) -> None:
    x = uuid7()
    put(place_store, ev("node-a", x))
    place_store.insert_snapshot(x, "node-a", b"a")
    place_store.insert_snapshot(x, "node-b", b"b")
    r = place_store.purge(datetime.now(UTC), timedelta(days=30), timedelta(minutes=1))
    assert (r.events, r.snapshots) == (1, 1)
    assert place_store.get_snapshot(x, node_id="node-b") == b"b"


def test_an_older_place_log_is_rekeyed(place_store: Store) -> None:
    store = place_store
    old = MetaData()
    for t in (events, snapshots):  # both tables as released, keyed by event_id alone
        Table(t.name, old, *[Column(c.name, c.type, primary_key=c.name == "event_id", nullable=c.nullable,
                                    server_default=c.server_default) for c in t.columns])
    with store.engine.begin() as conn:
        snapshots.drop(conn)
        events.drop(conn)
    old.create_all(store.engine)
    x = uuid7()
    now = datetime.now(UTC)
    with store.engine.begin() as conn:
        conn.execute(old.tables["events"].insert().values(
            event_id=x, seq=1, node_id="node-a", camera_id="yard", type="motion", started_at=T0, confidence=0.5,
            topic="t", received_at=now, updated_at=now, payload={}, snapshot="attached"))
        conn.execute(old.tables["snapshots"].insert().values(
            event_id=x, node_id="node-a", received_at=now, content_type="image/jpeg", bytes=b"a", size=1))
    store.create_all()
    store.create_all()  # idempotent
    for t in ("events", "snapshots"):
        assert inspect(store.engine).get_pk_constraint(t)["constrained_columns"] == ["event_id", "node_id"]
    assert rows(store, "node-a")[x]["has_snapshot"] is True
    put(store, ev("node-b", x, camera="gate"))
    store.insert_snapshot(x, "node-b", b"b")
    assert store.get_snapshot(x) == b"a" and store.count_events() == 2


def test_the_consumer_stores_both_claims_apart_and_reports_the_clash(tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    cfg = CentralConfig.model_validate({"database": f"sqlite:///{tmp_path / 'central.db'}"})
    store = Store(cfg.database)
    store.create_all()
    consumer = Consumer(cfg, store)
    x = uuid7()
    a, b = ev("node-a", x), ev("node-b", x, seq=7, ended=True, camera="gate")
    try:
        batch = [Inbound(0, 1, 1, Topic.events("node-a", "yard"), a.to_payload()),
                 Inbound(0, 2, 1, Topic.events("node-b", "gate"), b.to_payload())]
        assert consumer.handle_batch(batch) is True
        assert rows(store, "node-a")[x]["ended_at"] is None and rows(store, "node-b")[x]["seq"] == 7
        assert consumer.stats.snapshot()["id_clashes"] == 1
        assert f"node-b sent event {x}, an event id node-a also sent" in caplog.text
    finally:
        store.close()
