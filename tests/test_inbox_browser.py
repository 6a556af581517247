"""The inbox in a real headless Chromium (Debian's, driven by Playwright): login in Swedish,
the login lock, CSRF, district scope and logout. Screenshots (desktop and phone) go to
build/screenshots/ for a person to look at."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from inbox_harness import PASSWORD, Inbox, file_event, start_inbox
from mqtt_harness import Broker, running_central, wait_until

from vaktpost.broker.inbox.tokens import Tokens
from vaktpost.broker.incidents import service
from vaktpost.broker.incidents.kinds import Action, State
from vaktpost.contract.events import Event, uuid7
from vaktpost.contract.topics import Topic, snapshot_row_id
from vaktpost.edge.config import MqttSection
from vaktpost.edge.delivery.outbox import Outbox
from vaktpost.edge.delivery.transport import Publisher
from vaktpost.edge.evidence.snapshot import strip_jpeg

sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = Path(__file__).resolve().parent.parent / "build" / "screenshots"
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def browser() -> Iterator[sync_api.Browser]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} missing: scripts/bootstrap.sh installs Debian's chromium")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def inbox(tmp_path: Path) -> Iterator[Inbox]:
    with start_inbox(tmp_path) as running:
        yield running


@pytest.fixture
def page(browser: sync_api.Browser) -> Iterator[sync_api.Page]:
    # An English browser: the inbox is Swedish all the same.
    context = browser.new_context(locale="en-US")
    p = context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    yield p
    context.close()
    assert not errors, f"script errors: {errors}"


def shot(page: sync_api.Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)


def log_in(page: sync_api.Page, url: str, name: str, password: str = PASSWORD) -> None:
    page.goto(f"{url}/login")
    page.get_by_label("Användarnamn").fill(name)
    page.get_by_label("Lösenord").fill(password)
    page.get_by_role("button", name="Logga in").click()


def test_log_in_see_places_and_log_out(inbox: Inbox, page: sync_api.Page) -> None:
    page.goto(inbox.url + "/places")
    sync_api.expect(page).to_have_url(re.compile(r"/login\?next=/places$"))
    sync_api.expect(page.get_by_role("heading", name="Logga in")).to_be_visible()
    shot(page, "login")
    log_in(page, inbox.url, "admin")
    sync_api.expect(page).to_have_url(inbox.url + "/")
    sync_api.expect(page.get_by_role("heading", name="Inkorg")).to_be_visible()
    page.get_by_role("link", name="Platser och kameror").click()
    sync_api.expect(page.get_by_role("heading", name="Platser och kameror")).to_be_visible()
    sync_api.expect(page.locator("[data-testid=place]")).to_have_count(3)
    sync_api.expect(page.get_by_text("Senaste livstecken").first).to_be_visible()
    assert page.evaluate("typeof window.htmx") == "object", "the vendored htmx loaded"
    shot(page, "places-admin")
    page.get_by_role("link", name="Norrskolan").click()
    sync_api.expect(page.get_by_test_id("place-name")).to_have_text("Norrskolan")
    sync_api.expect(page.get_by_text("51,5 °C")).to_be_visible()
    shot(page, "place-norrskolan")
    page.get_by_role("link", name="English").click()
    sync_api.expect(page.get_by_role("button", name="Log out")).to_be_visible()
    shot(page, "place-norrskolan-en")
    page.get_by_role("button", name="Log out").click()
    sync_api.expect(page).to_have_url(inbox.url + "/login")
    page.goto(inbox.url + "/places")
    sync_api.expect(page).to_have_url(re.compile(r"/login\?next="))


def test_on_a_phone(inbox: Inbox, browser: sync_api.Browser) -> None:
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    page = context.new_page()
    try:
        page.goto(inbox.url + "/login")
        shot(page, "phone-login")
        file_event(inbox.store, snapshot=snapshot_jpeg())
        log_in(page, inbox.url, "admin")
        sync_api.expect(page.get_by_role("heading", name="Inkorg")).to_be_visible()
        sync_api.expect(page.get_by_test_id("incident")).to_have_count(1)
        for name, path in [("phone-inbox", "/"), ("phone-incident", "/incidents/1"), ("phone-places", "/places")]:
            page.goto(inbox.url + path)
            # Nothing wider than the screen: no sideways scrolling.
            assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], name
            shot(page, name)
    finally:
        context.close()


def test_ten_wrong_passwords_lock_the_login(inbox: Inbox, page: sync_api.Page) -> None:
    for _ in range(10):
        log_in(page, inbox.url, "anna", "fel-lösenord")
        sync_api.expect(page.get_by_test_id("login-error")).to_have_text("Fel användarnamn eller lösenord.")
    log_in(page, inbox.url, "anna")
    sync_api.expect(page.get_by_test_id("login-error")).to_contain_text("spärrad")
    sync_api.expect(page).to_have_url(inbox.url + "/login")
    shot(page, "login-locked")


def test_a_post_without_the_csrf_token_is_refused(inbox: Inbox, page: sync_api.Page) -> None:
    log_in(page, inbox.url, "anna")
    sync_api.expect(page).to_have_url(inbox.url + "/")
    page.evaluate("document.querySelector('form[action=\"/logout\"] input[name=csrf_token]').remove()")
    with page.expect_response(lambda r: r.url.endswith("/logout")) as response:
        page.get_by_role("button", name="Logga ut").click()
    assert response.value.status == 403
    shot(page, "csrf-refused")
    page.goto(inbox.url + "/places")
    sync_api.expect(page).to_have_url(inbox.url + "/places")  # still logged in


def test_an_operator_of_one_district_cannot_see_or_open_another(inbox: Inbox, page: sync_api.Page) -> None:
    log_in(page, inbox.url, "anna")  # district Norr
    page.goto(inbox.url + "/places")
    sync_api.expect(page.locator("[data-testid=place]")).to_have_count(1)
    sync_api.expect(page.get_by_role("link", name="Norrskolan")).to_be_visible()
    assert page.get_by_text("Söderparken").count() == 0
    shot(page, "places-operator-norr")
    response = page.goto(inbox.url + "/places/soderparken")
    assert response is not None and response.status == 404
    sync_api.expect(page.get_by_role("heading", name="Hittades inte")).to_be_visible()
    shot(page, "other-district-404")




def snapshot_jpeg() -> bytes:
    """A scene with a blanked area, encoded and stripped as a node sends a snapshot."""
    scene = np.full((240, 320, 3), (90, 140, 110), np.uint8)
    cv2.rectangle(scene, (20, 150), (300, 230), (120, 120, 120), -1)  # the yard
    cv2.rectangle(scene, (140, 60), (180, 160), (0, 0, 0), -1)  # a filled person box
    ok, buf = cv2.imencode(".jpg", scene)
    assert ok
    return strip_jpeg(buf.tobytes())


def test_a_node_event_becomes_an_incident_that_staff_handle(broker: Broker, tmp_path: Path,
                                                            browser: sync_api.Browser) -> None:
    """The whole path: a node's outbox → Mosquitto → the consumer → the inbox, which shows
    the new incident without a reload; then the snapshot (audited), acknowledge, comment,
    resolve — and the other district's operator cannot reach it by list, URL or API."""
    context = browser.new_context(locale="sv-SE")
    page = context.new_page()
    outbox = Outbox(tmp_path / "outbox.db")
    publisher = Publisher("node-a", MqttSection(host=broker.host, port=broker.port,
                                                password=broker.password("node-a")), outbox)
    try:
        with start_inbox(tmp_path) as inbox, running_central(broker, tmp_path) as store:
            assert inbox.store.engine.url == store.engine.url  # one place log
            log_in(page, inbox.url, "anna")
            sync_api.expect(page.get_by_test_id("no-incidents")).to_be_visible()
            page.evaluate("window.notReloaded = true")
            shot(page, "inbox-empty")

            start = datetime.now(UTC) - timedelta(seconds=30)
            ev = Event(event_id=uuid7(int(start.timestamp() * 1000)), seq=outbox.next_seq(), node_id="node-a",
                       camera_id="gard", type="intrusion", zone="gard", started_at=start, confidence=0.87,
                       phase="start", snapshot="attached")
            assert outbox.put(snapshot_row_id(ev.event_id), Topic.snapshots("node-a", ev.event_id), snapshot_jpeg())
            assert outbox.put(ev.event_id, Topic.events("node-a", "gard"), ev.to_payload())
            publisher.start()
            # The list refreshes itself every 3 s: the incident appears within 5 s of being stored.
            wait_until(lambda: service.list_incidents(store), message="the consumer opened an incident")
            row = page.get_by_test_id("incident")
            sync_api.expect(row).to_have_count(1, timeout=5000)
            sync_api.expect(row).to_contain_text("Intrång")
            sync_api.expect(row).to_contain_text("Norrskolan")
            assert page.evaluate("window.notReloaded") is True, "the page was not reloaded"
            shot(page, "inbox-new-incident")

            row.get_by_role("link").click()
            sync_api.expect(page.get_by_test_id("state")).to_have_text("nytt")
            sync_api.expect(page.get_by_text("Skolvägen 1, Norrby")).to_be_visible()
            shot(page, "incident-new")
            inc = service.list_incidents(store)[0].id
            with page.expect_response(lambda r: r.url.endswith(".jpg")) as snap:
                page.get_by_test_id("snapshot-link").click()
            assert snap.value.status == 200 and snap.value.headers["content-type"] == "image/jpeg"
            shot(page, "incident-snapshot")
            views = [a for a in service.audit_trail(store, inc) if a.action is Action.snapshot_viewed]
            assert [(a.actor, a.event_id) for a in views] == [("anna", ev.event_id)]
            page.go_back()

            page.get_by_role("button", name="Kvittera").click()
            sync_api.expect(page.get_by_test_id("state")).to_have_text("kvitterat")
            page.get_by_label("Kommentar").fill("Vaktbolaget har ringts")
            page.get_by_role("button", name="Lägg till kommentar").click()
            sync_api.expect(page.get_by_test_id("audit")).to_contain_text("Vaktbolaget har ringts")
            page.get_by_label("Utfall").select_option("false_alarm")
            page.get_by_label("Anteckning").fill("Personal på plats")
            page.get_by_role("button", name="Avsluta").click()
            sync_api.expect(page.get_by_test_id("state")).to_have_text("avslutat")
            shot(page, "incident-resolved")
            actions = [a.action for a in service.audit_trail(store, inc) if a.actor == "anna"]
            assert actions == [Action.snapshot_viewed, Action.acknowledged, Action.commented, Action.resolved]
            assert service.get_incident(store, inc).incident.state is State.resolved

            # District B's operator: not in the list, 404 by URL and by the snapshot's URL.
            other = context.browser.new_context(locale="sv-SE").new_page() if context.browser else page
            log_in(other, inbox.url, "bo")
            other.goto(inbox.url + "/?state=all")
            sync_api.expect(other.get_by_test_id("no-incidents")).to_be_visible()
            response = other.goto(f"{inbox.url}/incidents/{inc}")
            assert response is not None and response.status == 404
            response = other.goto(f"{inbox.url}/incidents/{inc}/snapshots/node-a/{ev.event_id}.jpg")
            assert response is not None and response.status == 404
            shot(other, "incident-other-district-404")
            # ... and by the API, with a token of the same scope.
            token = Tokens(store.engine).add("soder-app", "operator", ["Söder"], now=datetime.now(UTC))
            api = other.request.get(f"{inbox.url}/api/v1/incidents/{inc}", headers={"Authorization": f"Bearer {token}"})
            assert api.status == 404
            listed = other.request.get(f"{inbox.url}/api/v1/incidents?state=resolved",
                                       headers={"Authorization": f"Bearer {token}"})
            assert listed.status == 200 and listed.json() == []
            other.context.close()
    finally:
        publisher.stop(timeout=2)
        outbox.close()
        context.close()
