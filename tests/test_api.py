"""The inbox's JSON API (/api/v1) over HTTP: the real app served by uvicorn on a free port
(tests/inbox_harness.py), incidents made by the real grouping from events, tokens made
as `vaktpost tokens add` makes them (and through the real CLI), and schemathesis
driving the published OpenAPI document against the live app."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from inbox_harness import PASSWORD, start_inbox, write_central
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import select

from vaktpost.broker.config import IncidentsSection
from vaktpost.broker.inbox.api import openapi_document
from vaktpost.broker.inbox.tokens import Tokens, api_tokens
from vaktpost.broker.incidents import service
from vaktpost.broker.incidents.grouping import Grouper
from vaktpost.broker.incidents.tables import audit_log
from vaktpost.broker.store import Store, default_topic
from vaktpost.contract.events import Event, uuid7

DOCS_OPENAPI = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"
# name → (role, districts), as in the harness's users: Norr is district A, Söder B.
MAX_EXAMPLES = 15  # per operation and mode: the whole schemathesis run stays well under a minute
TOKENS = {"central": ("admin", []), "norr": ("operator", ["Norr"]), "tittare": ("viewer", ["Norr"])}


@dataclass
class Api:
    url: str
    store: Store
    tokens: dict[str, str]  # name → token
    norr: int  # an intrusion incident at norrskolan (Norr)
    soder: int  # a loitering incident at soderparken (Söder)

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[token]}"} if token else {}
        return httpx.Client(base_url=self.url + "/api/v1", headers=headers, timeout=10)


def _event(node: str, camera: str, type: str, zone: str, start: datetime) -> Event:
    return Event(event_id=uuid7(int(start.timestamp() * 1000)), seq=1, node_id=node, camera_id=camera, type=type,
                 zone=zone, started_at=start, ended_at=start + timedelta(seconds=20), confidence=0.8,
                 phase="end", snapshot="attached")


def seed_incidents(store: Store, now: datetime) -> tuple[int, int]:
    """One incident per district, through the consumer's grouping; the Norr event has a snapshot."""
    norr = _event("node-a", "gard", "intrusion", "gard", now - timedelta(minutes=30))
    soder = _event("node-b", "park", "loitering", "bank", now - timedelta(minutes=25))
    with store.begin() as tx:
        for ev in (norr, soder):
            tx.insert_event(ev, topic=default_topic(ev), received_at=now)
        tx.insert_snapshot(norr.event_id, norr.node_id, b"\xff\xd8jpeg\xff\xd9", received_at=now)
        Grouper(IncidentsSection(), started_at=now - timedelta(hours=1)).record(tx.conn, [norr, soder], now=now)
    by_place = {i.places[0].id: i.id for i in service.list_incidents(store)}
    return by_place["norrskolan"], by_place["soderparken"]


@contextmanager
def running_api(tmp_path: Path) -> Iterator[Api]:
    with start_inbox(tmp_path) as inbox:
        now = datetime.now(UTC)
        norr, soder = seed_incidents(inbox.store, now)
        tokens = Tokens(inbox.store.engine)
        made = {name: tokens.add(name, role, districts, now=now) for name, (role, districts) in TOKENS.items()}
        yield Api(inbox.url, inbox.store, made, norr, soder)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    with running_api(tmp_path) as running:
        yield running


def audit_rows(store: Store) -> list[tuple[str, str, str | None]]:
    with store.engine.connect() as conn:
        rows = conn.execute(select(audit_log.c.action, audit_log.c.actor, audit_log.c.client)
                            .order_by(audit_log.c.id)).all()
    return [tuple(r) for r in rows]


def is_utc_iso(value: str) -> bool:
    t = datetime.fromisoformat(value)
    return t.utcoffset() == timedelta(0)


# --- authentication ------------------------------------------------------------------


def test_every_endpoint_needs_a_valid_bearer_token(api: Api) -> None:
    anonymous = api.client()
    for method, path in [("GET", "/incidents"), ("GET", f"/incidents/{api.norr}"), ("GET", "/events"),
                         ("GET", "/places"), ("POST", f"/incidents/{api.norr}/acknowledge")]:
        r = anonymous.request(method, path)
        assert r.status_code == 401, (method, path, r.text)
        assert r.headers["www-authenticate"] == "Bearer"
        assert r.headers["content-type"] == "application/json"
        assert "Bearer" in r.json()["detail"]
    for header in [f"Bearer vp_{'x' * 43}", "Bearer not-a-token", f"Basic {api.tokens['central']}",
                   f"Bearer {api.tokens['central']}x"]:
        assert api.client().get("/incidents", headers={"Authorization": header}).status_code == 401, header
    assert api.client("central").get("/incidents").status_code == 200


