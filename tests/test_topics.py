"""The topic type: it builds every topic of the tree, parses incoming topics and
matches them against the consumer's filters."""

from __future__ import annotations

import copy
import pickle

import pytest

from vaktpost.contract.events import uuid7
from vaktpost.contract.topics import ANY, CONSUMER_FILTERS, ROOT, Kind, Topic, TopicError


def test_builds_the_tree_and_parses_it_back() -> None:
    eid = uuid7()
    built = [Topic.events("node-a", "yard"), Topic.snapshots("node-a", eid), Topic.status("node-a"),
             Topic.heartbeat("node-a"), Topic.acks("node-a")]
    assert built == [f"{ROOT}/node-a/events/yard", f"{ROOT}/node-a/snapshots/{eid}", f"{ROOT}/node-a/status",
                     f"{ROOT}/node-a/heartbeat", f"{ROOT}/node-a/acks"]
    for topic in built:
        parsed = Topic.parse(str(topic))  # as it arrives: a plain str
        assert (parsed.node_id, parsed.kind, parsed.leaf) == (topic.node_id, topic.kind, topic.leaf)
        assert parsed.node_id == "node-a" and not parsed.is_filter
    assert Topic.parse(f"{ROOT}/node-a/events/yard").leaf == "yard"
    assert Topic.parse(f"{ROOT}/node-a/snapshots/{eid}").kind is Kind.snapshots
    assert Topic.parse(f"{ROOT}/node-a/config") == Topic.config("node-a") == f"{ROOT}/node-a/config"


def test_survives_copy_and_pickle() -> None:
    t = Topic.events("node-a", "yard")
    for other in (copy.copy(t), copy.deepcopy(t), pickle.loads(pickle.dumps(t))):
        assert other == t and isinstance(other, Topic) and other.leaf == "yard"


@pytest.mark.parametrize("topic", [
    "elsewhere/node-a/status",
    f"{ROOT}/node-a",
    f"{ROOT}/node-a/",
    f"{ROOT}/node-a/video",
    f"{ROOT}/node-a/events",  # no camera
    f"{ROOT}/node-a/events/yard/x",
    f"{ROOT}/node-a/status/x",
    f"{ROOT}/Node-A/status",  # not an Ident
    f"{ROOT}/node-a/events/Yard",
    f"{ROOT}/node-a/snapshots/",
    f"{ROOT}/+/status",  # a filter is not a topic
    f"{ROOT}/node-a/events/+",
    f"{ROOT}/node-a/snapshots/#",
    f"{ROOT}/#",
])
def test_parse_refuses_what_is_not_a_topic_of_the_tree(topic: str) -> None:
    with pytest.raises(TopicError) as e:
        Topic.parse(topic)
    assert "\n" not in str(e.value)


def test_building_validates_the_parts() -> None:
    for bad in (lambda: Topic.events("node/a", "yard"), lambda: Topic.events("node-a", "a/b"),
                lambda: Topic.status(""), lambda: Topic.snapshots("node-a", "a+b"), lambda: Topic("node-a", "video"),
                lambda: Topic("node-a", Kind.status, "x"), lambda: Topic("node-a", Kind.events)):
        with pytest.raises(TopicError):
            bad()


def test_consumer_filters_match_exactly_the_node_topics_it_reads() -> None:
    assert [str(f) for f in CONSUMER_FILTERS] == [f"{ROOT}/+/events/+", f"{ROOT}/+/status", f"{ROOT}/+/heartbeat",
                                                  f"{ROOT}/+/snapshots/+", f"{ROOT}/+/config"]
    assert all(f.is_filter for f in CONSUMER_FILTERS)
    read = [Topic.events("node-b", "gate"), Topic.status("node-a"), Topic.heartbeat("node-c"),
            Topic.snapshots("node-a", uuid7()), Topic.config("node-b")]
    for f, topic in zip(CONSUMER_FILTERS, read):
        assert f.matches(topic)
        assert [g for g in CONSUMER_FILTERS if g.matches(topic)] == [f]
    assert not any(f.matches(Topic.acks("node-a")) for f in CONSUMER_FILTERS)  # the consumer writes acks
    assert Topic.events(ANY, "yard").matches(Topic.events("node-b", "yard"))
    assert not Topic.events(ANY, "yard").matches(Topic.events("node-b", "gate"))
    assert Topic.status(ANY).shared("g1") == f"$share/g1/{ROOT}/+/status"
    assert Topic.status(ANY).shared(None) == f"{ROOT}/+/status"
