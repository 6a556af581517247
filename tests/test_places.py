"""Places registry: import, idempotent re-import, and errors that name the key."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from vaktpost.broker.places import import_places, load_places
from vaktpost.broker.store import Store
from vaktpost.contract.config import ConfigError
from vaktpost.contract.events import Event, uuid7

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "places.yaml"
UTC = UTC


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(f"sqlite:///{tmp_path / 'central.db'}")
    s.create_all()
    return s


def write(tmp_path: Path, doc: object, name: str = "places.yaml") -> Path:
    p = tmp_path / name
    p.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False))
    return p


def base_doc() -> dict:
    return {
        "timezone": "Europe/Stockholm",
        "places": [
            {"id": "school", "name": "Ekbacken school", "kind": "school", "district": "Norrby",
             "coordinates": [59.35, 17.97]},
            {"id": "park", "name": "Lindparken", "kind": "park"},
        ],
        "cameras": [
            {"node": "node-a", "camera": "yard", "place": "school", "from": "2024-08-01", "to": "2024-09-01"},
            {"node": "node-a", "camera": "yard", "place": "park", "from": "2024-09-01"},
        ],
    }


def test_import_example(store: Store) -> None:
    assert import_places(store, EXAMPLE) == (3, 3)
    places = {p["id"]: p for p in store.list_places()}
    assert places["ekbacken-school"]["name"] == "Ekbacken school"
    assert places["ekbacken-schoolyard"]["kind"] == "schoolyard"
    assert places["ekbacken-schoolyard"]["responsible"].startswith("Utbildningsförvaltningen")
    assert places["lindparken"]["purpose"] is None  # optional
    assert (places["lindparken"]["lat"], places["lindparken"]["lon"]) == (59.3412, 17.9920)
    periods = [(a["node_id"], a["camera_id"], a["place_id"], a["valid_from"], a["valid_to"])
               for a in store.list_assignments()]
    # Dates are local (Europe/Stockholm, CEST in August) midnights.
    assert periods == [
        ("node-a", "yard", "ekbacken-school", datetime(2024, 7, 31, 22, tzinfo=UTC),
         datetime(2024, 8, 18, 22, tzinfo=UTC)),
        ("node-a", "yard", "ekbacken-schoolyard", datetime(2024, 8, 18, 22, tzinfo=UTC), None),
        ("node-b", "park", "lindparken", datetime(2024, 9, 1, 4, tzinfo=UTC), None),
    ]


def test_reimport_is_idempotent_and_replaces_a_cameras_history(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, base_doc())
    assert import_places(store, path) == (2, 2)
    first = (store.list_places(), store.list_assignments())
    assert import_places(store, path) == (2, 2)
    assert (store.list_places(), store.list_assignments()) == first

    # Correcting the move date must not leave the old period behind (it would overlap).
    doc = base_doc()
    doc["cameras"][0]["to"] = doc["cameras"][1]["from"] = "2024-09-15"
    doc["places"][1]["name"] = "Lindparken (north)"
    import_places(store, write(tmp_path, doc))
    assignments = store.list_assignments()
    assert len(assignments) == 2
    assert assignments[1]["valid_from"] == datetime(2024, 9, 14, 22, tzinfo=UTC)
    assert {p["id"]: p["name"] for p in store.list_places()}["park"] == "Lindparken (north)"


def test_import_places_events_that_arrived_before(store: Store, tmp_path: Path) -> None:
    ev = Event(event_id=uuid7(), seq=1, node_id="node-a", camera_id="yard", type="motion",
               started_at=datetime(2024, 9, 20, 10, tzinfo=UTC), confidence=0.9, phase="start")
    store.insert_event(ev, topic="t")
    assert store.query_events()[0]["place_id"] is None
    import_places(store, write(tmp_path, base_doc()))
    assert store.query_events()[0]["place_name"] == "Lindparken"


def _mutate(path: str, value: object):
    def apply(doc: dict) -> None:
        *parents, last = path.split(".")
        node = doc
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        if value is _DELETE:
            del node[int(last) if last.isdigit() else last]
        else:
            node[int(last) if last.isdigit() else last] = value
    return apply


_DELETE = object()


@pytest.mark.parametrize(
    "change, expected",
    [
        (_mutate("places.0.kind", "castle"), "places[0].kind: Input should be 'school'"),
        (_mutate("places.1.name", _DELETE), "places[1].name: Field required"),
        (_mutate("places.0.colour", "red"), "places[0].colour: Extra inputs are not permitted"),
        (_mutate("places.0.coordinates", [17.97, 259.35]), "places[0].coordinates: [17.97, 259.35] is not [lat, lon]"),
        (_mutate("places.1.id", "school"), "places[1].id: 'school' is already used by places[0]"),
        (_mutate("places.1.id", "Bad Id"), "places[1].id: String should match pattern"),
        (_mutate("cameras.1.place", "moon"), "cameras[1].place: unknown place 'moon'"),
        (_mutate("cameras.0.to", "2024-07-01"), "cameras[0].to: must be later than from"),
        (_mutate("cameras.0.to", _DELETE), "cameras[1]: node-a/yard from 2024-08-31T22:00+00:00 overlaps cameras[0]"),
        (_mutate("cameras.1.from", "2024-08-20"), "cameras[1]: node-a/yard from 2024-08-19T22:00+00:00 overlaps"),
        (_mutate("cameras.1.from", "someday"), "cameras[1].from: 'someday' is not a date (2024-08-01)"),
        (_mutate("timezone", "Mars/Olympus"), "timezone: unknown time zone 'Mars/Olympus'"),
    ],
)
def test_bad_registry_names_key_and_problem(store: Store, tmp_path: Path, change, expected: str) -> None:
    doc = base_doc()
    change(doc)
    path = write(tmp_path, doc)
    with pytest.raises(ConfigError) as info:
        import_places(store, path)
    assert str(info.value).startswith(f"{path}:\n")
    assert expected in str(info.value)
    assert store.list_places() == [] and store.list_assignments() == []  # nothing half-written


def test_overlap_is_found_whatever_the_file_order(tmp_path: Path) -> None:
    doc = base_doc()
    doc["cameras"].reverse()
    doc["cameras"][0]["from"] = "2024-08-15"  # open period now starts inside the first one
    with pytest.raises(ConfigError, match=r"cameras\[0\]: node-a/yard from .* overlaps cameras\[1\]"):
        load_places(write(tmp_path, doc))


def test_same_period_on_other_cameras_is_fine(tmp_path: Path) -> None:
    doc = base_doc()
    doc["cameras"].append({"node": "node-b", "camera": "yard", "place": "school", "from": "2024-08-01"})
    assert len(load_places(write(tmp_path, doc)).periods) == 3


@pytest.mark.parametrize(
    "text, expected",
    [
        ("places: [\n  {id: x", "not valid YAML"),
        ("- just\n- a list\n", "expected a mapping"),
    ],
)
def test_unreadable_registry(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_places(write(tmp_path, text))
    with pytest.raises(ConfigError, match="cannot read"):
        load_places(tmp_path / "missing.yaml")
