"""The inbox in a real headless Chromium (Debian's, driven by Playwright): login in Swedish,
the login lock, CSRF, district scope and logout. Screenshots (desktop and phone) go to
build/screenshots/ for a person to look at."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from inbox_harness import PASSWORD, Inbox, start_inbox

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
    sync_api.expect(page).to_have_url(inbox.url + "/places")
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
        log_in(page, inbox.url, "admin")
        sync_api.expect(page.get_by_role("heading", name="Platser och kameror")).to_be_visible()
        # Nothing wider than the screen: no sideways scrolling.
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        shot(page, "phone-places")
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
    sync_api.expect(page).to_have_url(inbox.url + "/places")
    page.evaluate("document.querySelector('form[action=\"/logout\"] input[name=csrf_token]').remove()")
    with page.expect_response(lambda r: r.url.endswith("/logout")) as response:
        page.get_by_role("button", name="Logga ut").click()
    assert response.value.status == 403
    shot(page, "csrf-refused")
    page.goto(inbox.url + "/places")
    sync_api.expect(page).to_have_url(inbox.url + "/places")  # still logged in


def test_an_operator_of_one_district_cannot_see_or_open_another(inbox: Inbox, page: sync_api.Page) -> None:
    log_in(page, inbox.url, "anna")  # district Norr
    sync_api.expect(page.locator("[data-testid=place]")).to_have_count(1)
    sync_api.expect(page.get_by_role("link", name="Norrskolan")).to_be_visible()
    assert page.get_by_text("Söderparken").count() == 0
    shot(page, "places-operator-norr")
    response = page.goto(inbox.url + "/places/soderparken")
    assert response is not None and response.status == 404
    sync_api.expect(page.get_by_role("heading", name="Hittades inte")).to_be_visible()
    shot(page, "other-district-404")

