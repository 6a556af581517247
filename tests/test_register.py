"""The camera register (vaktpost.broker.register): rows built from the places registry
(with purpose and responsible) and the nodes' stored config messages, on SQLite and
PostgreSQL; schedules in words; the CSV; the page and its downloads over HTTP, scoped
by district; `vaktpost register` writing CSV and PDF (read back with pdftotext)."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from inbox_harness import PLACES, Inbox, start_inbox
from sqlalchemy import create_engine, inspect, text
from test_cli import one_error_line, vaktpost
from test_inbox import Client, logged_in

from vaktpost.broker.config import RetentionSection
from vaktpost.broker.coverage import record_setup
from vaktpost.broker.inbox.i18n import load_translations
from vaktpost.broker.places import parse_places, write_registry
from vaktpost.broker.register.rows import register_rows
from vaktpost.broker.register.words import schedule_words, texts, to_csv, weekly_armed_hours
from vaktpost.broker.store import Store
from vaktpost.contract.messages import NodeSetup
from vaktpost.contract.schedule import PRESETS, ArmedSchedule

ZONE = ZoneInfo("Europe/Stockholm")
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
SV = load_translations("sv").gettext
EN = load_translations("en").gettext
PURPOSE = "Förebygga skadegörelse på skolans fasad kvällar och helger"
RESPONSIBLE = "Utbildningsförvaltningen, lokalenheten"
SCHOOL_FACADE_SV = "mån–fre 20–06, helger och helgdagar 17–07 (förinställning skolfasad)"

REGISTRY = {
    "timezone": "Europe/Stockholm",
    "places": [
        {**PLACES["places"][0], "purpose": PURPOSE, "responsible": RESPONSIBLE},  # norrskolan, Norr
        *PLACES["places"][1:],  # soderparken (Söder), hamnen (no district): no purpose given
    ],
    "cameras": [*PLACES["cameras"],  # node-a/gard at norrskolan, node-b/park at soderparken
                # node-a/entre watched norrskolan until last year: not in the register now
                {"node": "node-a", "camera": "entre", "place": "norrskolan", "from": "2024-01-01",
                 "to": "2025-01-01"}],
}


def school_facade() -> dict:
    return {"preset": "school_facade", "ranges": [r.model_dump(mode="json", by_alias=True)
                                                  for r in PRESETS["school_facade"]],
            "holidays": ["2026-12-24", "2026-12-25"]}


def camera(cam: str, schedule: dict, *, masked: float = 0.125) -> dict:
    return {"id": cam, "timezone": "Europe/Stockholm", "fps": 5, "masked_share": masked,
            "zones": [{"name": "fasad", "schedule": schedule,
                       "people_rules": {"intrusion": True, "intrusion_min_seconds": 2, "loiter_seconds": None,
                                        "loiter_armed_only": True}}],
            "snapshots": {"intrusion": "anonymised", "loitering": "anonymised", "motion": "none",
                          "scene_change": "anonymised", "tamper": "none", "health": "none"}}


def setup(node: str, at: datetime, *cameras: dict) -> NodeSetup:
    return NodeSetup.model_validate({"schema": "vaktpost.config/1", "node_id": node, "at": at,
                                     "cameras": list(cameras), "retention": {"max_age": 7 * 86400}})


def seed_configs(store: Store, at: datetime) -> None:
    """node-a reports gard (assigned) and spare (assigned to no place); node-b never reports."""
    with store.begin() as tx:
        record_setup(tx.conn, setup("node-a", at, camera("gard", school_facade()),
                                    camera("spare", {"ranges": []}, masked=0.0)), at)


@pytest.fixture
def store(place_store: Store) -> Store:
    write_registry(place_store, parse_places(REGISTRY))
    seed_configs(place_store, NOW - timedelta(days=2))
    return place_store


def test_rows_from_the_registry_and_the_config_messages(store: Store) -> None:
    rows = register_rows(store, NOW)
    assert [(r.node_id, r.camera_id, r.place and r.place["id"], r.flag) for r in rows] == [
        ("node-a", "gard", "norrskolan", None),
        ("node-b", "park", "soderparken", "no_config"),
        ("node-a", "spare", None, "unassigned"),
    ]
    words = texts(rows, RetentionSection(), SV, "sv", ZONE)
    gard = words[0]
    assert (gard.district, gard.place, gard.address) == ("Norr", "Norrskolan", "Skolvägen 1, Norrby")
    assert (gard.purpose, gard.responsible) == (PURPOSE, RESPONSIBLE)
    assert gard.masked == "12,5\xa0%"
    assert gard.zones == f"fasad: {SCHOOL_FACADE_SV}"
    assert gard.armed_per_week == "78 tim"  # 5 × 10 h + 2 × 14 h
    assert gard.snapshots == ("anonymiserad bild: Intrång, Uppehåll, Förändrad bild; "
                              "ingen bild: Rörelse, Sabotage mot kamera, Kamerafel")
    assert (gard.node_retention, gard.central_retention) == ("7 dygn", "bilder 30 dygn, händelser 365 dygn")
    assert gard.config_at == "2026-11-24 13:00" and gard.assigned_from == "2024-01-01 00:00"  # local time
    assert gard.note == ""
    park, spare = words[1], words[2]
    assert park.purpose == "" and park.zones == "" and park.config_at == ""
    assert park.note == "Noden har inte rapporterat sin konfiguration."
    assert (spare.place, spare.zones, spare.note) == ("", "fasad: aldrig larmad", "Inte kopplad till någon plats.")


def test_an_operators_scope_is_their_districts_places(store: Store) -> None:
    assert [(r.node_id, r.camera_id) for r in register_rows(store, NOW, districts=["Norr"])] == [("node-a", "gard")]
    assert register_rows(store, NOW, districts=[]) == []
    # A camera stops being listed when its period ends, and one of another node's config is flagged.
    with store.begin() as tx:
        record_setup(tx.conn, setup("node-a", NOW - timedelta(days=1), camera("spare", {"ranges": []})), NOW)
    rows = register_rows(store, NOW)
    assert [(r.camera_id, r.flag) for r in rows] == [("gard", "not_in_config"), ("park", "no_config"),
                                                     ("spare", "unassigned")]


def test_the_csv_opens_in_excel(store: Store) -> None:
    data = to_csv(texts(register_rows(store, NOW), RetentionSection(), SV, "sv", ZONE), SV)
    assert data.startswith(b"\xef\xbb\xbf"), "UTF-8 with a byte order mark"
    table = list(csv.reader(io.StringIO(data.decode("utf-8-sig")), delimiter=";"))
    assert table[0][:6] == ["Distrikt", "Plats", "Adress", "Nod", "Kamera", "Ändamål"]
    assert len(table) == 1 + 3, "one row per camera"
    assert table[1][:7] == ["Norr", "Norrskolan", "Skolvägen 1, Norrby", "node-a", "gard", PURPOSE, RESPONSIBLE]


def s(*ranges: tuple[list[str], str, str], **dates: list[str]) -> ArmedSchedule:
    return ArmedSchedule.model_validate({"ranges": [{"days": d, "from": a, "to": b} for d, a, b in ranges],
                                         **dates})


@pytest.mark.parametrize(("schedule", "sv", "en"), [
    (s((["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "00:00", "24:00")), "alla dagar hela dygnet",
     "every day all day"),
    (s((["mon", "wed"], "18:30", "22:00"), (["hol"], "00:00", "00:00")),
     "mån, ons 18:30–22, helgdagar hela dygnet", "Mon, Wed 18:30–22, holidays all day"),
    (s((["sat", "sun"], "17:00", "07:00"), (["mon", "tue", "thu", "fri"], "20:00", "06:00"),
       exceptions=["2026-12-01"], armed_dates=["2026-12-31"]),
     "helger 17–07, mån, tis, tors, fre 20–06; datum larmade hela dygnet: 1; datum ej larmade: 1",
     "weekends 17–07, Mon, Tue, Thu, Fri 20–06; dates armed all day: 1; dates not armed: 1"),
    (s(), "aldrig larmad", "never armed"),
])
def test_schedules_in_words(schedule: ArmedSchedule, sv: str, en: str) -> None:
    assert schedule_words(schedule, SV, "sv") == sv
    assert schedule_words(schedule, EN, "en") == en


def test_weekly_armed_hours_count_overlaps_once() -> None:
    overlapping = NodeSetup.model_validate({
        "schema": "vaktpost.config/1", "node_id": "n", "at": NOW, "retention": {"max_age": 3600},
        "cameras": [{**camera("c", {"ranges": [{"days": ["sun"], "from": "22:00", "to": "02:00"},
                                               {"days": ["mon"], "from": "00:00", "to": "01:00"}]}),
                     "zones": []}]}).cameras[0]
    assert weekly_armed_hours(overlapping) == 0.0, "no zones, nothing armed"
    cam = setup("n", NOW, camera("c", {"ranges": [{"days": ["sun"], "from": "22:00", "to": "02:00"},
                                                  {"days": ["mon"], "from": "00:00", "to": "01:00"}]})).cameras[0]
    assert weekly_armed_hours(cam) == 4.0, "Sunday night into Monday counts once, in the week"


def test_an_older_place_log_gains_purpose_and_responsible(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:  # the places table before the register
        conn.execute(text("CREATE TABLE places (id VARCHAR(63) PRIMARY KEY, name VARCHAR(200) NOT NULL, "
                          "kind VARCHAR(32) NOT NULL, district VARCHAR(200), address VARCHAR(300), lat FLOAT, "
                          "lon FLOAT)"))
        conn.execute(text("INSERT INTO places VALUES ('p', 'P', 'park', NULL, NULL, NULL, NULL)"))
    engine.dispose()
    store = Store(url)
    try:
        store.create_all()
        assert {"purpose", "responsible"} <= {c["name"] for c in inspect(store.engine).get_columns("places")}
        assert store.list_places()[0]["purpose"] is None
        write_registry(store, parse_places(REGISTRY))
        assert {p["id"]: p["responsible"] for p in store.list_places()}["norrskolan"] == RESPONSIBLE
    finally:
        store.close()


# --- the page, over HTTP ------------------------------------------------------------


@pytest.fixture
def inbox(tmp_path: Path) -> Inbox:
    with start_inbox(tmp_path) as running:
        write_registry(running.store, parse_places(REGISTRY))
        seed_configs(running.store, datetime.now(UTC) - timedelta(hours=1))
        with running.store.begin() as tx:  # node-b (Söder) reports too
            record_setup(tx.conn, setup("node-b", datetime.now(UTC) - timedelta(hours=1),
                                        camera("park", {"ranges": []})), datetime.now(UTC))
        yield running


def test_an_operator_sees_their_districts_cameras_in_page_and_csv(inbox: Inbox) -> None:
    anna = logged_in(inbox, "anna")  # operator of Norr
    status, _, body = anna.request("GET", "/register")
    assert status == 200 and "Kameraregister" in body
    assert 'data-camera="node-a/gard"' in body and PURPOSE in body and RESPONSIBLE in body
    assert SCHOOL_FACADE_SV in body
    assert "node-b" not in body and "Söderparken" not in body and "spare" not in body
    assert 'href="/register.csv"' in body and 'href="/register.pdf"' in body
    status, headers, data = anna.request("GET", "/register.csv")
    assert status == 200 and headers["content-type"][0].startswith("text/csv")
    assert "attachment" in headers["content-disposition"][0]
    rows = list(csv.reader(io.StringIO(data.lstrip("\ufeff")), delimiter=";"))
    assert [(r[3], r[4]) for r in rows[1:]] == [("node-a", "gard")]
    status, _, body = anna.request("GET", "/register?lang=en")
    assert "Camera register" in body and "Mon–Fri 20–06, weekends and holidays 17–07 (preset school facade)" in body


def test_admins_see_every_camera_and_viewers_none(inbox: Inbox) -> None:
    admin = logged_in(inbox, "admin")
    status, _, body = admin.request("GET", "/register")
    assert status == 200
    for cam in ("node-a/gard", "node-b/park", "node-a/spare"):
        assert f'data-camera="{cam}"' in body
    assert "Kameror som inte hör till någon plats" in body and "saknas i platsregistret" in body
    _, _, data = admin.request("GET", "/register.csv")
    assert len(list(csv.reader(io.StringIO(data.lstrip("\ufeff")), delimiter=";"))) == 1 + 3
    vera = logged_in(inbox, "vera")  # viewer of Norr
    for path in ("/register", "/register.csv", "/register.pdf"):
        assert vera.request("GET", path)[0] == 404
    assert "/register" not in vera.request("GET", "/places")[2], "no link for viewers"
    assert Client(inbox.url).request("GET", "/register")[0] == 303, "a login first"


# --- PDF and the CLI --------------------------------------------------------------------

def weasyprint_missing() -> str | None:
    try:
        import weasyprint  # noqa: F401
    except (ImportError, OSError) as e:
        return f"WeasyPrint is not usable here ({e}); scripts/bootstrap.sh installs it and Pango"
    return None if shutil.which("pdftotext") else "pdftotext missing (poppler-utils; scripts/bootstrap.sh)"


def pdf_text(path: Path) -> str:
    return subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True,
                          check=True).stdout


def test_the_pdf_download_is_scoped(inbox: Inbox, tmp_path: Path) -> None:
    if reason := weasyprint_missing():
        pytest.skip(reason)
    import urllib.request

    anna = logged_in(inbox, "anna")
    with anna.opener.open(urllib.request.Request(inbox.url + "/register.pdf")) as resp:
        assert resp.headers["content-type"] == "application/pdf"
        (tmp_path / "anna.pdf").write_bytes(resp.read())
    words = " ".join(pdf_text(tmp_path / "anna.pdf").split())
    assert "Kameraregister" in words and "Norrskolan" in words and "Distrikt: Norr." in words
    assert "Söderparken" not in words and "node-b" not in words


def central_with_register(tmp_path: Path) -> Path:
    cfg = tmp_path / "central.yaml"
    cfg.write_text("database: sqlite:///central.db\nretention: {snapshots: 14d}\n")
    store = Store(f"sqlite:///{tmp_path / 'central.db'}")
    try:
        store.create_all()
        write_registry(store, parse_places(REGISTRY))
        seed_configs(store, datetime.now(UTC) - timedelta(hours=1))
    finally:
        store.close()
    return cfg


def test_cli_writes_the_register_as_csv(tmp_path: Path) -> None:
    cfg = central_with_register(tmp_path)
    run = vaktpost("register", "--config", str(cfg), "-o", "register.csv", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "3 cameras" in run.stdout
    table = list(csv.reader(io.StringIO((tmp_path / "register.csv").read_bytes().decode("utf-8-sig")),
                            delimiter=";"))
    assert [(r[3], r[4]) for r in table[1:]] == [("node-a", "gard"), ("node-b", "park"), ("node-a", "spare")]
    retention = table[0].index("Sparas centralt")
    assert table[1][retention] == "bilder 14 dygn, händelser 365 dygn", "the central config's retention"
    run = vaktpost("register", "--config", str(cfg), "-o", "en.csv", "--lang", "en", cwd=tmp_path)
    assert run.returncode == 0 and (tmp_path / "en.csv").read_text("utf-8-sig").startswith("District;Place;")


def test_cli_writes_the_register_as_pdf(tmp_path: Path) -> None:
    if reason := weasyprint_missing():
        pytest.skip(reason)
    cfg = central_with_register(tmp_path)
    run = vaktpost("register", "--config", str(cfg), "-o", "register.pdf", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    words = " ".join(pdf_text(tmp_path / "register.pdf").split())
    for expected in ("Kameraregister", "Norrskolan", "Söderparken", "Utbildningsförvaltningen", "skolfasad",
                     "Kameror som inte hör till någon plats", "Noden har inte rapporterat sin konfiguration"):
        assert expected in words, expected


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    assert "csv or .pdf" in one_error_line(vaktpost("register", "-o", "register.xlsx", cwd=tmp_path))
    assert "sv or en" in one_error_line(vaktpost("register", "-o", "r.csv", "--lang", "de", cwd=tmp_path))
    assert "no folder" in one_error_line(vaktpost("register", "-o", "nowhere/r.csv", cwd=tmp_path))
    (tmp_path / "central.yaml").write_text("database: sqlite:///missing.db\n")
    line = one_error_line(vaktpost("register", "--config", "central.yaml", "-o", "r.csv", cwd=tmp_path))
    assert "missing.db" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["central.yaml"], "nothing written"


def test_an_unused_date_does_not_change_the_words() -> None:
    # Holidays are dates the node resolved; the words describe the rule, not the dates.
    with_dates = ArmedSchedule.model_validate({**school_facade(), "holidays": [date(2027, 1, 1)]})
    assert schedule_words(with_dates, SV, "sv") == SCHOOL_FACADE_SV
