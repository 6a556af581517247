"""Incidents (vaktpost.broker.incidents): grouping as the consumer stores events, node
offline from status / Last Will and missed heartbeats, the state machine and the audit
log. On SQLite and PostgreSQL (`place_store`); the Last Will through a real Mosquitto
and the real consumer. Time is driven explicitly (`now=`), never slept."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from mqtt_harness import Broker, running_central, wait_until
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy import or_, select, text, update
from sqlalchemy.engine import Connection

from vaktpost.broker.config import CentralConfig, IncidentsSection, parse_central
from vaktpost.broker.incidents import grouping, retention, service
from vaktpost.broker.incidents.grouping import Grouper, group_key
from vaktpost.broker.incidents.kinds import OPEN_STATES, PEOPLE_TYPES, Action, IncidentType, Outcome, Priority, State
from vaktpost.broker.incidents.tables import audit_log, incident_events, incidents
from vaktpost.broker.places import parse_places, write_registry
from vaktpost.broker.store import Store, default_topic, events
from vaktpost.contract.config import ConfigError
from vaktpost.contract.events import Event, uuid7
from vaktpost.contract.messages import Heartbeat, Status
from vaktpost.contract.topics import Topic

T0 = datetime(2026, 3, 2, 21, 14, tzinfo=UTC)
PLACES = {
    "places": [
        {"id": "ekbacken", "name": "Ekbacken schoolyard", "kind": "schoolyard", "district": "Norrby",
         "address": "Ekbackevägen 12"},
        {"id": "ekbacken-school", "name": "Ekbacken school", "kind": "school", "district": "Norrby"},
        {"id": "lindparken", "name": "Lindparken", "kind": "park", "district": "Söderby"},
    ],
    "cameras": [
        {"node": "node-a", "camera": "yard", "place": "ekbacken", "from": "2026-01-01"},
        {"node": "node-a", "camera": "door", "place": "ekbacken-school", "from": "2026-01-01"},
        {"node": "node-b", "camera": "park", "place": "lindparken", "from": "2026-01-01"},
    ],
}

Message = Event | Status | Heartbeat


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def event(start: float, *, type: str = "intrusion", node: str = "node-a", camera: str = "yard",
          zone: str | None = "yard", end: float | None = None, **kw: object) -> Event:
    return Event(event_id=uuid7(int(at(start).timestamp() * 1000)), seq=kw.pop("seq", 1), node_id=node,
                 camera_id=camera, type=type, zone=zone, started_at=at(start),
                 ended_at=None if end is None else at(end), confidence=kw.pop("confidence", 0.8),
                 phase=kw.pop("phase", "end" if end is not None else "start"), **kw)


def copy(ev: Event, **changes: object) -> Event:
    """Another copy of `ev` (validated, as the node builds it)."""
    return Event.model_validate({**ev.model_dump(by_alias=True), **changes})


def phases(ev: Event, end: float) -> list[Event]:
    """The copies a node sends of one event: start, an update, the end."""
    return [ev, copy(ev, phase="update", confidence=0.9), copy(ev, phase="end", ended_at=at(end), confidence=0.9)]


def ingest(store: Store, grouper: Grouper, batch: Iterable[Message], now: datetime) -> None:
    """What the consumer does with one batch: store each message, then group, one transaction."""
    items = list(batch)
    with store.begin() as tx:
        for m in items:
            if isinstance(m, Event):
                tx.insert_event(m, topic=default_topic(m), received_at=now)
            elif isinstance(m, Status):
                tx.record_status(m)
            else:
                tx.record_heartbeat(m)
        grouper.record(tx.conn, items, now=now)


@pytest.fixture
def store(place_store: Store) -> Store:
    write_registry(place_store, parse_places(PLACES))
    return place_store


@pytest.fixture
def grouper() -> Grouper:
    return Grouper(IncidentsSection(), started_at=T0 - timedelta(hours=1))


def incidents_of(store: Store, **filters: object) -> list[service.Incident]:
    return service.list_incidents(store, **filters)  # type: ignore[arg-type]


# --- grouping ------------------------------------------------------------------------


def reference_group_events(conn: Connection, keys: Iterable[tuple[str, str]], cfg: IncidentsSection,
                           now: datetime) -> set[int]:
    """group_events as it was before it went set-based: each event looks for its incident
    in the database, and its incident is refreshed from the links before the next looks."""
    wanted = set(keys)
    ids = sorted({event_id for event_id, _ in wanted})
    e, ie, i = events.c, incident_events.c, incidents.c
    rows = [r for r in conn.execute(
        select(e.event_id, e.node_id, e.camera_id, e.place_id, e.type, e.zone, e.started_at, e.ended_at)
        .where(e.event_id.in_(ids)).order_by(e.started_at, e.event_id, e.node_id)).mappings()
        if (r["event_id"], r["node_id"]) in wanted]
    linked = {(r.event_id, r.node_id): r for r in conn.execute(
        select(ie.event_id, ie.node_id, ie.incident_id, ie.ended_at).where(ie.event_id.in_(ids)))}
    touched: set[int] = set()
    for r in rows:
        link = linked.get((r["event_id"], r["node_id"]))
        if link is not None:
            if link.ended_at is None and r["ended_at"] is not None:
                conn.execute(update(incident_events).where(ie.event_id == r["event_id"], ie.node_id == r["node_id"])
                             .values(ended_at=r["ended_at"]))
                grouping._refresh(conn, [link.incident_id], now)
                touched.add(link.incident_id)
            continue
        type_ = IncidentType(r["type"])
        key = group_key(r["type"], r["node_id"], r["camera_id"], r["zone"], r["place_id"])
        gap = timedelta(0) if type_ is IncidentType.tamper else timedelta(seconds=cfg.gap)
        inc_id = conn.execute(
            select(i.id).where(i.group_key == key, i.state.in_([s.value for s in OPEN_STATES]),
                               i.opened_at <= r["started_at"] + gap,
                               or_(i.ongoing > 0, i.last_event_at >= r["started_at"] - gap))
            .order_by(i.last_event_at.desc(), i.id.desc()).limit(1)).scalar()
        if inc_id is None:
            inc_id = grouping._open(conn, cfg, now, type_=type_, key=key, node_id=r["node_id"],
                                    camera_id=r["camera_id"], zone=r["zone"] if type_ in PEOPLE_TYPES else None,
                                    at=r["started_at"], places=[r["place_id"]] if r["place_id"] else [],
                                    event_id=r["event_id"])
        conn.execute(incident_events.insert().values(event_id=r["event_id"], node_id=r["node_id"],
                                                     incident_id=inc_id, started_at=r["started_at"],
                                                     ended_at=r["ended_at"]))
        grouping._refresh(conn, [inc_id], now)
        touched.add(inc_id)
    return touched


def test_a_batch_groups_as_event_by_event(store: Store, grouper: Grouper, monkeypatch: pytest.MonkeyPatch) -> None:
    """group_events files a batch set-based, in memory; the incidents come out exactly as
    from the event-by-event grouping it replaced, on the same batches: random events of
    several groups (tamper's zero gap too), pauses longer than the gap, copies out of order
    and split across batches, events that never end, incidents resolved in between."""
    rng = random.Random(7)
    kinds = [("intrusion", "yard", "yard"), ("intrusion", "yard", "gate"), ("motion", "door", None),
             ("tamper", "yard", None)]
    messages: list[Message] = []
    t = 0.0
    for i in range(150):
        t += rng.choice([1, 3, 20, 200, 900])
        type_, camera, zone = rng.choice(kinds)
        ev = event(t, type=type_, camera=camera, zone=zone, seq=i,
                   subtype="covered" if type_ == "tamper" else None)
        messages += [ev] if rng.random() < 0.01 else phases(ev, t + rng.choice([2, 30, 700]))
    for _ in range(60):
        i, j = rng.randrange(len(messages)), rng.randrange(len(messages))
        messages[i], messages[j] = messages[j], messages[i]
    batches = []
    while messages:
        n = rng.choice([1, 2, 5, 40])
        batches.append(messages[:n])
        messages = messages[n:]

    def run() -> list[tuple[object, ...]]:
        for k, batch in enumerate(batches):
            ingest(store, grouper, batch, now=at(9000 + k))
            if k % 7 == 6:  # staff resolve the oldest open incident
                with store.engine.begin() as conn:
                    conn.execute(text("UPDATE incidents SET state = 'resolved' WHERE id = (SELECT id FROM incidents "
                                      "WHERE state != 'resolved' ORDER BY opened_at, group_key LIMIT 1)"))
        with store.engine.begin() as conn:
            incs = {r.id: r for r in conn.execute(text("SELECT * FROM incidents"))}
            links = conn.execute(text("SELECT event_id, incident_id, ended_at FROM incident_events")).all()
            for table in ("audit_log", "incident_events", "incident_places", "incidents", "events"):
                conn.execute(text(f"DELETE FROM {table}"))

        def shape(i: int) -> tuple[object, ...]:
            r = incs[i]
            return (r.group_key, r.state, str(r.opened_at), str(r.last_event_at), str(r.ended_at), r.event_count,
                    r.ongoing, str(r.updated_at))
        return sorted((eid, str(ended), shape(inc)) for eid, inc, ended in links)

    with monkeypatch.context() as m:
        m.setattr(grouping, "group_events", reference_group_events)
        expected = run()
    assert len({inc for _, _, inc in expected}) > 10  # many incidents, not a few
    assert run() == expected


def yard_crossing() -> list[list[Message]]:
    """A person crossing the yard at night, as a node reports it: the tracker loses and
    finds them again, so 9 intrusion events of different tracks, each sent as start,
    update and end, a few seconds apart; delivered in batches, one out of order."""
    tracks = [(0, 6), (4, 11), (9, 15), (14, 19), (17, 26), (24, 31), (29, 37), (35, 41), (40, 48)]
    copies = [phases(event(s, seq=i), e) for i, (s, e) in enumerate(tracks)]
    starts = [c[0] for c in copies]
    rest = [x for c in copies for x in c[1:]]
    return [starts[3:6] + starts[:3], rest[:8], starts[6:] + rest[8:14], rest[14:]]


def test_yard_crossing_is_one_incident(store: Store, grouper: Grouper) -> None:
    for n, batch in enumerate(yard_crossing()):
        ingest(store, grouper, batch, now=at(50 + n))
    (inc,) = incidents_of(store)
    assert (inc.type, inc.priority, inc.state, inc.event_count) == (IncidentType.intrusion, Priority.high,
                                                                    State.new, 9)
    assert (inc.opened_at, inc.last_event_at, inc.ended_at) == (at(0), at(48), at(48))
    assert [p.id for p in inc.places] == ["ekbacken"] and inc.places[0].district == "Norrby"
    assert (inc.node_id, inc.camera_id, inc.zone) == ("node-a", "yard", "yard")
    detail = service.get_incident(store, inc.id)
    assert len(detail.events) == 9 and all(e.ended_at for e in detail.events)
    assert [a.action for a in detail.audit] == [Action.opened]


def test_redelivery_and_later_phases_never_count_twice(store: Store, grouper: Grouper) -> None:
    batches = yard_crossing()
    for n, batch in enumerate(batches):
        ingest(store, grouper, batch, now=at(50 + n))
    # The consumer crashed before its PUBACKs: the broker delivers everything again,
    # in one batch and in another order, then an old start copy once more.
    everything = [m for b in batches for m in b]
    ingest(store, grouper, reversed(everything), now=at(70))
    ingest(store, grouper, [batches[0][0]], now=at(71))
    (inc,) = incidents_of(store)
    assert (inc.event_count, inc.ended_at) == (9, at(48))
    assert [a.action for a in service.audit_trail(store, inc.id)] == [Action.opened]
    with store.engine.connect() as conn:
        assert conn.execute(incident_events.select()).all().__len__() == 9


def test_a_running_event_keeps_its_incident_open_and_its_end_closes_it(store: Store, grouper: Grouper) -> None:
    long = event(0, type="loitering")
    ingest(store, grouper, [long], now=at(1))
    (inc,) = incidents_of(store)
    assert (inc.ended_at, inc.event_count) == (None, 1)
    # 25 min later, still in the same zone: the incident is still running, so it joins.
    ingest(store, grouper, [event(1500, type="loitering")], now=at(1501))
    ingest(store, grouper, [copy(long, phase="end", ended_at=at(1600))], now=at(1601))
    (inc,) = incidents_of(store)
    assert inc.event_count == 2 and inc.ended_at is None  # the second one still runs


def test_out_of_order_within_a_batch_groups_as_in_order(store: Store, grouper: Grouper) -> None:
    # 0 and 720 s are 12 min apart (more than the 10 min gap); 360 s bridges them.
    a, bridge, b = event(0, end=5), event(360, end=365), event(720, end=725)
    ingest(store, grouper, [b, a, bridge], now=at(800))
    (inc,) = incidents_of(store)
    assert (inc.event_count, inc.opened_at, inc.last_event_at) == (3, at(0), at(725))


def test_out_of_order_across_batches_joins_within_the_gap(store: Store, grouper: Grouper) -> None:
    ingest(store, grouper, [event(300, end=310)], now=at(400))
    ingest(store, grouper, [event(0, end=10)], now=at(401))  # a late node flushing its outbox
    (inc,) = incidents_of(store)
    assert (inc.event_count, inc.opened_at) == (2, at(0))


def test_gap_boundary(store: Store, grouper: Grouper) -> None:
    gap = 600
    ingest(store, grouper, [event(0, end=10)], now=at(11))
    ingest(store, grouper, [event(10 + gap, end=10 + gap + 5)], now=at(700))  # exactly the gap: joins
    assert [i.event_count for i in incidents_of(store)] == [2]
    ingest(store, grouper, [event(15 + 2 * gap + 1, end=15 + 2 * gap + 2)], now=at(1300))  # one second more
    assert sorted(i.event_count for i in incidents_of(store)) == [1, 2]


def test_configured_gap(store: Store) -> None:
    g = Grouper(IncidentsSection(gap=60), started_at=T0)
    ingest(store, g, [event(0, end=1), event(50, end=51), event(200, end=201)], now=at(300))
    assert sorted(i.event_count for i in incidents_of(store)) == [1, 2]


def test_people_split_by_zone_motion_does_not(store: Store, grouper: Grouper) -> None:
    ingest(store, grouper, [event(0, zone="yard", end=3), event(5, zone="gate", end=8),
                            event(10, zone="yard", end=12),
                            event(0, type="motion", zone="yard", end=2), event(4, type="motion", zone="gate", end=6)],
           now=at(20))
    by = {(i.type, i.zone): i.event_count for i in incidents_of(store)}
    assert by == {(IncidentType.intrusion, "yard"): 2, (IncidentType.intrusion, "gate"): 1,
                  (IncidentType.motion, None): 2}


def test_places_and_cameras_split(store: Store, grouper: Grouper) -> None:
    ingest(store, grouper, [event(0, end=1), event(2, camera="door", end=3),
                            event(4, node="node-b", camera="park", end=5)], now=at(10))
    assert sorted(i.places[0].id for i in incidents_of(store)) == ["ekbacken", "ekbacken-school", "lindparken"]


def test_one_incident_per_tamper_outage(store: Store, grouper: Grouper) -> None:
    covered = event(0, type="tamper", subtype="covered", zone=None)
    ingest(store, grouper, [covered], now=at(1))
    # While the lens is covered the view also goes out of focus: the same outage.
    defocused = event(30, type="tamper", subtype="defocused", zone=None, end=90)
    ingest(store, grouper, [defocused, copy(covered, phase="end", ended_at=at(80))], now=at(91))
    (outage,) = incidents_of(store)
    assert (outage.event_count, outage.priority, outage.ended_at) == (2, Priority.high, at(90))
    # Covered again two minutes after it was cleared: a new outage, although within the gap.
    ingest(store, grouper, [event(210, type="tamper", subtype="covered", zone=None)], now=at(211))
    assert sorted(i.event_count for i in incidents_of(store)) == [1, 2]


def test_scene_change(store: Store, grouper: Grouper) -> None:
    # Scene changes are over when reported (a single end message).
    ingest(store, grouper, [event(0, type="scene_change", subtype="appeared", zone=None, end=0),
                            event(120, type="scene_change", subtype="removed", zone=None, end=120)], now=at(121))
    ingest(store, grouper, [event(3600, type="scene_change", subtype="appeared", zone=None, end=3600)],
           now=at(3601))
    counts = sorted(i.event_count for i in incidents_of(store, type="scene_change"))
    assert counts == [1, 2]
    assert {i.priority for i in incidents_of(store)} == {Priority.normal}


def test_a_resolved_incident_takes_no_more_events(store: Store, grouper: Grouper) -> None:
    ingest(store, grouper, [event(0, end=3)], now=at(4))
    (inc,) = incidents_of(store)
    service.resolve(store, inc.id, Outcome.false_alarm, "the caretaker", actor="anna", now=at(5))
    ingest(store, grouper, [event(60, end=63)], now=at(64))
    assert sorted((i.state, i.event_count) for i in incidents_of(store)) == [(State.new, 1), (State.resolved, 1)]


def test_priority_from_config(store: Store) -> None:
    cfg = parse_central({"incidents": {"priority": {"motion": "high", "intrusion": "normal"}}}).incidents
    g = Grouper(cfg, started_at=T0)
    ingest(store, g, [event(0, type="motion", end=1), event(0, end=1),
                      event(0, type="tamper", subtype="covered", zone=None, end=1)], now=at(2))
    assert {i.type: i.priority for i in incidents_of(store)} == {
        IncidentType.motion: Priority.high, IncidentType.intrusion: Priority.normal,
        IncidentType.tamper: Priority.high}


def test_group_key_ignores_zone_except_for_people() -> None:
    assert group_key("motion", "n", "c", "z", "p") == group_key("motion", "n", "c", None, "p")
    assert group_key("loitering", "n", "c", "z", "p") != group_key("loitering", "n", "c", None, "p")


# --- node offline ----------------------------------------------------------------------


def beats(node: str, *seconds: float) -> list[Heartbeat]:
    return [Heartbeat(node_id=node, at=at(s)) for s in seconds]


def check(store: Store, grouper: Grouper, now: datetime) -> list[int]:
    with store.begin() as tx:
        return grouper.check(tx.conn, now=now)


def test_missed_heartbeats_open_node_offline_and_a_heartbeat_closes_it(store: Store, grouper: Grouper) -> None:
    for s in (0, 30, 60, 90):  # one heartbeat per batch, received when sent
        ingest(store, grouper, beats("node-a", s), now=at(s))
    assert check(store, grouper, at(90 + 89)) == []  # learnt interval 30 s: 3 missed = 90 s
    (opened,) = check(store, grouper, at(90 + 90))
    assert check(store, grouper, at(600)) == []  # one incident, however long it lasts
    (inc,) = incidents_of(store)
    assert (inc.id, inc.type, inc.priority, inc.state) == (opened, IncidentType.node_offline, Priority.high, State.new)
    assert inc.opened_at == at(90)  # last heard of
    assert sorted(p.id for p in inc.places) == ["ekbacken", "ekbacken-school"]  # every place of its cameras
    assert incidents_of(store, district="Söderby") == []

    ingest(store, grouper, beats("node-a", 700), now=at(700))
    (inc,) = incidents_of(store)
    assert (inc.state, inc.outcome, inc.ended_at) == (State.resolved, Outcome.auto_closed, at(700))
    trail = service.audit_trail(store, inc.id)
    assert [(a.action, a.actor) for a in trail] == [(Action.opened, "system"), (Action.auto_closed, "system")]
    assert trail[0].detail == {"reason": "missed heartbeats"}


def test_one_lost_heartbeat_does_not_change_the_learnt_interval(store: Store, grouper: Grouper) -> None:
    for s in (0, 30, 90, 120, 150):  # 60 was lost
        ingest(store, grouper, beats("node-a", s), now=at(s))
    assert check(store, grouper, at(150 + 89)) == []
    assert len(check(store, grouper, at(150 + 90))) == 1


def test_heartbeats_queued_while_the_consumer_was_down_are_not_missed(store: Store) -> None:
    g = Grouper(IncidentsSection(heartbeat_interval=30), started_at=T0)
    ingest(store, g, beats("node-a", 0), now=at(0))
    g.started_at = at(3600)  # consumer restarted after an hour away
    assert check(store, g, at(3600 + 89)) == []
    assert len(check(store, g, at(3600 + 90))) == 1


def test_no_interval_known_no_alarm_and_redelivered_heartbeats_change_nothing(store: Store,
                                                                              grouper: Grouper) -> None:
    ingest(store, grouper, beats("node-b", 0), now=at(0))
    assert check(store, grouper, at(86400)) == []  # one heartbeat: interval unknown
    ingest(store, grouper, beats("node-b", 30, 30, 0), now=at(31))  # a redelivery and an old one
    assert check(store, grouper, at(31 + 89)) == []
    assert len(check(store, grouper, at(31 + 90))) == 1


def test_status_offline_and_online(store: Store, grouper: Grouper) -> None:
    will = Status(node_id="node-b", state="offline")  # a Last Will carries no time
    ingest(store, grouper, [will], now=at(10))
    ingest(store, grouper, [will], now=at(11))  # retained copy again after a consumer restart
    (inc,) = incidents_of(store, state="new")
    assert (inc.opened_at, [p.id for p in inc.places]) == (at(10), ["lindparken"])
    assert service.audit_trail(store, inc.id)[0].detail == {"reason": "last will"}
    # Staff close it while the node is still away; a redelivered Last Will opens no second one.
    service.resolve(store, inc.id, "other", "power cut in the park, known", actor="anna", now=at(20))
    ingest(store, grouper, [will], now=at(30))
    assert len(incidents_of(store)) == 1
    ingest(store, grouper, [Status(node_id="node-b", state="online", at=at(40))], now=at(40))
    (inc,) = incidents_of(store)
    assert (inc.state, inc.outcome, inc.ended_at) == (State.resolved, Outcome.other, at(40))  # staff's outcome kept
    # The next outage is a new incident.
    ingest(store, grouper, [will], now=at(100))
    assert sorted(i.state for i in incidents_of(store)) == [State.new, State.resolved]


def test_last_will_through_broker_and_consumer(broker: Broker, tmp_path: Path) -> None:
    offline = Status(node_id="node-a", state="offline").model_dump_json().encode()
    online = Status(node_id="node-a", state="online", at=datetime.now(UTC)).model_dump_json()
    with running_central(broker, tmp_path, PLACES) as store:
        node = broker.client("node-a", will=(str(Topic.status("node-a")), offline, 1, True))
        assert node.publish_wait(Topic.status("node-a"), online, retain=True) == 0
        node.paho.loop_stop()
        node.paho.socket().close()  # the node vanishes without DISCONNECT: the broker sends its will
        opened = wait_until(lambda: incidents_of(store, type="node_offline"), 20, message="node_offline incident")
        assert sorted(p.id for p in opened[0].places) == ["ekbacken", "ekbacken-school"]
        assert opened[0].state == State.new
        node.close()  # the vanished client's slot in the harness; the will has fired
        back = broker.client("node-a")
        assert back.publish_wait(Topic.status("node-a"), online, retain=True) == 0
        closed = wait_until(lambda: [i for i in incidents_of(store) if i.state == State.resolved], 20,
                            message="node_offline auto-closed")
        assert closed[0].outcome == Outcome.auto_closed and len(incidents_of(store)) == 1


def test_events_through_broker_and_consumer_become_one_incident(broker: Broker, tmp_path: Path) -> None:
    with running_central(broker, tmp_path, PLACES) as store:
        node = broker.client("node-a")
        sent = [m for batch in yard_crossing() for m in batch if isinstance(m, Event)]
        for ev in sent:
            assert node.publish_wait(Topic.events("node-a", "yard"), ev.to_payload()) == 0
        wait_until(lambda: (i := incidents_of(store)) and i[0].ended_at is not None, 20, message="grouped")
        (inc,) = incidents_of(store)
        assert inc.event_count == 9 and store.count_events() == 9


# --- states, owner, comments, audit ------------------------------------------------------


def test_state_machine_and_audit(store: Store, grouper: Grouper) -> None:
    ingest(store, grouper, [event(0, end=5)], now=at(6))
    (inc,) = incidents_of(store)
    i = inc.id
    ack = service.acknowledge(store, i, actor="anna", client="10.0.0.5", now=at(60))
    assert ack.state == State.acknowledged
    with pytest.raises(service.InvalidTransition, match="is acknowledged"):
        service.acknowledge(store, i, actor="bo", now=at(61))
    with pytest.raises(service.InvalidTransition):
        service.reopen(store, i, actor="bo", now=at(61))
    assert service.assign(store, i, "anna", actor="anna", client="10.0.0.5", now=at(62)).owner == "anna"
    service.comment(store, i, "Gate left open, checked the yard", actor="anna", client="10.0.0.5", now=at(63))
    done = service.resolve(store, i, Outcome.cleaned_or_repaired, "new lock", actor="anna", now=at(64))
    assert (done.state, done.outcome, done.outcome_note, done.resolved_at) == (
        State.resolved, Outcome.cleaned_or_repaired, "new lock", at(64))
    with pytest.raises(service.InvalidTransition):
        service.resolve(store, i, Outcome.other, actor="bo", now=at(65))
    again = service.reopen(store, i, actor="bo", client="10.0.0.9", now=at(66))
    assert (again.state, again.outcome, again.owner) == (State.acknowledged, None, "anna")
    first = service.get_incident(store, i).events[0]
    service.log_snapshot_viewed(store, first.event_id, node_id=first.node_id, actor="bo",
                                client="10.0.0.9", now=at(67))
    trail = service.audit_trail(store, i)
    assert [(a.action, a.actor, a.client, a.at) for a in trail] == [
        (Action.opened, "system", None, at(6)),
        (Action.acknowledged, "anna", "10.0.0.5", at(60)),
        (Action.assigned, "anna", "10.0.0.5", at(62)),
        (Action.commented, "anna", "10.0.0.5", at(63)),
        (Action.resolved, "anna", None, at(64)),
        (Action.reopened, "bo", "10.0.0.9", at(66)),
        (Action.snapshot_viewed, "bo", "10.0.0.9", at(67)),
    ]
    assert trail[3].detail == {"text": "Gate left open, checked the yard"}
    assert trail[4].detail == {"from_state": "acknowledged", "outcome": "cleaned_or_repaired", "note": "new lock"}
    assert trail[6].event_id is not None


def test_bad_requests_raise_clear_errors(store: Store, grouper: Grouper) -> None:
    ingest(store, grouper, [event(0, end=5)], now=at(6))
    (inc,) = incidents_of(store)
    with pytest.raises(service.IncidentNotFound, match="no incident 999"):
        service.acknowledge(store, 999, actor="anna")
    with pytest.raises(service.IncidentNotFound):
        service.get_incident(store, 999)
    with pytest.raises(service.IncidentError, match="unknown outcome"):
        service.resolve(store, inc.id, "solved", actor="anna")
    with pytest.raises(service.IncidentError, match="consumer's outcome"):
        service.resolve(store, inc.id, Outcome.auto_closed, actor="anna")
    with pytest.raises(service.IncidentError, match="needs some text"):
        service.comment(store, inc.id, "  ", actor="anna")
    with pytest.raises(service.IncidentError, match="actor"):
        service.acknowledge(store, inc.id, actor=" ")
    assert [a.action for a in service.audit_trail(store, inc.id)] == [Action.opened]  # nothing half-done


def test_list_filters_and_order(store: Store, grouper: Grouper) -> None:
    ingest(store, grouper, [
        event(0, type="motion", zone=None, end=1),  # low, oldest
        event(100, end=101),  # high
        event(200, type="loitering", node="node-b", camera="park", zone="bench", end=201),  # normal
        event(300, camera="door", zone="entry", end=301),  # high, newest
    ], now=at(400))
    order = [(i.type, i.places[0].id) for i in incidents_of(store)]
    assert order == [(IncidentType.intrusion, "ekbacken-school"), (IncidentType.intrusion, "ekbacken"),
                     (IncidentType.loitering, "lindparken"), (IncidentType.motion, "ekbacken")]
    newest_high = incidents_of(store)[0]
    service.resolve(store, newest_high.id, Outcome.false_alarm, actor="anna")
    assert incidents_of(store)[-1].id == newest_high.id  # resolved ones last
    assert newest_high.id not in [i.id for i in incidents_of(store, open_only=True)]
    assert {i.places[0].id for i in incidents_of(store, district="Norrby")} == {"ekbacken", "ekbacken-school"}
    assert [i.places[0].id for i in incidents_of(store, district="Söderby")] == ["lindparken"]
    assert [i.type for i in incidents_of(store, place="lindparken")] == [IncidentType.loitering]
    assert [i.type for i in incidents_of(store, type=["motion", "loitering"])] == [IncidentType.loitering,
                                                                                   IncidentType.motion]
    assert [i.state for i in incidents_of(store, state="resolved")] == [State.resolved]
    service.assign(store, incidents_of(store, type="motion")[0].id, "bo", actor="anna")
    assert [i.type for i in incidents_of(store, owner="bo")] == [IncidentType.motion]



def test_listings_read_their_order_off_the_index(store: Store, grouper: Grouper) -> None:
    """The list's ORDER BY is ix_incidents_list's expression, so PostgreSQL pages (even at
    an offset, even per district) without sorting every incident; an older place log gets
    the index from create_all."""
    ingest(store, grouper, [event(0, end=1), event(100, type="motion", zone=None, end=101)], now=at(200))
    with store.engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_incidents_list"))
    store.create_all()
    assert "ix_incidents_list" in store.index_names()
    if store.dialect != "postgresql":
        return
    statements: list[tuple[str, object]] = []

    def capture(conn: object, cursor: object, statement: str, parameters: object, *_: object) -> None:
        statements.append((statement, parameters))

    sqlalchemy_event.listen(store.engine, "before_cursor_execute", capture)
    try:
        service.list_incidents(store, district=["Norrby"], limit=51, offset=50)
    finally:
        sqlalchemy_event.remove(store.engine, "before_cursor_execute", capture)
    with store.engine.begin() as conn:
        conn.execute(text("SET LOCAL enable_sort = off"))  # a two-row table would rather sort
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        sql, params = next(s for s in statements if "FROM incidents" in s[0])
        plan = "\n".join(r[0] for r in conn.exec_driver_sql("EXPLAIN " + sql, params))  # type: ignore[arg-type]
    assert "ix_incidents_list" in plan and "Sort" not in plan, plan


# --- config --------------------------------------------------------------------------------


def test_incidents_config_defaults_and_errors() -> None:
    cfg = CentralConfig().incidents
    assert (cfg.gap, cfg.offline_after_heartbeats, cfg.heartbeat_interval) == (600, 3, None)
    assert cfg.priority_of(IncidentType.tamper) == cfg.priority_of(IncidentType.intrusion) == Priority.high
    custom = parse_central({"incidents": {"gap": "5m", "heartbeat_interval": "1m",
                                          "offline_after_heartbeats": 5}}).incidents
    assert (custom.gap, custom.heartbeat_interval, custom.offline_after_heartbeats) == (300, 60, 5)
    for doc, message in [
        ({"priority": {"motion": "urgent"}}, "incidents.priority: motion: priority must be one of low, normal, high"),
        ({"priority": {"burglary": "high"}}, "incidents.priority.burglary"),
        ({"gap": 0}, "incidents.gap"),
        ({"offline_after_heartbeats": 0}, "incidents.offline_after_heartbeats"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_central({"incidents": doc})


# --- CLI -------------------------------------------------------------------------------------


def test_cli_lists_incidents_in_local_time(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'central.db'}"
    store = Store(db)
    store.create_all()
    write_registry(store, parse_places(PLACES))
    grouper = Grouper(IncidentsSection(), started_at=T0)
    ingest(store, grouper, [event(0, end=5), event(3600, type="motion", zone=None, node="node-b", camera="park",
                                                   end=3605)], now=at(3700))
    service.resolve(store, incidents_of(store, type="motion")[0].id, "false_alarm", actor="anna")
    store.close()

    def run(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "vaktpost.cli", "incidents", "--database", db, *args],
                              capture_output=True, text=True, cwd=tmp_path,
                              env={**os.environ, "COLUMNS": "200"})
        assert done.returncode == 0, done.stderr
        return done.stdout

    everything = run()
    assert "2026-03-02 22:14:00" in everything  # 21:14 UTC is 22:14 in Stockholm (CET)
    assert "Ekbacken schoolyard" in everything and "Lindparken" in everything
    assert "resolved (false_alarm)" in everything
    only_open = run("--open")
    assert "Ekbacken schoolyard" in only_open and "Lindparken" not in only_open
    assert "Lindparken" not in run("--district", "Norrby")


# --- retention -----------------------------------------------------------------------


def test_resolved_incidents_are_deleted_with_their_history_after_the_retention(store: Store, grouper: Grouper
                                                                                ) -> None:
    ingest(store, grouper, phases(event(0), 20), now=at(30))
    ingest(store, grouper, phases(event(3600, camera="door", zone=None, type="motion"), 3620), now=at(3630))
    old, kept = sorted(incidents_of(store), key=lambda i: i.id)
    service.comment(store, old.id, "Kollat", actor="anna", now=at(40))
    service.resolve(store, old.id, "false_alarm", actor="anna", now=at(60))
    service.log_snapshot_viewed(store, "no-such-event", node_id="node-a", actor="anna", now=at(70))
    retention_cfg = parse_central({"database": "sqlite://", "retention": {"incidents": "30d"}}).retention

    result = retention.purge(store, retention_cfg, at(60) + timedelta(days=30, seconds=-1))
    assert result.incidents == 0 and len(incidents_of(store)) == 2
    result = retention.purge(store, retention_cfg, at(70) + timedelta(days=30, seconds=1))
    assert result.incidents == 1
    assert [i.id for i in incidents_of(store)] == [kept.id], "the open incident stays, however old"
    with store.engine.connect() as conn:
        assert {r.incident_id for r in conn.execute(audit_log.select())} == {kept.id}
        assert {r.incident_id for r in conn.execute(incident_events.select())} == {kept.id}
    with pytest.raises(service.IncidentNotFound):
        service.get_incident(store, old.id)
