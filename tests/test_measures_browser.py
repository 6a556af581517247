"""Measures and reports in a real headless Chromium: an operator registers a measure and
reads its follow-up (charts drawn, no script errors), another district's operator gets
404; the reports page offers only the operator's district. Screenshots (desktop and
phone) go to build/screenshots/ for a person to look at."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from inbox_harness import Inbox, file_event
from test_inbox_browser import PHONE, browser, inbox, log_in, page, shot  # noqa: F401 (fixtures)

sync_api = pytest.importorskip("playwright.sync_api")


def test_register_a_measure_and_read_its_follow_up(inbox: Inbox, page: sync_api.Page) -> None:  # noqa: F811
    now = datetime.now(UTC)
    for days in (50, 40, 33, 30, 26, 22, 12, 2):
        file_event(inbox.store, started=now - timedelta(days=days, hours=3))
    log_in(page, inbox.url, "anna")
    page.get_by_role("link", name="Åtgärder").click()
    page.get_by_test_id("new-measure").click()
    page.get_by_label("Norrskolan").check()
    page.get_by_label("Typ", exact=True).select_option(label="Belysning")
    page.get_by_label("Startdatum").fill((date.today() - timedelta(days=21)).isoformat())
    page.get_by_label("Ansvarig (vem som genomför den)").fill("Fastighetskontoret")
    page.get_by_label("Kostnad (kronor)").fill("45000")
    page.get_by_role("button", name="Spara").click()
    sync_api.expect(page.get_by_test_id("measure-title")).to_have_text("Belysning: Norrskolan")
    sync_api.expect(page.get_by_test_id("verdict")).to_contain_text("Personer")
    assert page.locator(".follow-up svg").count() == 2
    shot(page, "measure-follow-up")
    page.set_viewport_size(PHONE)
    shot(page, "measure-follow-up-phone")
    url = page.url
    page.get_by_role("link", name="Rapporter").click()
    sync_api.expect(page.get_by_test_id("district")).to_have_count(1)
    sync_api.expect(page.get_by_test_id("district")).to_have_attribute("data-district", "Norr")
    shot(page, "reports-phone")
    page.get_by_role("button", name="Logga ut").click()
    log_in(page, inbox.url, "bo")
    assert page.goto(url).status == 404  # type: ignore[union-attr]
    page.goto(inbox.url + "/measures")
    sync_api.expect(page.get_by_test_id("no-measures")).to_be_visible()
