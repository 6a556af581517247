"""Frame sources: files, dropping instead of queueing, a camera that disappears."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from mqtt_harness import free_port, wait_until
from vaktpost.edge.capture.sources import (
    LatestFrame,
    OpenCVSource,
    SourceError,
    describe,
)
from vaktpost.edge.config import parse
from vaktpost.edge.node import Node

from vaktpost.contract.events import Event
from vaktpost.scenes import Scene, write_video


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
    # running, reports the camera as lost, and spools the health event.
    cfg = parse({
        "node": {"id": "node-a"},
        "mqtt": {"host": "127.0.0.1", "port": free_port(), "password": "x"},
        "spool": {"path": str(tmp_path / "outbox.db")},
        "cameras": [{"id": "gate", "source": f"rtsp://127.0.0.1:{free_port()}/live", "lost_after_seconds": 1,
                     "reconnect_max_seconds": 1}],
    })
    node = Node(cfg)
    stop = threading.Event()
    runner = threading.Thread(target=node.run, args=(stop,), kwargs={"drain_timeout": 0})
    runner.start()
    try:
        wait_until(lambda: node.outbox.depth() >= 1, 30, message="health event spooled")
        assert runner.is_alive()
    finally:
        stop.set()
        runner.join(20)
    events = [Event.from_payload(r.payload) for r in node.outbox.rows()]
    assert [(e.type, e.subtype, e.camera_id) for e in events] == [("health", "camera_lost", "gate")]
    assert events[0].ended_at is not None, "closed when the node stopped"
