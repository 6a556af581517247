"""Fault injection: a node stream through a real Mosquitto into the consumer process, on
SQLite and on PostgreSQL, while the broker, the consumer and the node are killed (-9) at
random instants and the database is cut off. Prints one JSON object; docs/delivery.md,
"Fault injection", says what it proves.

    .venv/bin/python benchmarks/faults.py [--quick] [--seed N] [--duration S] [--pg-url URL]

The node is a real process (this file run with `--node`): the node's outbox, Publisher,
event lifecycles and `end_left_open`, with four cameras of random bursts of motion, so
events have a start, updates and an end. It journals every message it put in its outbox;
at the end every journaled event must be in the place log in its last state, once, and
none may be left open. The random instants come from `--seed` (printed; give it again to
replay a run). `--quick` (35 s of faults per database) is what the test suite runs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vaktpost.broker.local import LocalBroker  # noqa: E402
from vaktpost.broker.store import Store  # noqa: E402
from vaktpost.contract.events import Event, EventType  # noqa: E402
from vaktpost.contract.topics import Topic  # noqa: E402
from vaktpost.edge.config import MqttSection  # noqa: E402
from vaktpost.edge.delivery.outbox import Outbox  # noqa: E402
from vaktpost.edge.delivery.transport import Publisher  # noqa: E402
from vaktpost.edge.events.factory import EventIdentity  # noqa: E402
from vaktpost.edge.events.lifecycle import Lifecycle, Update  # noqa: E402
from vaktpost.edge.node import end_left_open  # noqa: E402

NODE = "node-a"
CAMERAS = ("cam1", "cam2", "cam3", "cam4")
FAULTS = ("kill_broker", "kill_consumer", "kill_node", "cut_database")
QUICK_SECONDS = 35.0
FULL_SECONDS = 300.0
SETTLE_TIMEOUT = 45.0  # after the last fault, everything must be stored within this
RESTART_SECONDS = 1.0  # a consumer that exited by itself is started again after this, as systemd would
RESEND_AFTER, RESEND_MAX = 2.0, 8.0  # short: the benchmark measures recovery, not patience


# --- the node process ------------------------------------------------------------------


def run_node(args: dict[str, Any]) -> int:
    """The node: random bursts of motion on each camera through the real lifecycle, outbox
    and publisher; journals each message put. SIGTERM: end every event, drain, exit 0."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    outbox = Outbox(args["outbox"], 100_000)
    journal = open(args["journal"], "a")  # noqa: SIM115 (open for the life of the process)

    def record(ev: Event) -> None:
        journal.write(json.dumps({"id": ev.event_id, "seq": ev.seq, "phase": ev.phase.value,
                                  "ended_at": ev.ended_at.isoformat() if ev.ended_at else None}) + "\n")
        journal.flush()  # in the kernel: survives a kill -9 of this process

    for end in end_left_open(outbox):
        record(end)
    pub = Publisher(NODE, MqttSection(**args["mqtt"]), outbox, resend_after=RESEND_AFTER, resend_max=RESEND_MAX)
    pub.start()
    rng = random.Random(args["seed"])
    lifecycles = {c: Lifecycle(EventIdentity(NODE, c, EventType.motion), outbox.next_seq, min_duration=0.0,
                               merge_gap=0.3, update_interval=0.5) for c in CAMERAS}
    switch_at = dict.fromkeys(CAMERAS, 0.0)
    active = dict.fromkeys(CAMERAS, False)
    alive_at = 0.0

    def emit(camera: str, updates: list[Update], at: datetime) -> None:
        for u in updates:
            outbox.put(u.event.event_id, Topic.events(NODE, camera), u.event.to_payload(),
                       running=u.event.ended_at is None, at=at.timestamp())
            record(u.event)
        if updates:
            pub.notify()

    def save_counters() -> None:
        Path(args["counters"]).write_text(json.dumps(pub.counters()))

    while not stop.is_set():
        now = datetime.now(UTC)
        mono = time.monotonic()
        for c, lc in lifecycles.items():
            if mono >= switch_at[c]:
                active[c] = not active[c]
                switch_at[c] = mono + (rng.uniform(0.3, 1.5) if active[c] else rng.uniform(0.4, 1.0))
            emit(c, lc.step(now, active[c], confidence=0.8), now)
        if mono - alive_at >= 1.0:
            alive_at = mono
            for c in CAMERAS:
                outbox.alive(Topic.events(NODE, c), now.timestamp())
            save_counters()
        stop.wait(0.05)
    now = datetime.now(UTC)
    for c, lc in lifecycles.items():
        emit(c, lc.finish(), now)
    deadline = time.monotonic() + args["drain_seconds"]
    while outbox.depth() and time.monotonic() < deadline:
        time.sleep(0.05)
    save_counters()
    drained = outbox.depth() == 0
    pub.stop()
    print("drained" if drained else "not drained", flush=True)
    return 0 if drained else 1


