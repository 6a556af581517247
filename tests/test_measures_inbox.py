"""Measures, reports and exports in a real inbox (HTTP, as a browser does): registering
by district, the follow-up page, the PDF and the CSV/XLSX exports, each within the
account's scope (another district's items are 404 and never listed)."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from inbox_harness import PASSWORD, Inbox, file_event, start_inbox
from openpyxl import load_workbook

from vaktpost.broker.measures.exposure import calendar_source


@pytest.fixture(scope="module")
def inbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Inbox]:
    # No node sends coverage here: the follow-up counts calendar time, and says so.
    def calendar(app: FastAPI) -> None:
        app.state.exposure = calendar_source()

    with start_inbox(tmp_path_factory.mktemp("inbox"), configure=calendar) as running:
        now = datetime.now(UTC)
        for days in (40, 30, 20, 10, 3):
            file_event(running.store, started=now - timedelta(days=days))
        for days in (25, 5):
            file_event(running.store, node="node-b", camera="park", zone="park", started=now - timedelta(days=days))
        yield running


def client(inbox: Inbox, name: str) -> httpx.Client:
    c = httpx.Client(base_url=inbox.url, follow_redirects=False, timeout=60)
    token = _token(c, "/login")
    r = c.post("/login", data={"csrf_token": token, "name": name, "password": PASSWORD, "next": "/"})
    assert r.status_code == 303, r.text
    return c


def _token(c: httpx.Client, path: str) -> str:
    m = re.search(r'name="csrf_token" value="([0-9a-f]+)"', c.get(path).text)
    assert m
    return m.group(1)


def register(c: httpx.Client, place: str, **form: str) -> httpx.Response:
    start = (date.today() - timedelta(days=15)).isoformat()
    data = {"csrf_token": _token(c, "/measures"), "place": place, "kind": "lighting", "start_date": start,
            "owner": "Fastighetskontoret", "cost": "45 000", "note": "LED-armaturer", **form}
    return c.post("/measures", data=data)


def test_register_and_follow_up_within_the_district(inbox: Inbox) -> None:
    anna, bo, vera, admin = (client(inbox, n) for n in ("anna", "bo", "vera", "admin"))
    r = register(anna, "norrskolan")
    assert r.status_code == 303
    path = r.headers["location"]
    page = anna.get(path)
    assert page.status_code == 200
    assert "Belysning: Norrskolan" in page.text and "45 000 kr" in page.text
    assert 'data-testid="verdict"' in page.text and "<svg" in page.text and "<script" not in page.text.split(
        "<main>")[1]
    assert "Täckningsdata saknas" in page.text  # calendar time until coverage data exists
    assert "Belysning" in anna.get("/measures").text
    # Another district's operator: not listed, 404; a viewer reads but neither registers nor changes.
    assert bo.get(path).status_code == 404 and "Norrskolan" not in bo.get("/measures").text
    assert register(bo, "norrskolan").status_code == 400
    assert vera.get(path).status_code == 200 and vera.get(path + "/edit").status_code == 403
    assert register(vera, "norrskolan").status_code == 403
    # Changing and removing: the operator of the district, or an admin.
    changed = anna.post(path + "/edit", data={"csrf_token": _token(anna, path), "place": "norrskolan",
                                               "kind": "fencing", "start_date": "2024-05-01", "cost": ""})
    assert changed.status_code == 303 and "Stängsel" in anna.get(path).text
    bad = anna.post(path + "/edit", data={"csrf_token": _token(anna, path), "place": "norrskolan",
                                           "kind": "fencing", "start_date": "2024-05-01", "end_date": "2024-04-01"})
    assert bad.status_code == 400 and "Åtgärden sparades inte" in bad.text and "before the start" in bad.text
    assert bo.post(path + "/delete", data={"csrf_token": _token(bo, "/measures")}).status_code == 404
    assert admin.post(path + "/delete", data={"csrf_token": _token(admin, "/measures")}).status_code == 303
    assert anna.get(path).status_code == 404


def test_report_pdf_and_exports_stay_in_scope(inbox: Inbox) -> None:
    anna, admin = client(inbox, "anna"), client(inbox, "admin")
    reports = anna.get("/reports").text
    assert "/reports/Norr.pdf" in reports and "Söder" not in reports
    pdf = anna.get("/reports/Norr.pdf")
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")
    assert anna.get("/reports/S%C3%B6der.pdf").status_code == 404
    assert anna.get("/reports/Norr.pdf?from=2025-02-01&to=2025-01-01").status_code == 400

    rows = list(csv.reader(io.StringIO(anna.get("/exports/incidents.csv").text.lstrip("\ufeff"))))
    assert rows[0][:3] == ["Ärende", "Typ", "Status"]
    assert len(rows) == 6 and {r[7] for r in rows[1:]} == {"Norrskolan"}
    assert anna.get("/exports/incidents.csv?district=S%C3%B6der").status_code == 404
    events = list(csv.reader(io.StringIO(anna.get("/exports/events.csv?district=Norr").text.lstrip("\ufeff"))))
    assert len(events) == 6 and {r[1] for r in events[1:]} == {"node-a"}

    book = load_workbook(io.BytesIO(anna.get("/exports/summary.xlsx").content))
    sheet = [list(r) for r in book.active.iter_rows(values_only=True)]
    assert sheet[0] == ["Plats", "Distrikt", "Typ", "Ärenden", "Händelser"]
    assert sheet[1:] == [["Norrskolan", "Norr", "Intrång", 5, 5]]
    everything = load_workbook(io.BytesIO(admin.get("/exports/incidents.xlsx").content)).active
    assert {r[7] for r in everything.iter_rows(min_row=2, values_only=True)} == {"Norrskolan", "Söderparken"}


def test_follow_up_page_in_english(inbox: Inbox, tmp_path: Path) -> None:
    anna = client(inbox, "anna")
    path = register(anna, "norrskolan").headers["location"]
    page = anna.get(path + "?lang=en&weeks=2").text
    assert "Lighting: Norrskolan" in page and "Coverage data is missing" in page
