"""Retention: the central purge (SQLite and PostgreSQL, by hand, by the consumer and by
`run_purge`) and the node outbox's expiry."""

from __future__ import annotations

import logging
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from mqtt_harness import Broker, wait_until
from test_consumer import acked_ids, node_client, running_consumer, write_config

from vaktpost.broker import store as store_module
from vaktpost.broker.service import run_purge
from vaktpost.broker.store import PurgeResult, Store
from vaktpost.contract.events import Event, uuid7
from vaktpost.contract.topics import Topic, snapshot_row_id
from vaktpost.edge.delivery.outbox import Outbox

UTC = UTC
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
JPEG = b"\xff\xd8 stored as is by the store \xff\xd9"  # the store does not check images; the consumer does


def event(started: datetime, node: str = "node-a") -> Event:
    return Event(event_id=uuid7(int(started.timestamp() * 1000)), seq=1, node_id=node, camera_id="yard",
                 type="motion", started_at=started, confidence=0.7, phase="start")


def dead_letter(store: Store, received: datetime, note: str) -> None:
    with store.begin() as tx:
        tx.dead_letter(Topic.events("node-a", "yard"), note.encode(), note, received_at=received)


# --- Store.purge ----------------------------------------------------------------------


def test_purge_deletes_by_age_and_logs(place_store: Store, caplog: pytest.LogCaptureFixture) -> None:
    store = place_store
    ancient = event(NOW - 400 * DAY)  # beyond retention.events: goes, with its snapshot
    old = event(NOW - 40 * DAY)  # event stays; its snapshot (received then) goes
    recent = event(NOW - 2 * DAY)  # both stay
    store.insert_many([ancient, old, recent])
    store.insert_snapshot(ancient.event_id, "node-a", JPEG, received_at=NOW - 10 * DAY)
    store.insert_snapshot(old.event_id, "node-a", JPEG, received_at=NOW - 40 * DAY)
    store.insert_snapshot(recent.event_id, "node-a", JPEG, received_at=NOW - 2 * DAY)
    orphan = uuid7()  # a snapshot whose event never came: goes by its own age
    store.insert_snapshot(orphan, "node-a", JPEG, received_at=NOW - 31 * DAY)
    dead_letter(store, NOW - 366 * DAY, "gone")
    dead_letter(store, NOW - 364 * DAY, "kept")

    caplog.set_level(logging.INFO, logger="vaktpost.broker.store")
    result = store.purge(NOW, keep_snapshots=30 * DAY, keep_events=365 * DAY)

    assert result == PurgeResult(snapshots=3, events=1, dead_letters=1)
    assert {r["event_id"] for r in store.query_events()} == {old.event_id, recent.event_id}
    assert [store.get_snapshot(e) is not None for e in (ancient.event_id, old.event_id, recent.event_id, orphan)] \
        == [False, False, True, False]
    assert {r["event_id"]: r["has_snapshot"] for r in store.query_events()} == {old.event_id: False,
                                                                               recent.event_id: True}
    assert [r["error"] for r in store.query_dead_letters()] == ["kept"]

    (entry,) = store.query_purge_log()
    assert (entry["ran_at"], entry["snapshots_deleted"], entry["events_deleted"], entry["dead_letters_deleted"]) \
        == (NOW, 3, 1, 1)
    assert (entry["snapshots_before"], entry["events_before"]) == (NOW - 30 * DAY, NOW - 365 * DAY)
    assert any("retention purge: deleted 3 snapshots" in r.getMessage() and "1 events" in r.getMessage()
               for r in caplog.records)

    # Nothing left to delete: the run is still recorded.
    assert store.purge(NOW, 30 * DAY, 365 * DAY) == PurgeResult(0, 0, 0)
    assert [r["events_deleted"] for r in store.query_purge_log()] == [0, 1]


def test_purge_works_in_chunks_and_stops_when_cancelled(place_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "PURGE_CHUNK", 3)  # many chunks from few rows
    evs = [event(NOW - (400 + i) * DAY) for i in range(10)]
    place_store.insert_many(evs)
    for e in evs:
        place_store.insert_snapshot(e.event_id, "node-a", JPEG, received_at=NOW - DAY)
    for i in range(7):
        dead_letter(place_store, NOW - (400 + i) * DAY, f"d{i}")

    # Cancelled before the first chunk: nothing deleted, the (empty) run is recorded.
    assert place_store.purge(NOW, 30 * DAY, 365 * DAY, cancel=lambda: True) == PurgeResult(0, 0, 0)
    assert place_store.count_events() == 10
    assert place_store.purge(NOW, 30 * DAY, 365 * DAY) == PurgeResult(snapshots=10, events=10, dead_letters=7)
    assert place_store.count_events() == 0 and place_store.count_snapshots() == 0
    assert place_store.query_dead_letters() == []
    assert len(place_store.query_purge_log()) == 2


