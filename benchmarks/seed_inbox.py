"""Seed a PostgreSQL place log with two years of a city's events and incidents, for the
inbox benchmark (benchmarks/inbox.py).

Creates a fresh database on the server (`--database`, else VAKTPOST_TEST_PG_URL, else
what ./scripts/postgres.sh prints), the place log's tables (Store.create_all), places in
eight districts with one node each and one to three cameras (the registry, written as
`vaktpost places import` does), node health, then bulk-loads with COPY:

* incidents over ~2 years (ids in time order; more in the evening and at night); most
  resolved (false alarms mostly), a few thousand open: most of the last month's and a
  few old ones nobody closed (motion, low priority, most often);
* their events (every event belongs to one incident, as the consumer files them; the
  count per incident is geometric, larger for motion; node_offline has none), with
  the payload a node sends; the snapshots of the last 30 days' people events (retention
  drops older ones; a few hundred bytes each, not real JPEGs: nothing decodes them here);
* incident_places, incident_events, and audit rows (opened, acknowledged, assigned,
  commented, snapshot_viewed, resolved or auto_closed);

then VACUUM ANALYZE, as autovacuum would have by then. Progress goes to stderr;
prints one JSON object (the URL and the row counts). Deterministic for one `--seed`.

    .venv/bin/python benchmarks/seed_inbox.py [--events 1000000] [--incidents 50000] [--places 200]
        [--database SERVER_URL] [--seed 1] [--keep]

Without --keep the database is dropped again (a dry run of the seeding).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import Engine, make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # runnable without an install

from vaktpost.broker.incidents.kinds import DEFAULT_PRIORITY, SYSTEM, IncidentType, Outcome  # noqa: E402
from vaktpost.broker.incidents.tables import audit_log, incident_events, incident_places, incidents  # noqa: E402
from vaktpost.broker.places import parse_places, write_registry  # noqa: E402
from vaktpost.broker.store import Store, events, normalise_url, snapshots  # noqa: E402
from vaktpost.contract.messages import Heartbeat, Status  # noqa: E402

# (name, share of the places)
DISTRICTS = [("Norr", 0.20), ("Söder", 0.18), ("Öster", 0.15), ("Väster", 0.14), ("Centrum", 0.12),
             ("Hamnen", 0.09), ("Berga", 0.07), ("Skogsby", 0.05)]
KINDS = ["school", "schoolyard", "park", "square", "playground", "sports_ground", "other"]
ZONES = ["gard", "entre", "tak", "parkering", "cykelstall"]
# Incident type → (share of incidents, relative number of events per incident beyond the first)
MIX = {
    IncidentType.motion: (0.40, 3.0),
    IncidentType.intrusion: (0.22, 1.0),
    IncidentType.loitering: (0.12, 1.0),
    IncidentType.scene_change: (0.10, 0.3),
    IncidentType.tamper: (0.06, 0.2),
    IncidentType.health: (0.05, 0.2),
    IncidentType.node_offline: (0.05, 0.0),  # no events
}
SUBTYPES = {
    IncidentType.tamper: ["covered", "defocused", "moved", "signal_lost"],
    IncidentType.scene_change: ["appeared", "removed", "changed"],
    IncidentType.health: ["camera_lost", "detector_unavailable"],
}
WITH_REGION = {IncidentType.motion, IncidentType.intrusion, IncidentType.loitering, IncidentType.scene_change}
PEOPLE = {IncidentType.intrusion, IncidentType.loitering}
# Hour of day (local, roughly) → weight: quiet mornings, busy evenings and nights.
HOURS = np.array([6, 5, 4, 3, 2, 1, 1, 2, 2, 2, 2, 2, 3, 3, 3, 4, 5, 6, 8, 9, 10, 10, 9, 8], float)
OUTCOMES = [(Outcome.false_alarm, 0.55), (Outcome.cleaned_or_repaired, 0.13), (Outcome.damage_found, 0.12),
            (Outcome.police_report, 0.05), (Outcome.other, 0.15)]
NOTES = ["Fåglar i bilden.", "Personal på plats, inget att se.", "Klotter på väggen, anmält till fastighet.",
         "Krossad ruta vid entrén.", "Ungdomar på taket, gick när vakten kom.", "Polisanmälan gjord."]
COMMENTS = ["Ringer väktarbolaget.", "Kollar bilderna i morgon.", "Skolan informerad.",
            "Samma grupp som förra veckan?", "Väktare på väg."]
SPAN = timedelta(days=730)
RECENT = timedelta(days=30)  # most of these are still open; snapshots are kept this long
CHUNK = 10_000  # rows per progress line
SNAPSHOT_BYTES = 300


def log(msg: str) -> None:
    print(f"[seed {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- the database ---------------------------------------------------------------------


def server_url(given: str | None) -> str:
    """The PostgreSQL server to create the database on: --database, VAKTPOST_TEST_PG_URL,
    or what ./scripts/postgres.sh prints (it may start or install the Debian cluster)."""
    url = given or os.environ.get("VAKTPOST_TEST_PG_URL")
    if not url:
        url = subprocess.run([str(ROOT / "scripts" / "postgres.sh")], capture_output=True, text=True).stdout.strip()
    if not url:
        raise SystemExit("seed: no PostgreSQL: give --database URL or set VAKTPOST_TEST_PG_URL")
    return normalise_url(url)


def _admin(server: str) -> Engine:
    return create_engine(server, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})


def create_database(server: str, prefix: str = "vaktpost_bench") -> str:
    """A new database on `server` (as tests/conftest.py's _create_database does); its URL."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    engine = _admin(server)
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return make_url(server).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    u = make_url(url)
    engine = _admin(u.set(database="postgres").render_as_string(hide_password=False))
    try:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{u.database}" WITH (FORCE)'))
    finally:
        engine.dispose()


@contextmanager
def fresh_database(server: str, keep: bool) -> Iterator[str]:
    url = create_database(server)
    try:
        yield url
    finally:
        if keep:
            log(f"kept {make_url(url).render_as_string(hide_password=True)}")
        else:
            drop_database(url)


# --- places ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Camera:
    node: str
    camera: str
    place: str
    district: str
    zones: tuple[str, ...]


def make_places(n: int, rng: np.random.Generator, start: datetime) -> tuple[dict[str, Any], list[Camera]]:
    """A registry document (as YAML would give) with `n` places, and their cameras."""
    shares = np.array([s for _, s in DISTRICTS])
    district_of = rng.choice(len(DISTRICTS), size=n, p=shares / shares.sum())
    places, periods, cameras = [], [], []
    for i in range(n):
        district = DISTRICTS[int(district_of[i])][0]
        kind = KINDS[i % len(KINDS)]
        pid, node = f"plats-{i:04d}", f"node-{i:04d}"
        places.append({"id": pid, "name": f"{kind.replace('_', ' ').capitalize()} {i:04d}", "kind": kind,
                       "district": district, "address": f"Gatan {i + 1}, {district}",
                       "coordinates": [59.2 + float(rng.random()) * 0.2, 17.9 + float(rng.random()) * 0.3]})
        for c in range(1 + int(rng.integers(0, 3))):
            cam = f"cam{c + 1}"
            periods.append({"node": node, "camera": cam, "place": pid, "from": start.isoformat()})
            zones = tuple(rng.choice(ZONES, size=int(rng.integers(1, 4)), replace=False).tolist())
            cameras.append(Camera(node, cam, pid, district, zones))
    return {"timezone": "Europe/Stockholm", "places": places, "cameras": periods}, cameras


def operators(district: str) -> list[str]:
    slug = district.lower().replace("ö", "o").replace("ä", "a").replace("å", "a")
    return [f"op-{slug}-{k}" for k in range(1, 4)]


# --- incidents and events (numpy columns) ----------------------------------------------


@dataclass
class Plan:
    """Everything to load, as columns. Times are float seconds since the epoch."""

    types: list[IncidentType]  # per incident
    camera: np.ndarray  # per incident: index into cameras (node_offline: a camera of the node)
    zone: list[str | None]
    opened: np.ndarray
    last: np.ndarray
    count: np.ndarray  # events per incident
    open_: np.ndarray  # bool
    ev_incident: np.ndarray  # per event: its incident
    ev_start: np.ndarray
    ev_end: np.ndarray


def _opened_times(n: int, rng: np.random.Generator, now: datetime) -> np.ndarray:
    day0 = (now - SPAN).timestamp()
    days = rng.integers(0, SPAN.days, size=n)
    hours = rng.choice(24, size=n, p=HOURS / HOURS.sum())
    t = day0 + days * 86400.0 + hours * 3600.0 + rng.random(n) * 3600.0
    return np.sort(np.minimum(t, now.timestamp() - 3600.0))  # ids in time order, as they were opened


def _event_counts(types: Sequence[IncidentType], total: int, rng: np.random.Generator) -> np.ndarray:
    """Events per incident: 1 + geometric, scaled so that they add up to `total`."""
    weight = np.array([MIX[t][1] for t in types])
    has = weight > 0
    extra_total = total - int(has.sum())
    if extra_total < 0:
        raise SystemExit(f"seed: {total} events cannot fill {int(has.sum())} incidents that have events")
    mean = weight * extra_total / weight.sum()
    counts = np.where(has, 1 + rng.geometric(1.0 / (1.0 + mean)) - 1, 0)
    diff = total - int(counts.sum())
    idx = np.flatnonzero(has)
    while diff != 0:  # nudge random incidents until the sum is exact
        pick = rng.choice(idx, size=min(abs(diff), len(idx)), replace=False)
        if diff > 0:
            counts[pick] += 1
        else:
            pick = pick[counts[pick] > 1]
            counts[pick] -= 1
        diff = total - int(counts.sum())
    return counts


def plan(n_events: int, n_incidents: int, cameras: list[Camera], rng: np.random.Generator, now: datetime) -> Plan:
    kinds = list(MIX)
    shares = np.array([MIX[k][0] for k in kinds])
    types = [kinds[i] for i in rng.choice(len(kinds), size=n_incidents, p=shares / shares.sum())]
    camera = rng.integers(0, len(cameras), size=n_incidents)
    zone = [str(rng.choice(cameras[c].zones)) if t in PEOPLE else None for t, c in zip(types, camera.tolist())]
    opened = _opened_times(n_incidents, rng, now)
    count = _event_counts(types, n_events, rng)

    ev_incident = np.repeat(np.arange(n_incidents), count)
    gaps = np.clip(rng.exponential(120.0, n_events), 1.0, 590.0)  # within the grouping gap (600 s)
    firsts = np.concatenate(([0], np.cumsum(count)[:-1]))[count > 0]
    gaps[firsts] = 0.0
    csum = np.cumsum(gaps)
    offset = csum - np.repeat(csum[firsts], count[count > 0])
    ev_start = opened[ev_incident] + offset
    ev_end = ev_start + 2.0 + rng.exponential(20.0, n_events)

    last = opened.copy()
    has = count > 0
    last[has] = np.maximum.reduceat(ev_end, firsts)
    offline = np.array([t is IncidentType.node_offline for t in types])
    last[offline] = opened[offline] + 60.0 + rng.exponential(3600.0, int(offline.sum()))

    # Open: most of the last month's; of older ones a few nobody closed (mostly motion).
    recent = opened > (now - RECENT).timestamp()
    stale = np.array([0.08 if t is IncidentType.motion else 0.01 for t in types])
    open_ = np.where(recent, rng.random(n_incidents) < 0.6, rng.random(n_incidents) < stale)
    last = np.minimum(last, now.timestamp() - 60.0)
    return Plan(types, camera, zone, opened, last, count, open_, ev_incident, ev_start, ev_end)


# --- rows -------------------------------------------------------------------------------


def _t(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def iso_times(seconds: np.ndarray) -> list[str]:
    """ISO 8601 UTC text of many times at once (COPY and JSON take it as is)."""
    return [f"{s}Z" for s in np.datetime_as_string((seconds * 1000).astype("datetime64[ms]"), unit="ms")]


def uuid7s(ms: np.ndarray, rng: np.random.Generator) -> list[str]:
    """RFC 9562 UUIDv7 text for many millisecond times at once (as contract.events.uuid7)."""
    raw = rng.integers(0, 256, size=(len(ms), 16), dtype=np.uint8)
    stamp = ms.astype(">u8").view(np.uint8).reshape(-1, 8)[:, 2:]  # the low 48 bits, big-endian
    raw[:, :6] = stamp
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x70  # version 7
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.tobytes().hex()
    return [f"{h[i:i + 8]}-{h[i + 8:i + 12]}-{h[i + 12:i + 16]}-{h[i + 16:i + 20]}-{h[i + 20:i + 32]}"
            for i in range(0, len(h), 32)]


def per_node_seq(node_of: np.ndarray) -> np.ndarray:
    """1, 2, 3, ... per node, in the given (time) order."""
    order = np.argsort(node_of, kind="stable")
    sorted_nodes = node_of[order]
    starts = np.flatnonzero(np.r_[True, sorted_nodes[1:] != sorted_nodes[:-1]])
    rank = np.arange(len(node_of)) - np.repeat(starts, np.diff(np.r_[starts, len(node_of)]))
    seq = np.empty_like(rank)
    seq[order] = rank + 1
    return seq


@dataclass
class EventColumns:
    """The text of the events' columns that other tables need again."""

    ids: list[str]
    nodes: list[str]
    starts: list[str]
    ends: list[str]


def event_columns(p: Plan, cameras: list[Camera], rng: np.random.Generator) -> EventColumns:
    ids = uuid7s((p.ev_start * 1000).astype(np.int64), rng)
    node_names = [cameras[c].node for c in p.camera.tolist()]
    return EventColumns(ids, [node_names[i] for i in p.ev_incident.tolist()], iso_times(p.ev_start),
                        iso_times(p.ev_end))


def event_lines(p: Plan, cameras: list[Camera], cols: EventColumns, rng: np.random.Generator
                ) -> Iterator[str]:
    """COPY text lines of `events` (EVENT_COLUMNS), with the payload a node sends."""
    n = len(p.ev_start)
    conf = (0.5 + rng.random(n) * 0.49).round(3).tolist()
    xy = (rng.random((n, 2)) * 0.5).round(3)
    wh = (0.05 + rng.random((n, 2)) * 0.4).round(3)
    regions = np.hstack([xy, xy + wh]).round(3).tolist()
    received = iso_times(p.ev_end + 0.5)
    camera_index = p.camera.tolist()
    node_of = np.array([camera_index[i] for i in p.ev_incident.tolist()])  # a node per camera's place
    seqs = per_node_seq(node_of).tolist()
    prev = -1
    row = js = topic = snap = ""
    has_region = False
    for k, i in enumerate(p.ev_incident.tolist()):
        if i != prev:  # events come grouped by incident: its parts once
            prev = i
            t, cam = p.types[i], cameras[camera_index[i]]
            subtype = SUBTYPES[t][i % len(SUBTYPES[t])] if t in SUBTYPES else None
            zone = p.zone[i]
            snap = "attached" if t in PEOPLE else "none"
            topic = f"\t{TOPIC.format(node=cam.node, camera=cam.camera)}\t"
            row = f"{cam.node}\t{cam.camera}\t{cam.place}\t{t.value}\t{subtype or NULL}\t{zone or NULL}\t"
            js = (f'"node_id": "{cam.node}", "camera_id": "{cam.camera}", "type": "{t.value}", '
                  f'"subtype": {_js(subtype)}, "zone": {_js(zone)}')
            has_region = t in WITH_REGION
        eid, start, end, recv, seq = cols.ids[k], cols.starts[k], cols.ends[k], received[k], seqs[k]
        region = f"[{', '.join(map(str, regions[k]))}]" if has_region else None
        payload = (f'{{"schema": "vaktpost.event/2", "event_id": "{eid}", "seq": {seq}, {js}, '
                   f'"started_at": "{start}", "ended_at": "{end}", "confidence": {conf[k]}, '
                   f'"region": {region or "null"}, "snapshot": "{snap}", "snapshot_withheld": null, '
                   f'"phase": "end"}}')
        yield (f"{eid}\t{seq}\t{row}{start}\t{end}\t{conf[k]}\t{region or NULL}{topic}{recv}\t{recv}\t"
               f"{payload}\t{snap}\t{NULL}\n")


TOPIC = "vaktpost/v1/nodes/{node}/events/{camera}"
NULL = "\\N"  # COPY text format's null


def _js(v: str | None) -> str:
    return "null" if v is None else f'"{v}"'


EVENT_COLUMNS = ("event_id", "seq", "node_id", "camera_id", "place_id", "type", "subtype", "zone", "started_at",
                 "ended_at", "confidence", "region", "topic", "received_at", "updated_at", "payload", "snapshot",
                 "snapshot_withheld")


@dataclass
class Fate:
    """What happened to one incident after it opened."""

    state: str
    owner: str | None
    outcome: str | None
    note: str | None
    acked_at: float | None
    resolved_at: float | None


def fate(p: Plan, i: int, cameras: list[Camera], rng: np.random.Generator, now_s: float) -> Fate:
    t = p.types[i]
    people = operators(cameras[int(p.camera[i])].district) + ["admin"]
    owner = people[int(rng.integers(0, len(people)))]
    acked = min(p.opened[i] + 60.0 + float(rng.lognormal(6.5, 1.2)), now_s - 30.0)
    if p.open_[i]:
        if rng.random() < 0.35:
            return Fate("acknowledged", owner, None, None, acked, None)
        return Fate("new", None, None, None, None, None)
    if t is IncidentType.node_offline:  # the node came back: the consumer closed it
        return Fate("resolved", None, Outcome.auto_closed.value, None, None, float(p.last[i]))
    r = rng.random()
    outcome = next(o for o, share in _cumulative(OUTCOMES) if r < share)
    resolved = min(max(acked, p.last[i]) + float(rng.lognormal(7.0, 1.5)), now_s - 10.0)
    note = NOTES[int(rng.integers(0, len(NOTES)))] if rng.random() < 0.3 else None
    return Fate("resolved", owner, outcome.value, note, acked if rng.random() < 0.7 else None, resolved)


def _cumulative(pairs: list[tuple[Outcome, float]]) -> list[tuple[Outcome, float]]:
    out, acc = [], 0.0
    total = sum(s for _, s in pairs)
    for o, s in pairs:
        acc += s / total
        out.append((o, acc))
    out[-1] = (out[-1][0], 1.0)
    return out


INCIDENT_COLUMNS = ("id", "type", "group_key", "node_id", "camera_id", "zone", "priority", "state", "owner",
                    "outcome", "outcome_note", "opened_at", "last_event_at", "ended_at", "ongoing", "event_count",
                    "created_at", "updated_at", "resolved_at")
AUDIT_COLUMNS = ("id", "at", "actor", "client", "action", "incident_id", "event_id", "detail")


def incident_and_audit_rows(p: Plan, cameras: list[Camera], rng: np.random.Generator, now: datetime,
                            first_event: list[str], snapshot_event: dict[int, str]
                            ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[int, str]]]:
    now_s = now.timestamp()
    inc_rows, audit_rows, place_rows = [], [], []
    for i, t in enumerate(p.types):
        inc_id = i + 1
        cam = cameras[int(p.camera[i])]
        f = fate(p, i, cameras, rng, now_s)
        offline = t is IncidentType.node_offline
        lasting = offline and f.state != "resolved"  # still offline: no end yet
        if offline:
            key, camera_id = f"node_offline|{cam.node}", None
        else:
            key, camera_id = "|".join((t.value, cam.node, cam.camera, p.zone[i] or "", cam.place)), cam.camera
        created = p.opened[i] + 1.0
        changes = [x for x in (f.acked_at, f.resolved_at) if x is not None]
        updated = max([p.last[i], created, *changes])
        inc_rows.append((inc_id, t.value, key, cam.node, camera_id, p.zone[i], int(DEFAULT_PRIORITY[t]), f.state,
                         f.owner, f.outcome, f.note, _t(p.opened[i]), _t(p.last[i]),
                         None if lasting else _t(p.last[i]), 0, int(p.count[i]), _t(created), _t(updated),
                         None if f.resolved_at is None else _t(f.resolved_at)))
        place_rows.append((inc_id, cam.place))

        audit: list[tuple[float, str, str | None, str, str | None, dict[str, Any] | None]] = []
        opened_detail = {"reason": "status offline"} if offline else {"event_id": first_event[i]}
        audit.append((created, SYSTEM, None, "opened", None, opened_detail))
        client = f"10.1.{int(rng.integers(0, 8))}.{int(rng.integers(2, 250))}"
        state = "new"
        if f.acked_at is not None:
            audit.append((f.acked_at, f.owner or "admin", client, "acknowledged", None, {"from_state": state}))
            state = "acknowledged"
            if rng.random() < 0.1:
                audit.append((f.acked_at + 5.0, "admin", client, "assigned", None,
                              {"from_state": state, "owner": f.owner}))
        if f.owner is not None and rng.random() < 0.15:
            at = (f.acked_at or p.opened[i]) + 30.0
            audit.append((at, f.owner, client, "commented", None,
                          {"text": COMMENTS[int(rng.integers(0, len(COMMENTS)))]}))
        if i in snapshot_event and f.owner is not None and rng.random() < 0.3:
            audit.append(((f.acked_at or p.opened[i]) + 20.0, f.owner, client, "snapshot_viewed",
                          snapshot_event[i], None))
        if f.state == "resolved" and f.resolved_at is not None:
            if f.outcome == Outcome.auto_closed.value:
                audit.append((f.resolved_at, SYSTEM, None, "auto_closed", None, {"reason": "status online"}))
            else:
                audit.append((f.resolved_at, f.owner or "admin", client, "resolved", None,
                              {"from_state": state, "outcome": f.outcome, "note": f.note}))
        for at, actor, addr, action, event_id, detail in sorted(audit, key=lambda a: a[0]):
            audit_rows.append((len(audit_rows) + 1, _t(min(at, now_s)), actor, addr, action, inc_id, event_id,
                               None if detail is None else json.dumps(detail)))
    return inc_rows, audit_rows, place_rows


# --- loading ----------------------------------------------------------------------------


def copy_rows(engine: Engine, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """COPY `rows` (Python values) into `table` in one transaction."""
    n = 0
    t0 = time.perf_counter()
    with engine.begin() as conn:
        pg = conn.connection.driver_connection
        assert pg is not None
        with pg.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as cp:
            for row in rows:
                cp.write_row(row)
                n += 1
    log(f"{table}: {n:,} rows in {time.perf_counter() - t0:.1f} s")
    return n


def copy_lines(engine: Engine, table: str, columns: Sequence[str], lines: Iterable[str], total: int) -> int:
    """COPY ready text lines into `table` in one transaction, CHUNK lines a write;
    progress on stderr. Faster than write_row by a few times (no per-value dumping)."""
    n = 0
    t0 = time.perf_counter()
    buf: list[str] = []
    with engine.begin() as conn:
        pg = conn.connection.driver_connection
        assert pg is not None
        with pg.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as cp:
            for line in lines:
                buf.append(line)
                if len(buf) == CHUNK:
                    cp.write("".join(buf))
                    n += len(buf)
                    buf.clear()
                    if n % (CHUNK * 10) == 0:
                        log(f"{table}: {n:,}/{total:,} ({n / (time.perf_counter() - t0):,.0f}/s)")
            cp.write("".join(buf))
            n += len(buf)
    log(f"{table}: {n:,} rows in {time.perf_counter() - t0:.1f} s")
    return n


def seed(url: str, *, n_events: int, n_incidents: int, n_places: int, seed: int = 1,
         now: datetime | None = None, progress: Callable[[str], None] = log) -> dict[str, Any]:
    """Fill the empty database at `url`; returns the row counts and how long it took."""
    t0 = time.perf_counter()
    now = now or datetime.now(UTC).replace(microsecond=0)
    rng = np.random.default_rng(seed)
    store = Store(url)
    try:
        store.create_all()
        doc, cameras = make_places(n_places, rng, now - SPAN - timedelta(days=1))
        write_registry(store, parse_places(doc))
        record_nodes(store, cameras, now, rng)
        progress(f"{n_places} places, {len(cameras)} cameras; planning {n_incidents:,} incidents, "
                 f"{n_events:,} events")
        p = plan(n_events, n_incidents, cameras, rng, now)
        cols = event_columns(p, cameras, rng)
        engine = store.engine
        # Secondary indexes are built once after the load: much faster than row by row.
        later = [*events.indexes, *incident_events.indexes]
        with engine.begin() as conn:
            for index in later:
                index.drop(conn)
        copy_lines(engine, events.name, EVENT_COLUMNS, event_lines(p, cameras, cols, rng), n_events)

        first_event = [""] * n_incidents
        for k in np.flatnonzero(np.r_[True, p.ev_incident[1:] != p.ev_incident[:-1]]).tolist():
            first_event[int(p.ev_incident[k])] = cols.ids[k]
        recent_people = np.flatnonzero((p.ev_start >= (now - RECENT).timestamp())
                                       & np.isin(p.ev_incident, [i for i, t in enumerate(p.types) if t in PEOPLE]))
        blob = b"\xff\xd8" + rng.bytes(SNAPSHOT_BYTES - 4) + b"\xff\xd9"
        snapshot_event: dict[int, str] = {}
        for k in recent_people.tolist():
            snapshot_event.setdefault(int(p.ev_incident[k]), cols.ids[k])
        copy_rows(engine, snapshots.name, ("event_id", "node_id", "received_at", "content_type", "bytes", "size"),
                  ((cols.ids[k], cols.nodes[k], cols.ends[k], "image/jpeg", blob, len(blob))
                   for k in recent_people.tolist()))

        inc_rows, audit_rows, place_rows = incident_and_audit_rows(p, cameras, rng, now, first_event,
                                                                   snapshot_event)
        copy_rows(engine, incidents.name, INCIDENT_COLUMNS, inc_rows)
        copy_rows(engine, incident_places.name, ("incident_id", "place_id"), place_rows)
        links = (f"{cols.ids[k]}\t{cols.nodes[k]}\t{i + 1}\t{cols.starts[k]}\t{cols.ends[k]}\n"
                 for k, i in enumerate(p.ev_incident.tolist()))
        copy_lines(engine, incident_events.name, ("event_id", "node_id", "incident_id", "started_at", "ended_at"),
                   links, n_events)
        copy_rows(engine, audit_log.name, AUDIT_COLUMNS, audit_rows)
        t1 = time.perf_counter()
        with engine.begin() as conn:
            for index in later:
                index.create(conn)
        progress(f"{len(later)} indexes built in {time.perf_counter() - t1:.1f} s")
        with engine.begin() as conn:
            for table in (incidents.name, audit_log.name):
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                  f"(SELECT max(id) FROM {table}))"))
        progress("VACUUM ANALYZE")
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
        counts = count_rows(store)
    finally:
        store.close()
    counts["seed_seconds"] = round(time.perf_counter() - t0, 1)
    return counts


