"""The MQTT topic tree. Every topic a node uses lies under its own prefix,
so the broker ACL can confine a node with one `%u` pattern (docs/mqtt.md)."""

ROOT = "vaktpost/v1/nodes"


def node_prefix(node_id: str) -> str:
    return f"{ROOT}/{node_id}"


def events(node_id: str, camera_id: str) -> str:
    return f"{ROOT}/{node_id}/events/{camera_id}"


def status(node_id: str) -> str:
    return f"{ROOT}/{node_id}/status"


def heartbeat(node_id: str) -> str:
    return f"{ROOT}/{node_id}/heartbeat"


def acks(node_id: str) -> str:
    return f"{ROOT}/{node_id}/acks"


def snapshots(node_id: str, event_id: str) -> str:
    """Where a node publishes the JPEG snapshot of one of its events (raw bytes)."""
    return f"{ROOT}/{node_id}/snapshots/{event_id}"


# A snapshot travels through the outbox as a row of its own next to its event's row,
# and the consumer acks it under this id.
SNAPSHOT_ROW_SUFFIX = "/snapshot"


def snapshot_row_id(event_id: str) -> str:
    """Outbox row id (and Ack id) of the snapshot of `event_id`."""
    return f"{event_id}{SNAPSHOT_ROW_SUFFIX}"


# What the consumer subscribes to.
ALL_EVENTS = f"{ROOT}/+/events/+"
ALL_STATUS = f"{ROOT}/+/status"
ALL_HEARTBEATS = f"{ROOT}/+/heartbeat"
ALL_SNAPSHOTS = f"{ROOT}/+/snapshots/+"


def node_of(topic: str) -> str | None:
    parts = topic.split("/")
    if len(parts) >= 4 and "/".join(parts[:3]) == ROOT:
        return parts[3]
    return None


def snapshot_of(topic: str) -> tuple[str, str] | None:
    """(node_id, event_id) of a snapshots topic; None for any other topic.
    The event id is returned as found: checking it is the caller's business."""
    parts = topic.split("/")
    if len(parts) == 6 and "/".join(parts[:3]) == ROOT and parts[4] == "snapshots" and parts[3] and parts[5]:
        return parts[3], parts[5]
    return None
