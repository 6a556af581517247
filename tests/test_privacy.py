"""What leaves a node, checked from the outside: `vaktpost analyze --snapshots`, privacy
masks in emitted snapshots, failing closed on a real Mosquitto, an audit of every payload
on the node's topic tree, and `vaktpost privacy report` (docs/privacy.md, "Proven by tests").

Nodes play their files unpaced (`pace: false`), on the files' own clock, so what they
send does not depend on how busy the machine is.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from mqtt_harness import Broker, running_central, wait_until

import vaktpost.edge.node
from vaktpost.contract.events import Event, EventType
from vaktpost.contract.messages import Ack, Heartbeat, NodeSetup, Status
from vaktpost.contract.topics import ANY, Kind, Topic, snapshot_row_id
from vaktpost.edge.analyze import analyze
from vaktpost.edge.config import parse
from vaktpost.edge.config.snapshot import SnapshotPolicy
from vaktpost.edge.delivery.transport import Publisher
from vaktpost.edge.detectors import NullDetector
from vaktpost.edge.events.lifecycle import Update
from vaktpost.edge.evidence.anonymise import Anonymiser
from vaktpost.edge.evidence.snapshot import jpeg_segments
from vaktpost.edge.modelfile import MODELS_DIR
from vaktpost.edge.node import Node
from vaktpost.edge.pipeline import CameraPipeline
from vaktpost.edge.privacy.masks import polygon_mask
from vaktpost.scenes import Figure, LensCover, Scene, render_frame, write_video

T0 = datetime(2024, 5, 14, 19, 0, tzinfo=UTC)
EVERY_DAY = [{"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "from": "00:00", "to": "23:59"}]
YARD = [[0.0, 0.6], [1.0, 0.6], [1.0, 1.0], [0.0, 1.0]]
# Over the building (a rectangle) and over the sky and tree (a slanted triangle): textured,
# bright picture in every frame, so an unmasked pixel would stand out.
MASKS = [[[0.05, 0.1], [0.35, 0.1], [0.35, 0.45], [0.05, 0.45]],
         [[0.55, 0.05], [0.95, 0.30], [0.60, 0.55]]]
APP_OR_COM = set(range(0xE0, 0xF0)) | {0xFE}
B64_RUN = re.compile(rb"[A-Za-z0-9+/]{200,}")
NODE_TREE = f"{Topic.node_prefix(ANY)}/#"


# --- clips ---------------------------------------------------------------------------


def person_then_cover(width: int = 640, height: int = 360) -> Scene:
    """A photographed person crosses the yard (0.5-5.5 s), then the lens is covered (6 s, stays).
    (The astronaut photo: the cameraman, side-on behind a tripod, scores 0.53 on the whole
    frame and is missed in a motion crop, so whether he raises an intrusion is luck.)"""
    return Scene(width=width, height=height, fps=10, duration_s=10, seed=7, noise_sigma=3.0, figures=[
        Figure(0.5, 5.5, [(-0.1, 0.86), (1.1, 0.82)], height=0.42, kind="astronaut", name="astronaut"),
    ], camera_effects=[LensCover(6.0, None, ramp_s=0.5)])


@pytest.fixture(scope="module")
def clip_640(tmp_path_factory) -> Path:
    return write_video(person_then_cover(), tmp_path_factory.mktemp("privacy") / "person_cover.avi")


@pytest.fixture(scope="module")
def clip_1280(tmp_path_factory) -> Path:
    return write_video(person_then_cover(1280, 720), tmp_path_factory.mktemp("privacy") / "person_cover_720p.avi")


@pytest.fixture(scope="module")
def covered_clip(tmp_path_factory) -> Path:
    """Only a lens cover at 1.5 s (the tamper event starts about 3 s later); 8 s."""
    scene = Scene(width=640, height=360, fps=10, duration_s=8, seed=31, noise_sigma=3.0,
                  camera_effects=[LensCover(1.5, None, ramp_s=0.5)])
    return write_video(scene, tmp_path_factory.mktemp("privacy") / "covered.avi")


def camera(video: Path, **kw) -> dict:
    return {"id": "yard", "source": str(video), "fps": 5,
            "zones": [{"name": "yard", "polygon": YARD, "armed": EVERY_DAY}], **kw}


# --- checks ----------------------------------------------------------------------------


def clean_jpeg(data: bytes) -> np.ndarray:
    """Decoded image of a JPEG that has nothing but the image in it."""
    markers = jpeg_segments(data)  # raises on anything that is not a well-formed JPEG
    assert markers[0] == 0xD8 and markers[-1] == 0xD9
    assert not APP_OR_COM & set(markers), [hex(m) for m in markers if m in APP_OR_COM]
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def assert_masked(image: np.ndarray, masks=MASKS, fill: int = 0) -> None:
    """The privacy polygons, rasterised at the snapshot's size, are the fill colour up to JPEG error.

    JPEG rings along a hard edge (and its chroma is half resolution), so pixels near the
    mask's edge may deviate by a few tens of levels; inside the mask eroded by 2 px nearly
    all are within 10 and the mean within 1.5, and a JPEG block (8 px) in every one is within 10.
    """
    mask = polygon_mask(masks, image.shape).astype(np.uint8)
    dev = np.abs(image.astype(int) - fill).max(axis=2)
    inner = cv2.erode(mask, np.ones((5, 5), np.uint8)).astype(bool)
    deep = cv2.erode(mask, np.ones((17, 17), np.uint8)).astype(bool)
    assert inner.sum() > 0.05 * mask.size
    assert dev[inner].mean() <= 1.5, dev[inner].mean()
    assert np.percentile(dev[inner], 99) <= 10, np.percentile(dev[inner], 99)
    assert dev[inner].max() <= 48, dev[inner].max()
    assert dev[deep].max() <= 10, dev[deep].max()


# --- 1. analyze --snapshots ---------------------------------------------------------------


def test_analyze_writes_exactly_the_attached_snapshots(clip_640: Path, tmp_path: Path) -> None:
    cfg_dict = {"node": {"id": "node-a"},
                "cameras": [camera(clip_640, snapshots={"intrusion": "anonymised", "motion": "none",
                                                        "tamper": "anonymised"})]}
    cfg_file = tmp_path / "node.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg_dict))
    out, snaps = tmp_path / "events.jsonl", tmp_path / "snaps"
    run = subprocess.run([sys.executable, "-m", "vaktpost.cli", "analyze", str(clip_640), "--config", str(cfg_file),
                          "--start-time", T0.isoformat(), "--out", str(out), "--snapshots", str(snaps)],
                         capture_output=True, text=True, timeout=240, check=False)
    assert run.returncode == 0, run.stderr
    events = [Event.from_payload(line) for line in out.read_text().splitlines()]
    types = {e.type.value for e in events}
    assert {"motion", "intrusion", "tamper"} <= types, types

    attached = {e.event_id for e in events if e.snapshot == "attached"}
    # Intrusion and tamper want snapshots and get them; motion does not.
    assert {e.type.value for e in events if e.snapshot == "attached"} == {"intrusion", "tamper"}
    assert all(e.snapshot == "none" for e in events if e.type == EventType.motion)
    files = {p.stem: p for p in snaps.iterdir()}
    assert all(p.suffix == ".jpg" for p in files.values())
    assert set(files) == attached
    for path in files.values():
        clean_jpeg(path.read_bytes())

    # The same analysis in-process: the same events (ids are random) and byte-identical JPEGs.
    cfg = parse(cfg_dict)
    direct = analyze(clip_640, cfg, cfg.cameras[0], T0)
    assert [e.model_dump(exclude={"event_id"}) for e in direct.events] == \
           [e.model_dump(exclude={"event_id"}) for e in events]
    assert len(direct.snapshots) == len(files)
    for cli_event, event in zip(events, direct.events):
        if cli_event.snapshot == "attached":
            assert files[cli_event.event_id].read_bytes() == direct.snapshots[event.event_id]
        else:
            assert event.event_id not in direct.snapshots


# --- 2. privacy masks in emitted snapshots ---------------------------------------------------


@pytest.mark.parametrize("clip, size, snap_width", [
    pytest.param("clip_640", (640, 360), 640, id="640x360"),
    pytest.param("clip_1280", (1280, 720), 480, id="1280x720", marks=pytest.mark.slow),
])
def test_privacy_masks_are_filled_in_every_snapshot(clip: str, size: tuple[int, int], snap_width: int,
                                                    request: pytest.FixtureRequest) -> None:
    video: Path = request.getfixturevalue(clip)
    cfg = parse({"node": {"id": "node-a"}, "cameras": [camera(
        video, privacy_masks=MASKS, snapshots={"motion": "anonymised", "tamper": "anonymised"},
        snapshot={"width": snap_width})]})
    result = analyze(video, cfg, cfg.cameras[0], T0)
    attached = [e for e in result.events if e.snapshot == "attached"]
    assert {e.type.value for e in attached} == {"motion", "tamper"}
    assert set(result.snapshots) == {e.event_id for e in attached}

    # What the masks hide is there in the camera's picture: bright, textured.
    frame = render_frame(person_then_cover(*size), 1.0)
    assert frame[polygon_mask(MASKS, frame.shape)].mean() > 60

    w, h = size
    for event in attached:
        image = clean_jpeg(result.snapshots[event.event_id])
        assert image.shape[:2] == (round(h * snap_width / w), snap_width)
        assert_masked(image)
        if event.type == EventType.motion:  # a picture of the yard, not a black frame
            outside = ~polygon_mask(MASKS, image.shape)
            assert image[outside].mean() > 40


def test_snapshot_fields_hold_for_every_message_of_an_event(clip_640: Path) -> None:
    """Messages made without a frame (idle: signal lost; finish: clip over) take no snapshot and
    keep the fields of their event's first message (the regression fixed with these tests)."""
    cfg = parse({"node": {"id": "node-a"}, "cameras": [camera(clip_640, detector={"kind": "none"})]})
    seq = iter(range(1000))
    pipe = CameraPipeline("node-a", cfg.cameras[0], lambda: next(seq), "UTC", detector=NullDetector())
    scene = person_then_cover()
    ups: list[Update] = []
    t = 0.0
    for t in np.arange(6.0, 10.0, 0.2):  # lens covered from 6 s: a tamper event with a snapshot
        ups += pipe.process(render_frame(scene, float(t)), T0 + timedelta(seconds=float(t)))
    for dt in range(1, 8):  # then no frames: signal_lost starts without a frame
        ups += pipe.idle(T0 + timedelta(seconds=float(t) + dt))
    for k in range(15):  # frames again (still covered): signal_lost ends with a frame at hand
        ups += pipe.process(render_frame(scene, 9.9), T0 + timedelta(seconds=float(t) + 8 + 0.2 * k))
    ups += pipe.finish()  # the covered incident ends without a frame

    by_event: dict[str, list[Update]] = {}
    for u in ups:
        by_event.setdefault(u.event.event_id, []).append(u)
    tamper = [(msgs[0].event.subtype, msgs) for msgs in by_event.values() if msgs[0].event.type == "tamper"]
    assert {sub for sub, _ in tamper} == {"covered", "signal_lost"}, tamper
    for subtype, msgs in tamper:
        assert msgs[-1].phase == "end"
        assert all(u.snapshot is None for u in msgs[1:]), "a snapshot goes with the first message only"
        want = "none" if subtype == "signal_lost" else "attached"  # no frame when signal_lost starts
        assert [u.event.snapshot for u in msgs] == [want] * len(msgs), subtype
        assert (msgs[0].snapshot is not None) == (want == "attached")