def test_a_browser_session_is_no_api_login(api: Api) -> None:
    # An admin logged in to the pages: their session cookie does not open the API, and a
    # POST without a CSRF token is refused as unauthenticated, not as a forgery.
    with httpx.Client(base_url=api.url, timeout=10) as browser:
        form = browser.get("/login").text
        csrf = re.search(r'name="csrf_token" value="([0-9a-f]+)"', form)
        assert csrf
        login = browser.post("/login", data={"csrf_token": csrf.group(1), "name": "admin", "password": PASSWORD,
                                             "next": "/places"})
        assert login.status_code == 303 and "vaktpost_session" in browser.cookies
        assert browser.get("/api/v1/incidents").status_code == 401
        assert browser.post(f"/api/v1/incidents/{api.norr}/acknowledge").status_code == 401
        assert browser.post("/logout").status_code == 403  # the pages still want their CSRF token
    assert [a for a, _, _ in audit_rows(api.store)] == ["opened", "opened"]


def test_api_errors_are_json_also_for_unknown_paths(api: Api) -> None:
    c = api.client("central")
    missing = c.get("/nothing-here")
    assert missing.status_code == 404 and missing.json() == {"detail": "Not Found"}
    wrong_method = c.delete(f"/incidents/{api.norr}")
    assert wrong_method.status_code == 405 and "detail" in wrong_method.json()


# --- scope ---------------------------------------------------------------------------


def test_an_operator_sees_only_their_districts(api: Api) -> None:
    admin, norr = api.client("central"), api.client("norr")
    assert {i["id"] for i in admin.get("/incidents").json()} == {api.norr, api.soder}
    assert [i["id"] for i in norr.get("/incidents").json()] == [api.norr]
    assert norr.get("/incidents", params={"district": "Söder"}).json() == []
    assert norr.get("/incidents", params={"place": "soderparken"}).json() == []
    assert admin.get("/incidents", params={"district": "Söder"}).json()[0]["id"] == api.soder
    # Söder's incident is a 404 exactly like one that does not exist.
    hidden, missing = norr.get(f"/incidents/{api.soder}"), norr.get("/incidents/99999")
    assert (hidden.status_code, missing.status_code) == (404, 404)
    assert hidden.json() == {"detail": f"no incident {api.soder}"}
    assert missing.json() == {"detail": "no incident 99999"}
    for action, body in [("acknowledge", None), ("comment", {"text": "hej"}), ("reopen", None),
                         ("resolve", {"outcome": "false_alarm"}), ("assign", {"owner": "anna"})]:
        r = norr.post(f"/incidents/{api.soder}/{action}", json=body)
        assert r.status_code == 404 and r.json() == {"detail": f"no incident {api.soder}"}, action
    assert [p["id"] for p in norr.get("/places").json()] == ["norrskolan"]
    assert [p["id"] for p in admin.get("/places").json()] == ["hamnen", "norrskolan", "soderparken"]
    assert {e["place_id"] for e in norr.get("/events").json()} == {"norrskolan"}
    assert norr.get("/events", params={"place": "soderparken"}).json() == []
    assert {e["place_id"] for e in admin.get("/events").json()} == {"norrskolan", "soderparken"}
    assert [a for a, _, _ in audit_rows(api.store)] == ["opened", "opened"]  # nothing changed


def test_filters_and_times(api: Api) -> None:
    admin = api.client("central")
    assert [i["type"] for i in admin.get("/incidents", params={"type": "loitering"}).json()] == ["loitering"]
    assert len(admin.get("/incidents", params=[("type", "loitering"), ("type", "intrusion")]).json()) == 2
    assert len(admin.get("/incidents", params={"limit": 1}).json()) == 1
    assert admin.get("/incidents", params={"state": "resolved"}).json() == []
    assert admin.get("/incidents", params={"limit": 501}).status_code == 422
    incident = admin.get(f"/incidents/{api.norr}").json()["incident"]
    assert is_utc_iso(incident["opened_at"]) and is_utc_iso(incident["last_event_at"])
    (event,) = admin.get("/events", params={"type": "intrusion"}).json()
    assert is_utc_iso(event["started_at"])
    started = datetime.fromisoformat(event["started_at"])
    local = started.astimezone(timezone(timedelta(hours=5))).isoformat()  # the same instant at another offset
    assert len(admin.get("/events", params={"since": local, "type": "intrusion"}).json()) == 1
    assert admin.get("/events", params={"until": local, "type": "intrusion"}).json() == []


