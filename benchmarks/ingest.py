"""Ingest throughput: node → Mosquitto → consumer → place log, measured end to end.

Starts a real Mosquitto (configured by vaktpost.broker.mosquitto.init_broker in a temporary
directory, on a free loopback port), runs the consumer on a temporary SQLite file
(or --database), publishes N events at QoS 1 from one node as fast as paho allows
and measures until all N rows are committed and all N Acks reached the node.
Prints one JSON object.

    .venv/bin/python benchmarks/ingest.py [--events 2000] [--database URL]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vaktpost.broker.config import CentralConfig, CentralMqtt
from vaktpost.broker.ingest.consumer import Consumer
from vaktpost.broker.local import HOST, LocalBroker
from vaktpost.broker.store import Store
from vaktpost.contract.events import Event, uuid7
from vaktpost.contract.messages import Ack
from vaktpost.contract.topics import Topic

NODE = "bench-node"


def wait_for(predicate, timeout: float, what: str, interval: float = 0.005) -> float:
    """Poll until `predicate()` is true; returns the perf_counter time it became true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout}s")
        time.sleep(interval)
    return time.perf_counter()


class NodeClient:
    """Publishes as the node and counts the event ids acknowledged by the consumer."""

    def __init__(self, port: int, password: str) -> None:
        self.acked: set[str] = set()
        self._lock = threading.Lock()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.c.username_pw_set(NODE, password)
        self.c.on_connect = lambda c, u, f, rc, p: (self.connected.set(), c.subscribe(Topic.acks(NODE), 1))
        self.c.on_subscribe = lambda *a: self.subscribed.set()
        self.c.on_message = self._on_message
        self.c.connect(HOST, port)
        self.c.loop_start()

    def _on_message(self, client, userdata, msg) -> None:
        ids = Ack.model_validate_json(msg.payload).event_ids
        with self._lock:
            self.acked.update(ids)

    def n_acked(self) -> int:
        with self._lock:
            return len(self.acked)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def make_events(n: int) -> list[Event]:
    t0 = datetime(2024, 9, 2, 8, tzinfo=UTC)
    out = []
    for i in range(n):
        t = t0 + timedelta(seconds=i)
        out.append(Event(event_id=uuid7(int(t.timestamp() * 1000)), seq=i, node_id=NODE, camera_id="cam1",
                         type="motion", started_at=t, ended_at=t + timedelta(seconds=5), confidence=0.8,
                         region=[0.1, 0.2, 0.3, 0.4], zone="entrance", phase="end"))
    return out


def run(n: int, database: str | None) -> dict:
    with tempfile.TemporaryDirectory(prefix="vaktpost-bench-") as tmp:
        tmp_path = Path(tmp)
        broker = LocalBroker.create(tmp_path / "broker", [NODE])
        port, creds = broker.port, broker.credentials
        store = consumer = node = None
        try:
            cfg = CentralConfig(
                database=database or f"sqlite:///{tmp_path / 'central.db'}",
                mqtt=CentralMqtt(host=HOST, port=port, username=creds.consumer.username,
                                 password=creds.consumer.password),
            )
            store = Store(cfg.database)
            store.create_all()
            consumer = Consumer(cfg, store).start()
            if not consumer.ready.wait(15):
                raise TimeoutError("consumer did not subscribe")
            node = NodeClient(port, creds.nodes[NODE].password)
            if not node.subscribed.wait(15):
                raise TimeoutError("node did not subscribe to its acks")
            payloads = [e.to_payload() for e in make_events(n)]
            base = store.count_events()

            t0 = time.perf_counter()
            infos = [node.c.publish(Topic.events(NODE, "cam1"), p, qos=1) for p in payloads]
            for info in infos:
                info.wait_for_publish(60)
            t_published = time.perf_counter()
            t_stored = wait_for(lambda: store.count_events() - base >= n, 120, f"{n} rows stored")
            t_acked = wait_for(lambda: node.n_acked() >= n, 60, f"{n} acks at the node")
            stats = consumer.stats.snapshot()
            return {
                "benchmark": "ingest",
                "events": n,
                "database": store.dialect,
                "stored_seconds": round(t_stored - t0, 3),
                "events_per_s": round(n / (t_stored - t0), 1),
                "publish_seconds": round(t_published - t0, 3),
                "acked_seconds": round(t_acked - t0, 3),
                "acked_per_s": round(n / (t_acked - t0), 1),
                "batches": stats["batches"],
                "mean_batch": round(stats["received"] / max(stats["batches"], 1), 1),
                "rows": store.count_events() - base,
                "duplicates": stats["duplicates"],
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
            }
        finally:
            if node:
                node.close()
            if consumer:
                consumer.stop()
            if store:
                store.close()
            broker.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=2000)
    ap.add_argument("--database", help="SQLAlchemy URL (default: a temporary SQLite file)")
    args = ap.parse_args()
    print(json.dumps(run(args.events, args.database), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
