"""Fuzzing the central ingest (issue 8): thousands of malformed payloads of many
classes on every topic a node may write, interleaved with valid messages. Nothing
crashes or stalls, every bad message is dead-lettered, every valid one is stored
(events of a camera not in the places registry without a place), and no node's
message reaches another node's rows.

Most payloads go straight through the consumer's parse + store path
(`Consumer.handle_batch`, SQLite and PostgreSQL); a few thousand go through a real
Mosquitto and the running consumer. Payloads are drawn by hypothesis."""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mqtt_harness import Broker, image_data_in, running_central, wait_until

from vaktpost.broker.config import CentralConfig
from vaktpost.broker.ingest.consumer import Consumer, Inbound
from vaktpost.broker.places import import_places
from vaktpost.broker.store import Store
from vaktpost.contract.events import Event, EventV1, uuid7
from vaktpost.contract.jpeg import jpeg_spans
from vaktpost.contract.topics import Topic

pytestmark = pytest.mark.slow

NODES = ("node-a", "node-b")
REGISTERED = {("node-a", "yard"): "ekbacken", ("node-b", "park"): "lindparken"}
CAMERAS = ("yard", "park", "gate", "cam-9")  # gate and cam-9 are in no places registry
PLACES = {
    "places": [{"id": "ekbacken", "name": "Ekbacken", "kind": "schoolyard"},
               {"id": "lindparken", "name": "Lindparken", "kind": "park"}],
    "cameras": [{"node": n, "camera": c, "place": p, "from": "2020-01-01"} for (n, c), p in REGISTERED.items()],
}