def test_a_viewer_reads_without_snapshot_data_and_cannot_change_anything(api: Api) -> None:
    viewer, operator = api.client("tittare"), api.client("norr")
    assert [i["id"] for i in viewer.get("/incidents").json()] == [api.norr]
    detail = viewer.get(f"/incidents/{api.norr}").json()
    assert [e["has_snapshot"] for e in detail["events"]] == [None]
    assert [e["has_snapshot"] for e in operator.get(f"/incidents/{api.norr}").json()["events"]] == [True]
    (seen,) = viewer.get("/events").json()
    assert (seen["snapshot"], seen["has_snapshot"]) == (None, None)
    (full,) = operator.get("/events").json()
    assert (full["snapshot"], full["has_snapshot"]) == ("attached", True)
    for action, body in [("acknowledge", None), ("comment", {"text": "hej"}), ("reopen", None),
                         ("resolve", {"outcome": "false_alarm"}), ("assign", {"owner": "vera"})]:
        r = viewer.post(f"/incidents/{api.norr}/{action}", json=body)
        assert r.status_code == 403, action
    assert [a for a, _, _ in audit_rows(api.store)] == ["opened", "opened"]


# --- changes -------------------------------------------------------------------------


def test_changes_work_and_are_audited_as_the_token(api: Api) -> None:
    c, path = api.client("norr"), f"/incidents/{api.norr}"
    ack = c.post(f"{path}/acknowledge")
    assert ack.status_code == 200 and ack.json()["state"] == "acknowledged"
    again = c.post(f"{path}/acknowledge")
    assert again.status_code == 409 and "is acknowledged" in again.json()["detail"]
    assert c.post(f"{path}/assign", json={"owner": "anna"}).json()["owner"] == "anna"
    said = c.post(f"{path}/comment", json={"text": "Grinden stod öppen"})
    assert said.status_code == 201 and said.json()["detail"] == {"text": "Grinden stod öppen"}
    assert c.post(f"{path}/comment", json={"text": "   "}).status_code == 422
    assert c.post(f"{path}/resolve", json={"outcome": "auto_closed"}).status_code == 422
    assert c.post(f"{path}/resolve", json={"outcome": "other", "extra": 1}).status_code == 422
    done = c.post(f"{path}/resolve", json={"outcome": "damage_found", "note": "Krossad ruta"}).json()
    assert (done["state"], done["outcome"], done["outcome_note"]) == ("resolved", "damage_found", "Krossad ruta")
    assert is_utc_iso(done["resolved_at"])
    assert c.post(f"{path}/reopen").json()["state"] == "acknowledged"
    assert c.post(f"{path}/assign", json={"owner": None}).json()["owner"] is None
    trail = c.get(path).json()["audit"]
    assert [(a["action"], a["actor"], a["client"]) for a in trail] == [
        ("opened", "system", None),
        ("acknowledged", "token:norr", "127.0.0.1"),
        ("assigned", "token:norr", "127.0.0.1"),
        ("commented", "token:norr", "127.0.0.1"),
        ("resolved", "token:norr", "127.0.0.1"),
        ("reopened", "token:norr", "127.0.0.1"),
        ("assigned", "token:norr", "127.0.0.1"),
    ]
    assert all(is_utc_iso(a["at"]) for a in trail)


# --- tokens ----------------------------------------------------------------------------


def test_tokens_are_stored_only_hashed_and_note_their_last_use(api: Api) -> None:
    token = api.tokens["norr"]
    assert re.fullmatch(r"vp_[A-Za-z0-9_-]{43}", token)
    with api.store.engine.connect() as conn:
        row = conn.execute(select(api_tokens).where(api_tokens.c.name == "norr")).mappings().one()
    assert row["token_sha256"] == hashlib.sha256(token.encode()).hexdigest() and row["last_used_at"] is None
    db = Path(api.store.engine.url.database or "").read_bytes()
    assert all(t.encode() not in db and t[3:].encode() not in db for t in api.tokens.values())
    assert api.client("norr").get("/places").status_code == 200
    (used,) = [t for t in Tokens(api.store.engine).list() if t.name == "norr"]
    assert used.last_used_at is not None and used.role == "operator" and used.districts == {"Norr"}
    Tokens(api.store.engine).remove("norr")
    assert api.client("norr").get("/places").status_code == 401


