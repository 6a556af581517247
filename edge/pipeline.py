"""One camera's analysis chain:

    frame → privacy masks → motion → person detector (on motion crops) → tracker
          → rules (intrusion, loitering)            ┐
    masked frame → tamper (covered, defocused, moved) ├→ events → snapshots (anonymised)
    masked frame, people → lasting scene change      ┘

The same `CameraPipeline` runs live on the node (edge/node.py) and offline in
`vaktpost analyze` (edge/analyze.py), so both produce identical events. Time is
the frame's wall-clock time, never the machine's clock, so analysis is
repeatable.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

import numpy as np

from vaktpost.contract.events import EventType, Phase, WithheldReason
from vaktpost.edge.analysis.motion import MotionDetector, MotionResult
from vaktpost.edge.analysis.rules import PeopleRules
from vaktpost.edge.analysis.scene_change import SceneChangeDetector
from vaktpost.edge.analysis.tamper import SUBTYPES as TAMPER_SUBTYPES
from vaktpost.edge.analysis.tamper import TamperDetector
from vaktpost.edge.analysis.track import Tracker
from vaktpost.edge.config import Camera
from vaktpost.edge.detectors import Detector
from vaktpost.edge.detectors.factory import create_detector
from vaktpost.edge.detectors.regions import RateLimiter, RegionDetector
from vaktpost.edge.events.factory import EventIdentity, health_event, new_event, restate
from vaktpost.edge.events.lifecycle import Lifecycle, Update
from vaktpost.edge.evidence.anonymise import AnonymiseError, Anonymiser
from vaktpost.edge.evidence.snapshot import EncodeError, make_snapshot
from vaktpost.edge.geometry import Box, zone_at
from vaktpost.edge.privacy.masks import PrivacyMasker

log = logging.getLogger(__name__)

# Tamper incidents are confirmed (with hysteresis) by the detector itself; the
# lifecycle only turns the confirmed state into start/update/end. The gap must
# exceed a frame period, or every frame would look like a new incident.
_TAMPER_UPDATE_SECONDS = 60.0
_TAMPER_GAP_SECONDS = 1.0
# A lost signal is checked whenever the node waits for frames, at no fixed interval: no
# gap between checks may end it (one outage, one event); the next frame does.
_SIGNAL_LOST_GAP_SECONDS = float("inf")


class CameraPipeline:
    def __init__(self, node_id: str, camera: Camera, next_seq: Callable[[], int], tz: str,
                 detector: Detector | None = None, anonymiser: Anonymiser | None = None):
        """`detector` None: build the configured one (raises ModelError when its model
        is missing or fails its checksum). Pass `NullDetector()` to run without.
        `anonymiser` None: load the default one if any event type wants snapshots; a
        failure to load is not raised but makes every snapshot withheld (fail closed)."""
        self.node_id = node_id
        self.camera = camera
        self.next_seq = next_seq
        self.masker = PrivacyMasker(camera.privacy_masks)
        self.motion = MotionDetector(camera.motion, camera.motion_masks)
        self.last_motion: MotionResult | None = None
        m = camera.motion
        self.motion_events = Lifecycle(
            EventIdentity(node_id, camera.id, EventType.motion),
            next_seq, m.min_duration, m.merge_gap, m.update_interval,
        )
        # People feed only the zone rules: with no zone, or both rules off, the detector is
        # neither loaded nor run (snapshots find people with the anonymiser's own pass).
        rules = camera.rules
        uses_people = bool(camera.zones) and (rules.intrusion or rules.loitering)
        self.people = None
        if camera.detector.kind != "none" and uses_people:
            self.people = RegionDetector(detector or create_detector(camera.detector), camera.detector)
        self.tracker = Tracker(camera.rules.tracker)
        self._confirm_rate = RateLimiter(camera.rules.tracker.confirm_fps)
        self.rules = PeopleRules(node_id, camera.id, camera.zones, tz, camera.rules, next_seq)
        self.tracks: list = []
        self.tamper = TamperDetector(camera.tamper, camera.privacy_masks)
        self.tamper_events = {
            sub: Lifecycle(EventIdentity(node_id, camera.id, EventType.tamper, sub), next_seq, 0.0,
                           _SIGNAL_LOST_GAP_SECONDS if sub == "signal_lost" else _TAMPER_GAP_SECONDS,
                           _TAMPER_UPDATE_SECONDS)
            for sub in TAMPER_SUBTYPES
        }
        self.scene = SceneChangeDetector(camera.scene_change)
        self._tampered = False  # a tamper incident running or pending on the last frame
        policy = camera.snapshots.model_dump()
        self.snapshot_types = {t for t, mode in policy.items() if mode == "anonymised"}
        if self.snapshot_types:
            anonymiser = (anonymiser or Anonymiser.create(camera.snapshot)).with_masker(self.masker)
        self.anonymiser = anonymiser
        self._snapshot_state: dict[str, dict] = {}  # event_id → snapshot fields of a running event
        self._reported_withheld: set[str] = set()

    # -- per frame -------------------------------------------------------------
    def process(self, frame: np.ndarray, t: datetime) -> list[Update]:
        # Masks first: nothing downstream may see a masked pixel.
        frame = self.masker.apply(frame)
        ts = t.timestamp()
        # Last frame's tracks: a person standing still stays motion, unlike fresh paint.
        result = self.motion.detect(frame, keep=[tr.box for tr in self.tracks])
        self.last_motion = result  # hidden in a snapshot of this frame; `analyze --motion-boxes`
        updates = self._motion(result, t)
        people: list | None = None
        if self.people is not None:
            # Tracked people (and candidates) are looked at too: someone standing still fades from
            # motion. While a candidate waits for confirmation the detector may run faster.
            hurry = self.tracker.has_candidates and self._confirm_rate.allow(ts)
            found = self.people.detect(frame, result.boxes, now=ts, watch=[tr.box for tr in self.tracker.tracks],
                                       hurry=hurry)
            people = None if found is None else [d for d in found if d.label == "person"]
            self.tracks = self.tracker.update(people, ts, aspect=frame.shape[1] / frame.shape[0])
            updates += self.rules.step(self.tracks, t)
        updates += self._tamper(frame, t)
        updates += self._scene_change(frame, t, [d.box for d in people or ()] + [tr.box for tr in self.tracks])
        return self._with_snapshots(frame, updates, t)

    def idle(self, t: datetime) -> list[Update]:
        """No frame arrived: the camera may have lost its signal (tamper/signal_lost)."""
        lost = self.tamper.signal(t.timestamp())
        # No frame, so no new snapshot; messages of running events keep their snapshot fields.
        return self._with_snapshots(None, self.tamper_events["signal_lost"].step(t, lost, confidence=1.0), t)

    def finish(self) -> list[Update]:
        ups = self.motion_events.finish() + self.rules.finish()
        for lc in self.tamper_events.values():
            ups += lc.finish()
        # The last message of an event must still say whether its snapshot was attached or withheld.
        return self._with_snapshots(None, ups, None)

    # -- analysers -------------------------------------------------------------
    def _motion(self, result: MotionResult, t: datetime) -> list[Update]:
        region = zone = None
        if result.boxes:
            xs1, ys1, xs2, ys2 = zip(*result.boxes)
            region = (min(xs1), min(ys1), max(xs2), max(ys2))
            # The zone under the largest box names where the motion happened.
            big = max(result.boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
            zone = zone_at(self.camera.zones, (big[0] + big[2]) / 2, (big[1] + big[3]) / 2)
        return self.motion_events.step(t, bool(result.boxes), region=region,
                                       confidence=result.score, zone=zone)

    def _tamper(self, frame: np.ndarray, t: datetime) -> list[Update]:
        state = self.tamper.observe(frame, t.timestamp())
        # While tampering is suspected the scene reference neither learns nor judges; the
        # scene-change detector re-learns by itself after a view that moved for good.
        self._tampered = state.incident is not None or state.candidate is not None
        ups: list[Update] = []
        for sub, lc in self.tamper_events.items():
            if sub == "signal_lost":
                ups += lc.end(t)  # a frame arrived: the signal is back
            else:
                ups += lc.step(t, state.incident == sub, confidence=state.confidence)
        return ups

    def _scene_change(self, frame: np.ndarray, t: datetime, people: list[Box]) -> list[Update]:
        # Quiet is decided per cell inside the detector (frame difference and these person
        # boxes); only a tampered picture is withheld as a whole.
        change = self.scene.observe(frame, t.timestamp(), quiet=not self._tampered, people=people)
        if change is None:
            return []
        started = t - timedelta(seconds=max(0.0, change.t - change.first_seen))
        identity = EventIdentity(self.node_id, self.camera.id, EventType.scene_change, change.subtype)
        ev = new_event(identity, self.next_seq, started, ended_at=t, confidence=change.confidence,
                       zone=zone_at(self.camera.zones, (change.region[0] + change.region[2]) / 2,
                                    (change.region[1] + change.region[3]) / 2),
                       region=change.region)
        return [Update(Phase.end, ev)]  # a lasting change is one message: it has happened

    # -- snapshots -------------------------------------------------------------
    def _with_snapshots(self, frame: np.ndarray | None, updates: list[Update], t: datetime | None) -> list[Update]:
        """Attach an anonymised snapshot to the first message of each event whose type
        wants one, and mark every message of that event accordingly. Without a frame
        (idle, finish) no snapshot is taken: an event first seen then gets none."""
        out: list[Update] = []
        for u in updates:
            ev = u.event
            snap = None
            state = self._snapshot_state.get(ev.event_id)
            if state is None:
                state = {}
                if ev.type.value in self.snapshot_types and frame is not None and t is not None:
                    snap, state = self._snapshot(frame, t)
                self._snapshot_state[ev.event_id] = state
            if u.phase == "end":
                self._snapshot_state.pop(ev.event_id, None)
            out.append(Update(u.phase, restate(ev, **state) if state else ev, snap))
            if state.get("snapshot") == "withheld" and state["snapshot_withheld"] not in self._reported_withheld:
                self._reported_withheld.add(state["snapshot_withheld"])
                out.append(self._health("snapshot_withheld", t or ev.ended_at or ev.started_at))
        return out

    def _snapshot(self, frame: np.ndarray, t: datetime) -> tuple[bytes | None, dict]:
        assert self.anonymiser is not None
        try:
            data = make_snapshot(self.anonymiser, frame, [tr.box for tr in self.tracks], self.camera.snapshot,
                                 self.last_motion.boxes if self.last_motion else [])
        except AnonymiseError as e:
            # Fail closed: the event goes out without an image and says why.
            log.error("camera %s: snapshot withheld: %s", self.camera.id, e)
            return None, {"snapshot": "withheld", "snapshot_withheld": WithheldReason(e.reason)}
        except EncodeError as e:
            log.error("camera %s: snapshot withheld: %s", self.camera.id, e)
            return None, {"snapshot": "withheld", "snapshot_withheld": WithheldReason.encode_error}
        return data, {"snapshot": "attached"}

    def _health(self, subtype: str, t: datetime) -> Update:
        return Update(Phase.end, health_event(self.node_id, self.camera.id, subtype, self.next_seq, t))