# --- the orchestra ---------------------------------------------------------------------


@dataclass
class Fault:
    at: float  # seconds after the stream started
    kind: str
    length: float  # seconds the part stays down (or the database cut off)


def schedule(rng: random.Random, duration: float) -> list[Fault]:
    """Faults one after another at random instants: each starts 1–4 s after the last one healed."""
    faults, t = [], 2.0
    while True:
        kind = rng.choice(FAULTS)
        length = rng.uniform(0.5, 3.0) if kind != "cut_database" else rng.uniform(1.0, 5.0)
        if t + length > duration:
            return faults
        faults.append(Fault(round(t, 2), kind, round(length, 2)))
        t += length + rng.uniform(1.0, 4.0)


@dataclass
class Rig:
    """Broker, consumer process and node process of one run, in `work`."""

    work: Path
    database: str
    seed: int
    broker: LocalBroker = field(init=False)
    consumer: subprocess.Popen[bytes] | None = None
    node: subprocess.Popen[str] | None = None
    node_runs: int = 0
    consumer_exits: int = 0  # times the consumer stopped by itself (e.g. no database at its start)
    consumer_wanted: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _closing: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.broker = LocalBroker.create(self.work / "broker", [NODE])
        consumer_account = self.broker.credentials.consumer.username
        (self.work / "central.yaml").write_text(yaml.safe_dump({
            "database": self.database,
            "mqtt": {"host": self.broker.host, "port": self.broker.port, "username": consumer_account,
                     "password": self.broker.password(consumer_account), "reconnect_max_seconds": 1},
        }))

    def supervise(self) -> None:
        """Restart a consumer that exited by itself, like systemd's Restart=on-failure: it stops
        when its database is away at start (docs/central.md)."""
        exited_at: float | None = None
        while not self._closing.wait(0.2):
            with self._lock:
                if not self.consumer_wanted or self.consumer is None or self.consumer.poll() is None:
                    exited_at = None
                    continue
                if exited_at is None:
                    exited_at = time.monotonic()
                    self.consumer_exits += 1
                elif time.monotonic() - exited_at >= RESTART_SECONDS:
                    self._start_consumer()
                    exited_at = None

    def start_consumer(self) -> None:
        with self._lock:
            self.consumer_wanted = True
            self._start_consumer()

    def kill_consumer(self) -> None:
        with self._lock:
            self.consumer_wanted = False
            self.kill(self.consumer)

    def stop_consumer(self) -> None:
        """SIGTERM: the consumer finishes its batch and leaves."""
        with self._lock:
            self.consumer_wanted = False
            if self.consumer is not None and self.consumer.poll() is None:
                self.consumer.send_signal(signal.SIGTERM)
                self.consumer.wait(30)

    def _start_consumer(self) -> None:
        with open(self.work / "consumer.log", "ab") as log:
            self.consumer = subprocess.Popen(
                [sys.executable, "-m", "vaktpost.broker.service", "--config", str(self.work / "central.yaml"),
                 "--log-level", "WARNING"], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)

    def start_node(self) -> None:
        if self.node is not None and self.node.stdout is not None:
            self.node.stdout.close()  # the killed one's
        self.node_runs += 1
        args = {"outbox": str(self.work / "outbox.db"), "journal": str(self.work / "journal.jsonl"),
                "counters": str(self.work / f"counters-{self.node_runs}.json"),
                "seed": self.seed * 1000 + self.node_runs, "drain_seconds": SETTLE_TIMEOUT,
                "mqtt": {"host": self.broker.host, "port": self.broker.port, "username": NODE,
                         "password": self.broker.password(NODE)}}
        with open(self.work / "node.log", "ab") as log:
            self.node = subprocess.Popen([sys.executable, __file__, "--node", json.dumps(args)], stdout=subprocess.PIPE,
                                         stderr=log, text=True, cwd=ROOT)

    @staticmethod
    def kill(proc: subprocess.Popen[Any] | None) -> None:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def close(self) -> None:
        self._closing.set()
        with self._lock:
            self.consumer_wanted = False
        for proc in (self.node, self.consumer):
            self.kill(proc)
        if self.node is not None and self.node.stdout is not None:
            self.node.stdout.close()
        self.broker.kill()


