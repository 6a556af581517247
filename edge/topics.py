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


# What the consumer subscribes to.
ALL_EVENTS = f"{ROOT}/+/events/+"
ALL_STATUS = f"{ROOT}/+/status"
ALL_HEARTBEATS = f"{ROOT}/+/heartbeat"


def node_of(topic: str) -> str | None:
    parts = topic.split("/")
    if len(parts) >= 4 and "/".join(parts[:3]) == ROOT:
        return parts[3]
    return None
