"""`vaktpost demo`: the whole spine on one machine, cleaned up afterwards.

A local Mosquitto on a free port (configured by `broker init`), one or two nodes
playing generated scenes as cameras, the central consumer on SQLite grouping the
events into incidents, a per-place summary of what was logged, and then (unless
told not to) the web inbox over it all with a demo login, until Ctrl-C.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from vaktpost.broker.config import CentralConfig
    from vaktpost.broker.mosquitto import Credentials
    from vaktpost.broker.store import Store

# Each node plays one labelled scenario clip (vaktpost/scenarios.py) as its camera:
# node-a sees two people cross its yard (intrusion), node-b someone paint a tag on a
# wall that stays (lasting scene change, with an anonymised snapshot).
SCENE_OF_NODE = {"node-a": ("yard", "intrusion_armed"), "node-b": ("wall", "graffiti")}

PLACES = {
    "places": [
        {"id": "ekbacken-school-yard", "name": "Ekbacken school, schoolyard", "kind": "schoolyard",
         "district": "Norra", "address": "Ekbacksvägen 4", "coordinates": [59.3401, 18.0312]},
        {"id": "linden-park-pavilion", "name": "Linden park, pavilion", "kind": "park", "district": "Södra",
         "address": "Lindgatan 1", "coordinates": [59.3102, 18.0755]},
    ],
    "cameras": [
        {"node": "node-a", "camera": "yard", "place": "ekbacken-school-yard", "from": "2020-01-01"},
        {"node": "node-b", "camera": "wall", "place": "linden-park-pavilion", "from": "2020-01-01"},
    ],
}


def _node_config(node_id: str, camera_id: str, video: Path, port: int, password: str, work: Path) -> dict:
    from vaktpost.scenarios import YARD, ZONE
    return {
        "node": {"id": node_id},
        "mqtt": {"host": "127.0.0.1", "port": port, "password": password, "heartbeat_seconds": 5},
        "spool": {"path": str(work / f"{node_id}-outbox.db")},
        "cameras": [{
            "id": camera_id, "source": str(video), "fps": 5,
            # Armed all day, so the demo shows intrusions whatever the time.
            "zones": [{"name": ZONE, "polygon": YARD,
                       "armed": [{"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                                  "from": "00:00", "to": "24:00"}]}],
            "scene_change": {"settle_seconds": 5},
            "snapshots": {"intrusion": "anonymised"},
        }],
    }


DEMO_USER = "demo"


class DemoError(Exception):
    """The demo cannot run as asked; the message says why in one line."""


@dataclass(frozen=True)
class InboxListen:
    """Where the demo serves the inbox once the nodes are done (port 0: a free one)."""

    host: str = "127.0.0.1"
    port: int = 0


def _write_private(path: Path, text: str) -> None:
    # Created 0600, so the secret is never readable by others, not even for a moment.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its mode otherwise
    with os.fdopen(fd, "w") as f:
        f.write(text)


def _write_central(work: Path, port: int, creds: Credentials) -> Path:
    """DIR/central.yaml (paths relative to DIR, so `vaktpost users add --config` and
    `vaktpost inbox --config` work on it afterwards) and the inbox's secret key."""
    _write_private(work / "inbox.key", secrets.token_urlsafe(48) + "\n")
    cfg = {
        "database": "sqlite:///central.db",
        "places_file": "places.yaml",
        "mqtt": {"host": "127.0.0.1", "port": port, "username": creds.consumer.username,
                 "password": creds.consumer.password},
        "inbox": {"secret_key_file": "inbox.key"},
    }
    path = work / "central.yaml"
    _write_private(path, yaml.safe_dump(cfg, sort_keys=False))  # it holds the consumer's password
    return path


def _demo_login(store: Store) -> str:
    """The demo admin account with a new password (returned) each run."""
    from vaktpost.broker.inbox.accounts import Accounts
    from vaktpost.broker.store import utcnow
    accounts = Accounts(store.engine)
    accounts.create_tables()
    if accounts.get(DEMO_USER) is not None:  # from an earlier run in the same --workdir
        accounts.remove(DEMO_USER)
    password = secrets.token_urlsafe(9)
    accounts.add(DEMO_USER, "admin", [], password, now=utcnow())
    return password


def _listen(at: InboxListen) -> socket.socket:
    from vaktpost.broker.inbox.server import bind
    try:
        return bind(at.host, at.port)
    except OSError as e:  # taken, not ours, or no such address
        raise DemoError(f"inbox: cannot listen on {at.host}:{at.port}: {e.strerror or e}") from None


def _serve_inbox(cfg: CentralConfig, store: Store, sock: socket.socket, console: Console) -> None:
    """The inbox over the demo's place log on `sock`, until Ctrl-C (uvicorn takes the signal)."""
    import uvicorn

    from vaktpost.broker.inbox.server import build_app, listen_url, uvicorn_config
    app = build_app(cfg, store)
    password = _demo_login(store)
    console.print(f"inbox: {listen_url(sock)}", highlight=False, soft_wrap=True)
    console.print(f"login: {DEMO_USER} / {password}  (an admin; a new password every run)",
                  highlight=False, soft_wrap=True)
    console.print("the inbox shows the demo's incidents and their snapshots; Ctrl-C stops it", highlight=False)
    uvicorn.Server(uvicorn_config(app, cfg, log_level="warning")).run(sockets=[sock])


