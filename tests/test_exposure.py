"""The node's config message (NodeSetup), the consumer's records of it and of online
intervals, and the exposure hours computed from them (docs/central.md, "Exposure").
Every number of hours below is worked out by hand in the comments."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest

import vaktpost.contract
from vaktpost.broker import coverage
from vaktpost.broker.exposure import CameraExposure, exposure, latest_setups, setup_history
from vaktpost.broker.ingest.parse import Rejected, parse_message
from vaktpost.broker.store import Store
from vaktpost.contract.messages import Heartbeat, NodeSetup, Status
from vaktpost.contract.topics import Topic
from vaktpost.edge.config import parse
from vaktpost.edge.setup import masked_share, node_setup

GAP = timedelta(seconds=90)
SCHEMA = Path(vaktpost.contract.__file__).resolve().parent / "schema" / "config-1.schema.json"


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


def square(x0: float, y0: float, side: float) -> list[list[float]]:
    return [[x0, y0], [x0 + side, y0], [x0 + side, y0 + side], [x0, y0 + side]]


def node_config(ranges: list[dict] | None = None, **camera: object):
    zone = {"name": "facade", "polygon": [[0, 0], [1, 0], [1, 1]],
            "armed": {"ranges": ranges} if ranges is not None else {"preset": "school_facade"}}
    return parse({"node": {"id": "n1"}, "cameras": [{"id": "cam1", "source": "x.mp4", "zones": [zone],
                                                       **camera}]})


def setup(at: datetime, ranges: list[dict]) -> NodeSetup:
    return node_setup(node_config(ranges), at)


# --- the message -------------------------------------------------------------------------

def test_node_setup_from_the_node_config_matches_its_published_schema() -> None:
    cfg = node_config(privacy_masks=[square(0, 0, 0.5), square(0.25, 0.25, 0.5)], fps=4,
                      snapshots={"intrusion": "anonymised"}, rules={"loiter_seconds_by_zone": {"facade": None}})
    s = node_setup(cfg, utc(2026, 11, 26, 12))
    jsonschema.validate(json.loads(s.to_payload()), json.loads(SCHEMA.read_text()))
    cam = s.cameras[0]
    assert (cam.id, cam.timezone, cam.fps) == ("cam1", "Europe/Stockholm", 4)
    assert cam.masked_share == pytest.approx(0.25 + 0.25 - 0.0625, abs=0.003)  # the union, overlap once
    assert cam.snapshots["intrusion"] == "anonymised" and cam.snapshots["motion"] == "none"
    zone = cam.zones[0]
    assert zone.people_rules.loiter_seconds is None and zone.people_rules.intrusion
    sched = zone.schedule
    assert sched.preset == "school_facade" and len(sched.ranges) == 2
    # Holidays for about 13 months from the day it was sent, no more.
    assert min(sched.holidays).isoformat() == "2026-12-25" and max(sched.holidays).isoformat() == "2027-12-26"
    assert s.retention.max_age == 7 * 86400
    assert parse_message(Topic.config("n1"), s.to_payload(), now=utc(2026, 11, 26, 12)) == s
    assert masked_share([]) == 0.0


@pytest.mark.parametrize("change, error", [
    (lambda d: d["cameras"][0].update(masked_share=1.5), "masked_share"),
    (lambda d: d["cameras"][0].update(fps=0), "fps"),
    (lambda d: d.update(node_id="n2"), "cannot speak for another"),
    (lambda d: d.update(at="2030-01-01T00:00:00Z"), "ahead of the consumer's clock"),
    (lambda d: d.update(image="…"), "image"),
    (lambda d: d["cameras"][0]["zones"][0]["schedule"].update(exceptions=["2026-01-01"] * 1001), "exceptions"),
    (lambda d: d["cameras"].append(d["cameras"][0]), "camera ids must be unique"),
    (lambda d: d["cameras"][0].update(timezone="Mars/Olympus"), "unknown time zone"),
])
def test_a_bad_config_message_is_rejected(change, error: str) -> None:
    doc = json.loads(setup(utc(2026, 11, 26, 12), [{"days": ["mon"], "from": "18:00", "to": "20:00"}]).to_payload())
    change(doc)
    got = parse_message(Topic.config("n1"), json.dumps(doc).encode(), now=utc(2026, 11, 26, 12))
    assert isinstance(got, Rejected) and error in got.error and got.error.startswith(("invalid config", "payload"))
    assert parse_message(Topic.config("n1"), b"") is None  # the retained copy cleared


# --- the records and the hours -------------------------------------------------------------

MON18_20 = [{"days": ["mon"], "from": "18:00", "to": "20:00"}]  # 17:00–19:00 UTC in March (CET)
MON18_22 = [{"days": ["mon"], "from": "18:00", "to": "22:00"}]  # 17:00–21:00 UTC


def _seed(store: Store) -> None:
    with store.begin() as tx:
        for p in ("p1", "p2", "p3"):
            tx.upsert_place({"id": p, "name": p.upper(), "kind": "school"})
        # cam1 watches p1, and from Monday 19:45 UTC p3; cam2 (not in the node's config) p2.
        tx.replace_assignments("n1", "cam1", [
            {"valid_from": utc(2026, 1, 1), "valid_to": utc(2026, 3, 2, 19, 45), "place_id": "p1"},
            {"valid_from": utc(2026, 3, 2, 19, 45), "valid_to": None, "place_id": "p3"}])
        tx.replace_assignments("n1", "cam2", [{"valid_from": utc(2026, 1, 1), "valid_to": None, "place_id": "p2"}])
        c = tx.conn
        assert coverage.record_setup(c, setup(utc(2026, 3, 2, 10), MON18_20), utc(2026, 3, 2, 10))
        # Monday 2026-03-02: online 16:00, heartbeats every minute to 18:30; silent (no will) …
        coverage.record_status(c, Status(node_id="n1", state="online", at=utc(2026, 3, 2, 16)), utc(2026, 3, 2), GAP)
        for m in range(1, 151):
            coverage.record_heartbeat(c, Heartbeat(node_id="n1", at=utc(2026, 3, 2, 16) + timedelta(minutes=m)), GAP)
        # … back at 19:00 (a new interval: 30 minutes > 90 s), heartbeats to 20:00, offline 20:00:10.
        for m in range(0, 61):
            coverage.record_heartbeat(c, Heartbeat(node_id="n1", at=utc(2026, 3, 2, 19) + timedelta(minutes=m)), GAP)
        # The schedule changed at 19:30 (a new config); the same again later is no change.
        assert coverage.record_setup(c, setup(utc(2026, 3, 2, 19, 30), MON18_22), utc(2026, 3, 2, 19, 30))
        assert not coverage.record_setup(c, setup(utc(2026, 3, 2, 19, 50), MON18_22), utc(2026, 3, 2, 19, 50))
        assert not coverage.record_setup(c, setup(utc(2026, 3, 2, 9), MON18_22), utc(2026, 3, 2, 19, 50))
        coverage.record_status(c, Status(node_id="n1", state="offline", at=utc(2026, 3, 2, 20, 0, 10)),
                               utc(2026, 3, 2, 20), GAP)
        # Redeliveries of the retained messages change nothing.
        coverage.record_status(c, Status(node_id="n1", state="online", at=utc(2026, 3, 2, 16)), utc(2026, 3, 3), GAP)
        coverage.record_status(c, Status(node_id="n1", state="offline"), utc(2026, 3, 3), GAP)


def test_online_intervals_and_config_history(place_store: Store) -> None:
    _seed(place_store)
    with place_store.engine.connect() as conn:
        rows = conn.execute(coverage.node_online.select().order_by(coverage.node_online.c.started_at)).all()
    assert [(r.started_at, r.ended_at, r.open) for r in rows] == [
        (utc(2026, 3, 2, 16), utc(2026, 3, 2, 18, 30), False),
        (utc(2026, 3, 2, 19), utc(2026, 3, 2, 20, 0, 10), False)]
    history = setup_history(place_store, "n1")
    assert [(vf, vt) for vf, vt, _ in history] == [(utc(2026, 3, 2, 10), utc(2026, 3, 2, 19, 30)),
                                                  (utc(2026, 3, 2, 19, 30), None)]
    assert latest_setups(place_store)["n1"].cameras[0].zones[0].schedule.ranges[0].to.hour == 22


def test_exposure_hours_per_camera_zone_and_place(place_store: Store) -> None:
    _seed(place_store)
    got = exposure(place_store, utc(2026, 3, 2), utc(2026, 3, 3))
    late = 0.25 + 10 / 3600  # 19:45 → 20:00:10
    assert got == [
        # p1 (to 19:45): online 16:00–18:30 and 19:00–19:45 = 3.25 h; armed 17:00–18:30 under the first
        # config (18:00–20:00 local) and 19:30–19:45 under the second (18:00–22:00) = 1.75 h.
        CameraExposure("n1", "cam1", "p1", None, 3.25, 1.75),
        CameraExposure("n1", "cam1", "p1", "facade", 3.25, 1.75),
        # p2: cam2 is in no config: online while the node was, never armed.
        CameraExposure("n1", "cam2", "p2", None, pytest.approx(3.5 + 10 / 3600), 0.0),
        # p3 (from 19:45): online and armed to the offline status at 20:00:10.
        CameraExposure("n1", "cam1", "p3", None, pytest.approx(late), pytest.approx(late)),
        CameraExposure("n1", "cam1", "p3", "facade", pytest.approx(late), pytest.approx(late)),
    ]
    # A window that cuts intervals: 17:30–19:50 at p1 → online 17:30–18:30, 19:00–19:45 (1.75 h);
    # armed 17:30–18:30 and 19:30–19:45 (1.25 h).
    cut = exposure(place_store, utc(2026, 3, 2, 17, 30), utc(2026, 3, 2, 19, 50), places=["p1"])
    assert cut == [CameraExposure("n1", "cam1", "p1", None, 1.75, 1.25),
                   CameraExposure("n1", "cam1", "p1", "facade", 1.75, 1.25)]
    assert exposure(place_store, utc(2026, 3, 3), utc(2026, 3, 2)) == []
    assert exposure(place_store, utc(2026, 3, 2), utc(2026, 3, 3), places=[]) == []


# --- over a real broker: the node publishes it retained, the consumer keeps it -----------------

def test_node_publishes_its_config_retained_and_the_consumer_keeps_it(broker, tmp_path: Path) -> None:
    from mqtt_harness import wait_until
    from test_consumer import running_consumer, write_config

    from vaktpost.edge.config import MqttSection
    from vaktpost.edge.delivery.outbox import Outbox
    from vaktpost.edge.delivery.transport import Publisher

    now = datetime.now(UTC).replace(microsecond=0)
    s = node_setup(node_config(MON18_20), now).model_copy(update={"node_id": "node-a"})
    pub = Publisher("node-a", MqttSection(host=broker.host, port=broker.port, password=broker.password("node-a")),
                    Outbox(tmp_path / "outbox.db", 1000))
    pub.set_setup(s)
    pub.start()
    try:
        assert pub.wait_connected(15)
        first = broker.client("watcher")
        assert first.subscribe_wait(Topic.config("node-a")) == 1
        assert NodeSetup.model_validate_json(first.expect_message().payload) == s  # live or retained
        # Retained: a reader that comes later (a consumer after a broker restart) still gets it.
        later = broker.client("inbox")
        assert later.subscribe_wait(Topic.config("node-a")) == 1
        msg = later.expect_message()
        assert msg.retain and NodeSetup.model_validate_json(msg.payload) == s
        with running_consumer(write_config(broker, tmp_path)) as (consumer, store):
            wait_until(lambda: "node-a" in latest_setups(store), 20, message="config stored")
            assert latest_setups(store)["node-a"] == s
            with broker.client("node-b") as b:  # a bad one is dead-lettered; the stream goes on
                bad = json.loads(s.model_copy(update={"node_id": "node-b"}).to_payload())
                bad["cameras"][0]["masked_share"] = 2
                assert b.publish_wait(Topic.config("node-b"), json.dumps(bad)) < 0x80
            wait_until(lambda: any("invalid config" in d["error"] for d in store.query_dead_letters()), 20,
                       message="dead letter")
            assert "node-b" not in latest_setups(store)
            with store.engine.connect() as conn:  # the retained online status opened an interval
                assert conn.execute(coverage.node_online.select()).first().node_id == "node-a"
    finally:
        pub.stop()
