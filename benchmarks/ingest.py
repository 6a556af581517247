"""Ingest throughput: node → Mosquitto → consumer → place log, against a plain subscriber.

Starts a real Mosquitto (the project's configuration, vaktpost.broker.local.LocalBroker,
on a free loopback port). One node publishes a stream of N messages at QoS 1 as fast
as the broker takes them (paho's queue full from the start; the broker's flow control
sets the pace). The same stream (fresh event ids each time) goes through twice per
database, one right after the other:

- `subscriber`: a plain paho subscriber (QoS 1, automatic PUBACK, the consumer's
  account, clean session) that only counts messages; rate = N / (last message - first
  publish);
- `consumer`: the central consumer on that database, doing everything it does in
  service (parse, upsert with the more-final rule, place of each event, incident
  grouping, Acks to the node, PUBACK after commit); rate = N / (last commit - first
  publish), the commit counted once the consumer's stats show it.

The stream is shaped like a node's: events on 4 cameras of one place (every third an
intrusion in a zone, the rest motion), 2 s apart with a 20-minute pause every 150
events (so incidents close and new ones open), each event sent twice: `start` (running)
and, two events later, `end` (same seq, ended). `ratio` = consumer rate / subscriber
rate of the same pair of runs (the machine's load moves both).

Prints one JSON object.

    .venv/bin/python benchmarks/ingest.py [--messages 4000] [--postgres URL] [--no-sqlite] [--repeat 1]
                                          [--profile FILE]

SQLite (a temporary file) unless --no-sqlite; PostgreSQL when `--postgres` (or VAKTPOST_TEST_PG_URL)
names a server where the user may create databases (a temporary database is made and dropped).
`worker_cpu_ms_per_message`: CPU time of the consumer's worker thread (parse, store,
group, ack) per message, which the machine's load does not change. `--profile FILE`
writes a cProfile of that thread in CPU time (pstats format; the first database only).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vaktpost.broker.config import CentralConfig, CentralMqtt
from vaktpost.broker.ingest import consumer as consumer_module
from vaktpost.broker.ingest.consumer import Consumer
from vaktpost.broker.local import HOST, LocalBroker
from vaktpost.broker.store import Store, normalise_url
from vaktpost.contract.events import Event, uuid7
from vaktpost.contract.messages import Ack
from vaktpost.contract.topics import CONSUMER_FILTERS, Topic

NODE = "bench-node"
PLACE = "bench-place"
CAMERAS = ("cam1", "cam2", "cam3", "cam4")
PAUSE_EVERY = 150  # events; then 20 minutes of quiet, longer than the incident gap
END_LAG = 2  # an event's end copy follows the start copies of the next two events
TIMEOUT = 600.0
# Fresh interpreters for the subscriber and the consumer: each has its own process (and
# GIL) as in service, and forking a process with paho's threads running is unsafe.
MP = multiprocessing.get_context("spawn")


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.005) -> float:
    """Poll until `predicate()` is true; returns the monotonic time it became true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout}s")
        time.sleep(interval)
    return time.monotonic()