def record_nodes(store: Store, cameras: list[Camera], now: datetime, rng: np.random.Generator) -> None:
    """Every node online with a fresh heartbeat, but a few whose heartbeats stopped."""
    with store.begin() as tx:
        for k, node in enumerate(sorted({c.node for c in cameras})):
            silent = k % 50 == 7
            tx.record_status(Status(node_id=node, state="online", at=now - timedelta(days=3)))
            tx.record_heartbeat(Heartbeat(node_id=node, at=now - timedelta(hours=5 if silent else 0, seconds=20),
                                          fps={c.camera: 5.0 for c in cameras if c.node == node},
                                          outbox_depth=int(rng.integers(0, 5)), cpu_temp_c=48.0))


def count_rows(store: Store) -> dict[str, Any]:
    from vaktpost.broker.incidents.kinds import OPEN_STATES
    from vaktpost.broker.store import camera_assignments, places

    with store.engine.connect() as conn:
        def n(table: Any, *where: Any) -> int:
            return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())

        size = conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one()
        return {
            "events": n(events), "incidents": n(incidents),
            "open_incidents": n(incidents, incidents.c.state.in_([s.value for s in OPEN_STATES])),
            "incident_places": n(incident_places), "incident_events": n(incident_events),
            "audit_log": n(audit_log), "snapshots": n(snapshots), "places": n(places),
            "districts": int(conn.execute(select(func.count(places.c.district.distinct()))).scalar_one()),
            "cameras": n(camera_assignments), "database_mb": round(int(size) / 2**20),
        }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--incidents", type=int, default=50_000)
    ap.add_argument("--places", type=int, default=200)
    ap.add_argument("--database", help="PostgreSQL server URL whose role may CREATE DATABASE")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the database (its URL is printed)")
    args = ap.parse_args()
    with fresh_database(server_url(args.database), args.keep) as url:
        counts = seed(url, n_events=args.events, n_incidents=args.incidents, n_places=args.places, seed=args.seed)
        out = {"benchmark": "seed_inbox", "database": url if args.keep else None, "kept": args.keep, **counts}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
