"""The situational report (PDF by WeasyPrint): rendered from a seeded place log, its pages
turned into PNG by pdftoppm (build/report/, for a person to look at) and its text read by
pdftotext. Needs poppler-utils (scripts/bootstrap.sh installs it)."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import date, timedelta
from pathlib import Path

import pytest
from measures_data import NOW, START, ZONE, lighting, prepare, seed
from test_cli import one_error_line, vaktpost

from vaktpost.broker.measures import report
from vaktpost.broker.measures.exposure import calendar_source
from vaktpost.broker.store import Store

OUT = Path(__file__).resolve().parent.parent / "build" / "report"


def _poppler() -> None:
    if not (shutil.which("pdftoppm") and shutil.which("pdftotext")):
        pytest.skip("pdftoppm/pdftotext missing: scripts/bootstrap.sh installs poppler-utils")


def seeded(store: Store) -> Store:
    prepare(store)
    lighting(store)
    seed(store, 30, START - timedelta(weeks=8), START)
    seed(store, 12, START, START + timedelta(weeks=8))
    seed(store, 6, START - timedelta(weeks=8), START + timedelta(weeks=8), type="scene_change", camera="entre")
    seed(store, 20, START - timedelta(weeks=60), START - timedelta(weeks=44))
    seed(store, 25, START - timedelta(weeks=8), START + timedelta(weeks=8), node="node-b", camera="park")
    return store


def pdf_text(pdf: Path) -> str:
    return subprocess.run(["pdftotext", "-layout", str(pdf), "-"], check=True, capture_output=True,
                          text=True).stdout


def test_district_report_pdf_pages_and_text(tmp_path: Path) -> None:
    _poppler()
    store = Store(f"sqlite:///{tmp_path / 'central.db'}")
    store.create_all()
    seeded(store)
    data = report.build(store, "Norr", date(2025, 1, 6), date(2025, 4, 27), now=NOW, zone=ZONE,
                        exposure=calendar_source())
    assert [(t.type.value, t.count) for t in data.types] == [("intrusion", 42), ("scene_change", 6)]
    assert [p.id for p in data.top] == ["norrskolan"]  # Söderparken is another district's
    pdf = report.render_pdf(report.render_html(data, "sv", ZONE))
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "norr.pdf"
    path.write_bytes(pdf)
    for old in OUT.glob("norr-*.png"):
        old.unlink()
    subprocess.run(["pdftoppm", "-r", "70", "-png", str(path), str(OUT / "norr")], check=True)
    pages = sorted(OUT.glob("norr-*.png"))
    assert len(pages) == 4, pages  # summary and charts; top places; the measure; its charts
    text = pdf_text(path)
    for words in ("Lägesrapport: Norr", "Sammanfattning", "Intrång", "Norrskolan", "Åtgärder och uppföljning",
                  "Belysning", "Färre ärenden efter åtgärden"):
        assert words in text, words
    assert re.search(r"1\s*/\s*4", text)  # page numbers
    assert "Söderparken" not in text


@pytest.mark.slow  # four commands, two PDFs
def test_report_and_export_commands(tmp_path: Path) -> None:
    _poppler()
    store = Store(f"sqlite:///{tmp_path / 'central.db'}")
    store.create_all()
    seeded(store)
    store.close()
    (tmp_path / "central.yaml").write_text("database: sqlite:///central.db\n")
    args = ("--config", "central.yaml", "--district", "Norr", "--from", "2025-01-06", "--to", "2025-04-27")
    run = vaktpost("report", *args, "-o", "norr.pdf", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "Lägesrapport: Norr" in pdf_text(tmp_path / "norr.pdf")
    english = vaktpost("report", *args, "--lang", "en", "-o", "norr-en.pdf", cwd=tmp_path)
    assert english.returncode == 0 and "Situational report: Norr" in pdf_text(tmp_path / "norr-en.pdf")
    run = vaktpost("export", "incidents", *args, "-o", "norr.csv", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    rows = (tmp_path / "norr.csv").read_text(encoding="utf-8-sig").splitlines()
    assert len(rows) == 1 + 42 + 6 and all("Söderparken" not in r for r in rows)
    # Bad input: one line each, no traceback.
    assert "Öster" in one_error_line(vaktpost("report", *args[:2], "--district", "Öster", *args[4:], "-o", "x.pdf",
                                              cwd=tmp_path))
    assert "YYYY-MM-DD" in one_error_line(vaktpost("report", *args[:4], "--from", "6 jan", "--to", "2025-04-27",
                                                   "-o", "x.pdf", cwd=tmp_path))
    assert "before it starts" in one_error_line(vaktpost("report", *args[:4], "--from", "2025-05-01", "--to",
                                                         "2025-04-27", "-o", "x.pdf", cwd=tmp_path))
    assert "nowhere" in one_error_line(vaktpost("report", *args, "-o", "nowhere/x.pdf", cwd=tmp_path))
    assert ".csv or .xlsx" in one_error_line(vaktpost("export", "events", *args, "-o", "x.txt", cwd=tmp_path))