class NodeClient:
    """Publishes as the node and counts the event ids acknowledged by the consumer."""

    def __init__(self, port: int, password: str) -> None:
        self.acked: set[str] = set()
        self._lock = threading.Lock()
        self.subscribed = threading.Event()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=NODE, protocol=mqtt.MQTTv5)
        self.c.username_pw_set(NODE, password)
        # No limit of paho's own: the broker's Receive Maximum is what paces the node.
        self.c.max_inflight_messages_set(65535)
        self.c.max_queued_messages_set(0)
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe(Topic.acks(NODE), 1)
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

    def publish(self, messages: list[tuple[str, bytes]]) -> float:
        """Publish all, wait until the broker took them; returns the seconds it took."""
        t0 = time.monotonic()
        infos = [self.c.publish(topic, payload, qos=1) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(TIMEOUT)
        return time.monotonic() - t0

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def subscriber_process(port: int, username: str, password: str, n: int, pipe: Connection) -> None:
    """A plain paho subscriber to the consumer's topics, in a process of its own: counts,
    nothing else; sends "ready", then the monotonic time its n-th message arrived."""
    count = 0
    done = threading.Event()
    at: list[float] = []

    def on_message(client, userdata, msg) -> None:
        nonlocal count
        count += 1
        if count == n:
            at.append(time.monotonic())
            done.set()

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=username, protocol=mqtt.MQTTv5)
    c.username_pw_set(username, password)
    c.on_connect = lambda c, u, f, rc, p: c.subscribe([(str(t), 1) for t in CONSUMER_FILTERS])
    c.on_subscribe = lambda *a: pipe.send("ready")
    c.on_message = on_message
    c.connect(HOST, port, clean_start=True)
    c.loop_start()
    try:
        if not done.wait(TIMEOUT):
            raise TimeoutError(f"{n} messages not received within {TIMEOUT}s (got {count})")
        pipe.send({"at": at[0], "cpu_s": _process_cpu()})
    finally:
        c.disconnect()
        c.loop_stop()


def consumer_process(url: str, port: int, username: str, password: str, n: int, profile: str | None,
                     pipe: Connection) -> None:
    """The central consumer in a process of its own, as in service: sends "ready" once
    subscribed, then the monotonic time n messages were committed and its numbers."""
    cfg = consumer_config(url, port, username, password)
    store = Store(cfg.database)
    # CPU time of the worker thread (it parses, stores, groups, acks) and of the whole
    # process (with paho's network thread): what the machine's load does not change.
    # The profile counts CPU time too.
    profiler = cProfile.Profile(time.thread_time) if profile else None
    worker_cpu: list[float] = []
    real_work = Consumer._work

    def measured_work(self: Consumer) -> None:
        t = time.thread_time()
        if profiler is not None:
            profiler.runcall(real_work, self)
        else:
            real_work(self)
        worker_cpu.append(time.thread_time() - t)
    Consumer._work = measured_work  # type: ignore[method-assign]
    consumer = Consumer(cfg, store).start()
    try:
        if not consumer.ready.wait(15):
            raise TimeoutError("consumer did not subscribe")
        cpu0 = _process_cpu()
        pipe.send("ready")

        def done() -> bool:
            s = consumer.stats.snapshot()
            return s["stored"] + s["duplicates"] >= n
        wait_for(done, TIMEOUT, f"{n} messages committed", interval=0.002)
        at = time.monotonic()
        cpu = _process_cpu() - cpu0
    finally:
        consumer.stop()
        store.close()
    if profiler is not None and profile:
        profiler.dump_stats(profile)
    pipe.send({"at": at, "cpu_s": cpu, "worker_cpu_s": worker_cpu[0], "stats": consumer.stats.snapshot()})


def consumer_config(url: str, port: int, username: str, password: str) -> CentralConfig:
    return CentralConfig(database=url, mqtt=CentralMqtt(host=HOST, port=port, username=username, password=password))


def _process_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


@contextmanager
def child(target: Callable[..., None], *args: object) -> Iterator[Connection]:
    """Run `target(*args, pipe)` in a fresh process; yields our end of the pipe once it said "ready"."""
    ours, theirs = MP.Pipe()
    proc = MP.Process(target=target, args=(*args, theirs), daemon=True)
    proc.start()
    try:
        if not ours.poll(60) or ours.recv() != "ready":
            raise TimeoutError(f"{target.__name__} did not get ready")
        yield ours
    finally:
        proc.join(30)
        if proc.is_alive():
            proc.kill()


def result(pipe: Connection, what: str) -> dict:
    if not pipe.poll(TIMEOUT + 60):
        raise TimeoutError(f"no result from the {what}")
    return pipe.recv()


