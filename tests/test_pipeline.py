"""One camera's pipeline (edge/pipeline.py) driven by frame time: how events come out of it."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

import numpy as np
from vaktpost.edge.config import parse
from vaktpost.edge.detectors import NullDetector
from vaktpost.edge.events.lifecycle import Update
from vaktpost.edge.pipeline import CameraPipeline

T0 = datetime(2024, 5, 14, 19, 0, tzinfo=timezone.utc)


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
