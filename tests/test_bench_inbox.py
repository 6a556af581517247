"""The inbox benchmark, tiny: `benchmarks/inbox.py` seeds 2,000 events into a fresh
PostgreSQL database and times every page a few times (the figures: docs/inbox.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_inbox_benchmark_seeds_and_times_every_page(pg_server_url: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "benchmarks" / "inbox.py"), "--database", pg_server_url, "--events", "2000",
         "--incidents", "150", "--places", "12", "--runs", "3"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 0, stderr[-3000:]
    out = json.loads(stdout)
    rows = out["rows"]
    assert rows["events"] == rows["incident_events"] == 2000
    assert rows["incidents"] == rows["incident_places"] == 150
    assert rows["places"] == 12 and 0 < rows["open_incidents"] < 150
    assert rows["audit_log"] >= 150  # an "opened" row each, and more
    pages = out["pages"]
    assert {"/ (admin)", "/ (operator)", "/?state=all&page=20", "/incidents/{random id}", "/places"} <= set(pages)
    assert all(p["p50_ms"] <= p["p95_ms"] <= p["max_ms"] for p in pages.values())
    assert out["api"] == "not built" or "/api/v1/incidents (admin)" in out["api"]
    engine = create_engine(pg_server_url)
    try:
        with engine.connect() as conn:
            names = conn.execute(text("SELECT datname FROM pg_database")).scalars().all()
    finally:
        engine.dispose()
    assert not [n for n in names if n.startswith(f"vaktpost_bench_{proc.pid}_")], "the database is dropped"