def test_run_purge_uses_the_config(tmp_path: Path) -> None:
    db = tmp_path / "central.db"
    (tmp_path / "central.yaml").write_text(yaml.safe_dump({
        "database": "sqlite:///central.db",  # relative to the config file
        "retention": {"snapshots": "7d", "events": "90d"},
    }))
    store = Store(f"sqlite:///{db}")
    store.create_all()
    keep, drop = event(NOW - 89 * DAY), event(NOW - 91 * DAY)
    store.insert_many([keep, drop])
    store.insert_snapshot(keep.event_id, "node-a", JPEG, received_at=NOW - 8 * DAY)
    store.close()

    assert run_purge(tmp_path / "central.yaml", now=NOW) == PurgeResult(snapshots=1, events=1, dead_letters=0)
    store = Store(f"sqlite:///{db}")
    try:
        assert [r["event_id"] for r in store.query_events()] == [keep.event_id]
        (entry,) = store.query_purge_log()
        assert entry["events_before"] == NOW - 90 * DAY and entry["snapshots_before"] == NOW - 7 * DAY
    finally:
        store.close()


def test_consumer_purges_at_start_and_periodically(broker: Broker, tmp_path: Path) -> None:
    config = write_config(broker, tmp_path)
    doc = yaml.safe_load(config.read_text())
    doc["retention"] = {"events": "30d", "purge_interval": "3.6s"}
    config.write_text(yaml.safe_dump(doc))
    now = datetime.now(UTC)
    store = Store(doc["database"])
    store.create_all()
    stale = event(now - 31 * DAY)
    store.insert_many([stale])
    store.close()

    with running_consumer(config) as (consumer, store):
        wait_until(lambda: store.query_purge_log(), 20, message="purge at start")
        assert store.count_events() == 0
        # Ingest goes on beside the purge thread, and the next purge comes by itself.
        node = node_client(broker, "node-a")
        fresh = event(now - DAY)
        assert node.publish_wait(Topic.events("node-a", "yard"), fresh.to_payload()) == 0
        assert fresh.event_id in acked_ids(node, {fresh.event_id})
        # The counter moves when a whole purge is over (the incidents' part comes after its log row).
        wait_until(lambda: consumer.stats.snapshot()["purges"] >= 2, 20, message="second, periodic purge")
        assert len(store.query_purge_log()) >= 2
        assert [r["event_id"] for r in store.query_events()] == [fresh.event_id]
        assert store.query_purge_log()[-1]["events_deleted"] == 1  # the first run took the stale event


# --- Outbox.expire (node) ------------------------------------------------------------------


def age_rows(path: Path, seconds: float, *row_ids: str) -> None:
    """Make rows look `seconds` old, as if they had waited that long for an ack."""
    db = sqlite3.connect(path)
    with db:
        db.executemany("UPDATE outbox SET created_at = ? WHERE event_id = ?",
                       [(time.time() - seconds, r) for r in row_ids])
    db.close()


def test_outbox_expire_deletes_old_unacknowledged_rows(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "outbox.db"
    ob = Outbox(path, 100)
    eid = uuid7()
    snap = snapshot_row_id(eid)
    ob.put(eid, Topic.events("node-a", "yard"), b"event")
    ob.put(snap, Topic.snapshots("node-a", eid), b"\xff\xd8jpeg\xff\xd9")
    ob.put("sent-old", "t", b"x")
    ob.mark_sent("sent-old")
    ob.put("failed-old", "t", b"x")
    ob.mark_failed("failed-old", "refused")
    ob.put("young", "t", b"x")
    age_rows(path, 3 * 86400, eid, snap, "sent-old", "failed-old")
    age_rows(path, 3600, "young")

    caplog.set_level(logging.WARNING, logger="vaktpost.edge.delivery.outbox")
    assert ob.expire(2 * 86400) == 3  # event, its snapshot, the sent one; the failed one goes uncounted
    assert [r.event_id for r in ob.rows()] == ["young"]
    assert ob.counters() == {"depth": 1, "dropped": 0, "failed": 1, "expired": 3}
    assert any("3 unacknowledged row(s)" in r.getMessage() and "1 failed row(s)" in r.getMessage()
               for r in caplog.records)
    assert ob.ack([eid, snap]) == 0  # a late ack for an expired row finds nothing
    assert ob.expire(2 * 86400) == 0
    ob.close()

    ob = Outbox(path, 100)  # the counter is persisted
    assert ob.counters()["expired"] == 3
    with pytest.raises(ValueError):
        ob.expire(0)
    ob.close()


def test_outbox_expire_keeps_an_event_that_is_still_updated_only_until_max_age(tmp_path: Path) -> None:
    # Age counts from the first put: a later state does not make the row young again.
    path = tmp_path / "outbox.db"
    ob = Outbox(path, 100)
    ob.put("e", "t", b"start")
    age_rows(path, 7200, "e")
    ob.put("e", "t", b"update")
    assert ob.expire(3600) == 1 and ob.depth() == 0
    ob.close()
