import json
from datetime import UTC, datetime
from pathlib import Path
from typing import get_args

import jsonschema
import pytest
from pydantic import ValidationError

import vaktpost.contract
from vaktpost.contract.events import (
    EVENT_MODELS,
    SCHEMA_NAME,
    SUBTYPES,
    Event,
    EventV1,
    HealthSubtype,
    Phase,
    SceneChangeSubtype,
    TamperSubtype,
    WithheldReason,
    json_schema,
    parse_event,
    schema_file_name,
    uuid7,
)
from vaktpost.contract.messages import published_schemas
from vaktpost.edge.analysis.scene_change import ChangeKind
from vaktpost.edge.analysis.tamper import SUBTYPES as TAMPER_SUBTYPES

SCHEMA_DIR = Path(vaktpost.contract.__file__).resolve().parent / "schema"


def event(**kw) -> Event:
    base = dict(event_id=uuid7(), seq=1, node_id="node-a", camera_id="yard", type="motion",
                started_at=datetime(2026, 11, 26, 20, 0, tzinfo=UTC), confidence=0.8, phase="start")
    return Event(**{**base, **kw})


def test_published_schemas_are_generated_from_the_models():
    published = sorted(p.name for p in SCHEMA_DIR.glob("*.json"))
    expected = published_schemas()
    assert published == sorted(expected) == sorted([*(schema_file_name(n) for n in EVENT_MODELS),
                                                    "config-1.schema.json"]), \
        "one published schema per version, nothing else: run `vaktpost schema --write`"
    for name in EVENT_MODELS:
        assert json.loads((SCHEMA_DIR / schema_file_name(name)).read_text()) == json_schema(name), \
            f"vaktpost/contract/schema/{schema_file_name(name)} is stale: run `vaktpost schema --write`"
    assert json.loads((SCHEMA_DIR / "config-1.schema.json").read_text()) == expected["config-1.schema.json"], \
        "vaktpost/contract/schema/config-1.schema.json is stale: run `vaktpost schema --write`"


def test_nodes_emit_the_newest_version_and_the_consumer_accepts_every_known_one():
    assert SCHEMA_NAME == "vaktpost.event/2" == list(EVENT_MODELS)[-1]
    assert list(EVENT_MODELS) == ["vaktpost.event/1", "vaktpost.event/2"]
    v2 = event(type="tamper", subtype="covered")
    assert parse_event(v2.to_payload()) == v2
    # A v1 payload as nodes sent it before v2: no phase, any lower-case subtype, `schema` optional.
    v1 = {"schema": "vaktpost.event/1", "event_id": uuid7(), "seq": 3, "node_id": "node-a", "camera_id": "yard",
          "type": "health", "subtype": "some_old_subtype", "started_at": "2026-11-26T20:00:00Z", "confidence": 1.0}
    parsed = parse_event(json.dumps(v1))
    assert isinstance(parsed, EventV1) and parsed.subtype == "some_old_subtype"
    del v1["schema"]
    assert isinstance(parse_event(json.dumps(v1)), EventV1)
    # Strict in every version: nothing rides along, no field of another version, no unknown version.
    with pytest.raises(ValidationError, match="phase"):
        parse_event(json.dumps({**v1, "phase": "start"}))
    with pytest.raises(ValidationError, match="image"):
        parse_event(json.dumps({**json.loads(v2.to_payload()), "image": "/9j/"}))
    with pytest.raises(ValidationError, match="known event version"):
        parse_event(json.dumps({**json.loads(v2.to_payload()), "schema": "vaktpost.event/3"}))
    with pytest.raises(ValidationError, match="phase"):
        parse_event(json.dumps({k: v for k, v in json.loads(v2.to_payload()).items() if k != "phase"}))


def test_v1_schema_is_kept_as_published():
    s = json_schema("vaktpost.event/1")
    assert s["$id"].endswith("/event/1.json")
    assert s["properties"]["schema"]["const"] == "vaktpost.event/1"
    assert "phase" not in s["properties"] and s["properties"]["subtype"]["anyOf"][0]["pattern"] == "^[a-z_]{1,32}$"


def test_subtypes_belong_to_their_type():
    assert set(TamperSubtype) == {"covered", "defocused", "moved", "signal_lost"}
    assert set(SceneChangeSubtype) == {"appeared", "removed", "changed"}
    assert set(HealthSubtype) == {"camera_lost", "detector_unavailable", "snapshot_withheld"}
    for t, allowed in SUBTYPES.items():
        for sub in [*TamperSubtype, *SceneChangeSubtype, *HealthSubtype, None]:
            ended = {"ended_at": datetime(2026, 11, 26, 20, 1, tzinfo=UTC), "phase": "end"}
            fits = sub is None if allowed is None else sub in set(allowed)
            if fits:
                assert event(type=t, subtype=sub, **ended).subtype == sub
            else:
                with pytest.raises(ValidationError, match="subtype"):
                    event(type=t, subtype=sub, **ended)
    with pytest.raises(ValidationError):
        event(type="tamper", subtype="fogged")


def test_the_published_v2_schema_states_the_rules_across_fields():
    validator = jsonschema.Draft202012Validator(json_schema())
    assert validator.is_valid(json.loads(event(type="tamper", subtype="moved").to_payload()))
    for bad in (event(type="tamper", subtype="moved"), event()):
        data = json.loads(bad.to_payload())
        data["subtype"] = "camera_lost" if data["type"] == "tamper" else "moved"
        assert not validator.is_valid(data)
        data = json.loads(bad.to_payload())
        data["phase"] = "end"  # without ended_at
        assert not validator.is_valid(data)
        data = json.loads(bad.to_payload())
        del data["schema"]
        assert not validator.is_valid(data)


def test_phase_end_exactly_when_ended():
    end = event(ended_at=datetime(2026, 11, 26, 20, 1, tzinfo=UTC), phase="end")
    assert end.phase is Phase.end and json.loads(end.to_payload())["phase"] == "end"
    assert event(phase="update").phase is Phase.update
    with pytest.raises(ValidationError, match="phase"):
        event(phase="end")
    with pytest.raises(ValidationError, match="phase"):
        event(phase="update", ended_at=datetime(2026, 11, 26, 20, 1, tzinfo=UTC))
    with pytest.raises(ValidationError):
        event(phase="stop")


def test_withheld_reasons():
    assert set(WithheldReason) == {"model_missing", "model_checksum", "inference_error", "encode_error"}
    e = event(snapshot="withheld", snapshot_withheld="encode_error")
    assert e.snapshot_withheld is WithheldReason.encode_error
    with pytest.raises(ValidationError):
        event(snapshot="withheld", snapshot_withheld="too_dark")
    with pytest.raises(ValidationError, match="snapshot_withheld"):
        event(snapshot="withheld")


def test_payload_round_trip_uses_schema_alias():
    e = event(region=[0.123, 0.456, 0.789, 0.999])
    data = json.loads(e.to_payload())
    assert data["schema"] == "vaktpost.event/2"
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
    assert e.started_at == datetime(2026, 11, 26, 20, 0, tzinfo=UTC)
    assert json.loads(e.to_payload())["started_at"].endswith("Z")


def test_uuid7_is_time_ordered():
    ids = [uuid7(ms) for ms in (1_000, 2_000, 3_000)]
    assert ids == sorted(ids)
    assert all(i[14] == "7" for i in ids)


def test_the_node_emits_only_subtypes_of_the_contract():
    assert set(TAMPER_SUBTYPES) == set(TamperSubtype)
    assert set(get_args(ChangeKind)) == set(SceneChangeSubtype)