def make_stream(n_messages: int, seq0: int) -> list[tuple[str, bytes]]:
    """`n_messages` messages (topic, payload): start and end copies of n_messages/2 events."""
    t0 = datetime(2024, 9, 2, 8, tzinfo=UTC)
    n_events = n_messages // 2
    starts, ends = [], []
    t = t0
    for k in range(n_events):
        t += timedelta(minutes=20) if k and k % PAUSE_EVERY == 0 else timedelta(seconds=2)
        cam = CAMERAS[k % len(CAMERAS)]
        people = k % 3 == 0
        common = dict(event_id=uuid7(int(t.timestamp() * 1000)), seq=seq0 + k, node_id=NODE, camera_id=cam,
                      type="intrusion" if people else "motion", zone="entrance" if people else None,
                      started_at=t, confidence=0.8, region=[0.1, 0.2, 0.3, 0.4])
        starts.append((Topic.events(NODE, cam), Event(**common, phase="start").to_payload()))
        ends.append((Topic.events(NODE, cam), Event(**common, phase="end", ended_at=t + timedelta(seconds=5),
                                                    ).to_payload()))
    out = []
    for k in range(n_events):
        out.append(starts[k])
        if k >= END_LAG:
            out.append(ends[k - END_LAG])
    out += ends[n_events - END_LAG:]
    return out


@contextmanager
def temporary_pg_database(server_url: str) -> Iterator[str]:
    name = f"vaktpost_bench_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(normalise_url(server_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(normalise_url(server_url)).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def seed_places(store: Store) -> None:
    with store.begin() as tx:
        tx.upsert_place({"id": PLACE, "name": "Benchmark school", "kind": "school"})
        for cam in CAMERAS:
            tx.replace_assignments(NODE, cam, [{"valid_from": datetime(2024, 1, 1, tzinfo=UTC),
                                               "valid_to": None, "place_id": PLACE}])


def measure_subscriber(broker: LocalBroker, node: NodeClient, n: int, seq0: int) -> dict:
    creds = broker.credentials.consumer
    stream = make_stream(n, seq0)
    with child(subscriber_process, broker.port, creds.username, creds.password, len(stream)) as pipe:
        t0 = time.monotonic()
        published = node.publish(stream)
        got = result(pipe, "subscriber")
    seconds = got["at"] - t0
    return {"messages": len(stream), "seconds": round(seconds, 3), "per_s": round(len(stream) / seconds, 1),
            "publish_seconds": round(published, 3),
            "cpu_ms_per_message": round(1000 * got["cpu_s"] / len(stream), 3)}


def measure_consumer(broker: LocalBroker, node: NodeClient, url: str, n: int, seq0: int,
                     profile: Path | None) -> dict:
    creds = broker.credentials.consumer
    store = Store(consumer_config(url, broker.port, creds.username, creds.password).database)
    try:
        store.create_all()
        seed_places(store)
        stream = make_stream(n, seq0)
        n_events = len(stream) // 2
        acked0 = node.n_acked()
        with child(consumer_process, url, broker.port, creds.username, creds.password, len(stream),
                   str(profile) if profile else None) as pipe:
            t0 = time.monotonic()
            published = node.publish(stream)
            got = result(pipe, "consumer")
            t_acked = time.monotonic() - t0
            if node.n_acked() - acked0 < n_events:
                t_acked = wait_for(lambda: node.n_acked() - acked0 >= n_events, 60,
                                   f"{n_events} events acked at the node") - t0
        rows = store.count_events()
        with store.engine.connect() as conn:
            incidents = conn.execute(text("SELECT count(*) FROM incidents")).scalar_one()
            linked = conn.execute(text("SELECT count(*) FROM incident_events")).scalar_one()
            placed = conn.execute(text("SELECT count(*) FROM events WHERE place_id IS NOT NULL")).scalar_one()
    finally:
        store.close()
    if not rows == linked == placed == n_events:
        raise RuntimeError(f"expected {n_events} events, placed and linked; got {rows}, {placed}, {linked}")
    stats = got["stats"]
    seconds = got["at"] - t0
    return {
        "database": store.dialect,
        "messages": len(stream),
        "seconds": round(seconds, 3),
        "per_s": round(len(stream) / seconds, 1),
        "publish_seconds": round(published, 3),
        "acked_seconds": round(t_acked, 3),
        "cpu_ms_per_message": round(1000 * got["cpu_s"] / len(stream), 3),
        "worker_cpu_ms_per_message": round(1000 * got["worker_cpu_s"] / len(stream), 3),
        "batches": stats["batches"],
        "mean_batch": round(stats["received"] / max(stats["batches"], 1), 1),
        "events": rows,
        "incidents": incidents,
        "stored": stats["stored"],
        "duplicates": stats["duplicates"],
    }