def vaktpost(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vaktpost.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_cli_tokens_add_list_remove(tmp_path: Path) -> None:
    config = str(write_central(tmp_path))
    add = vaktpost("tokens", "add", "larmcentral", "--config", config, "--role", "operator", "--district", "Norr",
                   "--district", "Öster", cwd=tmp_path)
    assert add.returncode == 0, add.stderr
    (token,) = add.stdout.splitlines()
    assert token.startswith("vp_") and len(add.stderr.strip().splitlines()) == 1
    assert "only this once" in add.stderr and token not in add.stderr
    listed = vaktpost("tokens", "list", "--config", config, cwd=tmp_path)
    assert listed.returncode == 0 and token not in listed.stdout
    (line,) = listed.stdout.splitlines()
    fields = line.split("	")
    assert fields[:3] == ["larmcentral", "operator", "Norr, Öster"] and fields[4] == "last used never"
    assert re.fullmatch(r"created \d{4}-\d\d-\d\d \d\d:\d\d", fields[3])
    again = vaktpost("tokens", "add", "larmcentral", "--config", config, "--role", "admin", cwd=tmp_path)
    assert again.returncode == 2 and again.stderr.strip().splitlines() == [
        "error: token 'larmcentral' exists (remove it first to replace it)"]
    assert vaktpost("tokens", "remove", "larmcentral", "--config", config, cwd=tmp_path).returncode == 0
    assert vaktpost("tokens", "list", "--config", config, cwd=tmp_path).stdout.strip() == ""
    gone = vaktpost("tokens", "remove", "larmcentral", "--config", config, cwd=tmp_path)
    assert gone.returncode == 2 and gone.stderr.strip().splitlines() == ["error: no token 'larmcentral'"]


@pytest.mark.parametrize(("args", "message"), [
    (["--role", "operator"], "at least one --district"),
    (["--role", "viewer"], "at least one --district"),
    (["--role", "admin", "--district", "Norr"], "give no --district"),
    (["--role", "boss"], "role must be one of admin, operator, viewer"),
])
def test_cli_tokens_add_mistakes_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    run = vaktpost("tokens", "add", "x", "--config", str(write_central(tmp_path)), *args, cwd=tmp_path)
    assert run.returncode == 2 and run.stdout == "" and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and message in run.stderr, run.stderr


def test_cli_bad_token_name_is_one_line(tmp_path: Path) -> None:
    run = vaktpost("tokens", "add", " x", "--config", str(write_central(tmp_path)), "--role", "admin", cwd=tmp_path)
    assert run.returncode == 2 and run.stderr.strip().splitlines() == [
        "error: token name must be 1-64 printable characters without surrounding spaces"]


# --- the OpenAPI document ----------------------------------------------------------------


def test_openapi_document_is_served_and_docs_copy_is_current(api: Api) -> None:
    served = api.client().get("/openapi.json")
    assert served.status_code == 200
    document = served.json()
    assert document == json.loads(json.dumps(openapi_document()))
    assert document["paths"] and all(p.startswith("/api/v1/") for p in document["paths"])
    assert document["components"]["securitySchemes"]["token"] == {
        "type": "http", "scheme": "bearer", "description": document["components"]["securitySchemes"]["token"]
        ["description"]}
    assert all(op.get("security") == [{"token": []}] for ops in document["paths"].values() for op in ops.values())
    assert json.loads(DOCS_OPENAPI.read_text()) == document, \
        "docs/openapi.json is stale: run `vaktpost openapi > docs/openapi.json`"


# --- schemathesis --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with running_api(tmp_path_factory.mktemp("api")) as running:
        yield running


# The document as served (test above); the schemathesis pytest plugin cannot load one
# lazily from a fixture under this pytest, so its operations are parametrised here.
OPERATIONS = [result.ok() for result in schemathesis.openapi.from_dict(openapi_document()).get_all_operations()]
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda o: o.label)
def test_the_api_keeps_its_openapi_document(live_api: Api, operation: APIOperation, mode: GenerationMode) -> None:
    """Generated requests (valid and invalid) as the admin: no server error, every answer as documented."""
    headers = {"Authorization": f"Bearer {live_api.tokens['central']}"}

    @given(case=operation.as_strategy(mode))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=live_api.url, headers=headers, checks=CHECKS)

    check()
