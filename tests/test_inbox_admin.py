"""Admin pages against a real inbox: users added and removed with the CLI's rules,
the places register uploaded, each change an audit row; other roles get 404."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from inbox_harness import PLACES, Inbox, start_inbox
from test_inbox import Client, logged_in

from vaktpost.broker.incidents import service
from vaktpost.broker.incidents.kinds import Action


@pytest.fixture
def inbox(tmp_path: Path) -> Iterator[Inbox]:
    with start_inbox(tmp_path) as running:
        yield running


def upload(c: Client, path: str, token: str, filename: str, data: bytes) -> tuple[int, str]:
    """POST a multipart form with one file, as a browser does."""
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n{token}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="registry"; filename="{filename}"\r\n'
            f"Content-Type: application/yaml\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(c.base + path, data=body, method="POST",
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        resp = c.opener.open(req)
    except urllib.error.HTTPError as e:
        resp = e
    return resp.status, resp.read().decode()


def test_only_admins_reach_the_admin_pages(inbox: Inbox) -> None:
    anna = logged_in(inbox, "anna")
    assert anna.request("GET", "/admin/users")[0] == 404
    assert anna.request("POST", "/admin/users", {"csrf_token": anna.csrf("/"), "name": "x", "role": "admin",
                                                 "password": "långt-lösenord"})[0] == 404
    status, _, body = logged_in(inbox, "admin").request("GET", "/")
    assert status == 200 and 'href="/admin/users"' in body
    assert 'href="/admin/users"' not in anna.request("GET", "/")[2]


def test_an_admin_adds_and_removes_a_user(inbox: Inbox) -> None:
    admin = logged_in(inbox, "admin")
    token = admin.csrf("/admin/users")
    status, _, body = admin.request("POST", "/admin/users", {"csrf_token": token, "name": "cecilia",
                                                             "role": "operator", "districts": "Söder",
                                                             "password": "kort"})
    assert status == 422 and "Användaren kunde inte läggas till: password must have at least 8" in body
    form = {"csrf_token": token, "name": "cecilia", "role": "operator", "districts": "Söder",
            "password": "cecilias-lösenord"}
    assert admin.request("POST", "/admin/users", form)[0] == 303
    cecilia = Client(inbox.url)
    assert cecilia.login("cecilia", "cecilias-lösenord") == 303
    status, _, body = cecilia.request("GET", "/places")
    assert status == 200 and "Söderparken" in body and "Norrskolan" not in body
    assert admin.request("POST", "/admin/users/cecilia/remove", {"csrf_token": token})[0] == 303
    assert cecilia.request("GET", "/places")[0] == 303, "removing a user ends their sessions"
    assert admin.request("POST", "/admin/users/admin/remove", {"csrf_token": token})[0] == 422
    changes = [(a.action, a.actor, (a.detail or {}).get("user")) for a in service.admin_changes(inbox.store)]
    assert changes == [(Action.user_removed, "admin", "cecilia"), (Action.user_added, "admin", "cecilia")]
    assert "cecilias-lösenord" not in str(service.admin_changes(inbox.store))


def test_an_admin_uploads_the_places_register(inbox: Inbox) -> None:
    admin = logged_in(inbox, "admin")
    token = admin.csrf("/admin/places")
    bad = yaml.safe_dump({**PLACES, "places": [*PLACES["places"], {"id": "x", "name": "X", "kind": "castle"}]})
    status, body = upload(admin, "/admin/places", token, "places.yaml", bad.encode())
    assert status == 422 and "places.yaml:\nplaces[3].kind: Input should be" in body
    assert upload(admin, "/admin/places", token, "places.yaml", b"places: [unclosed")[0] == 422
    new = {**PLACES, "places": [*PLACES["places"], {"id": "vasaskolan", "name": "Vasaskolan", "kind": "school",
                                                    "district": "Norr", "address": "Vasagatan 3"}]}
    status, _ = upload(admin, "/admin/places", token, "places.yaml", yaml.safe_dump(new, allow_unicode=True).encode())
    assert status == 303
    _, _, body = admin.request("GET", "/admin/places?places=4&periods=2")
    assert "Importerade 4 platser och 2 kameraperioder." in body and "Vasaskolan" in body
    assert "Vasaskolan" in logged_in(inbox, "anna").request("GET", "/places")[2]
    (change,) = service.admin_changes(inbox.store)
    assert change.action is Action.places_imported and change.detail == {
        "file": "places.yaml", "places": 4, "camera_periods": 2}
    assert re.search(r"admin</strong> importerade platsregistret", admin.request("GET", "/admin/users")[2])


def test_an_admin_adds_an_api_token_shown_once_and_removes_it(inbox: Inbox) -> None:
    admin = logged_in(inbox, "admin")
    token = admin.csrf("/admin/tokens")
    status, headers, body = admin.request("POST", "/admin/tokens", {"csrf_token": token, "name": "larmcentral",
                                                                    "role": "operator", "districts": "Norr"})
    assert status == 200 and headers["cache-control"] == ["no-store"]
    (value,) = re.findall(r'data-testid="token-value">(vp_[^<]+)<', body)
    request = urllib.request.Request(inbox.url + "/api/v1/incidents", headers={"Authorization": f"Bearer {value}"})
    assert urllib.request.urlopen(request).status == 200
    assert value not in admin.request("GET", "/admin/tokens")[2], "shown once"
    assert admin.request("POST", "/admin/tokens", {"csrf_token": token, "name": "larmcentral", "role": "viewer",
                                                   "districts": "Norr"})[0] == 422
    assert admin.request("POST", "/admin/tokens/larmcentral/remove", {"csrf_token": token})[0] == 303
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request)
    assert refused.value.code == 401
    changes = [(a.action, (a.detail or {}).get("token")) for a in service.admin_changes(inbox.store)]
    assert changes == [(Action.token_removed, "larmcentral"), (Action.token_added, "larmcentral")]
    assert value not in str(service.admin_changes(inbox.store))
