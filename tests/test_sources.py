"""Frame sources: files, dropping instead of queueing, a camera that disappears."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import numpy as np
import pytest
from mqtt_harness import free_port, wait_until

from vaktpost.contract.events import Event
from vaktpost.edge.analyze import analyze
from vaktpost.edge.capture.sources import (
    LatestFrame,
    OpenCVSource,
    SourceError,
    describe,
)
from vaktpost.edge.config import parse
from vaktpost.edge.node import Node
from vaktpost.scenes import Figure, Scene, write_video


def test_describe_hides_camera_credentials():
    assert describe("rtsp://admin:secret@10.0.0.5/stream") == "rtsp://10.0.0.5/stream"
    assert describe(0) == "V4L2 device 0"


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(SourceError, match="no such file"):
        OpenCVSource(str(tmp_path / "nope.avi"))


def test_latest_frame_drops_rather_than_queues(tmp_path):
    video = write_video(Scene(duration_s=3, fps=10), tmp_path / "v.avi")
    src = LatestFrame(str(video)).start()
    try:
        seen = []
        last = 0
        while not src.ended.is_set() or last < 30:
            f = src.wait_newer(last, timeout=5)
            if f is None:
                break
            seen.append(f.number)
            last = f.number
            src.ended.wait(0.35)  # a slow consumer: ~3 frames arrive per processing step
        assert seen[-1] == 30, "the newest frame is always delivered"
        assert len(seen) < 15, "frames that arrived meanwhile were dropped, not queued"
    finally:
        src.stop()


class FlakyCamera:
    """Opens fails twice, then delivers 5 frames and vanishes."""

    def __init__(self):
        self.opens = 0

    def __call__(self, source):
        self.opens += 1
        if self.opens <= 2:
            raise SourceError("cannot open camera")

        class _Src:
            fps, is_file, n = None, False, 0

            def read(self):
                self.n += 1
                return np.zeros((48, 64, 3), np.uint8) if self.n <= 5 else None

            def close(self):
                pass
        return _Src()


def test_reconnects_with_backoff_and_reports_state():
    states: list[tuple[bool, str]] = []
    got = threading.Event()
    cam = FlakyCamera()

    def on_state(lost, why):
        states.append((lost, why))
        if not lost:
            got.set()
    src = LatestFrame("rtsp://cam/stream", max_backoff=1, on_state=on_state, opener=cam).start()
    try:
        assert got.wait(10), "source restored after failed opens"
        assert src.wait_newer(0, timeout=5) is not None
        assert states[0][0] is True and states[1] == (False, "restored")
    finally:
        src.stop()


def test_camera_that_disappears_gives_a_health_event_not_a_crash(tmp_path):
    # Nothing listens on this RTSP port and no broker is reachable either: the node keeps
    # running, reports the camera as lost, and spools the health event. Its person
    # detector's model is missing too: reported once, and the camera runs without it.
    cfg = parse({
        "node": {"id": "node-a"},
        "mqtt": {"host": "127.0.0.1", "port": free_port(), "password": "x"},
        "spool": {"path": str(tmp_path / "outbox.db")},
        "cameras": [{"id": "gate", "source": f"rtsp://127.0.0.1:{free_port()}/live", "lost_after_seconds": 1,
                     "reconnect_max_seconds": 1,
                     # A zone: the detector is loaded only where a rule can use people.
                     "zones": [{"name": "gate", "polygon": [[0, 0], [1, 0], [1, 1]]}],
                     "detector": {"kind": "ssd", "model": str(tmp_path / "missing.onnx"),
                                  "model_sha256": "0" * 64}}],
    })
    node = Node(cfg)
    stop = threading.Event()
    runner = threading.Thread(target=node.run, args=(stop,), kwargs={"drain_timeout": 0})
    runner.start()
    try:
        wait_until(lambda: node.outbox.depth() >= 2, 30, message="health events spooled")
        assert runner.is_alive()
    finally:
        stop.set()
        runner.join(20)
    events = [Event.from_payload(r.payload) for r in node.outbox.rows()]
    assert [(e.type, e.subtype, e.camera_id) for e in events] == [
        ("health", "detector_unavailable", "gate"), ("health", "camera_lost", "gate")]
    # One rule for health events: a moment has ended_at == started_at, a condition ends when it clears.
    unavailable, lost = events
    assert unavailable.ended_at == unavailable.started_at
    assert lost.ended_at is not None and lost.ended_at > lost.started_at, "closed when the node stopped"


def test_unpaced_file_source_runs_on_frame_time_like_analyze(tmp_path):
    """`pace: false`: the node analyses every frame due at fps, stamped with start_time + the
    frame's time in the file, as fast as it can: the same events as `vaktpost analyze`."""
    video = write_video(Scene(duration_s=12, fps=10, seed=3, figures=[
        Figure(0.5, 4.0, [(0.1, 0.7), (0.9, 0.75)]), Figure(7.5, 11.0, [(0.9, 0.8), (0.2, 0.7)])]),
        tmp_path / "yard.avi")
    start = datetime(2024, 5, 14, 19, 0, tzinfo=UTC)
    cfg = parse({
        "node": {"id": "node-a"},
        "mqtt": {"host": "127.0.0.1", "port": free_port(), "password": "x"},  # no broker: all stays spooled
        "spool": {"path": str(tmp_path / "outbox.db")},
        "cameras": [{"id": "yard", "source": str(video), "fps": 5, "pace": False,
                     "start_time": start.isoformat()}],
    })
    node = Node(cfg)
    began = time.monotonic()
    node.run(drain_timeout=0)
    assert time.monotonic() - began < 12, "not played in real time"
    def key(e):
        return (e.type, e.subtype, e.started_at, e.ended_at, e.zone, e.region)
    spooled = sorted((Event.from_payload(r.payload) for r in node.outbox.rows()), key=lambda e: e.seq)
    expected = analyze(video, cfg, cfg.cameras[0], start).events
    assert len(expected) == 2
    assert [key(e) for e in spooled] == [key(e) for e in expected]
