"""The incident pages over HTTP against a real inbox: the list and its filters, one
incident with its actions and audit trail, snapshots (scope, viewers, an audit row per
view), and district scope by list and by URL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from inbox_harness import PLACES, Inbox, file_event, start_inbox
from test_inbox import logged_in

from vaktpost.broker.incidents import service
from vaktpost.broker.incidents.kinds import Action, State
from vaktpost.broker.places import parse_places, write_registry

JPEG = b"\xff\xd8\xff\xdbnot-really-decoded\xff\xd9"


@pytest.fixture
def inbox(tmp_path: Path) -> Iterator[Inbox]:
    with start_inbox(tmp_path) as running:
        yield running


def incident_ids(body: str) -> list[int]:
    return [int(x) for x in re.findall(r'data-incident="(\d+)"', body)]


def the_incident(inbox: Inbox, node: str = "node-a") -> int:
    (inc,) = [i for i in service.list_incidents(inbox.store) if i.node_id == node]
    return inc.id


def test_the_inbox_lists_open_incidents_in_scope_highest_priority_first(inbox: Inbox) -> None:
    file_event(inbox.store, type="motion", zone=None)  # low
    file_event(inbox.store)  # intrusion: high
    file_event(inbox.store, node="node-b", camera="park", zone="park")  # Söder
    status, _, body = logged_in(inbox, "anna").request("GET", "/")
    assert status == 200 and "Inkorg" in body
    ids = incident_ids(body)
    types = [i.type.value for i in service.list_incidents(inbox.store) if i.id in ids]
    assert len(ids) == 2 and types == ["intrusion", "motion"], "Söder's incident is not listed; high first"
    assert "Intrång" in body and "Norrskolan" in body and "Söderparken" not in body
    admin = logged_in(inbox, "admin")
    assert len(incident_ids(admin.request("GET", "/")[2])) == 3
    assert len(incident_ids(admin.request("GET", "/?district=S%C3%B6der")[2])) == 1
    assert len(incident_ids(admin.request("GET", "/?type=motion")[2])) == 1
    assert len(incident_ids(admin.request("GET", "/?state=resolved")[2])) == 0
    # A filter outside the scope is ignored, never widened.
    assert len(incident_ids(logged_in(inbox, "anna").request("GET", "/?district=S%C3%B6der")[2])) == 2


def test_the_list_refreshes_itself(inbox: Inbox) -> None:
    _, _, body = logged_in(inbox, "anna").request("GET", "/?type=intrusion")
    assert re.search(r'id="incidents" hx-get="/\?type=intrusion" hx-trigger="every 3s"', body), body


def test_acknowledge_assign_comment_resolve_reopen_are_audited(inbox: Inbox) -> None:
    file_event(inbox.store)
    inc = the_incident(inbox)
    anna = logged_in(inbox, "anna")
    page = f"/incidents/{inc}"
    token = anna.csrf(page)
    for action, form in [("acknowledge", {}), ("assign", {"owner": "anna"}), ("comment", {"text": "Klotter på väggen"}),
                         ("resolve", {"outcome": "cleaned_or_repaired", "note": "Sanerat"}), ("reopen", {})]:
        status, headers, _ = anna.request("POST", f"{page}/{action}", {"csrf_token": token, **form})
        assert status == 303 and headers["location"] == [page], action
    detail = service.get_incident(inbox.store, inc)
    assert detail.incident.state is State.acknowledged and detail.incident.owner == "anna"
    people = [(a.action, a.actor, a.client) for a in detail.audit if a.actor != "system"]
    assert people == [(Action.acknowledged, "anna", "127.0.0.1"), (Action.assigned, "anna", "127.0.0.1"),
                      (Action.commented, "anna", "127.0.0.1"), (Action.resolved, "anna", "127.0.0.1"),
                      (Action.reopened, "anna", "127.0.0.1")]
    _, _, body = anna.request("GET", page)
    assert "Klotter på väggen" in body and "avslutade ärendet" in body and "sanerat eller reparerat" in body


def test_a_second_acknowledge_says_what_happened(inbox: Inbox) -> None:
    file_event(inbox.store)
    inc = the_incident(inbox)
    anna = logged_in(inbox, "anna")
    token = anna.csrf(f"/incidents/{inc}")
    assert anna.request("POST", f"/incidents/{inc}/acknowledge", {"csrf_token": token})[0] == 303
    status, _, body = anna.request("POST", f"/incidents/{inc}/acknowledge", {"csrf_token": token})
    assert status == 409 and "samtidigt" in body


def test_actions_need_the_csrf_token_and_a_role_that_may_act(inbox: Inbox) -> None:
    file_event(inbox.store)
    inc = the_incident(inbox)
    anna, vera = logged_in(inbox, "anna"), logged_in(inbox, "vera")
    assert anna.request("POST", f"/incidents/{inc}/acknowledge", {})[0] == 403
    assert vera.request("POST", f"/incidents/{inc}/acknowledge", {"csrf_token": vera.csrf("/")})[0] == 403
    status, _, body = vera.request("GET", f"/incidents/{inc}")
    assert status == 200 and 'data-testid="actions"' not in body
    assert service.get_incident(inbox.store, inc).incident.state is State.new
    # Only someone who sees the incident can own it.
    token = anna.csrf("/")
    assert anna.request("POST", f"/incidents/{inc}/assign", {"csrf_token": token, "owner": "bo"})[0] == 422
    assert anna.request("POST", f"/incidents/{inc}/frobnicate", {"csrf_token": token})[0] == 404


def test_another_districts_incident_is_not_found_by_url(inbox: Inbox) -> None:
    file_event(inbox.store, node="node-b", camera="park", zone="park", snapshot=JPEG)
    inc = the_incident(inbox, "node-b")
    ev = service.get_incident(inbox.store, inc).events[0]
    anna = logged_in(inbox, "anna")
    token = anna.csrf("/")
    assert anna.request("GET", f"/incidents/{inc}")[0] == 404
    assert anna.request("GET", f"/incidents/{inc}/snapshots/node-b/{ev.event_id}.jpg")[0] == 404
    assert anna.request("POST", f"/incidents/{inc}/acknowledge", {"csrf_token": token})[0] == 404
    assert anna.request("GET", "/incidents/999999")[0] == 404
    assert service.get_incident(inbox.store, inc).incident.state is State.new
    assert logged_in(inbox, "bo").request("GET", f"/incidents/{inc}")[0] == 200


def test_every_snapshot_view_is_audited_and_viewers_see_none(inbox: Inbox) -> None:
    ev = file_event(inbox.store, snapshot=JPEG)
    inc = the_incident(inbox)
    path = f"/incidents/{inc}/snapshots/node-a/{ev.event_id}.jpg"
    anna = logged_in(inbox, "anna")
    _, _, body = anna.request("GET", f"/incidents/{inc}")
    assert f'href="{path}"' in body
    status, headers, _ = anna.request("GET", path)
    assert status == 200 and headers["content-type"] == ["image/jpeg"] and headers["cache-control"] == ["no-store"]
    views = [a for a in service.audit_trail(inbox.store, inc) if a.action is Action.snapshot_viewed]
    assert [(a.actor, a.event_id, a.client) for a in views] == [("anna", ev.event_id, "127.0.0.1")]
    vera = logged_in(inbox, "vera")
    _, _, body = vera.request("GET", f"/incidents/{inc}")
    assert path not in body and "inte för din roll" in body
    assert vera.request("GET", path)[0] == 404
    # Another node's name in the URL does not reach this event's snapshot.
    assert anna.request("GET", f"/incidents/{inc}/snapshots/node-b/{ev.event_id}.jpg")[0] == 404
    assert len([a for a in service.audit_trail(inbox.store, inc) if a.action is Action.snapshot_viewed]) == 1


def test_the_place_page_lists_its_open_incidents(inbox: Inbox) -> None:
    file_event(inbox.store)
    _, _, body = logged_in(inbox, "anna").request("GET", "/places/norrskolan")
    assert len(incident_ids(body)) == 1


def test_the_incident_page_in_english(inbox: Inbox) -> None:
    file_event(inbox.store)
    inc = the_incident(inbox)
    _, _, body = logged_in(inbox, "anna").request("GET", f"/incidents/{inc}?lang=en")
    assert "Intrusion" in body and "Acknowledge" in body and "Skolvägen 1, Norrby" in body


def test_places_come_a_page_at_a_time_and_by_district(inbox: Inbox) -> None:
    places = [{"id": f"plats-{n:02d}", "name": f"Plats {n:02d}", "kind": "park", "district": "Norr"}
              for n in range(30)]
    write_registry(inbox.store, parse_places({**PLACES, "places": PLACES["places"] + places}))
    admin = logged_in(inbox, "admin")
    first = re.findall(r'data-place="([^"]+)"', admin.request("GET", "/places")[2])
    second = re.findall(r'data-place="([^"]+)"', admin.request("GET", "/places?page=1")[2])
    assert len(first) == 25 and len(second) == 8 and not set(first) & set(second)
    soder = re.findall(r'data-place="([^"]+)"', admin.request("GET", "/places?district=S%C3%B6der")[2])
    assert soder == ["soderparken"]
    # An operator's filter cannot widen their scope.
    _, _, body = logged_in(inbox, "anna").request("GET", "/places?district=S%C3%B6der")
    anna = re.findall(r'data-place="([^"]+)"', body)
    assert "soderparken" not in anna and len(anna) == 25
