"""Evidence snapshots centrally: the JPEG check, the snapshots table (SQLite and
PostgreSQL), and the consumer with a real Mosquitto and the node's own outbox and
publisher."""

from __future__ import annotations

import hashlib
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from mqtt_harness import Broker, wait_until
from sqlalchemy import create_engine, inspect, text
from test_consumer import (
    acked_ids,
    node_client,
    running_consumer,
    write_config,
)

from vaktpost.broker.ingest.parse import Rejected, Snapshot, parse_message
from vaktpost.broker.store import Store
from vaktpost.contract.events import Event, uuid7
from vaktpost.contract.jpeg import NODE_MARKERS, JpegError, check_jpeg, jpeg_spans
from vaktpost.contract.topics import ANY, Kind, Topic, TopicError, snapshot_row_id
from vaktpost.edge.config import MqttSection
from vaktpost.edge.delivery.outbox import Outbox
from vaktpost.edge.delivery.transport import Publisher
from vaktpost.edge.evidence.snapshot import KEEP_MARKERS, strip_jpeg

UTC = UTC
MAX = 2 * 1024 * 1024
NOT_AUTHORIZED = 0x87
T = 30.0


def encoded(w: int = 64, h: int = 48, seed: int = 0, params: list[int] | None = None) -> bytes:
    """A JPEG as OpenCV's encoder writes it (with an APP0 JFIF segment)."""
    pixels = (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", pixels, params or [])
    assert ok
    return buf.tobytes()


def jpeg(w: int = 64, h: int = 48, seed: int = 0, params: list[int] | None = None) -> bytes:
    """A JPEG as a node sends it: encoded, then stripped to the node's own segments."""
    return strip_jpeg(encoded(w, h, seed, params))


def pil_jpeg(**save_kw: object) -> bytes:
    """A JPEG written by Pillow, which can add EXIF (APP1) or a comment (COM)."""
    image = pytest.importorskip("PIL.Image")
    out = io.BytesIO()
    image.new("RGB", (32, 24), (90, 120, 30)).save(out, "JPEG", **save_kw)
    return out.getvalue()


def without_app0(data: bytes) -> bytes:
    """`data` without its APP0 (JFIF) segment, so that the next segment is the one refused."""
    return b"".join(data[s:e] for marker, s, e in jpeg_spans(data) if marker != 0xE0)


def with_exif() -> bytes:
    image = pytest.importorskip("PIL.Image")
    exif = image.Exif()
    exif[0x010F] = "CameraMaker"  # Make
    exif[0x0132] = "2026:11:26 08:00:00"  # DateTime
    return without_app0(pil_jpeg(exif=exif))


def with_segment(data: bytes, marker: int, body: bytes) -> bytes:
    """`data` with one more segment right after SOI."""
    return data[:2] + bytes([0xFF, marker]) + (len(body) + 2).to_bytes(2, "big") + body + data[2:]


def make_event(node: str = "node-a", camera: str = "yard", **kw: object) -> Event:
    t = kw.pop("started_at", datetime.now(UTC) - timedelta(minutes=5))
    return Event(event_id=uuid7(int(t.timestamp() * 1000)), seq=1, node_id=node, camera_id=camera,
                 type="intrusion", started_at=t, confidence=0.9,
                 phase=kw.pop("phase", "end" if kw.get("ended_at") else "start"), **kw)


# --- the JPEG check (pure) -----------------------------------------------------------


@pytest.mark.parametrize("params", [[], [cv2.IMWRITE_JPEG_PROGRESSIVE, 1], [cv2.IMWRITE_JPEG_RST_INTERVAL, 2]],
                         ids=["baseline", "progressive", "restart-markers"])
def test_encoder_output_passes(params: list[int]) -> None:
    assert check_jpeg(jpeg(640, 480, params=params), MAX) == (640, 480)


def test_the_centre_accepts_exactly_the_segments_the_node_writes() -> None:
    assert NODE_MARKERS == KEEP_MARKERS
    assert check_jpeg(strip_jpeg(pil_jpeg()), MAX) == (32, 24)


def app0(extra: bytes) -> bytes:
    """An APP0 JFIF body with a thumbnail of 8x8 pixels (or text appended: `extra`)."""
    return b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x08\x08" + bytes(8 * 8 * 3) + extra


@pytest.mark.parametrize(
    "make, error",
    [
        (lambda: b"GIF89a" + jpeg()[6:], "does not start with FFD8"),
        (lambda: jpeg()[:-2], "does not end with FFD9"),
        (lambda: jpeg() + b"appended\xff\xd9", "bytes after the end-of-image marker"),
        (lambda: b"\xff\xd8\xff\xd9", "no frame header or no scan"),
        (with_exif, "APP1 (EXIF/XMP metadata)"),
        (lambda: without_app0(pil_jpeg(comment=b"taken at the gym")), "COM (comment)"),
        (lambda: with_segment(jpeg(), 0xED, b"Photoshop 3.0\x00IPTC"), "APP13"),
        (lambda: with_segment(jpeg(), 0xE2, b"ICC_PROFILE\x00"), "APP2"),
        (lambda: jpeg()[:2] + b"\xff\xdb\xff\xff" + jpeg()[2:], "runs past the end"),
        (lambda: b"\xff\xd8" + jpeg()[jpeg().index(b"\xff\xda"):], "scan before the frame header"),
        (encoded, "APP0"),  # the encoder's JFIF header: the node strips it
        (pil_jpeg, "APP0"),
        (lambda: with_segment(jpeg(), 0xE0, app0(b"")), "APP0"),
        (lambda: with_segment(jpeg(), 0xE0, app0(b"meet me at the gym")), "APP0"),
        (lambda: with_segment(jpeg(), 0xEE, b"Adobe" + bytes(60_000)), "APP14"),
        *[(lambda m=m: with_segment(jpeg(), m, b"hidden"), f"FF{m:02X}") for m in range(0xF0, 0xFE)],
        (lambda: with_segment(jpeg(), 0xC8, b"reserved"), "FFC8"),
    ],
    ids=["not-jpeg", "no-eoi", "trailing-data", "empty-image", "exif", "comment", "iptc", "icc", "bad-length",
         "scan-first", "encoder-jfif", "pillow-jfif", "app0-thumbnail", "app0-text", "app14-blob",
         *[f"jpg{m - 0xF0}" for m in range(0xF0, 0xFE)], "jpg-reserved"],
)
def test_malformed_or_metadata_jpeg_is_refused(make, error: str) -> None:
    with pytest.raises(JpegError) as info:
        check_jpeg(make(), MAX)
    assert error in str(info.value)


def test_size_limit() -> None:
    data = jpeg(640, 480)
    assert check_jpeg(data, len(data)) == (640, 480)
    with pytest.raises(JpegError, match=f"{len(data)} bytes exceeds the limit of {len(data) - 1}"):
        check_jpeg(data, len(data) - 1)


# --- topics and parsing --------------------------------------------------------------


def test_snapshot_topics() -> None:
    eid = uuid7()
    topic = Topic.snapshots("node-a", eid)
    assert topic == f"vaktpost/v1/nodes/node-a/snapshots/{eid}"
    parsed = Topic.parse(topic)
    assert (parsed.node_id, parsed.kind, parsed.leaf) == ("node-a", Kind.snapshots, eid)
    assert snapshot_row_id(eid) == f"{eid}/snapshot"
    assert Topic.snapshots(ANY, ANY) == "vaktpost/v1/nodes/+/snapshots/+"
    assert Topic.snapshots(ANY, ANY).matches(topic)
    for other in (Topic.events("node-a", "yard"), Topic.acks("node-a")):
        assert not Topic.snapshots(ANY, ANY).matches(other)
    for junk in (f"{topic}/x", "elsewhere/a/b/c/d/e"):
        with pytest.raises(TopicError):
            Topic.parse(junk)


def test_parse_snapshot_messages() -> None:
    eid, data = uuid7(), jpeg()
    assert parse_message(Topic.snapshots("node-a", eid), data) == Snapshot("node-a", eid, data)

    image = with_exif()
    exif = parse_message(Topic.snapshots("node-a", eid), image)
    assert isinstance(exif, Rejected) and exif.event_id == f"{eid}/snapshot" and "APP1" in exif.error
    # A refused image is not kept (it may carry what the node must never send): its hash is.
    assert exif.stored_payload == b""
    assert f"sha256 {hashlib.sha256(image).hexdigest()}, {len(image)} bytes" in exif.error

    bad_id = parse_message(Topic.snapshots("node-a", "not-a-uuid"), data)
    assert isinstance(bad_id, Rejected) and bad_id.event_id == "not-a-uuid/snapshot"
    assert "not a UUIDv7" in bad_id.error
    v4 = "0b5d6a4e-8f0c-4c3e-9d5e-1f2a3b4c5d6e"  # a UUID, but not version 7
    assert isinstance(parse_message(Topic.snapshots("node-a", v4), data), Rejected)
    too_long = parse_message(Topic.snapshots("node-a", "x" * 65), data)
    assert isinstance(too_long, Rejected) and too_long.event_id is None

    big = jpeg(1200, 900, params=[cv2.IMWRITE_JPEG_QUALITY, 100])
    oversized = parse_message(Topic.snapshots("node-a", eid), big, max_snapshot_bytes=len(big) - 1)
    assert isinstance(oversized, Rejected) and "exceeds the limit" in oversized.error
    assert oversized.stored_payload == b"" and hashlib.sha256(big).hexdigest() in oversized.error


def test_event_snapshot_fields() -> None:
    assert (make_event().snapshot, make_event().snapshot_withheld) == ("none", None)
    held = make_event(snapshot="withheld", snapshot_withheld="model_checksum")
    assert Event.from_payload(held.to_payload()) == held
    for bad in ({"snapshot": "withheld"}, {"snapshot": "attached", "snapshot_withheld": "encode_error"},
                {"snapshot": "/9j/4AAQSkZJRg=="}, {"snapshot": "withheld", "snapshot_withheld": "because"}):
        with pytest.raises(ValueError):
            make_event(**bad)


# --- the store (SQLite and PostgreSQL) ---------------------------------------------------


def test_snapshot_stored_once_and_linked_in_either_order(place_store: Store) -> None:
    store = place_store
    first = make_event(snapshot="attached")  # snapshot before its event
    second = make_event(snapshot="attached", started_at=datetime.now(UTC) - timedelta(minutes=1))
    plain = make_event(started_at=datetime.now(UTC) - timedelta(minutes=2))
    a, b = jpeg(seed=1), jpeg(seed=2)

    assert store.insert_snapshot(first.event_id, "node-a", a) is True
    assert store.insert_snapshot(first.event_id, "node-a", b) is False  # redelivery: first copy stays
    assert store.get_snapshot(first.event_id) == a
    assert store.query_events() == []  # a snapshot alone is no event
    assert store.insert_many([first, second, plain]) == 3
    assert store.insert_snapshot(second.event_id, "node-a", b) is True  # snapshot after its event

    rows = {r["event_id"]: r for r in store.query_events()}
    assert {k: (r["has_snapshot"], r["snapshot"]) for k, r in rows.items()} == {
        first.event_id: (True, "attached"), second.event_id: (True, "attached"), plain.event_id: (False, "none")}
    assert store.get_snapshot(plain.event_id) is None
    assert store.count_snapshots() == 2

    # A snapshot filed under another node's event id is kept but not linked to it.
    other = make_event(started_at=datetime.now(UTC) - timedelta(minutes=3))
    store.insert_many([other])
    store.insert_snapshot(other.event_id, "node-b", a)
    assert {r["event_id"]: r for r in store.query_events()}[other.event_id]["has_snapshot"] is False


def test_withheld_reason_stored_and_updated(place_store: Store) -> None:
    ev = make_event()
    place_store.insert_many([ev])
    ended = Event.model_validate({**ev.model_dump(by_alias=True), "ended_at": datetime.now(UTC), "phase": "end",
                                  "snapshot": "withheld", "snapshot_withheld": "model_missing"})
    assert place_store.insert_many([ended]) == 1  # a more final copy may change the snapshot state
    (row,) = place_store.query_events()
    assert (row["snapshot"], row["snapshot_withheld"], row["has_snapshot"]) == ("withheld", "model_missing", False)


def test_create_all_adds_snapshot_columns_to_an_older_place_log(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:  # the events table as the first release created it
        conn.execute(text(
            "CREATE TABLE events (event_id VARCHAR(36) PRIMARY KEY, seq BIGINT NOT NULL, node_id VARCHAR(63) NOT NULL, "
            "camera_id VARCHAR(63), place_id VARCHAR(63), type VARCHAR(32) NOT NULL, subtype VARCHAR(32), "
            "zone VARCHAR(64), started_at DATETIME NOT NULL, ended_at DATETIME, confidence FLOAT NOT NULL, "
            "region JSON, topic TEXT NOT NULL, received_at DATETIME NOT NULL, updated_at DATETIME NOT NULL, "
            "payload JSON NOT NULL)"))
        conn.execute(text(
            "INSERT INTO events VALUES ('old', 1, 'node-a', 'yard', NULL, 'motion', NULL, NULL, "
            "'2026-11-01 10:00:00.000000', NULL, 0.5, NULL, 't', '2026-11-01 10:00:00.000000', "
            "'2026-11-01 10:00:00.000000', '{}')"))
    engine.dispose()
    store = Store(url)
    store.create_all()
    store.create_all()  # idempotent
    try:
        assert {"snapshot", "snapshot_withheld"} <= {c["name"] for c in inspect(store.engine).get_columns("events")}
        (row,) = store.query_events()
        assert (row["event_id"], row["snapshot"], row["snapshot_withheld"], row["has_snapshot"]) == (
            "old", "none", None, False)
        ev = make_event(snapshot="attached")
        assert store.insert_many([ev]) == 1
    finally:
        store.close()


# --- with a real broker --------------------------------------------------------------


@pytest.mark.parametrize("db", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_snapshot_stored_linked_and_acked(broker: Broker, tmp_path: Path, db: str,
                                          request: pytest.FixtureRequest) -> None:
    database = request.getfixturevalue("pg_url_fresh") if db == "postgresql" else None
    with running_consumer(write_config(broker, tmp_path, database=database)) as (consumer, store):
        node = node_client(broker, "node-a")
        ev = make_event(snapshot="attached")
        data = jpeg(640, 480, params=[cv2.IMWRITE_JPEG_QUALITY, 95])
        row_id = snapshot_row_id(ev.event_id)

        # The snapshot comes first: stored, acked under its own row id, not yet an event.
        assert node.publish_wait(Topic.snapshots("node-a", ev.event_id), data) == 0
        assert row_id in acked_ids(node, {row_id})
        assert store.get_snapshot(ev.event_id) == data
        assert store.query_events() == []

        assert node.publish_wait(Topic.events("node-a", "yard"), ev.to_payload()) == 0
        assert ev.event_id in acked_ids(node, {ev.event_id})
        (row,) = store.query_events()
        assert (row["event_id"], row["snapshot"], row["has_snapshot"]) == (ev.event_id, "attached", True)

        # A redelivered snapshot is acked again and stored once.
        assert node.publish_wait(Topic.snapshots("node-a", ev.event_id), data) == 0
        assert row_id in acked_ids(node, {row_id})
        assert store.count_snapshots() == 1
        stats = consumer.stats.snapshot()
        assert (stats["snapshots"], stats["duplicates"], stats["dead_letters"]) == (1, 1, 0)


def test_node_cannot_send_a_snapshot_for_another_node(broker: Broker, tmp_path: Path) -> None:
    with running_consumer(write_config(broker, tmp_path)) as (_, store):
        node_a = node_client(broker, "node-a")
        forged, own = uuid7(), uuid7()
        assert node_a.publish_wait(Topic.snapshots("node-b", forged), jpeg()) == NOT_AUTHORIZED
        assert node_a.publish_wait(Topic.snapshots("node-a", own), jpeg()) == 0
        # In order from one publisher: had the forged one got through, it would be stored first.
        wait_until(lambda: store.get_snapshot(own) is not None, T, message="own snapshot stored")
        assert store.get_snapshot(forged) is None and store.count_snapshots() == 1
        assert store.query_dead_letters() == []


def test_bad_snapshots_are_dead_lettered_and_acked(broker: Broker, tmp_path: Path) -> None:
    with running_consumer(write_config(broker, tmp_path)) as (consumer, store):
        node = node_client(broker, "node-a")
        junk_id, exif_id, good_id = uuid7(), uuid7(), uuid7()
        bad = [(Topic.snapshots("node-a", junk_id), b"\x89PNG\r\n\x1a\n not a jpeg"),
               (Topic.snapshots("node-a", exif_id), with_exif()),
               (Topic.snapshots("node-a", "nonsense"), jpeg())]
        for topic, payload in bad:
            assert node.publish_wait(topic, payload) == 0  # the node's own connection: one per account
        assert node.publish_wait(Topic.snapshots("node-a", good_id), jpeg()) == 0

        expected = {f"{junk_id}/snapshot", f"{exif_id}/snapshot", "nonsense/snapshot", f"{good_id}/snapshot"}
        assert acked_ids(node, expected) >= expected
        letters = sorted(store.query_dead_letters(), key=lambda r: r["id"])
        assert [(r["topic"], r["payload"]) for r in letters] == [(t, b"") for t, _ in bad]
        assert all(hashlib.sha256(p).hexdigest() in r["error"] for r, (_, p) in zip(letters, bad, strict=True))
        assert "does not start with FFD8" in letters[0]["error"]
        assert "APP1 (EXIF/XMP metadata)" in letters[1]["error"]
        assert "not a UUIDv7" in letters[2]["error"]
        assert store.count_snapshots() == 1 and store.get_snapshot(exif_id) is None
        assert consumer.stats.snapshot()["dead_letters"] == 3


def test_node_outbox_snapshot_row_is_deleted_by_the_consumers_ack(broker: Broker, tmp_path: Path) -> None:
    """The whole path with the node's own parts: outbox rows for an event and its
    snapshot → Publisher → Mosquitto → consumer → Ack → both rows gone."""
    outbox = Outbox(tmp_path / "outbox.db")
    cfg = MqttSection(host=broker.host, port=broker.port, password=broker.password("node-a"))
    publisher = Publisher("node-a", cfg, outbox)
    try:
        with running_consumer(write_config(broker, tmp_path)) as (_, store):
            ev = make_event(snapshot="attached").model_copy(update={"seq": outbox.next_seq()})
            data = jpeg(320, 240)
            assert outbox.put(snapshot_row_id(ev.event_id), Topic.snapshots("node-a", ev.event_id), data)
            assert outbox.put(ev.event_id, Topic.events("node-a", "yard"), ev.to_payload())
            publisher.start()
            wait_until(lambda: outbox.depth() == 0, T, message="event and snapshot rows acked")
            (row,) = store.query_events()
            assert row["has_snapshot"] is True and store.get_snapshot(ev.event_id) == data
            assert outbox.counters()["failed"] == 0
    finally:
        publisher.stop(timeout=2)
        outbox.close()
