"""Offline analysis: the node pipeline over a video file, without MQTT.

Each event is written once, in its final state, as one JSON line in exactly the
MQTT payload schema. Frame times are `start_time + frame_index / video_fps`, and
frames are sampled at the camera's processing `fps`, as the live node would.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from vaktpost.contract.events import Event
from vaktpost.edge.capture.sources import SourceError, open_source, sampled_frames
from vaktpost.edge.config import Camera, NodeConfig
from vaktpost.edge.geometry import Box
from vaktpost.edge.pipeline import CameraPipeline


@dataclass
class AnalyzeResult:
    events: list[Event] = field(default_factory=list)
    snapshots: dict[str, bytes] = field(default_factory=dict)  # event_id → JPEG, as the node would publish
    frames_read: int = 0
    frames_analysed: int = 0
    duration_s: float = 0.0

    def counts(self) -> Counter:
        return Counter(e.type.value for e in self.events)


def frame_total(video: Path) -> int | None:
    try:
        src = open_source(str(video))
    except SourceError:
        return None
    n = getattr(src, "frame_count", None)
    src.close()
    return n


def pixel_boxes(boxes: list[Box], shape: tuple[int, ...]) -> list[list[int]]:
    """Normalised boxes → [x1, y1, x2, y2] in the pixels of an image of `shape` (x2, y2 exclusive)."""
    h, w = shape[:2]
    return [[round(x1 * w), round(y1 * h), round(x2 * w), round(y2 * h)] for x1, y1, x2, y2 in boxes]


def analyze(video: Path, config: NodeConfig, camera: Camera, start_time: datetime, *,
            on_frame: Callable[[int], None] | None = None,
            on_motion: Callable[[int, list[list[int]]], None] | None = None) -> AnalyzeResult:
    """`on_motion(i, boxes)`: after each analysed frame (i counts decoded frames from 0),
    the motion stage's boxes in the video's pixels."""
    if start_time.tzinfo is None:
        raise ValueError("start time must carry a time zone")
    seq = itertools.count()
    pipeline = CameraPipeline(config.node.id, camera, lambda: next(seq), config.node.timezone)
    final: dict[str, Event] = {}
    result = AnalyzeResult()
    t = 0.0
    for index, t, image in sampled_frames(video, camera.fps):
        result.frames_read = index + 1
        if on_frame:
            on_frame(index)
        if image is None:
            continue
        result.frames_analysed += 1
        for u in pipeline.process(image, start_time + timedelta(seconds=t)):
            final[u.event.event_id] = u.event
            if u.snapshot is not None:
                result.snapshots[u.event.event_id] = u.snapshot
        if on_motion and pipeline.last_motion is not None:
            on_motion(index, pixel_boxes(pipeline.last_motion.boxes, image.shape))
    for u in pipeline.finish():
        final[u.event.event_id] = u.event
    result.duration_s = t
    result.events = sorted(final.values(), key=lambda e: e.seq)
    return result


def write_jsonl(events: list[Event], path: Path | None) -> str:
    text = "".join(e.model_dump_json(by_alias=True) + "\n" for e in events)
    if path is not None:
        path.write_text(text)
    return text