def run(n: int, postgres: str | None, repeat: int, profile: Path | None, sqlite: bool = True) -> dict:
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="vaktpost-bench-") as tmp:
        tmp_path = Path(tmp)
        with LocalBroker.create(tmp_path / "broker", [NODE]) as broker:
            node = NodeClient(broker.port, broker.credentials.nodes[NODE].password)
            try:
                if not node.subscribed.wait(15):
                    raise TimeoutError("node did not subscribe to its acks")
                seq0 = 0
                databases: list[tuple[str, Callable[[], object]]] = []
                if sqlite:
                    databases.append(("sqlite", lambda: _sqlite_url(tmp_path)))
                if postgres:
                    databases.append(("postgresql", lambda: temporary_pg_database(postgres)))
                for r in range(repeat):
                    for i, (name, make) in enumerate(databases):
                        sub = measure_subscriber(broker, node, n, seq0)
                        seq0 += n
                        with make() as url:  # type: ignore[attr-defined]
                            con = measure_consumer(broker, node, url, n, seq0,
                                                   profile if r == 0 and i == 0 else None)
                        seq0 += n
                        con["ratio"] = round(con["per_s"] / sub["per_s"], 3)
                        results.setdefault(name, []).append({"subscriber": sub, "consumer": con})
            finally:
                node.close()
    out: dict = {"benchmark": "ingest", "messages": n, "batch_max": consumer_module.BATCH_MAX}
    for name, runs in results.items():
        out[name] = {
            "subscriber_per_s": statistics.median(x["subscriber"]["per_s"] for x in runs),
            "consumer_per_s": statistics.median(x["consumer"]["per_s"] for x in runs),
            "ratio": statistics.median(x["consumer"]["ratio"] for x in runs),
            "runs": runs,
        }
    out.update(cpus=os.cpu_count(), load_avg=[round(x, 1) for x in os.getloadavg()],
               python=platform.python_version())
    return out


@contextmanager
def _sqlite_url(tmp: Path) -> Iterator[str]:
    path = tmp / f"central-{uuid.uuid4().hex[:8]}.db"
    yield f"sqlite:///{path}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=4000, help="messages per run (half of them events)")
    ap.add_argument("--postgres", default=os.environ.get("VAKTPOST_TEST_PG_URL"),
                    help="PostgreSQL server URL with CREATE DATABASE rights (default: VAKTPOST_TEST_PG_URL)")
    ap.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    ap.add_argument("--repeat", type=int, default=1, help="pairs of runs per database (medians reported)")
    ap.add_argument("--profile", type=Path, help="write a cProfile of the consumer's worker (first run)")
    args = ap.parse_args()
    if args.messages < 2 * (END_LAG + 1):
        ap.error(f"--messages must be at least {2 * (END_LAG + 1)}")
    if args.no_sqlite and not args.postgres:
        ap.error("--no-sqlite needs --postgres (or VAKTPOST_TEST_PG_URL)")
    print(json.dumps(run(args.messages, args.postgres, args.repeat, args.profile, sqlite=not args.no_sqlite), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
