"""`vaktpost demo`: the whole spine on one machine, cleaned up afterwards.

A local Mosquitto on a free port (configured by `broker init`), one or two nodes
playing generated scenes as cameras, the central consumer on SQLite, and at the end
a per-place summary of what was logged.
"""

from __future__ import annotations

import shutil
import signal
import tempfile
import threading
from pathlib import Path

import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

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


def run_demo(workdir: Path | None, *, nodes: int = 2, console: Console | None = None) -> int:
    from vaktpost.broker.config import CentralConfig
    from vaktpost.broker.ingest.consumer import Consumer
    from vaktpost.broker.local import LocalBroker
    from vaktpost.broker.places import import_places
    from vaktpost.broker.store import Store
    from vaktpost.edge.config import parse
    from vaktpost.edge.node import Node
    from vaktpost.scenarios import scenarios
    from vaktpost.scenes import write_video

    console = console or Console()
    temp = workdir is None
    work = Path(tempfile.mkdtemp(prefix="vaktpost-demo-")) if workdir is None else workdir
    work.mkdir(parents=True, exist_ok=True)
    node_ids = list(SCENE_OF_NODE)[:nodes]
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    broker = None
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
        central_cfg = CentralConfig.model_validate({
            "database": f"sqlite:///{work / 'central.db'}",
            "mqtt": {"host": "127.0.0.1", "port": port, "username": creds.consumer.username,
                     "password": creds.consumer.password},
        })
        store = Store(central_cfg.database)
        store.create_all()
        import_places(store, work / "places.yaml")
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

        console.print("[bold]5/5[/bold] place log summary")
        table = Table()
        for col in ("place", "type", "events"):
            table.add_column(col)
        for row in store.summary_by_place():
            table.add_row(escape(row["place_name"] or "(unassigned)"), row["type"], str(row["count"]))
        console.print(table)
        counts = (f"{store.count_events()} events logged, {store.count_snapshots()} anonymised snapshots, "
                  f"{len(store.query_dead_letters())} dead letters")
        if temp:  # everything goes with the temp dir: name no place that will not exist
            console.print(f"{counts}; all files removed (keep them with --workdir DIR)")
        else:
            shots = work / "snapshots"
            shots.mkdir(exist_ok=True)
            for row in store.query_events():
                jpeg = store.get_snapshot(row["event_id"]) if row["has_snapshot"] else None
                if jpeg is not None:
                    (shots / f"{row['event_id']}.jpg").write_bytes(jpeg)
            console.print(escape(f"{counts}; snapshots in {shots}, database {work / 'central.db'}"))
        return 130 if stop.is_set() else 0
    finally:
        signal.signal(signal.SIGINT, previous)
        if broker is not None:
            broker.stop()
        if temp:
            shutil.rmtree(work, ignore_errors=True)
        else:
            console.print(escape(f"files kept in {work}"))