class DatabaseCut:
    """Cut the consumer off its database for a while: on PostgreSQL every connection to the
    database is terminated again and again; on SQLite a writer holds the file locked."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sqlite = make_url(url).get_backend_name() == "sqlite"

    def run(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        if self.sqlite:
            db = sqlite3.connect(make_url(self.url).database, timeout=30, isolation_level=None)
            try:
                db.execute("BEGIN EXCLUSIVE")
                time.sleep(seconds)  # the fault itself: the file stays locked this long
                db.execute("ROLLBACK")
            finally:
                db.close()
            return
        engine = create_engine(self.url.replace("postgresql://", "postgresql+psycopg://", 1),
                               isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                while time.monotonic() < end:
                    conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                      "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
                    time.sleep(0.05)
        finally:
            engine.dispose()


def journal_of(path: Path) -> dict[str, dict[str, Any]]:
    """The last journaled message of every event."""
    last: dict[str, dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:  # the line a kill cut short
                continue
            last[rec["id"]] = rec
    return last


def compare(journal: dict[str, dict[str, Any]], rows: list[dict[str, Any]]) -> dict[str, int]:
    """What the place log holds against what the node put in its outbox."""
    stored = {r["event_id"]: r for r in rows}
    lost = [e for e in journal if e not in stored]
    not_final = [e for e, rec in journal.items() if e in stored and rec["ended_at"] is not None
                 and (stored[e]["ended_at"] is None
                      or abs(stored[e]["ended_at"].timestamp()
                             - datetime.fromisoformat(rec["ended_at"]).timestamp()) > 0.001)]
    seqs = [r["seq"] for r in rows]
    return {"events_produced": len(journal), "events_stored": len(stored), "lost": len(lost),
            "not_final": len(not_final), "duplicate_rows": len(rows) - len(stored) + len(seqs) - len(set(seqs)),
            "open_events_left": sum(1 for r in rows if r["ended_at"] is None)}


def place_log(url: str) -> list[dict[str, Any]]:
    store = Store(url)
    try:
        return store.query_events(node=NODE, limit=10_000_000)
    finally:
        store.close()


def settled(work: Path, url: str) -> bool:
    c = compare(journal_of(work / "journal.jsonl"), place_log(url))
    return c["lost"] == c["not_final"] == c["open_events_left"] == 0


def run_once(kind: str, url: str, seed: int, duration: float, work: Path) -> dict[str, Any]:
    rng = random.Random(f"{seed}-{kind}")
    faults = schedule(rng, duration)
    rig = Rig(work, url, seed)
    cut = DatabaseCut(url)
    done: list[dict[str, Any]] = []
    supervisor = threading.Thread(target=rig.supervise, daemon=True)
    supervisor.start()
    try:
        rig.start_consumer()
        rig.start_node()
        t0 = time.monotonic()
        for f in faults:
            time.sleep(max(0.0, t0 + f.at - time.monotonic()))  # the instant the seed chose
            if f.kind == "kill_broker":
                rig.broker.kill()
                time.sleep(f.length)
                rig.broker.start()
            elif f.kind == "kill_consumer":
                rig.kill_consumer()
                time.sleep(f.length)
                rig.start_consumer()
            elif f.kind == "kill_node":
                rig.kill(rig.node)
                time.sleep(f.length)
                rig.start_node()
            else:
                cut.run(f.length)
            done.append({"at": f.at, "kind": f.kind, "seconds": f.length})
        time.sleep(max(0.0, t0 + duration - time.monotonic()))
        # The last fault has healed: stop the stream cleanly and time until all is stored.
        healed = time.monotonic()
        assert rig.node is not None
        rig.node.send_signal(signal.SIGTERM)
        said = rig.node.communicate(timeout=SETTLE_TIMEOUT + 15)[0].strip()
        deadline = healed + SETTLE_TIMEOUT + 15
        while not settled(work, url) and time.monotonic() < deadline:
            time.sleep(0.2)
        recovery = time.monotonic() - healed
        rig.stop_consumer()
    finally:
        rig.close()
        supervisor.join()
    counters = [json.loads(p.read_text()) for p in work.glob("counters-*.json")]
    result = {"database": kind, **compare(journal_of(work / "journal.jsonl"), place_log(url)),
              "resends": sum(c.get("resent", 0) for c in counters),
              "published": sum(c.get("published", 0) for c in counters),
              "node_runs": rig.node_runs, "consumer_exits": rig.consumer_exits,
              "node_drained": said == "drained", "recovery_s": round(recovery, 2),
              "faults": {k: sum(1 for d in done if d["kind"] == k) for k in FAULTS}, "fault_log": done}
    return result


class PostgresDatabase:
    """A fresh database on the server of `server_url`, dropped afterwards."""

    def __init__(self, server_url: str) -> None:
        self.admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
        self.name = f"vaktpost_faults_{uuid.uuid4().hex[:8]}"
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self.name}"'))
        self.url = make_url(server_url).set(database=self.name).render_as_string(hide_password=False)

    def drop(self) -> None:
        with self.admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self.admin.dispose()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--node"]:
        return run_node(json.loads(argv[1]))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help=f"{QUICK_SECONDS:.0f} s of faults per database")
    ap.add_argument("--duration", type=float, help=f"seconds of faults per database (default {FULL_SECONDS:.0f})")
    ap.add_argument("--seed", type=int, help="replay the random instants of an earlier run")
    ap.add_argument("--pg-url", help="PostgreSQL server URL with CREATE DATABASE rights (default: "
                    "VAKTPOST_TEST_PG_URL; without either, PostgreSQL is skipped)")
    ap.add_argument("--only", choices=["sqlite", "postgresql"], help="run on one database only")
    args = ap.parse_args(argv)
    # SIGTERM (a test's timeout) unwinds like an error: every process and database it made goes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    duration = args.duration or (QUICK_SECONDS if args.quick else FULL_SECONDS)
    print(f"faults: seed {seed} (replay: --seed {seed}), {duration:.0f} s of faults per database", file=sys.stderr)
    pg_url = args.pg_url or os.environ.get("VAKTPOST_TEST_PG_URL")
    runs, skipped = [], []
    with tempfile.TemporaryDirectory(prefix="vaktpost-faults-") as tmp:
        if args.only in (None, "sqlite"):
            work = Path(tmp) / "sqlite"
            work.mkdir()
            runs.append(run_once("sqlite", f"sqlite:///{work / 'central.db'}", seed, duration, work))
        if args.only in (None, "postgresql"):
            if pg_url:
                db = PostgresDatabase(pg_url)
                try:
                    work = Path(tmp) / "postgresql"
                    work.mkdir()
                    runs.append(run_once("postgresql", db.url, seed, duration, work))
                finally:
                    db.drop()
            else:
                skipped.append("postgresql (no --pg-url or VAKTPOST_TEST_PG_URL)")
    ok = all(r["lost"] == r["not_final"] == r["duplicate_rows"] == r["open_events_left"] == 0 and r["node_drained"]
             for r in runs)
    print(json.dumps({"seed": seed, "duration_s": duration, "ok": ok, "runs": runs, "skipped": skipped}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
