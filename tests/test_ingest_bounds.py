"""Nothing a node sends can stop ingest: parsing never raises, every number and date is
bounded, and an unexpected error in a batch costs only the message that caused it
(issue 8, defect 1)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from vaktpost.broker.config import CentralConfig
from vaktpost.broker.ingest.consumer import Consumer, Inbound
from vaktpost.broker.ingest.parse import Rejected, parse_message
from vaktpost.broker.store import Store, StoreTx
from vaktpost.contract.events import SEQ_MAX, Event, EventV1, uuid7
from vaktpost.contract.messages import Heartbeat, Status
from vaktpost.contract.topics import Topic

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
YARD = Topic.events("node-a", "yard")
HB = Topic.heartbeat("node-a")
STATUS = Topic.status("node-a")
DEEP_ARRAY = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"a":' * 100_000 + b"1" + b"}" * 100_000


def event_doc(**kw: Any) -> dict[str, Any]:
    doc = {"schema": "vaktpost.event/2", "event_id": uuid7(), "seq": 1, "node_id": "node-a", "camera_id": "yard",
           "type": "motion", "started_at": "2026-11-26T11:00:00Z", "confidence": 0.5, "phase": "start"}
    return {**doc, **kw}


def v1_doc(**kw: Any) -> dict[str, Any]:
    doc = {k: v for k, v in event_doc().items() if k != "phase"}
    return {**doc, "schema": "vaktpost.event/1", **kw}


def raw(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


def with_literal(doc: dict[str, Any], key: str, literal: str) -> bytes:
    """`doc` as JSON with `key` set to a literal json.dumps cannot write (1e400, NaN)."""
    return raw({**doc, key: "@@"}).replace(b'"@@"', literal.encode())


# --- parsing --------------------------------------------------------------------------

POISON = {
    "event-year-1-with-offset": (YARD, raw(event_doc(started_at="0001-01-01T00:00:00+05:00"))),
    "event-year-9999-with-offset": (YARD, raw(event_doc(started_at="9999-12-31T23:59:59-05:00"))),
    "event-ended-year-9999": (YARD, raw(event_doc(ended_at="9999-12-31T23:59:59-05:00", phase="end"))),
    "event-before-1970": (YARD, raw(event_doc(started_at="1969-12-31T23:59:59Z"))),
    "event-more-than-a-day-ahead": (YARD, raw(event_doc(started_at="2026-11-27T12:00:01Z"))),
    "event-ends-more-than-a-day-ahead": (YARD, raw(event_doc(ended_at="2026-12-27T12:00:00Z", phase="end"))),
    "v1-far-future": (YARD, raw(v1_doc(started_at="2099-01-01T00:00:00Z"))),
    "v1-year-1-with-offset": (YARD, raw(v1_doc(started_at="0001-01-01T00:00:00+05:00"))),
    "event-deep-array": (YARD, DEEP_ARRAY),
    "event-deep-object": (YARD, DEEP_OBJECT),
    "event-seq-2^63": (YARD, raw(event_doc(seq=2**63))),
    "event-seq-1e400": (YARD, with_literal(event_doc(), "seq", "1" + "0" * 400)),
    "v1-seq-2^63": (YARD, raw(v1_doc(seq=2**63))),
    "event-confidence-nan": (YARD, with_literal(event_doc(), "confidence", "NaN")),
    "event-region-infinite": (YARD, with_literal(event_doc(), "region", "[0, 0, Infinity, 1]")),
    "event-region-1e400": (YARD, with_literal(event_doc(), "region", "[0, 0, 1e400, 1]")),
    "status-year-1-with-offset": (STATUS, b'{"node_id":"node-a","state":"online","at":"0001-01-01T00:00:00+05:00"}'),
    "status-far-future": (STATUS, b'{"node_id":"node-a","state":"online","at":"2030-01-01T00:00:00Z"}'),
    "status-deep": (STATUS, DEEP_OBJECT),
    "heartbeat-year-9999-with-offset": (HB, b'{"node_id":"node-a","at":"9999-12-31T23:59:59-05:00"}'),
    "heartbeat-deep": (HB, b'{"node_id":"node-a","x":' + DEEP_ARRAY + b"}"),
    "heartbeat-fps-infinite": (HB, b'{"node_id":"node-a","at":"2026-11-26T11:00:00Z","fps":{"yard":Infinity}}'),
    "heartbeat-fps-huge": (HB, b'{"node_id":"node-a","at":"2026-11-26T11:00:00Z","fps":{"yard":1e7}}'),
    "heartbeat-depth-2^63": (HB, b'{"node_id":"node-a","at":"2026-11-26T11:00:00Z",'
                             b'"outbox_depth":9223372036854775808}'),
    "heartbeat-negative-count": (HB, b'{"node_id":"node-a","at":"2026-11-26T11:00:00Z","outbox_failed":-1}'),
    "heartbeat-camera-key-huge": (HB, b'{"node_id":"node-a","at":"2026-11-26T11:00:00Z","fps":{"'
                                  + b"y" * 100_000 + b'":1}}'),
    "heartbeat-temperature-absurd": (HB, b'{"node_id":"node-a","at":"2026-11-26T11:00:00Z","cpu_temp_c":1e308}'),
}


@pytest.mark.parametrize("topic, payload", list(POISON.values()), ids=list(POISON))
def test_poison_payloads_are_rejected_never_raised(topic: str, payload: bytes) -> None:
    parsed = parse_message(topic, payload, now=NOW)
    assert isinstance(parsed, Rejected), parsed
    assert "\n" not in parsed.error or parsed.error.count("\n") < 20


def test_the_bounds_themselves_are_accepted() -> None:
    top = raw(event_doc(seq=SEQ_MAX, started_at="2026-11-27T11:59:59Z", region=[0, 0, 1, 1]))
    assert isinstance(parse_message(YARD, top, now=NOW), Event)
    assert isinstance(parse_message(YARD, raw(v1_doc(seq=SEQ_MAX)), now=NOW), EventV1)
    assert isinstance(parse_message(YARD, raw(event_doc(started_at="1970-01-01T00:00:00Z")), now=NOW), Event)
    hb = b'{"node_id":"node-a","at":"2026-11-26T11:00:00Z","fps":{"yard":25.0},"outbox_depth":5,"cpu_temp_c":61.5}'
    assert isinstance(parse_message(HB, hb, now=NOW), Heartbeat)
    assert isinstance(parse_message(STATUS, b'{"node_id":"node-a","state":"offline"}', now=NOW), Status)


def test_v2_publishes_its_bounds_and_v1_keeps_its_schema() -> None:
    v2 = Event.model_json_schema(by_alias=True)
    assert v2["properties"]["seq"]["maximum"] == SEQ_MAX
    assert "1970" in v2["properties"]["started_at"]["description"]
    assert "maximum" not in EventV1.model_json_schema(by_alias=True)["properties"]["seq"]
    with pytest.raises(ValidationError, match="seq"):
        Event.model_validate_json(raw(event_doc(seq=2**63)))


# --- a batch with a poison message -------------------------------------------------------


@pytest.fixture
def consumer(tmp_path: Path) -> Iterator[Consumer]:
    """A consumer that is never connected: handle_batch() stores, acks go nowhere."""
    cfg = CentralConfig.model_validate({"database": f"sqlite:///{tmp_path / 'central.db'}"})
    store = Store(cfg.database)
    store.create_all()
    yield Consumer(cfg, store)
    store.close()


def inbound(mid: int, topic: str, payload: bytes) -> Inbound:
    return Inbound(generation=0, mid=mid, qos=1, topic=topic, payload=payload)


def good(i: int) -> bytes:
    return raw(event_doc(seq=i, started_at=(datetime.now(UTC) - timedelta(minutes=i)).isoformat()))


def test_a_batch_with_an_unstorable_number_stores_the_rest(consumer: Consumer) -> None:
    batch = [inbound(1, YARD, good(1)), inbound(2, YARD, raw(event_doc(seq=2**63))), inbound(3, YARD, good(3))]
    assert consumer.handle_batch(batch) is True
    assert consumer.store.count_events() == 2
    (letter,) = consumer.store.query_dead_letters()
    assert "seq" in letter["error"]


def test_an_unexpected_error_costs_only_its_own_message(consumer: Consumer,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    culprit = event_doc(seq=2)
    real_insert = StoreTx.insert_events

    def insert_events(self: StoreTx, items: Any, **kw: Any) -> set[int]:
        if any(ev.event_id == culprit["event_id"] for ev, _ in items):
            raise RuntimeError("a bug this message triggers")
        return real_insert(self, items, **kw)

    monkeypatch.setattr(StoreTx, "insert_events", insert_events)
    batch = [inbound(1, YARD, good(1)), inbound(2, YARD, raw(culprit)), inbound(3, YARD, good(3))]
    assert consumer.handle_batch(batch) is True
    assert consumer.store.count_events() == 2
    (letter,) = consumer.store.query_dead_letters()
    assert "RuntimeError: a bug this message triggers" in letter["error"]
    assert letter["payload"] == raw(culprit)
    assert consumer.stats.snapshot()["dead_letters"] == 1


def test_an_error_while_parsing_is_a_dead_letter(consumer: Consumer, monkeypatch: pytest.MonkeyPatch) -> None:
    def parse(*_: Any, **__: Any) -> None:
        raise RecursionError("deep")

    monkeypatch.setattr("vaktpost.broker.ingest.consumer.parse_message", parse)
    assert consumer.handle_batch([inbound(1, YARD, b"{}")]) is True
    (letter,) = consumer.store.query_dead_letters()
    assert "RecursionError" in letter["error"]
