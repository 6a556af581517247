"""Ingest, step one: what a node message means (pure, no I/O).

`parse_message(topic, payload)` turns one MQTT message into a typed message (an
event of any accepted version, a checked snapshot, a status, a heartbeat, a node's
config), into
None (nothing to store), or into a `Rejected` that goes to dead_letters. It never
raises: every number and time is bounded by the contract (docs/mqtt.md, "Bounds"),
and times more than `MAX_AHEAD` after the consumer's clock are refused here. The
topic is parsed by the contract's `Topic`; the broker ACL proves which node
published on it, so the payload cannot claim another node.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pydantic import ValidationError

from vaktpost.broker.config import DEFAULT_SNAPSHOT_MAX_BYTES
from vaktpost.contract.config import format_errors
from vaktpost.contract.events import MAX_AHEAD, UUID7_PATTERN, BaseEvent, parse_event
from vaktpost.contract.jpeg import JpegError, check_jpeg
from vaktpost.contract.messages import Heartbeat, NodeSetup, Status
from vaktpost.contract.topics import Kind, Topic, TopicError, snapshot_row_id


@dataclass(frozen=True)
class Rejected:
    """A message that goes to dead_letters. `event_id`, when the message names one,
    is the outbox row id acknowledged to the node anyway (an event id, or
    `<event_id>/snapshot` for a snapshot): its raw bytes are kept centrally, and an
    unacknowledged poison message would be re-sent by the node forever.
    `stored_payload`, if set, is kept instead of the raw payload (b"" for a refused
    image: only its hash, in `error`)."""

    error: str
    event_id: str | None = None
    stored_payload: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Snapshot:
    """A checked JPEG for the event `event_id` of node `node_id` (from the topic)."""

    node_id: str
    event_id: str
    data: bytes = field(repr=False)

    @property
    def ack_id(self) -> str:
        return snapshot_row_id(self.event_id)


Parsed = BaseEvent | Snapshot | Status | Heartbeat | NodeSetup | Rejected | None  # None: nothing to store
_UUID7 = re.compile(UUID7_PATTERN)


def _claimed_event_id(payload: bytes) -> str | None:
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    eid = data.get("event_id") if isinstance(data, dict) else None
    return eid if isinstance(eid, str) and 0 < len(eid) <= 64 else None


def _too_far_ahead(times: tuple[datetime | None, ...], now: datetime) -> str | None:
    latest = now + MAX_AHEAD
    ahead = [t for t in times if t is not None and t > latest]
    if not ahead:
        return None
    return (f"time {ahead[0].isoformat()} is more than {MAX_AHEAD} ahead of the consumer's clock "
            f"({now.isoformat(timespec='seconds')}): check the node's clock")


def _parse_event(node: str, camera: str, payload: bytes, now: datetime) -> BaseEvent | Rejected:
    try:
        ev = parse_event(payload)  # any version the consumer knows (docs/mqtt.md, "Versions")
    except ValidationError as e:
        return Rejected(f"invalid event: {format_errors(e)}", _claimed_event_id(payload))
    if ev.node_id != node:
        # The broker ACL proves who published on this topic; the payload cannot overrule it.
        return Rejected(f"payload node_id {ev.node_id!r} differs from topic node {node!r}: "
                        "a node cannot speak for another", ev.event_id)
    if ev.camera_id is not None and ev.camera_id != camera:
        return Rejected(f"payload camera_id {ev.camera_id!r} differs from topic camera {camera!r}", ev.event_id)
    if ahead := _too_far_ahead((ev.started_at, ev.ended_at), now):
        return Rejected(f"invalid event: {ahead}", ev.event_id)
    return ev


_WHAT = {Status: "status", Heartbeat: "heartbeat", NodeSetup: "config"}


def _parse_node_message(model: type[Status] | type[Heartbeat] | type[NodeSetup], node: str, payload: bytes,
                        now: datetime) -> Parsed:
    what = _WHAT[model]
    if not payload:
        return None  # an empty retained message only clears the retained status or config
    try:
        msg = model.model_validate_json(payload)
    except ValidationError as e:
        return Rejected(f"invalid {what}: {format_errors(e)}")
    if msg.node_id != node:
        return Rejected(f"payload node_id {msg.node_id!r} differs from topic node {node!r}: "
                        "a node cannot speak for another")
    if ahead := _too_far_ahead((msg.at,), now):
        return Rejected(f"invalid {what}: {ahead}")
    return msg


def _parse_snapshot(node: str, event_id: str, payload: bytes, max_bytes: int) -> Snapshot | Rejected:
    # The node's outbox row is `<topic level>/snapshot` whatever the level holds: ack
    # that, so a malformed snapshot is not re-sent forever (bounded like event ids).
    ack = snapshot_row_id(event_id) if 0 < len(event_id) <= 64 else None
    if not _UUID7.match(event_id):
        return _refused_image(f"snapshot topic names {event_id[:80]!r}, not a UUIDv7 event id", ack, payload)
    try:
        check_jpeg(payload, max_bytes)
    except JpegError as e:
        return _refused_image(f"invalid snapshot: {e}", ack, payload)
    return Snapshot(node, event_id, payload)


def _refused_image(error: str, ack: str | None, payload: bytes) -> Rejected:
    """A refused snapshot's dead letter keeps the error and a hash, never the image:
    it may hold exactly what a node must not send (metadata, hidden data)."""
    digest = hashlib.sha256(payload).hexdigest()
    return Rejected(f"{error} (payload not kept: sha256 {digest}, {len(payload)} bytes)", ack, b"")


def parse_message(topic: str, payload: bytes, *, max_snapshot_bytes: int = DEFAULT_SNAPSHOT_MAX_BYTES,
                  now: datetime | None = None) -> Parsed:
    """What a message on `topic` means, received at `now` (default: the clock); never raises."""
    try:
        return _parse_message(topic, payload, max_snapshot_bytes, now or datetime.now(UTC))
    except Exception as e:  # a case the checks above missed must not stop ingest
        return Rejected(f"could not parse message: {type(e).__name__}: {str(e)[:200]}")


def _parse_message(topic: str, payload: bytes, max_snapshot_bytes: int, now: datetime) -> Parsed:
    try:
        t = Topic.parse(topic)
    except TopicError as e:
        return Rejected(f"unexpected topic: {e}")
    if t.kind is Kind.events and t.leaf is not None:
        return _parse_event(t.node_id, t.leaf, payload, now)
    if t.kind is Kind.snapshots and t.leaf is not None:
        return _parse_snapshot(t.node_id, t.leaf, payload, max_snapshot_bytes)
    if t.kind is Kind.status:
        return _parse_node_message(Status, t.node_id, payload, now)
    if t.kind is Kind.heartbeat:
        return _parse_node_message(Heartbeat, t.node_id, payload, now)
    if t.kind is Kind.config:
        return _parse_node_message(NodeSetup, t.node_id, payload, now)
    return Rejected(f"unexpected topic: the consumer does not read {t.kind} ({topic!r})")


def node_of(topic: str) -> str | None:
    """The node a topic belongs to, if it is a topic of the tree."""
    try:
        return Topic.parse(topic).node_id
    except TopicError:
        return None


def ack_id(p: Parsed) -> str | None:
    """The outbox row id to acknowledge for `p`, if it names one."""
    if isinstance(p, Snapshot):
        return p.ack_id
    if isinstance(p, (BaseEvent, Rejected)):
        return p.event_id
    return None
