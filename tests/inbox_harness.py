"""The real inbox on a free loopback port, over a SQLite place log with two districts.

`start_inbox(tmp_path)` writes a central config and a secret key, fills the place log
(district "Norr": place `norrskolan`, node-a online; district "Söder": place
`soderparken`, node-b whose heartbeats stopped), adds the accounts below and serves
the app with uvicorn in a thread. The `Inbox.url` is http://127.0.0.1:PORT.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import uvicorn
import yaml
from fastapi import FastAPI
from mqtt_harness import wait_until

from vaktpost.broker.config import IncidentsSection, load_central
from vaktpost.broker.inbox.accounts import Accounts
from vaktpost.broker.inbox.server import bind, build_app, uvicorn_config
from vaktpost.broker.incidents.grouping import Grouper
from vaktpost.broker.places import parse_places, write_registry
from vaktpost.broker.store import Store, default_topic
from vaktpost.contract.events import Event, uuid7
from vaktpost.contract.messages import Heartbeat, Status

PASSWORD = "rätt-lösenord-1"
# name → (role, districts)
USERS = {
    "admin": ("admin", []),
    "anna": ("operator", ["Norr"]),  # district A
    "bo": ("operator", ["Söder"]),  # district B
    "vera": ("viewer", ["Norr"]),
}

PLACES = {
    "timezone": "Europe/Stockholm",
    "places": [
        {"id": "norrskolan", "name": "Norrskolan", "kind": "school", "district": "Norr",
         "address": "Skolvägen 1, Norrby"},
        {"id": "soderparken", "name": "Söderparken", "kind": "park", "district": "Söder",
         "address": "Parkgatan 2, Söderby"},
        {"id": "hamnen", "name": "Hamnen", "kind": "square"},  # no district: admins only
    ],
    "cameras": [
        {"node": "node-a", "camera": "gard", "place": "norrskolan", "from": "2024-01-01"},
        {"node": "node-b", "camera": "park", "place": "soderparken", "from": "2024-01-01"},
    ],
}


@dataclass
class Inbox:
    url: str
    config: Path
    store: Store


def write_central(tmp_path: Path, **inbox: object) -> Path:
    (tmp_path / "inbox.key").write_text("k" * 48)
    cfg = {"database": "sqlite:///central.db", "inbox": {"secret_key_file": "inbox.key", **inbox}}
    path = tmp_path / "central.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True))
    return path


def seed(store: Store, now: datetime) -> None:
    store.create_all()
    write_registry(store, parse_places(PLACES))
    with store.begin() as tx:
        tx.record_status(Status(node_id="node-a", state="online", at=now - timedelta(hours=1)))
        tx.record_heartbeat(Heartbeat(node_id="node-a", at=now - timedelta(seconds=5), fps={"gard": 5.0},
                                      dropped_frames={"gard": 3}, outbox_depth=2, cpu_temp_c=51.5))
        tx.record_status(Status(node_id="node-b", state="online", at=now - timedelta(hours=2)))
        tx.record_heartbeat(Heartbeat(node_id="node-b", at=now - timedelta(minutes=20), outbox_depth=40))
    accounts = Accounts(store.engine)
    accounts.create_tables()
    for name, (role, districts) in USERS.items():
        accounts.add(name, role, districts, PASSWORD, now=now)


@contextmanager
def start_inbox(tmp_path: Path, *, configure: Callable[[FastAPI], None] | None = None,
                **inbox: object) -> Iterator[Inbox]:
    """`configure(app)`, if given, runs before serving (e.g. to set `app.state.exposure`)."""
    config = write_central(tmp_path, **inbox)
    cfg = load_central(config)
    store = Store(cfg.database)
    seed(store, datetime.now(UTC))
    app = build_app(cfg, store)
    if configure is not None:
        configure(app)
    server = uvicorn.Server(uvicorn_config(app, cfg, log_level="warning"))
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive(), message="inbox started")
        assert server.started, "the inbox did not start"
        yield Inbox(f"http://127.0.0.1:{port}", config, store)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        store.close()


def file_event(store: Store, *, node: str = "node-a", camera: str = "gard", type: str = "intrusion",
               zone: str | None = "gard", started: datetime | None = None, snapshot: bytes | None = None) -> Event:
    """Store one ended event as the consumer does (grouped into an incident, with its
    snapshot if given)."""
    start = started or datetime.now(UTC) - timedelta(minutes=5)
    ev = Event(event_id=uuid7(int(start.timestamp() * 1000)), seq=1, node_id=node, camera_id=camera, type=type,
               zone=zone if type in ("intrusion", "loitering") else None, started_at=start,
               ended_at=start + timedelta(seconds=20), confidence=0.9, phase="end",
               snapshot="attached" if snapshot else "none")
    now = datetime.now(UTC)
    with store.begin() as tx:
        tx.insert_event(ev, topic=default_topic(ev), received_at=now)
        if snapshot:
            tx.insert_snapshot(ev.event_id, node, snapshot, received_at=now)
        Grouper(IncidentsSection()).record(tx.conn, [ev], now)
    return ev