# --- 3 and 4. a node on a real Mosquitto: fail closed, and every payload audited ------------


def models_copy(tmp_path: Path, damage: str | None) -> Path:
    """models/ copied; `damage` "missing" deletes centerface.onnx, "flipped" flips one byte of it."""
    models = tmp_path / "models"
    shutil.copytree(MODELS_DIR, models, ignore=shutil.ignore_patterns("rebuild", "*.py"))
    face = models / "centerface.onnx"
    if damage == "missing":
        face.unlink()
    elif damage == "flipped":
        data = bytearray(face.read_bytes())
        data[len(data) // 2] ^= 0x01
        face.write_bytes(bytes(data))
    return models


@dataclass
class NodeRun:
    messages: list  # everything a consumer account received on the node tree
    acks: list  # everything node-a received on its acks topic
    anonymiser: Anonymiser
    stored: dict[str, bytes | None]  # event id of each snapshot seen on MQTT → the central copy
    stored_count: int
    dead_letters: list


def run_node(broker: Broker, tmp_path: Path, video: Path, models: Path, monkeypatch: pytest.MonkeyPatch) -> NodeRun:
    """Run node-a over `video` with its anonymiser loading from `models`, while the central
    consumer stores and acks and everything is recorded: a consumer account listening on the
    whole node tree, and the acks as node-a receives them (only its account may read them)."""
    cfg = parse({
        "node": {"id": "node-a"},
        "mqtt": {**broker.mqtt_config("node-a"), "heartbeat_seconds": 1},
        "spool": {"path": str(tmp_path / "outbox.db")},
        # Privacy masks too: a covered lens must still read as "covered" on a masked camera.
        "cameras": [camera(video, detector={"kind": "none"}, privacy_masks=MASKS, pace=False,
                           start_time=T0.isoformat(),
                           snapshots={"tamper": "anonymised", "scene_change": "anonymised"})],
    })
    anonymiser = Anonymiser.create(cfg.cameras[0].snapshot, models_dir=models)
    # The node builds its pipelines itself; hand them the anonymiser that uses the copied models.
    monkeypatch.setattr(vaktpost.edge.node, "CameraPipeline", functools.partial(CameraPipeline, anonymiser=anonymiser))
    # One connection per account (the broker binds client id to username): the listener gets
    # a consumer account of its own, and the acks are recorded as the node's publisher receives
    # them, since only node-a's account may read them.
    broker.add_accounts(consumers=["listener"])
    listener = broker.client("listener")
    assert listener.subscribe_wait(NODE_TREE) < 0x80
    messages: list = []
    acks: list = []
    received = Publisher._on_message

    def record_acks(self: Publisher, client: object, userdata: object, msg: object) -> None:
        acks.append(msg)
        received(self, client, userdata, msg)

    monkeypatch.setattr(Publisher, "_on_message", record_acks)
    with running_central(broker, tmp_path) as store:
        node = Node(cfg)
        node.run(drain_timeout=30)
        assert node.outbox.depth() == 0, "everything acknowledged"

        def offline_seen() -> bool:
            messages.extend(listener.drain())
            return any(m.topic == Topic.status("node-a") and json.loads(m.payload)["state"] == "offline"
                       for m in messages)

        wait_until(offline_seen, 15, message="offline status received")
        snapshot_ids = {Topic.parse(m.topic).leaf for m in messages if Topic.snapshots(ANY, ANY).matches(m.topic)}
        rows = {json.loads(m.payload)["event_id"] for m in messages if Topic.events(ANY, ANY).matches(m.topic)}
        rows |= {snapshot_row_id(i) for i in snapshot_ids}

        def all_acked() -> bool:
            return rows <= {i for m in list(acks) for i in json.loads(m.payload)["event_ids"]}

        wait_until(all_acked, 15, message="acks for every event and snapshot received")
        return NodeRun(messages, acks, anonymiser, {i: store.get_snapshot(i) for i in snapshot_ids},
                       store.count_snapshots(), store.query_dead_letters())


def audit(messages: list, acks: list) -> tuple[list[Event], dict[str, bytes]]:
    """Check every message on the node tree; return the events and the snapshots by event id."""
    events: list[Event] = []
    snapshots: dict[str, bytes] = {}
    kinds = set()
    for m in [*messages, *acks]:
        payload = bytes(m.payload)
        topic = Topic.parse(m.topic)
        assert topic.node_id == "node-a", m.topic
        kind = topic.kind
        kinds.add(kind)
        if kind is Kind.snapshots:
            event_id = topic.leaf
            assert event_id not in snapshots, "one snapshot per event"
            clean_jpeg(payload)
            snapshots[event_id] = payload
            continue
        # Everything else is small JSON text with no image in it, in the schema of its topic.
        # (The retained config message lists a year of holiday dates: larger, still no image.)
        assert len(payload) < (65536 if kind == "config" else 4096), (m.topic, len(payload))
        for magic in (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"/9j/", b"iVBORw0KGgo"):
            assert magic not in payload, (m.topic, magic)
        assert not B64_RUN.search(payload), m.topic
        data = json.loads(payload.decode("utf-8"))
        model = {"events": Event, "status": Status, "heartbeat": Heartbeat, "acks": Ack, "config": NodeSetup}[kind]
        fields = {f.alias or name for name, f in model.model_fields.items()}
        assert set(data) <= fields, (m.topic, set(data) - fields)
        parsed = model.model_validate_json(payload)
        if kind == "events":
            assert m.topic == Topic.events("node-a", parsed.camera_id)
            events.append(parsed)
    assert {"events", "status", "heartbeat", "acks"} <= kinds, kinds
    attached = {e.event_id for e in events if e.snapshot == "attached"}
    assert set(snapshots) <= attached, "a snapshot belongs to an event that says attached"
    assert attached <= set(snapshots), "every attached snapshot arrived"
    return events, snapshots


@pytest.mark.parametrize("damage, reason", [("missing", "model_missing"), ("flipped", "model_checksum")])
def test_node_fails_closed_on_a_real_broker(broker: Broker, tmp_path: Path, covered_clip: Path,
                                           monkeypatch: pytest.MonkeyPatch, damage: str, reason: str) -> None:
    run = run_node(broker, tmp_path, covered_clip, models_copy(tmp_path, damage), monkeypatch)
    assert run.anonymiser.unavailable == reason
    assert not [m.topic for m in run.messages if "/snapshots/" in m.topic], "no image leaves the node"
    events, snapshots = audit(run.messages, run.acks)
    assert snapshots == {}
    tamper = [e for e in events if e.type == EventType.tamper]  # covered, as a rule: the subtype is not the point
    assert tamper and all(e.snapshot == "withheld" and e.snapshot_withheld == reason for e in tamper)
    assert any(e.ended_at is not None for e in tamper), "the last message still says withheld"
    health = [e for e in events if e.type == EventType.health and e.subtype == "snapshot_withheld"]
    assert len(health) == 1 and health[0].camera_id == "yard"
    assert run.stored_count == 0 and run.dead_letters == []


def test_node_sends_only_clean_snapshots_and_json_on_a_real_broker(
        broker: Broker, tmp_path: Path, covered_clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The same run with the copied models intact: the snapshot is sent, and nothing else is binary.
    run = run_node(broker, tmp_path, covered_clip, models_copy(tmp_path, None), monkeypatch)
    assert run.anonymiser.unavailable is None
    events, snapshots = audit(run.messages, run.acks)
    tamper = [e for e in events if e.type == EventType.tamper]
    assert tamper and all(e.snapshot == "attached" and e.snapshot_withheld is None for e in tamper)
    assert any(e.ended_at is not None for e in tamper), "the last message still says attached"
    assert set(snapshots) == {tamper[0].event_id}
    assert not [e for e in events if e.snapshot == "withheld" or e.subtype == "snapshot_withheld"]
    (event_id, data), = snapshots.items()
    assert run.stored == {event_id: data}, "stored centrally byte for byte"
    assert run.stored_count == 1 and run.dead_letters == []


# --- 5. privacy report -------------------------------------------------------------------------


def test_privacy_report_names_fields_cameras_masks_retention_and_snapshot_policy(tmp_path: Path) -> None:
    gate_masks = [[[0.0, 0.0], [0.5, 0.0], [0.5, 0.5], [0.0, 0.5]],  # 25 %
                  [[0.6, 0.6], [1.0, 0.6], [1.0, 1.0], [0.6, 1.0]]]  # 16 %, apart from the first
    hall_masks = [[[0.0, 0.0], [1.0, 0.0], [1.0, 0.1], [0.0, 0.1]]]  # 10 %
    policies = {
        "gate": {"intrusion": "anonymised", "tamper": "none", "scene_change": "anonymised",
                 "motion": "none", "loitering": "none"},
        "hall": {"intrusion": "none", "tamper": "none", "scene_change": "none", "motion": "none",
                 "loitering": "anonymised"},
    }
    cfg = {"node": {"id": "node-a"}, "retention": {"max_age": "36h"}, "cameras": [
        {"id": "gate", "source": "gate.avi", "privacy_masks": gate_masks, "snapshots": policies["gate"]},
        {"id": "hall", "source": "hall.avi", "privacy_masks": hall_masks, "snapshots": policies["hall"]},
    ]}
    cfg_file = tmp_path / "node.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg))
    run = subprocess.run([sys.executable, "-m", "vaktpost.cli", "privacy", "report", "--config", str(cfg_file)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    text = run.stdout

    for name, f in Event.model_fields.items():
        assert f"`{f.alias or name}`" in text, f"event field {f.alias or name} not in the report"
    assert "1 day, 12:00:00" in text and "retention.max_age" in text  # 36 h

    sections = re.split(r"^### Camera ", text, flags=re.MULTILINE)
    by_camera = {s.split("`")[1]: s.split("\n## ")[0] for s in sections[1:]}
    assert set(by_camera) == {"gate", "hall"}
    for cam_id, masks, area in (("gate", gate_masks, 0.41), ("hall", hall_masks, 0.10)):
        section = by_camera[cam_id]
        m = re.search(r"Privacy masks: (\d+), covering ([\d.]+)% of the image", section)
        assert m, section
        assert int(m.group(1)) == len(masks)
        # Rasterising is conservative (every touched pixel plus a margin): a little over the area.
        assert area - 0.001 <= float(m.group(2)) / 100 <= area + 0.015, m.group(2)
        anonymised = {t for t, mode in policies[cam_id].items() if mode == "anonymised"}
        assert set(SnapshotPolicy.model_fields) == set(policies[cam_id])
        for event_type in SnapshotPolicy.model_fields:
            row = re.search(rf"^\s*\| `{event_type}` \| ([^|]*) \|$", section, flags=re.MULTILINE)
            assert row, (cam_id, event_type)
            assert ("anonymised" in row.group(1)) == (event_type in anonymised), (cam_id, event_type, row.group(0))
        # Nowhere else in the camera's section is a snapshot called anonymised.
        lines = [ln for ln in section.splitlines() if "anonymised" in ln.lower()]
        assert len(lines) == len(anonymised), lines


# --- small people are hidden, moving or standing still -------------------------------

sys.path.insert(0, str(Path(__file__).parent))
from real_people import backgrounds, paste, person_crops, real_dir, scaled  # noqa: E402

from vaktpost.edge.config.snapshot import SnapshotSettings  # noqa: E402
from vaktpost.edge.detectors import Detection  # noqa: E402
from vaktpost.edge.evidence.snapshot import snapshot_image  # noqa: E402

SMALL = SnapshotSettings(width=480)


def survivors(image: np.ndarray, box: tuple[int, int, int, int]) -> int:
    """Pixels of the pasted rectangle `box` that are not the fill colour (black)."""
    x1, y1, x2, y2 = box
    return int((image[y1:y2, x1:x2] != 0).any(axis=2).sum())


def legs(box: tuple[int, int, int, int], w: int, h: int) -> tuple[float, float, float, float]:
    """A motion box holding only the lower half of a pasted person, as the motion stage often reports."""
    x1, y1, x2, y2 = box
    return (x1 / w, (y1 + y2) / 2 / h, x2 / w, y2 / h)


def test_real_small_people_walking_and_standing_still_are_hidden() -> None:
    real = real_dir()
    if real is None:
        pytest.skip("../shared/data/real is absent (real crops on a real background)")
    crops = person_crops(real)
    frame = backgrounds(real, 1)[0]
    # Both full-body crops, 25 px tall: one stands still (no motion, no track), one walks.
    still = paste(frame, scaled(crops[5].image, 25), 200, 150)
    walking = paste(frame, scaled(crops[12].image, 25), 330, 230)
    out = snapshot_image(Anonymiser(SMALL), frame, [], SMALL, moving=[legs(walking, 480, 360)])
    assert survivors(out, still) == 0
    assert survivors(out, walking) == 0
    # The scene is still shown: most of the frame is not filled.
    assert (out != 0).any(axis=2).mean() > 0.8


class SmallBlobDetector:
    """A stand-in for SSDLite's size limit: finds the dark rectangles that are at least a fifth
    of the image height it is given, as SSDLite finds people that fill enough of its input."""

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        h, w = image_bgr.shape[:2]
        n, _, stats, _ = cv2.connectedComponentsWithStats((image_bgr.max(axis=2) < 20).astype(np.uint8))
        return [Detection((x / w, y / h, (x + bw) / w, (y + bh) / h), 0.9)
                for x, y, bw, bh, _ in stats[1:n] if bh >= h / 5]


class NoFaces:
    def detect(self, image_bgr: np.ndarray, threshold: float = 0.5) -> list:
        return []


def test_synthetic_small_people_walking_and_standing_still_are_hidden() -> None:
    rng = np.random.default_rng(1)
    frame = rng.integers(60, 200, (360, 480, 3), dtype=np.uint8)
    still, walking = (100, 80, 110, 105), (300, 250, 310, 275)  # 25 px tall
    for x1, y1, x2, y2 in (still, walking):
        frame[y1:y2, x1:x2] = 5
    an = Anonymiser(SMALL, person_detector=SmallBlobDetector(), faces=NoFaces())
    out = snapshot_image(an, frame, [], SMALL, moving=[legs(walking, 480, 360)])
    assert survivors(out, still) == 0  # found by the fine tiles only: 25 px < 360 / 5
    assert survivors(out, walking) == 0  # the moving region, widened, covers the whole person
    # Without the moving region the walker is still found; without the fine grid nobody is.
    assert survivors(snapshot_image(an, frame, [], SMALL), walking) == 0
    assert SmallBlobDetector().detect(frame) == []
