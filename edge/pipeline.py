"""One camera's analysis chain:

    frame → privacy masks → motion → person detector (on motion crops) → tracker
          → rules (intrusion, loitering) ─┐
    motion ───────────────────────────────┼→ event lifecycles → Updates
    tamper, lasting scene change ─────────┘

The same `CameraPipeline` runs live on the node (edge/node.py) and offline in
`vaktpost analyze` (edge/analyze.py), so both produce identical events. Time is
the frame's wall-clock time, never the machine's clock, so analysis is
repeatable.
"""

from __future__ import annotations

from datetime import datetime
from typing import Callable

import cv2
import numpy as np

from .config import Camera
from .detectors import Detector, create_detector
from .detectors.regions import RegionDetector
from .event import EventType
from .lifecycle import EventIdentity, Lifecycle, Update
from .masks import PrivacyMasker
from .motion import MotionDetector
from .rules import PeopleRules
from .track import Tracker


def zone_at(zones, x: float, y: float) -> str | None:
    """Name of the first zone whose polygon contains the normalised point (x, y)."""
    for z in zones:
        poly = np.asarray(z.polygon, dtype=np.float32)
        if cv2.pointPolygonTest(poly, (float(x), float(y)), False) >= 0:
            return z.name
    return None


class CameraPipeline:
    def __init__(self, node_id: str, camera: Camera, next_seq: Callable[[], int], tz: str,
                 detector: Detector | None = None):
        """`detector` None: build the configured one (raises ModelError when its model
        is missing or fails its checksum). Pass `NullDetector()` to run without."""
        self.camera = camera
        self.masker = PrivacyMasker(camera.privacy_masks)
        self.motion = MotionDetector(camera.motion, camera.motion_masks)
        m = camera.motion
        self.motion_events = Lifecycle(
            EventIdentity(node_id, camera.id, EventType.motion),
            next_seq, m.min_duration, m.merge_gap, m.update_interval,
        )
        if detector is None:
            detector = create_detector(camera.detector)
        self.people = RegionDetector(detector, camera.detector) if camera.detector.kind != "none" else None
        self.tracker = Tracker(camera.rules.tracker)
        self.rules = PeopleRules(node_id, camera.id, camera.zones, tz, camera.rules, next_seq)
        self.tracks: list = []

    def process(self, frame: np.ndarray, t: datetime) -> list[Update]:
        # Masks first: nothing downstream may see a masked pixel.
        frame = self.masker.apply(frame)
        result = self.motion.detect(frame)
        updates = self._motion(result, t)
        if self.people is not None:
            # Tracked people are looked at too: someone standing still fades from motion.
            found = self.people.detect(frame, result.boxes, now=t.timestamp(),
                                       watch=[tr.box for tr in self.tracks])
            people = None if found is None else [d for d in found if d.label == "person"]
            self.tracks = self.tracker.update(people, t.timestamp())
            updates += self.rules.step(self.tracks, t)
        return updates

    def _motion(self, result, t: datetime) -> list[Update]:
        region = zone = None
        if result.boxes:
            xs1, ys1, xs2, ys2 = zip(*result.boxes)
            region = (min(xs1), min(ys1), max(xs2), max(ys2))
            # The zone under the largest box names where the motion happened.
            big = max(result.boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
            zone = zone_at(self.camera.zones, (big[0] + big[2]) / 2, (big[1] + big[3]) / 2)
        return self.motion_events.step(t, bool(result.boxes), region=region,
                                       confidence=result.score, zone=zone)

    def finish(self) -> list[Update]:
        return self.motion_events.finish() + self.rules.finish()
