"""The MQTT topic tree as one type, `Topic`, that builds a node's topics and the
consumer's subscription filters, parses an incoming topic, and matches topics
against filters (in the spirit of aiomqtt's `Topic`/`Wildcard`).

Every topic a node uses lies under its own prefix `vaktpost/v1/nodes/<node_id>/`,
so the broker ACL can confine a node with one `%u` pattern (docs/mqtt.md):

    <ROOT>/<node_id>/events/<camera_id>      node → consumer
    <ROOT>/<node_id>/snapshots/<event_id>    node → consumer (raw JPEG)
    <ROOT>/<node_id>/status                  node → consumer (retained, Last Will)
    <ROOT>/<node_id>/heartbeat               node → consumer
    <ROOT>/<node_id>/config                  node → consumer (retained: what it watches)
    <ROOT>/<node_id>/acks                    consumer → node
"""

from __future__ import annotations

import re
from enum import StrEnum

from paho.mqtt.client import topic_matches_sub

ROOT = "vaktpost/v1/nodes"
ANY = "+"  # MQTT's single-level wildcard: any node, any camera, any event id
_IDENT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")  # node and camera ids (the contract's Ident)
_SHOWN = 120  # characters of a hostile topic quoted in an error


class Kind(StrEnum):
    """What a topic under a node's prefix carries (the level after the node id)."""

    events = "events"  # + /<camera_id>
    snapshots = "snapshots"  # + /<event_id>
    status = "status"
    heartbeat = "heartbeat"
    config = "config"  # retained: cameras, zones, schedules, masks, policies (NodeSetup)
    acks = "acks"


_WITH_LEAF = frozenset({Kind.events, Kind.snapshots})


class TopicError(ValueError):
    """Not a topic of the tree; the message says why, in one line."""


class Topic(str):
    """One topic of the tree, or a subscription filter when a level is `ANY`.

    A `str`, so paho, the outbox and comparisons take it as it is; built only from
    validated parts: `node_id`, `kind` and `leaf` (the camera id of `events`, the
    event id of `snapshots`, else None). Node and camera ids must be Idents; the
    event id of a snapshot is any single level here, and checking it is the
    consumer's business (it acknowledges even a malformed snapshot's row)."""

    node_id: str
    kind: Kind
    leaf: str | None

    def __new__(cls, node_id: str, kind: Kind | str, leaf: str | None = None) -> Topic:
        try:
            kind = Kind(kind)
        except ValueError:
            raise TopicError(f"unknown topic kind {str(kind)[:_SHOWN]!r}") from None
        _check_ident("node id", node_id)
        if kind in _WITH_LEAF:
            if leaf is None:
                raise TopicError(f"a {kind} topic needs a {'camera' if kind is Kind.events else 'event'} id")
            if kind is Kind.events:
                _check_ident("camera id", leaf)
            elif leaf != ANY and (not leaf or any(c in leaf for c in "/+#\x00")):
                raise TopicError(f"not a single topic level: {leaf[:_SHOWN]!r}")
        elif leaf is not None:
            raise TopicError(f"a {kind} topic has no level after {kind}")
        value = f"{ROOT}/{node_id}/{kind}" + ("" if leaf is None else f"/{leaf}")
        self = super().__new__(cls, value)
        self.node_id, self.kind, self.leaf = node_id, kind, leaf
        return self

    def __getnewargs__(self) -> tuple[str, Kind, str | None]:  # type: ignore[override]
        # copy and pickle rebuild from the parts, not from the joined string
        return self.node_id, self.kind, self.leaf

    # -- building --------------------------------------------------------------

    @classmethod
    def events(cls, node_id: str, camera_id: str) -> Topic:
        return cls(node_id, Kind.events, camera_id)

    @classmethod
    def snapshots(cls, node_id: str, event_id: str) -> Topic:
        """Where a node publishes the JPEG snapshot of one of its events (raw bytes)."""
        return cls(node_id, Kind.snapshots, event_id)

    @classmethod
    def status(cls, node_id: str) -> Topic:
        return cls(node_id, Kind.status)

    @classmethod
    def heartbeat(cls, node_id: str) -> Topic:
        return cls(node_id, Kind.heartbeat)

    @classmethod
    def config(cls, node_id: str) -> Topic:
        """Where a node publishes, retained, what it watches (`messages.NodeSetup`)."""
        return cls(node_id, Kind.config)

    @classmethod
    def acks(cls, node_id: str) -> Topic:
        return cls(node_id, Kind.acks)

    @staticmethod
    def node_prefix(node_id: str) -> str:
        """`<ROOT>/<node_id>`: the subtree of one node (no topic by itself)."""
        _check_ident("node id", node_id)
        return f"{ROOT}/{node_id}"

    # -- filters ---------------------------------------------------------------

    @property
    def is_filter(self) -> bool:
        return ANY in (self.node_id, self.leaf)

    def matches(self, topic: str) -> bool:
        """Whether `topic` falls under this filter (a plain topic matches only itself)."""
        return topic_matches_sub(str(self), str(topic))

    def shared(self, group: str | None) -> str:
        """This filter as a shared subscription of `group` (MQTT 5 `$share`); itself if None."""
        return f"$share/{group}/{self}" if group else str(self)

    # -- parsing ---------------------------------------------------------------

    @classmethod
    def parse(cls, topic: str) -> Topic:
        """The parts of an incoming topic; TopicError unless it is a topic of the tree
        (right levels, known kind, valid ids, no wildcard)."""
        head = f"{ROOT}/"
        if not topic.startswith(head):
            raise TopicError(f"topic {topic[:_SHOWN]!r} is not under {ROOT}/")
        levels = topic[len(head):].split("/")
        if len(levels) < 2:
            raise TopicError(f"topic {topic[:_SHOWN]!r} names no kind after the node id")
        node_id, kind, *rest = levels
        if len(rest) > 1:
            raise TopicError(f"topic {topic[:_SHOWN]!r} has too many levels")
        parsed = cls(node_id, kind, rest[0] if rest else None)
        if parsed.is_filter:
            raise TopicError(f"topic {topic[:_SHOWN]!r} is a filter, not a topic")
        return parsed


def _check_ident(what: str, value: str) -> None:
    if value != ANY and not _IDENT.match(value):
        raise TopicError(f"{what} {value[:_SHOWN]!r} does not match {_IDENT.pattern}")


# What the consumer subscribes to.
CONSUMER_FILTERS: tuple[Topic, ...] = (
    Topic.events(ANY, ANY), Topic.status(ANY), Topic.heartbeat(ANY), Topic.snapshots(ANY, ANY),
    Topic.config(ANY))

# A snapshot travels through the outbox as a row of its own next to its event's row,
# and the consumer acks it under this id.
SNAPSHOT_ROW_SUFFIX = "/snapshot"


def snapshot_row_id(event_id: str) -> str:
    """Outbox row id (and Ack id) of the snapshot of `event_id`."""
    return f"{event_id}{SNAPSHOT_ROW_SUFFIX}"
