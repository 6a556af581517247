"""Seeded place logs for the measures, report and export tests: two districts, two cameras
at Norrskolan (Norr) and one at Söderparken (Söder), incidents made by the consumer's
grouping at known times."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from vaktpost.broker.config import IncidentsSection
from vaktpost.broker.incidents.grouping import Grouper
from vaktpost.broker.measures import service
from vaktpost.broker.measures.service import MeasureInput, MeasureKind
from vaktpost.broker.measures.tables import create_tables
from vaktpost.broker.places import parse_places, write_registry
from vaktpost.broker.store import Store, default_topic
from vaktpost.contract.events import Event, uuid7

ZONE = ZoneInfo("Europe/Stockholm")
PLACES = {
    "timezone": "Europe/Stockholm",
    "places": [
        {"id": "norrskolan", "name": "Norrskolan", "kind": "school", "district": "Norr"},
        {"id": "soderparken", "name": "Söderparken", "kind": "park", "district": "Söder"},
    ],
    # Two cameras at Norrskolan: calendar exposure is 2 camera-hours an hour.
    "cameras": [
        {"node": "node-a", "camera": "gard", "place": "norrskolan", "from": "2024-01-01"},
        {"node": "node-a", "camera": "entre", "place": "norrskolan", "from": "2024-01-01"},
        {"node": "node-b", "camera": "park", "place": "soderparken", "from": "2024-01-01"},
    ],
}
START = date(2025, 3, 3)  # a Monday; summer time begins 2025-03-30 (an hour shorter day)
NOW = datetime(2025, 4, 28, 9, 30, tzinfo=ZONE)  # 8 whole weeks after START


def prepare(place_store: Store) -> Store:
    write_registry(place_store, parse_places(PLACES))
    create_tables(place_store.engine)
    return place_store


def seed(store: Store, n: int, first: date, last: date, *, type: str = "intrusion", camera: str = "gard",
         node: str = "node-a") -> None:
    """`n` incidents spread evenly over [first, last) (local dates), each at least hours apart."""
    span = (datetime.combine(last, datetime.min.time(), ZONE) - datetime.combine(first, datetime.min.time(), ZONE))
    grouper = Grouper(IncidentsSection())
    for k in range(n):
        start = (datetime.combine(first, datetime.min.time(), ZONE) + span * (k + 0.5) / n).astimezone(UTC)
        ev = Event(event_id=uuid7(int(start.timestamp() * 1000)), seq=1, node_id=node, camera_id=camera, type=type,
                   zone="gard" if type in ("intrusion", "loitering") else None, started_at=start,
                   subtype="appeared" if type == "scene_change" else None, ended_at=start + timedelta(seconds=20),
                   confidence=0.9, phase="end")
        with store.begin() as tx:
            tx.insert_event(ev, topic=default_topic(ev), received_at=start)
            Grouper.record(grouper, tx.conn, [ev], start)


def lighting(store: Store, **extra: object) -> service.Measure:
    spec = MeasureInput(places=("norrskolan",), kind=MeasureKind.lighting, start_date=START, owner="Fastighet",
                        cost=120_000, note="LED på skolgården", **extra)  # type: ignore[arg-type]
    return service.add_measure(store, spec, actor="anna", now=NOW)
