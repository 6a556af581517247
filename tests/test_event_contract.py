import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError

import vaktpost.contract
from vaktpost.contract.events import Event, json_schema, uuid7

SCHEMA_FILE = Path(vaktpost.contract.__file__).resolve().parent / "schema" / "event.schema.json"


def event(**kw) -> Event:
    base = dict(event_id=uuid7(), seq=1, node_id="node-a", camera_id="yard", type="motion",
                started_at=datetime(2026, 11, 26, 20, 0, tzinfo=timezone.utc), confidence=0.8)
    return Event(**{**base, **kw})


def test_published_schema_is_generated_from_the_model():
    assert json.loads(SCHEMA_FILE.read_text()) == json_schema(), \
        "vaktpost/contract/schema/event.schema.json is stale: run `vaktpost schema --write`"


def test_payload_round_trip_uses_schema_alias():
    e = event(region=[0.123, 0.456, 0.789, 0.999])
    data = json.loads(e.to_payload())
    assert data["schema"] == "vaktpost.event/1"
    assert data["region"] == [0.12, 0.46, 0.79, 1.0]  # rounded to 2 decimals
    assert Event.from_payload(e.to_payload()) == e


def test_no_extra_fields_so_no_image_or_free_text_can_ride_along():
    data = json.loads(event().to_payload())
    data["image"] = "/9j/4AAQSkZJRg=="
    with pytest.raises(ValidationError, match="image"):
        Event.model_validate(data)
    # `snapshot` only says whether a snapshot travels separately: it holds no image.
    data = json.loads(event().to_payload())
    assert (data["snapshot"], data["snapshot_withheld"]) == ("none", None)
    data["snapshot"] = "/9j/4AAQSkZJRg=="
    with pytest.raises(ValidationError, match="snapshot"):
        Event.model_validate(data)


@pytest.mark.parametrize("bad", [
    {"confidence": 1.5}, {"region": [0.5, 0.5, 0.1, 0.1]}, {"event_id": "not-a-uuid"},
    {"node_id": "Node A"}, {"started_at": datetime(2026, 1, 1)}, {"zone": "x" * 65},
])
def test_invalid_fields_are_refused(bad):
    with pytest.raises(ValidationError):
        event(**bad)


def test_timestamps_are_normalised_to_utc():
    from zoneinfo import ZoneInfo
    e = event(started_at=datetime(2026, 11, 26, 21, 0, tzinfo=ZoneInfo("Europe/Stockholm")))
    assert e.started_at == datetime(2026, 11, 26, 20, 0, tzinfo=timezone.utc)
    assert json.loads(e.to_payload())["started_at"].endswith("Z")


def test_uuid7_is_time_ordered():
    ids = [uuid7(ms) for ms in (1_000, 2_000, 3_000)]
    assert ids == sorted(ids)
    assert all(i[14] == "7" for i in ids)
