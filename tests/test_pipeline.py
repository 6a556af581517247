"""One camera's pipeline (edge/pipeline.py) driven by frame time: how events come out of it."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

import vaktpost.edge
from vaktpost.contract.events import EventType
from vaktpost.edge.config import parse
from vaktpost.edge.detectors import NullDetector
from vaktpost.edge.events.factory import EventIdentity, health_event, new_event, restate
from vaktpost.edge.events.lifecycle import Update
from vaktpost.edge.pipeline import CameraPipeline

T0 = datetime(2024, 5, 14, 19, 0, tzinfo=UTC)


def pipeline() -> CameraPipeline:
    cfg = parse({"node": {"id": "node-a"},
                 "cameras": [{"id": "gate", "source": "gate.avi", "detector": {"kind": "none"}}]})
    seq = itertools.count()
    return CameraPipeline("node-a", cfg.cameras[0], lambda: next(seq), "UTC", detector=NullDetector())


def frame(k: int) -> np.ndarray:
    rng = np.random.default_rng(k)
    base = np.tile(np.linspace(0, 255, 320, dtype=np.uint8), (240, 1))
    return np.dstack([base] * 3) + rng.integers(0, 3, (240, 320, 3), dtype=np.uint8)


def test_a_long_outage_is_one_signal_lost_event_from_loss_to_return() -> None:
    """The live node looks for frames about once a second (a little more than a second apart):
    37 s without frames is one tamper/signal_lost event, ended when frames return."""
    pipe = pipeline()
    ups: list[Update] = []
    t = 0.0
    for k in range(10):  # 2 s of frames at 5 fps
        t = 0.2 * k
        ups += pipe.process(frame(k), T0 + timedelta(seconds=t))
    last_frame = t
    idle = last_frame
    while idle < last_frame + 37:
        idle += 1.02  # wait_newer(timeout=1.0) plus the loop's own time
        ups += pipe.idle(T0 + timedelta(seconds=idle))
    back = idle + 0.5
    for k in range(5):
        ups += pipe.process(frame(100 + k), T0 + timedelta(seconds=back + 0.2 * k))
    lost = [u for u in ups if u.event.subtype == "signal_lost"]
    assert len({u.event.event_id for u in lost}) == 1, [(u.phase, u.event.started_at) for u in lost]
    assert lost[0].phase == "start" and lost[-1].phase == "end"
    end = lost[-1].event
    # Lost once signal_lost_seconds (5 s) had passed without a frame; over when the next frame came.
    assert end.started_at - T0 <= timedelta(seconds=last_frame + 5 + 1.1)
    assert end.ended_at == T0 + timedelta(seconds=back)
    assert pipe.finish() == [], "nothing left running"


def test_the_node_builds_events_in_one_place() -> None:
    edge = Path(vaktpost.edge.__file__).parent
    builders = sorted(str(p.relative_to(edge)) for p in edge.rglob("*.py")
                      if re.search(r"(?<![\w.])Event(\(|\.model_validate)", p.read_text()))
    assert builders == ["events/factory.py"]


def test_restated_messages_keep_the_identity_and_are_validated() -> None:
    seq = itertools.count(7)
    first = new_event(EventIdentity("node-a", "gate", EventType.motion), lambda: next(seq), T0,
                      confidence=0.51234, region=(0.1, 0.2, 0.3, 0.4))
    end = restate(first, ended_at=T0 + timedelta(seconds=3), confidence=0.9, region=(0.123, 0.2, 0.5, 0.61))
    assert (end.event_id, end.seq, end.started_at, end.type) == (first.event_id, 7, T0, EventType.motion)
    assert first.confidence == 0.512 and end.region == [0.12, 0.2, 0.5, 0.61]
    with pytest.raises(ValidationError):
        restate(first, region=(0.5, 0.5, 0.1, 0.1))
    moment = health_event("node-a", "gate", "snapshot_withheld", lambda: next(seq), T0)
    lasting = health_event("node-a", "gate", "camera_lost", lambda: next(seq), T0, lasting=True)
    assert moment.ended_at == moment.started_at == T0 and lasting.ended_at is None


class CountingDetector:
    """The real detector, counting its runs (times set by the test)."""

    def __init__(self, inner) -> None:
        self.inner, self.calls, self.now = inner, [], 0.0

    def detect(self, image_bgr):
        self.calls.append(self.now)
        return self.inner.detect(image_bgr)


def test_a_real_person_two_seconds_in_an_armed_zone_is_an_intrusion_counted_from_the_first_detection() -> None:
    """A real person (a photo crop, 110 px tall) walks slowly in an armed zone of a real road for 2 s at
    10 fps. The detector runs at confirm_fps while the candidate waits, the track confirms on M of N
    runs, and the intrusion counts from the first detection: one event, started when they came."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from real_composites import Walker, clip_frames, paste, require_real

    from vaktpost.edge.config.detectors import DetectorSettings
    from vaktpost.edge.detectors.factory import create_detector
    from vaktpost.edge.modelfile import ModelError

    require_real()
    try:
        ssd = CountingDetector(create_detector(DetectorSettings(threads=1)))
    except ModelError as e:
        pytest.skip(f"SSD model not available: {e}")
    always = [{"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "from": "00:00", "to": "24:00"}]
    cfg = parse({"node": {"id": "node-a"}, "cameras": [{
        "id": "road", "source": "road.avi",
        "zones": [{"name": "road", "polygon": [[0.0, 0.3], [1.0, 0.3], [1.0, 1.0], [0.0, 1.0]], "armed": always}],
        "rules": {"loitering": False},
    }]})
    seq = itertools.count()
    pipe = CameraPipeline("node-a", cfg.cameras[0], lambda: next(seq), "UTC", detector=ssd)
    road = clip_frames("empty_road.avi", step=3)  # 30 fps → 10 fps
    walker = Walker(crop=2, height=110, x=250, y=300, vx=25, start=3.0, end=5.0)
    ups: list[Update] = []
    for i in range(70):
        t = i / 10
        frame, _ = paste(road[i], [walker], t)
        ssd.now = t
        ups += pipe.process(frame, T0 + timedelta(seconds=t))
    ups += pipe.finish()
    intrusions = [u for u in ups if u.event.type == EventType.intrusion]
    assert len({u.event.event_id for u in intrusions}) == 1, [(u.phase, u.event.started_at) for u in intrusions]
    start = intrusions[0].event.started_at - T0
    assert timedelta(seconds=3.0) <= start <= timedelta(seconds=3.3)
    # Faster than max_fps (2/s) while the person was a candidate.
    assert len([t for t in ssd.calls if 3.0 <= t < 4.0]) >= 4
