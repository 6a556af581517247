"""The place log on SQLite and PostgreSQL: idempotent ingest, places by period, dead letters."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from vaktpost.broker.store import Store, default_topic, events, normalise_url
from vaktpost.contract.events import Event, EventV1, uuid7
from vaktpost.contract.topics import Topic

UTC = UTC
CEST = timezone(timedelta(hours=2))
T_MOVE = datetime(2024, 8, 19, 0, 0, tzinfo=CEST)  # node-a/yard moves from school to schoolyard


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        s = Store(f"sqlite:///{tmp_path / 'central.db'}")
        s.create_all()
        yield s
        s.close()
        return
    # A schema of our own inside the session database: other tests' tables stay apart.
    base = request.getfixturevalue("pg_url")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(normalise_url(base), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(normalise_url(base)).update_query_dict({"options": f"-csearch_path={schema}"})
    s = Store(url.render_as_string(hide_password=False))
    s.create_all()
    yield s
    s.close()
    with admin.connect() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def make_event(started: datetime, *, node: str = "node-a", camera: str | None = "yard", seq: int = 1,
               type: str = "motion", event_id: str | None = None, **kw) -> Event:
    return Event(event_id=event_id or uuid7(), seq=seq, node_id=node, camera_id=camera, type=type,
                 started_at=started, confidence=kw.pop("confidence", 0.5),
                 phase=kw.pop("phase", "end" if kw.get("ended_at") else "start"), **kw)


def topic_of(ev: Event) -> str:
    return default_topic(ev)


def add_places(store: Store) -> None:
    rows = [("school", "Ekbacken school", "school"), ("yard", "Ekbacken schoolyard", "schoolyard"),
            ("park", "Lindparken", "park")]
    with store.begin() as tx:
        for pid, name, kind in rows:
            tx.upsert_place({"id": pid, "name": name, "kind": kind, "district": "Norrby", "address": None,
                             "lat": 59.3, "lon": 17.9})
        tx.replace_assignments("node-a", "yard", [
            {"valid_from": datetime(2024, 8, 1, tzinfo=CEST), "valid_to": T_MOVE, "place_id": "school"},
            {"valid_from": T_MOVE, "valid_to": None, "place_id": "yard"},
        ])
        tx.replace_assignments("node-b", "park", [
            {"valid_from": datetime(2024, 8, 1, tzinfo=UTC), "valid_to": None, "place_id": "park"},
        ])


def test_redelivered_event_is_stored_once(store: Store) -> None:
    ev = make_event(datetime(2024, 9, 1, 12, tzinfo=UTC))
    assert store.insert_event(ev, topic=topic_of(ev)) is True
    assert store.insert_event(ev, topic=topic_of(ev)) is False
    other = make_event(datetime(2024, 9, 1, 13, tzinfo=UTC), seq=2)
    # A batch repeating both events, one of them twice, adds only the new one.
    assert store.insert_many([(ev, topic_of(ev)), other, (other, topic_of(other))]) == 1
    assert store.count_events() == 2
    assert sorted(r["event_id"] for r in store.query_events()) == sorted([ev.event_id, other.event_id])
    with store.engine.connect() as conn:  # a bare event is filed under its node's topic
        assert conn.execute(select(events.c.topic).where(events.c.event_id == other.event_id)).scalar_one() == (
            Topic.events("node-a", "yard"))


def test_every_accepted_version_is_stored_alike(store: Store) -> None:
    v2 = make_event(datetime(2024, 9, 2, tzinfo=UTC), type="tamper", subtype="covered")
    v1 = EventV1(**make_event(datetime(2024, 9, 2, tzinfo=UTC)).model_dump(exclude={"schema_", "phase"}))
    assert store.insert_many([v1, v2]) == 2
    rows = {r["event_id"]: r for r in store.query_events()}
    assert (rows[v2.event_id]["type"], rows[v2.event_id]["subtype"]) == ("tamper", "covered")
    assert rows[v1.event_id]["type"] == "motion"


def test_more_final_copy_wins_and_ended_event_is_frozen(store: Store) -> None:
    # As a node sends it: every copy of one event has the same seq.
    t0 = datetime(2024, 9, 1, 12, tzinfo=UTC)
    eid = uuid7()
    start = make_event(t0, event_id=eid, seq=10, confidence=0.4, region=[0.1, 0.1, 0.2, 0.2])
    update = make_event(t0, event_id=eid, seq=10, confidence=0.7, region=[0.1, 0.1, 0.5, 0.5])
    ended = make_event(t0, event_id=eid, seq=10, confidence=0.8, ended_at=t0 + timedelta(seconds=40))

    assert store.insert_event(start, topic="t")
    assert store.insert_event(update, topic="t"), "a newer running state replaces the stored one"
    assert not store.insert_event(update, topic="t"), "an identical copy is a redelivery"
    (row,) = store.query_events()
    assert (row["seq"], row["confidence"], row["region"], row["ended_at"]) == (10, 0.7, [0.1, 0.1, 0.5, 0.5], None)

    assert store.insert_event(ended, topic="t")
    for stale in (start, update, ended, make_event(t0, event_id=eid, seq=11, confidence=0.1)):
        assert not store.insert_event(stale, topic="t"), "an ended event is final"
    (row,) = store.query_events()
    assert row["ended_at"] == t0 + timedelta(seconds=40)
    assert (row["seq"], row["confidence"], row["region"]) == (10, 0.8, None)
    assert store.count_events() == 1


def test_lower_seq_never_overwrites_higher(store: Store) -> None:
    t0 = datetime(2024, 9, 1, 12, tzinfo=UTC)
    eid = uuid7()
    assert store.insert_event(make_event(t0, event_id=eid, seq=5, confidence=0.9), topic="t")
    assert not store.insert_event(make_event(t0, event_id=eid, seq=4, confidence=0.2), topic="t")
    assert store.insert_event(make_event(t0, event_id=eid, seq=6, confidence=0.3), topic="t")
    assert store.query_events()[0]["confidence"] == 0.3


def test_a_batch_ends_where_one_copy_at_a_time_would(store: Store) -> None:
    """insert_events takes the copies of one event in a batch as if stored one after another
    (the multi-row upsert may touch a row once): random mixes of redeliveries, lower and
    higher seqs, newer running states and ends, some on top of a stored row."""
    rng = random.Random(10)
    t0 = datetime(2024, 9, 1, 12, tzinfo=UTC)
    for case in range(60):
        copies = []
        for _ in range(rng.randint(1, 6)):
            seq, conf = rng.choice([4, 5, 6]), rng.choice([0.3, 0.6, 0.9])
            ended = rng.random() < 0.25
            copies.append(dict(seq=seq, confidence=conf, ended_at=t0 + timedelta(seconds=seq) if ended else None,
                               phase="end" if ended else "start"))
        before = rng.randint(0, 1)  # copies stored before the batch, one by one
        one_by_one, batched = uuid7(), uuid7()
        for eid in (one_by_one, batched):
            for c in copies[:before]:
                store.insert_event(make_event(t0, event_id=eid, **c), topic="t")
        for c in copies[before:]:
            store.insert_event(make_event(t0, event_id=one_by_one, **c), topic="t")
        store.insert_many([(make_event(t0, event_id=batched, **c), "t") for c in copies[before:]])
        rows = {r["event_id"]: r for r in store.query_events(limit=1000)}
        fields = ("seq", "confidence", "ended_at")
        assert [rows[one_by_one][f] for f in fields] == [rows[batched][f] for f in fields], (case, copies, before)


def test_place_follows_the_camera_assignment_period(store: Store) -> None:
    add_places(store)
    cases = {
        "before-registry": (make_event(datetime(2024, 7, 31, 21, 59, tzinfo=UTC)), None),
        "at-school": (make_event(T_MOVE - timedelta(seconds=1)), "school"),
        "moved-boundary": (make_event(T_MOVE), "yard"),  # valid_from is inclusive, valid_to exclusive
        "at-yard-later": (make_event(T_MOVE + timedelta(days=30)), "yard"),
        "park": (make_event(datetime(2024, 9, 2, tzinfo=UTC), node="node-b", camera="park"), "park"),
        "unknown-camera": (make_event(datetime(2024, 9, 2, tzinfo=UTC), camera="roof"), None),
        "node-level": (make_event(datetime(2024, 9, 2, tzinfo=UTC), camera=None, type="health",
                                 subtype="camera_lost"), None),
    }
    assert store.insert_many([(ev, topic_of(ev)) for ev, _ in cases.values()]) == len(cases)
    got = {r["event_id"]: r for r in store.query_events(limit=100)}
    for name, (ev, place) in cases.items():
        assert got[ev.event_id]["place_id"] == place, name
    assert got[cases["at-school"][0].event_id]["place_name"] == "Ekbacken school"
    assert got[cases["moved-boundary"][0].event_id]["place_name"] == "Ekbacken schoolyard"
    # Times come back as aware UTC whatever zone they were given in.
    started = got[cases["moved-boundary"][0].event_id]["started_at"]
    assert started == T_MOVE and started.utcoffset() == timedelta(0)


def test_registry_change_reassigns_stored_events(store: Store) -> None:
    ev = make_event(datetime(2024, 9, 2, tzinfo=UTC), node="node-b", camera="park")
    store.insert_event(ev, topic=topic_of(ev))
    assert store.query_events()[0]["place_id"] is None  # camera not registered yet
    add_places(store)
    with store.begin() as tx:
        assert tx.reassign_places() == 1
    with store.begin() as tx:
        assert tx.reassign_places() == 0  # nothing differs any more
    assert store.query_events()[0]["place_id"] == "park"


def test_query_filters(store: Store) -> None:
    add_places(store)
    t = T_MOVE + timedelta(days=1)
    evs = [make_event(t, seq=1), make_event(t + timedelta(hours=1), seq=2, type="intrusion"),
           make_event(t + timedelta(hours=2), node="node-b", camera="park", seq=1)]
    store.insert_many([(e, topic_of(e)) for e in evs])
    assert [r["event_id"] for r in store.query_events(place="yard")] == [evs[1].event_id, evs[0].event_id]
    assert [r["event_id"] for r in store.query_events(type="intrusion")] == [evs[1].event_id]
    assert [r["event_id"] for r in store.query_events(since=t + timedelta(hours=1))] == [
        evs[2].event_id, evs[1].event_id]
    assert [r["event_id"] for r in store.query_events(until=t + timedelta(hours=1))] == [evs[0].event_id]
    assert [r["event_id"] for r in store.query_events(node="node-b")] == [evs[2].event_id]
    assert len(store.query_events(limit=2)) == 2


def test_dead_letter_keeps_raw_bytes_and_error(store: Store) -> None:
    raw = b"\x00\xff{not json"
    before = datetime.now(UTC)
    dl_id = store.dead_letter(Topic.events("node-a", "yard"), raw, "invalid JSON\x00 at 0")
    (row,) = store.query_dead_letters()
    assert row["id"] == dl_id
    assert row["payload"] == raw
    assert row["topic"] == Topic.events("node-a", "yard")
    assert "invalid JSON" in row["error"]
    assert before <= row["received_at"] <= datetime.now(UTC)
    assert store.count_events() == 0


def test_summary_by_place(store: Store) -> None:
    add_places(store)
    t = T_MOVE + timedelta(days=1)
    evs = [make_event(t), make_event(t, type="intrusion"), make_event(t + timedelta(days=1)),
           make_event(T_MOVE - timedelta(days=1)),
           make_event(t, node="node-b", camera="park"),
           make_event(t, camera="roof")]  # unassigned
    store.insert_many([(e, topic_of(e)) for e in evs])
    rows = {(r["place_id"], r["type"]): (r["place_name"], r["count"]) for r in store.summary_by_place()}
    assert rows == {
        ("school", "motion"): ("Ekbacken school", 1),
        ("yard", "motion"): ("Ekbacken schoolyard", 2),
        ("yard", "intrusion"): ("Ekbacken schoolyard", 1),
        ("park", "motion"): ("Lindparken", 1),
    } | {(None, "motion"): (None, 1)}
    since = {(r["place_id"], r["type"]): r["count"] for r in store.summary_by_place(since=t + timedelta(hours=1))}
    assert since == {("yard", "motion"): 1}


def test_url_normalisation_and_unsupported_backend() -> None:
    assert normalise_url("postgresql://u@h/db").startswith("postgresql+psycopg://")
    assert normalise_url("postgres://u@h/db").startswith("postgresql+psycopg://")
    assert normalise_url("sqlite:///x.db") == "sqlite:///x.db"
    with pytest.raises(ValueError, match="not supported"):
        Store("mysql://u@h/db")
