"""The camera register's page in a real headless Chromium: an operator of Norr finds it
in the menu, sees Norr's cameras with purpose, responsible and the schedule in words,
and downloads the CSV; a viewer has no such page. Screenshots (desktop and phone) go to
build/screenshots/register-*.png for a person to look at."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from inbox_harness import Inbox
from test_inbox_browser import PHONE, browser, log_in, shot  # noqa: F401 (browser: a fixture)
from test_register import PURPOSE, RESPONSIBLE, SCHOOL_FACADE_SV
from test_register import inbox as inbox  # a fixture: the harness with configs and purposes

sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture
def page(browser: sync_api.Browser) -> Iterator[sync_api.Page]:  # noqa: F811
    context = browser.new_context(locale="en-US", viewport={"width": 1100, "height": 900}, accept_downloads=True)
    p = context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    p.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
    yield p
    context.close()
    assert not errors, f"script or CSP errors: {errors}"


def test_an_operator_reads_and_downloads_the_register(inbox: Inbox, page: sync_api.Page,
                                                      tmp_path: Path) -> None:
    log_in(page, inbox.url, "anna")
    page.get_by_role("link", name="Kameraregister").click()
    page.wait_for_url("**/register")
    sites = page.get_by_test_id("site")
    assert sites.count() == 1 and sites.first.get_attribute("data-place") == "norrskolan"
    sync_api.expect(page.get_by_test_id("purpose")).to_have_text(PURPOSE)
    sync_api.expect(page.get_by_test_id("responsible")).to_have_text(RESPONSIBLE)
    sync_api.expect(page.locator('[data-camera="node-a/gard"]')).to_contain_text(SCHOOL_FACADE_SV)
    shot(page, "register")
    with page.expect_download() as download:
        page.get_by_role("link", name="Ladda ner CSV").click()
    path = tmp_path / "register.csv"
    download.value.save_as(path)
    rows = list(csv.reader(io.StringIO(path.read_bytes().decode("utf-8-sig")), delimiter=";"))
    assert [(r[3], r[4]) for r in rows[1:]] == [("node-a", "gard")]
    page.set_viewport_size(PHONE)
    page.reload()
    shot(page, "phone-register")


def test_a_viewer_has_no_register(inbox: Inbox, page: sync_api.Page) -> None:
    log_in(page, inbox.url, "vera")
    page.wait_for_url("**/")
    assert page.get_by_role("link", name="Kameraregister").count() == 0
    response = page.goto(inbox.url + "/register")
    assert response is not None and response.status == 404
