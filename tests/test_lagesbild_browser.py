"""The situational picture's pages (lägesbild) in a real headless Chromium: the overview
with the ranking, a district's and a place's charts, a priority mark and its history,
and the scope (another district's pages are 404, viewers have none). Screenshots
(desktop and phone) go to build/screenshots/lagesbild-*.png for a person to look at."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from inbox_harness import Inbox, start_inbox
from test_inbox_browser import PHONE, browser, log_in, shot  # noqa: F401 (browser: a fixture)

from vaktpost.broker.incidents.tables import incident_places, incidents
from vaktpost.broker.store import Store

sync_api = pytest.importorskip("playwright.sync_api")


def seed_history(store: Store, now: datetime) -> None:
    """A year and a bit of incidents at norrskolan (nights, more lately) and soderparken,
    and one tamper incident of three hours at norrskolan's camera."""
    rng = random.Random(11)
    rows = []
    for day in range(430):
        for place, node, camera, per_day in (("norrskolan", "node-a", "gard", 0.6 + day / -800 + 0.5),
                                             ("soderparken", "node-b", "park", 0.4)):
            for _ in range(int(per_day * 2 * rng.random() + 0.5)):
                type_ = rng.choice(["intrusion", "intrusion", "loitering", "scene_change", "tamper", "motion"])
                opened = now - timedelta(days=day, hours=rng.choice([1, 2, 3, 4, 13, 20, 21, 22, 23]))
                rows.append((place, node, camera, type_, opened, None))
    rows.append(("norrskolan", "node-a", "gard", "tamper", now - timedelta(days=3, hours=5),
                 now - timedelta(days=3, hours=2)))
    with store.engine.begin() as conn:
        for k, (place, node, camera, type_, opened, ended) in enumerate(rows):
            new_id = conn.execute(incidents.insert().values(
                type=type_, group_key=f"seed|{k}", node_id=node, camera_id=camera, priority=2, state="resolved",
                opened_at=opened, last_event_at=ended or opened, ended_at=ended or opened, created_at=opened,
                updated_at=opened)).inserted_primary_key[0]
            conn.execute(incident_places.insert().values(incident_id=new_id, place_id=place))


@pytest.fixture
def inbox(tmp_path: Path) -> Iterator[Inbox]:
    with start_inbox(tmp_path) as running:
        seed_history(running.store, datetime.now(UTC))
        yield running


@pytest.fixture
def page(browser: sync_api.Browser) -> Iterator[sync_api.Page]:  # noqa: F811
    context = browser.new_context(locale="en-US", viewport={"width": 1100, "height": 900})
    p = context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    # The charts are inline SVG with a style element and no script: the CSP must not refuse any of it.
    p.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
    yield p
    context.close()
    assert not errors, f"script or CSP errors: {errors}"


def test_an_operator_maps_the_situation_and_marks_a_priority(inbox: Inbox, page: sync_api.Page) -> None:
    log_in(page, inbox.url, "anna")
    page.get_by_role("link", name="Lägesbild").click()
    sync_api.expect(page.get_by_role("heading", name="Lägesbild")).to_be_visible()
    sync_api.expect(page.get_by_test_id("no-rates")).to_contain_text("täckningsdata")
    rows = page.get_by_test_id("rank-row")
    sync_api.expect(rows).to_have_count(1)  # Norr's place only
    sync_api.expect(rows.first).to_have_attribute("data-place", "norrskolan")
    shot(page, "lagesbild-overview")
    page.get_by_test_id("districts").get_by_role("link", name="Norr").click()
    sync_api.expect(page.get_by_test_id("district-name")).to_have_text("Lägesbild: Norr")
    for chart in ("weekly", "compare", "heat", "breakdown"):
        sync_api.expect(page.get_by_test_id(f"chart-{chart}").locator("svg")).to_be_visible()
    sync_api.expect(page.get_by_test_id("chart-rates")).to_have_count(0)  # no coverage data
    sync_api.expect(page.get_by_test_id("breakdown").locator("tr[data-type=intrusion] td").nth(1)
                    ).not_to_have_text("0")
    shot(page, "lagesbild-district")
    page.get_by_test_id("ranking").get_by_role("link", name="Norrskolan").click()
    sync_api.expect(page.get_by_test_id("place-name")).to_have_text("Norrskolan")
    sync_api.expect(page.get_by_test_id("downtime").locator("tr[data-camera='node-a/gard'] td").nth(1)
                    ).to_have_text("3,0")
    page.get_by_label("Anteckning").fill("Klotter och inbrottsförsök varje helg")
    page.get_by_role("button", name="Spara markeringen").click()
    sync_api.expect(page.get_by_test_id("current-priority")).to_contain_text("Prioriterad sedan")
    sync_api.expect(page.get_by_test_id("mark")).to_have_count(1)
    sync_api.expect(page.get_by_test_id("mark").first).to_contain_text("anna")
    page.get_by_label("Inte prioriterad (ta bort markeringen)").check()
    page.get_by_label("Anteckning").fill("Belysningen är uppsatt")
    page.get_by_role("button", name="Spara markeringen").click()
    sync_api.expect(page.get_by_test_id("mark")).to_have_count(2)  # history is kept
    sync_api.expect(page.get_by_test_id("current-priority")).to_have_count(0)
    shot(page, "lagesbild-place")
    page.goto(inbox.url + "/lagesbild?lang=en")
    sync_api.expect(page.get_by_role("heading", name="Situation")).to_be_visible()
    shot(page, "lagesbild-overview-en")


