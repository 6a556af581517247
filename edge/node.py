"""The live node: one thread per camera runs its pipeline; events go to the outbox,
the publisher drains the outbox to MQTT; a heartbeat reports health."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from vaktpost.contract.events import Event
from vaktpost.contract.messages import Heartbeat
from vaktpost.contract.topics import Topic, snapshot_row_id
from vaktpost.edge.capture.sources import LatestFrame, SourceError, describe, sampled_frames
from vaktpost.edge.config import Camera, NodeConfig, source_file
from vaktpost.edge.delivery.outbox import Outbox
from vaktpost.edge.delivery.transport import Publisher
from vaktpost.edge.detectors import NullDetector
from vaktpost.edge.events.factory import health_event, restate
from vaktpost.edge.events.lifecycle import Update
from vaktpost.edge.health import FpsMeter, cpu_temperature
from vaktpost.edge.modelfile import ModelError
from vaktpost.edge.pipeline import CameraPipeline
from vaktpost.edge.setup import node_setup

log = logging.getLogger(__name__)

# How often (on a camera's clock) the outbox learns that the camera's open events go on:
# a node killed mid-event ends them at its next start at the last such time.
ALIVE_SECONDS = 5.0


def utcnow() -> datetime:
    return datetime.now(UTC)


def end_left_open(outbox: Outbox) -> list[Event]:
    """End the events a previous run started and never ended (it was killed, or lost power):
    each gets its `end`, restated from its last message, at the last time it was known to go
    on, and is put in the outbox. Returns the ends put."""
    ends = []
    for left in outbox.open_events():
        try:
            last = Event.from_payload(left.payload)
            end = restate(last, ended_at=max(last.started_at, datetime.fromtimestamp(left.alive_at, UTC)))
        except ValueError as e:  # a message of an older format: nothing can end it
            log.error("event %s left open by the previous run cannot be ended: %s", left.event_id, e)
            outbox.forget_open(left.event_id)
            continue
        outbox.put(end.event_id, left.topic, end.to_payload(), running=False)
        log.warning("event %s (%s) left open by the previous run: ended at %s, when it was last known to go on",
                    end.event_id, end.type, end.ended_at)
        ends.append(end)
    return ends


class Node:
    def __init__(self, config: NodeConfig):
        """Raises OutboxError (the spool cannot be used) or ConfigError (a file the mqtt
        section names cannot be read)."""
        self.config = config
        self.node_id = config.node.id
        s = config.spool
        self.outbox = Outbox(s.path, s.max_events, s.when_full)
        self.publisher = Publisher(self.node_id, config.mqtt, self.outbox)
        self.meters = {c.id: FpsMeter() for c in config.cameras}
        self._alive_at: dict[str, float] = {}
        self._stop = threading.Event()

    # -- events -------------------------------------------------------------
    def emit(self, camera_id: str, updates: list[Update] | list[Event], at: datetime | None = None) -> None:
        """Put the messages in the outbox; `at`: the camera's time of the observation
        (default now), when a running event was last known to go on."""
        stamp = (at or utcnow()).timestamp()
        for u in updates:
            ev = u.event if isinstance(u, Update) else u
            if isinstance(u, Update) and u.snapshot is not None:
                # Only the pipeline's anonymised JPEG ever takes this path (edge/pipeline.py).
                self.outbox.put(snapshot_row_id(ev.event_id), Topic.snapshots(self.node_id, ev.event_id), u.snapshot)
            self.outbox.put(ev.event_id, Topic.events(self.node_id, camera_id), ev.to_payload(),
                            running=ev.ended_at is None, at=stamp)
        if updates:
            self.publisher.notify()

    def _alive(self, camera_id: str, t: datetime) -> None:
        """The camera's running events go on at `t`: told to the outbox every ALIVE_SECONDS."""
        stamp = t.timestamp()
        if stamp - self._alive_at.get(camera_id, float("-inf")) >= ALIVE_SECONDS:
            self._alive_at[camera_id] = stamp
            self.outbox.alive(Topic.events(self.node_id, camera_id), stamp)

    def _health(self, camera_id: str, subtype: str, at: datetime, *, lasting: bool = False) -> Event:
        return health_event(self.node_id, camera_id, subtype, self.outbox.next_seq, at, lasting=lasting)

    # -- cameras ------------------------------------------------------------
    def _pipeline(self, cam: Camera) -> CameraPipeline:
        try:
            return CameraPipeline(self.node_id, cam, self.outbox.next_seq, self.config.node.timezone)
        except ModelError as e:
            # Motion, tamper and scene change still work without the person detector.
            log.error("camera %s: person detector unavailable: %s", cam.id, e)
            self.emit(cam.id, [self._health(cam.id, "detector_unavailable", utcnow())])
            return CameraPipeline(self.node_id, cam, self.outbox.next_seq, self.config.node.timezone,
                                  detector=NullDetector())

    def _run_camera(self, cam: Camera, stop: threading.Event) -> None:
        pipeline = self._pipeline(cam)
        try:
            file = source_file(cam.source)
            if file is not None and not cam.pace:
                self._play_file(cam, file, pipeline, stop)
            else:
                self._run_live(cam, pipeline, stop)
        finally:
            self.emit(cam.id, pipeline.finish())

    def _play_file(self, cam: Camera, file: Path, pipeline: CameraPipeline, stop: threading.Event) -> None:
        """`pace: false`: every frame due at `fps`, as fast as analysis goes, on the file's own clock."""
        t0 = cam.start_time or utcnow()
        meter = self.meters[cam.id]
        try:
            for index, t, image in sampled_frames(file, cam.fps):
                if stop.is_set():
                    break
                if image is None:
                    continue
                meter.frame()
                at = t0 + timedelta(seconds=t)
                try:
                    self.emit(cam.id, pipeline.process(image, at), at)
                    self._alive(cam.id, at)
                except Exception:  # one bad frame must not stop the camera
                    log.exception("camera %s: frame %d could not be analysed", cam.id, index)
        except SourceError as e:
            log.error("camera %s: %s", cam.id, e)
        log.info("camera %s: %s ended", cam.id, describe(cam.source))

    def _run_live(self, cam: Camera, pipeline: CameraPipeline, stop: threading.Event) -> None:
        meter = self.meters[cam.id]
        source = LatestFrame(cam.source, max_backoff=cam.reconnect_max_seconds,
                             on_state=lambda lost, why: log.warning("camera %s: %s", cam.id, why)).start()
        period = 1.0 / cam.fps
        last_number = 0
        last_frame_at = time.monotonic()
        lost: Event | None = None
        try:
            while not stop.is_set():
                tick = time.monotonic()
                frame = source.wait_newer(last_number, timeout=min(1.0, cam.lost_after_seconds))
                now = utcnow()
                if frame is None:
                    if source.ended.is_set():
                        log.info("camera %s: %s ended", cam.id, describe(cam.source))
                        break
                    self.emit(cam.id, pipeline.idle(now), now)
                    if lost is None and time.monotonic() - last_frame_at >= cam.lost_after_seconds:
                        lost = self._health(cam.id, "camera_lost", now, lasting=True)
                        log.error("camera %s: no frames for %.0f s", cam.id, cam.lost_after_seconds)
                        self.emit(cam.id, [lost], now)
                    self._alive(cam.id, now)
                    continue
                if lost is not None:
                    self.emit(cam.id, [restate(lost, ended_at=now)])
                    log.info("camera %s: frames again", cam.id)
                    lost = None
                meter.frame(dropped=frame.number - last_number - 1)
                last_number = frame.number
                last_frame_at = time.monotonic()
                try:
                    self.emit(cam.id, pipeline.process(frame.image, now), now)
                    self._alive(cam.id, now)
                except Exception:  # one bad frame must not stop the camera
                    log.exception("camera %s: frame %d could not be analysed", cam.id, frame.number)
                # Hold the processing rate; frames arriving meanwhile are dropped.
                stop.wait(max(0.0, period - (time.monotonic() - tick)))
        finally:
            if lost is not None:
                self.emit(cam.id, [restate(lost, ended_at=utcnow())])
            source.stop()

    def heartbeat(self) -> Heartbeat:
        c = self.outbox.counters()
        return Heartbeat(
            node_id=self.node_id, at=utcnow(),
            fps={k: round(m.fps(), 2) for k, m in self.meters.items()},
            dropped_frames={k: m.dropped for k, m in self.meters.items()},
            outbox_depth=c["depth"], outbox_dropped=c["dropped"], outbox_failed=c["failed"],
            outbox_expired=c.get("expired", 0),
            cpu_temp_c=cpu_temperature(),
        )

    def _send_setup(self, sent_on: date | None) -> date:
        """Give the publisher the config message (docs/mqtt.md, "Config") unless it was
        made today already: its holiday window moves with the date."""
        now = utcnow()
        today = now.astimezone(ZoneInfo(self.config.node.timezone)).date()
        if today != sent_on:
            self.publisher.set_setup(node_setup(self.config, now))
        return today

    def run(self, stop: threading.Event | None = None, *, drain_timeout: float = 10.0) -> None:
        """Run until `stop` is set or every (file) source has ended."""
        stop = stop or self._stop
        cameras_stop = threading.Event()  # ours: `stop` may be shared with other nodes
        end_left_open(self.outbox)  # before any camera starts: what is open now is the previous run's
        setup_day = self._send_setup(None)
        self.publisher.start()
        threads = [threading.Thread(target=self._run_camera, args=(c, cameras_stop), name=f"camera-{c.id}",
                                    daemon=True)
                   for c in self.config.cameras]
        for t in threads:
            t.start()
        interval = self.config.mqtt.heartbeat_seconds
        next_beat = 0.0
        try:
            while not stop.is_set() and any(t.is_alive() for t in threads):
                if time.monotonic() >= next_beat:
                    expired = self.outbox.expire(self.config.retention.max_age)
                    if expired:
                        log.warning("retention: deleted %d unacknowledged items older than %.0f s",
                                    expired, self.config.retention.max_age)
                    self.publisher.heartbeat(self.heartbeat())
                    setup_day = self._send_setup(setup_day)
                    next_beat = time.monotonic() + interval
                stop.wait(min(1.0, interval))
        finally:
            cameras_stop.set()
            for t in threads:
                t.join(timeout=10)
            # Give the consumer a moment to acknowledge what is still in flight, also when the
            # connection is still (re)starting: a file played unpaced may end before the first
            # connect. Whatever stays unacknowledged is kept in the outbox for next time.
            deadline = time.monotonic() + drain_timeout
            while self.outbox.depth() and time.monotonic() < deadline:
                time.sleep(0.1)
            self.publisher.heartbeat(self.heartbeat())
            self.publisher.stop()