def _summary(store: Store, console: Console) -> str:
    """Print the per-place table; returns the one-line counts."""
    from sqlalchemy import func, select

    from vaktpost.broker.incidents.tables import incidents
    table = Table()
    for col in ("place", "type", "events"):
        table.add_column(col)
    for row in store.summary_by_place():
        table.add_row(escape(row["place_name"] or "(unassigned)"), row["type"], str(row["count"]))
    console.print(table)
    with store.engine.connect() as conn:
        n_incidents = conn.execute(select(func.count()).select_from(incidents)).scalar_one()
    return (f"{store.count_events()} events logged in {n_incidents} incidents, "
            f"{store.count_snapshots()} anonymised snapshots, {len(store.query_dead_letters())} dead letters")


def _export_snapshots(store: Store, shots: Path) -> None:
    shots.mkdir(exist_ok=True)
    for row in store.query_events():
        jpeg = store.get_snapshot(row["event_id"]) if row["has_snapshot"] else None
        if jpeg is not None:
            (shots / f"{row['event_id']}.jpg").write_bytes(jpeg)


def run_demo(workdir: Path | None, *, nodes: int = 2, console: Console | None = None,
             serve: InboxListen | None = None) -> int:
    """Run the demo in `workdir` (None: a temp dir, removed at the end); with `serve`, then
    serve the inbox there until Ctrl-C. 0 when done, 130 when Ctrl-C cut the nodes short;
    DemoError when the inbox cannot listen where asked."""
    from vaktpost.broker.config import load_central
    from vaktpost.broker.ingest.consumer import Consumer
    from vaktpost.broker.local import LocalBroker
    from vaktpost.broker.places import import_places
    from vaktpost.broker.store import Store
    from vaktpost.edge.config import parse
    from vaktpost.edge.node import Node
    from vaktpost.scenarios import scenarios
    from vaktpost.scenes import write_video

    console = console or Console()
    sock = _listen(serve) if serve is not None else None  # a taken port fails now, not after a minute
    temp = workdir is None
    work = Path(tempfile.mkdtemp(prefix="vaktpost-demo-")) if workdir is None else workdir
    work.mkdir(parents=True, exist_ok=True)
    node_ids = list(SCENE_OF_NODE)[:nodes]
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    broker = store = None
    try:
        console.print(f"[bold]1/5[/bold] broker config for {', '.join(node_ids)} in {escape(str(work))}")
        broker = LocalBroker.create(work / "broker", node_ids)
        creds, port = broker.credentials, broker.port
        console.print(f"[bold]2/5[/bold] mosquitto listening on {broker.host}:{port}")

        scenes = {sc.name: sc.scene for sc in scenarios()}
        configs = []
        for node_id in node_ids:
            camera_id, scene_name = SCENE_OF_NODE[node_id]
            video = write_video(scenes[scene_name], work / f"{scene_name}.avi")
            cfg = _node_config(node_id, camera_id, video, port, creds.nodes[node_id].password, work)
            (work / f"{node_id}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
            configs.append(parse(cfg, source=node_id))
        console.print(f"[bold]3/5[/bold] generated camera clips: {', '.join(SCENE_OF_NODE[n][1] for n in node_ids)}")

        (work / "places.yaml").write_text(yaml.safe_dump(PLACES, sort_keys=False, allow_unicode=True))
        central_cfg = load_central(_write_central(work, port, creds))
        store = Store(central_cfg.database)
        store.create_all()
        import_places(store, central_cfg.places_file or work / "places.yaml")
        consumer = Consumer(central_cfg, store)
        consumer_stop = threading.Event()
        consumer_thread = threading.Thread(target=consumer.run, args=(consumer_stop,), daemon=True)
        consumer_thread.start()
        console.print("[bold]4/5[/bold] central consumer running on SQLite; nodes playing their cameras "
                      "(under a minute, Ctrl-C stops early)")

        node_threads = [threading.Thread(target=Node(c).run, args=(stop,), daemon=True) for c in configs]
        for t in node_threads:
            t.start()
        for t in node_threads:
            while t.is_alive():
                t.join(timeout=0.2)  # short joins keep Ctrl-C responsive
        consumer_stop.set()
        consumer_thread.join(timeout=10)
        broker.stop()  # the nodes are done; the inbox reads the place log only

        console.print("[bold]5/5[/bold] place log summary")
        counts = _summary(store, console)
        serving = sock is not None and not stop.is_set()
        if temp:  # everything goes with the temp dir: name no place that will not exist
            gone = "removed when the inbox stops" if serving else "removed"
            console.print(f"{counts}; all files {gone} (keep them with --workdir DIR)")
        else:
            _export_snapshots(store, work / "snapshots")
            console.print(escape(f"{counts}; snapshots in {work / 'snapshots'}, database {work / 'central.db'}, "
                                 f"config {work / 'central.yaml'}"))
        if stop.is_set():
            return 130
        if sock is not None:
            _serve_inbox(central_cfg, store, sock, console)
        return 0  # Ctrl-C is how the inbox is meant to end
    finally:
        signal.signal(signal.SIGINT, previous)
        if sock is not None:
            sock.close()
        if store is not None:
            store.close()
        if broker is not None:
            broker.stop()
        if temp:
            shutil.rmtree(work, ignore_errors=True)
        else:
            console.print(escape(f"files kept in {work}"))