def test_another_districts_pages_are_not_found(inbox: Inbox, page: sync_api.Page) -> None:
    log_in(page, inbox.url, "anna")
    sync_api.expect(page).to_have_url(inbox.url + "/")
    for path in ("/lagesbild/places/soderparken", "/lagesbild/districts/S%C3%B6der", "/lagesbild/places/hamnen",
                 "/lagesbild/places/nowhere", "/lagesbild/districts/Nowhere"):
        response = page.goto(inbox.url + path)
        assert response is not None and response.status == 404, path
    # A mark for another district's place, with a valid form and token: 404 as well.
    page.goto(inbox.url + "/lagesbild/places/norrskolan")
    page.evaluate("document.querySelector('#priority form').action = '/lagesbild/places/soderparken/priority'")
    with page.expect_response(re.compile(r"/priority$")) as response:
        page.get_by_role("button", name="Spara markeringen").click()
    assert response.value.status == 404
    shot(page, "lagesbild-not-found")


def test_viewers_have_no_situation_pages_and_admins_see_all(inbox: Inbox, page: sync_api.Page) -> None:
    log_in(page, inbox.url, "vera")
    sync_api.expect(page).to_have_url(inbox.url + "/")
    sync_api.expect(page.get_by_role("link", name="Lägesbild")).to_have_count(0)
    response = page.goto(inbox.url + "/lagesbild/places/norrskolan")
    assert response is not None and response.status == 404
    page.get_by_role("button", name="Logga ut").click()
    log_in(page, inbox.url, "admin")
    page.get_by_role("link", name="Lägesbild").click()
    sync_api.expect(page.get_by_test_id("rank-row")).to_have_count(3)
    page.get_by_label("Ordning").select_option("trend")
    page.get_by_role("button", name="Visa").click()
    sync_api.expect(page).to_have_url(re.compile(r"sort=trend"))
    sync_api.expect(page.get_by_test_id("rank-row")).to_have_count(3)


def coverage(store: Store, start: datetime, end: datetime, *,
             places: list[str] | None = None) -> list[CameraHours]:
    """An exposure source as the coverage module gives: node-a's camera at norrskolan
    online every hour and armed half of them (gaps are tests/test_lagesbild.py's)."""
    if places is not None and "norrskolan" not in places:
        return []
    online = (end - start).total_seconds() / 3600
    return [CameraHours("node-a", "gard", "norrskolan", "gard", online, online / 2)]


@dataclass(frozen=True)
class CameraHours:
    node_id: str
    camera_id: str
    place_id: str | None
    zone: str | None
    online_hours: float
    armed_hours: float


def test_rates_beside_counts_with_coverage_data(tmp_path: Path, page: sync_api.Page) -> None:
    now = datetime.now(UTC)

    def configure(app: FastAPI) -> None:
        app.state.exposure = coverage

    with start_inbox(tmp_path, configure=configure) as inbox:
        seed_history(inbox.store, now)
        log_in(page, inbox.url, "anna")
        page.goto(inbox.url + "/lagesbild/places/norrskolan")
        sync_api.expect(page.get_by_test_id("no-rates")).to_have_count(0)
        sync_api.expect(page.get_by_test_id("chart-rates").locator("svg")).to_be_visible()
        sync_api.expect(page.get_by_test_id("breakdown").locator("tr[data-type=intrusion] .rate").first).to_be_visible()
        shot(page, "lagesbild-place-rates")
        page.goto(inbox.url + "/lagesbild")
        sync_api.expect(page.get_by_test_id("rank-row").first.locator(".rate").first).to_be_visible()


def test_on_a_phone(inbox: Inbox, browser: sync_api.Browser) -> None:  # noqa: F811
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    page = context.new_page()
    try:
        log_in(page, inbox.url, "admin")
        sync_api.expect(page).to_have_url(inbox.url + "/")
        for name, path in [("phone-lagesbild", "/lagesbild"), ("phone-lagesbild-district", "/lagesbild/districts/Norr"),
                           ("phone-lagesbild-place", "/lagesbild/places/norrskolan")]:
            page.goto(inbox.url + path)
            shot(page, name)
            assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], name
    finally:
        context.close()