def _node_jpeg() -> bytes:
    """A snapshot as a node sends it: encoded, then only the segments it keeps."""
    pixels = (np.random.default_rng(1).random((16, 16, 3)) * 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", pixels)
    assert ok
    data = buf.tobytes()
    return b"".join(data[s:e] for m, s, e in jpeg_spans(data) if not 0xE0 <= m <= 0xEF)


JPEG = _node_jpeg()


# --- messages ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Msg:
    topic: str
    payload: bytes
    kind: str  # event | snapshot | node (status/heartbeat) | bad
    cls: str  # the class of payload, for the tally
    event: Event | EventV1 | None = field(default=None, compare=False)


def event_doc(node: str, camera: str, *, offset_s: float, ended: bool, version: int = 2) -> dict[str, Any]:
    start = datetime.now(UTC) - timedelta(hours=2) + timedelta(seconds=offset_s)
    doc: dict[str, Any] = {
        "schema": f"vaktpost.event/{version}", "event_id": uuid7(int(start.timestamp() * 1000)), "seq": 1,
        "node_id": node, "camera_id": camera, "type": "intrusion", "started_at": start.isoformat(),
        "ended_at": (start + timedelta(seconds=5)).isoformat() if ended else None, "confidence": 0.7}
    if version == 2:
        doc["phase"] = "end" if ended else "start"
    return doc


def dumps(doc: Any) -> bytes:
    return json.dumps(doc).encode()


nodes = st.sampled_from(NODES)
cameras = st.sampled_from(CAMERAS)
offsets = st.floats(0, 3600)


@st.composite
def valid_events(draw: st.DrawFn) -> Msg:
    node, camera = draw(nodes), draw(cameras)
    doc = event_doc(node, camera, offset_s=draw(offsets), ended=draw(st.booleans()),
                    version=draw(st.sampled_from([1, 2, 2, 2])))
    doc["seq"] = draw(st.integers(0, 2**63 - 1))
    doc["confidence"] = draw(st.floats(0, 1))
    payload = dumps(doc)
    parsed = Event.model_validate_json(payload) if doc["schema"].endswith("/2") else EventV1.model_validate_json(
        payload)
    return Msg(Topic.events(node, camera), payload, "event", "valid event", parsed)


# Values that no field of an event accepts in place of its own (beside the point
# of the field: wrong types, out of bounds, huge).
_huge = st.integers(1_000, 300_000).map(lambda n: "ab " * (n // 3))
_wrong = {
    "event_id": st.one_of(st.text(max_size=40).filter(lambda s: len(s) != 36), st.integers(), _huge,
                          st.just(str(uuid.uuid4()))),
    "seq": st.one_of(st.integers(max_value=-1), st.integers(min_value=2**63), st.text(), st.floats(0.1, 0.9),
                     st.lists(st.integers(), max_size=3)),
    "type": st.one_of(st.text(max_size=20).filter(lambda s: s not in {
        "motion", "intrusion", "loitering", "scene_change", "tamper", "health"}), st.integers(), _huge),
    "confidence": st.one_of(st.floats(1.0001, 1e308), st.floats(-1e308, -0.0001), st.text(), _huge),
    "zone": st.one_of(_huge, st.text(alphabet="/#{}\\\x00\u00e9", min_size=1, max_size=10), st.integers()),
    "region": st.one_of(st.lists(st.floats(0, 1), max_size=3), st.lists(st.floats(0, 1), min_size=5, max_size=9),
                        st.text(), st.lists(st.text(min_size=1), min_size=4, max_size=4)),
    "camera_id": st.one_of(st.integers(), _huge, st.text(alphabet="ABC /", min_size=1, max_size=8)),
}
_extreme_times = st.one_of(
    st.builds(lambda y, h: f"{y:04d}-01-01T00:00:00{h:+03d}:00", st.integers(1, 1969), st.integers(-12, 14)),
    st.builds(lambda y, h: f"{y:04d}-12-31T23:59:59{h:+03d}:00", st.integers(2100, 9999), st.integers(-12, 14)),
    st.sampled_from(["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "2026-13-01T00:00:00Z",
                     "2026-01-01T00:00:00", "yesterday", "", "1e400"]),
    st.integers(2, 3000).map(lambda d: (datetime.now(UTC) + timedelta(days=d)).isoformat()),  # too far ahead
)
_literals = ["1" + "0" * 400, "1e400", "-1e400", "NaN", "Infinity", "-Infinity", "9223372036854775808"]


@st.composite
def bad_events(draw: st.DrawFn) -> Msg:
    node, camera = draw(nodes), draw(cameras)
    doc = event_doc(node, camera, offset_s=draw(offsets), ended=False)
    topic = Topic.events(node, camera)
    how = draw(st.sampled_from(["wrong-type", "extreme-time", "extreme-number", "extra-field", "missing-field",
                                "truncated", "random-bytes", "deep", "foreign-node", "other-camera",
                                "not-an-object", "rules"]))
    if how == "wrong-type":
        key = draw(st.sampled_from(sorted(_wrong)))
        doc[key] = draw(_wrong[key])
        if key == "camera_id" and isinstance(doc[key], str) and doc[key] == camera:
            doc[key] = 5
        payload = dumps(doc)
    elif how == "extreme-time":
        doc[draw(st.sampled_from(["started_at", "ended_at"]))] = draw(_extreme_times)
        if doc["ended_at"] is not None:
            doc["phase"] = "end"
        payload = dumps(doc)
    elif how == "extreme-number":
        key = draw(st.sampled_from(["seq", "confidence"]))
        literal = draw(st.sampled_from(_literals))
        if key == "seq" and literal in ("1e400",):
            literal = "-1"
        payload = dumps({**doc, key: "@@"}).replace(b'"@@"', literal.encode())
    elif how == "extra-field":
        doc[draw(st.sampled_from(["image", "note", "x" * 300, "Schema"]))] = draw(st.one_of(_huge, st.integers()))
        payload = dumps(doc)
    elif how == "missing-field":
        del doc[draw(st.sampled_from(["event_id", "seq", "node_id", "type", "started_at", "confidence", "phase"]))]
        payload = dumps(doc)
    elif how == "truncated":
        full = dumps(doc)
        payload = full[:draw(st.integers(0, len(full) - 1))]
    elif how == "random-bytes":
        payload = draw(st.binary(min_size=0, max_size=300))
    elif how == "deep":
        depth = draw(st.integers(500, 120_000))
        opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
        inner = opener * depth + (b"1" if opener != b"[" else b"") + closer * depth
        payload = inner if draw(st.booleans()) else dumps({**doc, "zone": "@@"}).replace(b'"@@"', inner)
    elif how == "foreign-node":  # a node speaking for the other
        other = next(n for n in NODES if n != node)
        doc["node_id"] = other
        payload = dumps(doc)
    elif how == "other-camera":
        payload = dumps(doc)
        topic = Topic.events(node, draw(st.sampled_from([c for c in CAMERAS if c != camera])))
    elif how == "not-an-object":
        payload = dumps(draw(st.one_of(st.lists(st.integers(), max_size=4), st.text(max_size=30), st.integers(),
                                       st.none(), st.booleans())))
    else:  # the rules across fields: phase and ended_at, subtypes, withheld
        doc.update(draw(st.sampled_from([{"phase": "end"}, {"phase": "update", "ended_at": doc["started_at"]},
                                         {"subtype": "covered"}, {"type": "tamper"},
                                         {"snapshot": "withheld"}, {"snapshot_withheld": "encode_error"},
                                         {"schema": "vaktpost.event/3"}, {"region": [0.9, 0.9, 0.1, 0.1]}])))
        payload = dumps(doc)
    return Msg(topic, payload, "bad", f"event: {how}")


@st.composite
def node_messages(draw: st.DrawFn) -> Msg:
    node = draw(nodes)
    kind = draw(st.sampled_from(["status", "heartbeat"]))
    topic = Topic.status(node) if kind == "status" else Topic.heartbeat(node)
    now = datetime.now(UTC).isoformat()
    good: dict[str, Any] = ({"node_id": node, "state": draw(st.sampled_from(["online", "offline"])), "at": now}
                            if kind == "status" else
                            {"node_id": node, "at": now, "fps": {"yard": 12.5}, "outbox_depth": 3})
    how = draw(st.sampled_from(["valid", "valid", "time", "number", "foreign", "bytes", "deep", "types",
                                "truncated"]))
    if how == "valid":
        return Msg(topic, dumps(good), "node", f"{kind}: valid")
    if how == "time":
        good["at"] = draw(_extreme_times.filter(lambda t: t != ""))
        payload = dumps(good)
    elif how == "number":
        key = "state" if kind == "status" else draw(st.sampled_from(["outbox_depth", "cpu_temp_c", "fps"]))
        literal = draw(st.sampled_from(["9223372036854775808", "-1", "1e400", "NaN", '{"yard": Infinity}',
                                        '{"' + "y" * 5000 + '": 1}']))
        if key == "cpu_temp_c" and literal == "-1":  # a valid temperature; below absolute zero is not
            literal = "-274"
        payload = dumps({**good, key: "@@"}).replace(b'"@@"', literal.encode())
    elif how == "foreign":
        good["node_id"] = next(n for n in NODES if n != node)
        payload = dumps(good)
    elif how == "bytes":
        payload = draw(st.binary(min_size=1, max_size=200))
    elif how == "deep":
        payload = b"[" * 100_000 + b"]" * 100_000
    elif how == "types":
        good[draw(st.sampled_from(sorted(good)))] = draw(st.one_of(st.lists(st.integers(), min_size=1),
                                                                   st.dictionaries(st.text(), st.text(),
                                                                                   min_size=1)))
        payload = dumps(good)
    else:
        full = dumps(good)
        payload = full[:draw(st.integers(1, len(full) - 1))]
    return Msg(topic, payload, "bad", f"{kind}: {how}")


_foreign_segments = st.one_of(st.integers(0xE0, 0xEF), st.integers(0xF0, 0xFE), st.just(0xC8))


@st.composite
def snapshots(draw: st.DrawFn) -> Msg:
    node = draw(nodes)
    eid = uuid7()
    how = draw(st.sampled_from(["valid", "valid", "segment", "bytes", "truncated", "trailing", "bad-id",
                                "png", "empty"]))
    data = JPEG
    topic = Topic.snapshots(node, eid)
    if how == "valid":
        return Msg(topic, data, "snapshot", "snapshot: valid")
    if how == "segment":  # hidden data in a segment a node never writes
        marker = draw(_foreign_segments)
        body = draw(st.one_of(st.binary(max_size=100), st.integers(1_000, 60_000).map(bytes)))
        data = data[:2] + bytes([0xFF, marker]) + (len(body) + 2).to_bytes(2, "big") + body + data[2:]
    elif how == "bytes":
        data = draw(st.binary(min_size=1, max_size=400))
    elif how == "truncated":
        data = data[:draw(st.integers(0, len(data) - 1))]
    elif how == "trailing":
        data = data + draw(st.binary(min_size=1, max_size=100))
    elif how == "bad-id":
        topic = Topic.snapshots(node, draw(st.text(alphabet="abcdef0123456789-xyz", min_size=1, max_size=70)))
    elif how == "png":
        data = b"\x89PNG\r\n\x1a\n" + draw(st.binary(max_size=100))
    else:
        data = b""
    return Msg(topic, data, "bad", f"snapshot: {how}")


messages = st.one_of(valid_events(), bad_events(), bad_events(), bad_events(), node_messages(), snapshots())


# --- checking -------------------------------------------------------------------------------


@dataclass
class Sent:
    msgs: list[Msg] = field(default_factory=list)

    def add(self, batch: list[Msg]) -> None:
        self.msgs += batch

    @property
    def bad(self) -> list[Msg]:
        return [m for m in self.msgs if m.kind == "bad"]


def foreign_id_copies(sent: Sent, rng: random.Random) -> list[Msg]:
    """Messages of the other node that reuse event ids already sent: as more final
    copies (ended, higher seq, new confidence) on the sender's own topic."""
    out = []
    for m in rng.sample([m for m in sent.msgs if m.kind == "event"], k=min(200, len(sent.msgs) // 20)):
        assert m.event is not None
        other = next(n for n in NODES if n != m.event.node_id)
        doc = event_doc(other, "gate", offset_s=0, ended=True)
        doc.update(event_id=m.event.event_id, seq=2**62, confidence=1.0)
        out.append(Msg(Topic.events(other, "gate"), dumps(doc), "foreign-id", "event: another node's event id",
                       Event.model_validate_json(dumps(doc))))
    return out


def check(store: Store, sent: Sent) -> Counter[str]:
    """Every bad message is a dead letter; every valid event and snapshot is stored
    as sent, each in its own node's rows and with its camera's place."""
    letters = store.query_dead_letters(limit=10**7)
    got = Counter((r["topic"], bytes(r["payload"])) for r in letters)
    want = Counter((m.topic, b"" if "/snapshots/" in m.topic else m.payload) for m in sent.bad)
    lacking = want - got
    missing = [(m.cls, m.topic, m.payload[:80]) for m in sent.bad
               if (m.topic, b"" if "/snapshots/" in m.topic else m.payload) in lacking]
    assert got == want, f"{sum((got - want).values())} unexpected and missing: {missing[:5]}"
    rows = {(r["node_id"], r["event_id"]): r for r in store.query_events(limit=10**7)}
    events = [m for m in sent.msgs if m.kind in ("event", "foreign-id")]
    assert len(rows) == len(events)
    for m in events:
        assert m.event is not None
        row = rows[(m.event.node_id, m.event.event_id)]
        assert (row["seq"], row["confidence"], row["ended_at"], row["camera_id"]) == (
            m.event.seq, m.event.confidence, m.event.ended_at, m.event.camera_id)
        assert row["place_id"] == REGISTERED.get((m.event.node_id, m.event.camera_id or ""))
    for m in sent.msgs:
        if m.kind == "snapshot":
            t = Topic.parse(m.topic)
            assert store.get_snapshot(t.leaf or "", node_id=t.node_id) == m.payload
    return Counter(m.cls for m in sent.msgs)


# --- the parse + store path, on SQLite and PostgreSQL ------------------------------------------


def test_fuzz_parse_and_store(place_store: Store, tmp_path: Path) -> None:
    (tmp_path / "places.yaml").write_text(yaml.safe_dump(PLACES))
    import_places(place_store, tmp_path / "places.yaml")
    consumer = Consumer(CentralConfig.model_validate({"database": "sqlite:///unused.db"}), place_store)
    sent = Sent()
    mid = iter(range(1, 10**9))

    def feed(batch: list[Msg]) -> None:
        inbound = [Inbound(0, next(mid), 1, m.topic, m.payload) for m in batch]
        assert consumer.handle_batch(inbound) is True  # stored and acked: never retried, never stuck
        sent.add(batch)

    @settings(max_examples=76, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(messages, min_size=90, max_size=110))
    def run(batch: list[Msg]) -> None:
        feed(batch)

    run()
    feed(foreign_id_copies(sent, random.Random(8)))
    tally = check(place_store, sent)
    assert len(sent.bad) >= 5000, tally
    assert len({c for c in tally if c.startswith(("event:", "status:", "heartbeat:", "snapshot:"))}) >= 30, tally
    stats = consumer.stats.snapshot()
    assert stats["db_errors"] == 0 and stats["dead_letters"] == len(sent.bad)


# --- the whole path: a real Mosquitto and the running consumer ------------------------------------


def test_fuzz_through_the_broker(broker: Broker, tmp_path: Path) -> None:
    sent = Sent()
    batches: list[list[Msg]] = []

    @settings(max_examples=25, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(messages, min_size=90, max_size=110))
    def collect(batch: list[Msg]) -> None:
        # What the test broker's auditor would flag as image data outside /snapshots/ stays out.
        batches.append([m for m in batch if "/snapshots/" in m.topic or not image_data_in(m.payload)])

    collect()
    with running_central(broker, tmp_path, PLACES) as store:
        clients = {n: broker.client(n) for n in NODES}
        for batch in batches:
            for m in batch:
                node = Topic.parse(m.topic).node_id
                clients[node].paho.publish(m.topic, m.payload, qos=1)
            sent.add(batch)
        sentinel = event_doc("node-a", "yard", offset_s=4000, ended=True)
        last = Msg(Topic.events("node-a", "yard"), dumps(sentinel), "event", "valid event",
                   Event.model_validate_json(dumps(sentinel)))
        assert clients["node-a"].publish_wait(last.topic, last.payload) == 0
        sent.add([last])
        n_events = sum(m.kind == "event" for m in sent.msgs)
        try:
            wait_until(lambda: store.count_events() == n_events
                       and len(store.query_dead_letters(limit=10**7)) == len(sent.bad), 60,
                       interval=0.5, message="every message stored or dead-lettered")
        finally:
            print(f"{store.count_events()} of {n_events} events stored, "
                  f"{len(store.query_dead_letters(limit=10**7))} of {len(sent.bad)} dead letters")
            check(store, sent)
    assert len(sent.bad) >= 1500
