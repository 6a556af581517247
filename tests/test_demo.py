"""`vaktpost demo` end to end: what the README's first command shows a new user."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import pytest
from rich.console import Console

from vaktpost.broker.store import Store
from vaktpost.demo import run_demo
from vaktpost.edge.evidence.snapshot import jpeg_segments


@pytest.mark.slow
def test_demo_logs_intrusions_a_scene_change_and_anonymised_snapshots(tmp_path: Path) -> None:
    out = io.StringIO()
    assert run_demo(tmp_path, nodes=2, console=Console(file=out, width=200)) == 0
    text = out.getvalue()
    assert "5/5 place log summary" in text and "0 dead letters" in text

    store = Store(f"sqlite:///{tmp_path / 'central.db'}")
    try:
        counts = {(r["place_id"], r["type"]): r["count"] for r in store.summary_by_place()}
        assert counts.get(("ekbacken-school-yard", "intrusion")) == 2  # two people cross the armed yard
        assert counts.get(("linden-park-pavilion", "scene_change")) == 1  # the tag on the wall stays
        assert all(place is not None for place, _ in counts)  # every event against a place
        with_snapshot = [r for r in store.query_events() if r["has_snapshot"]]
        assert {r["type"] for r in with_snapshot} >= {"intrusion", "scene_change"}
    finally:
        store.close()
    files = sorted((tmp_path / "snapshots").glob("*.jpg"))
    assert len(files) == len(with_snapshot)
    for f in files:
        markers = jpeg_segments(f.read_bytes())
        assert not set(range(0xE0, 0xF0)) & set(markers) and 0xFE not in markers  # no metadata


@pytest.mark.slow
def test_demo_without_workdir_names_no_folder_it_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the demo's temp dir, where we can look
    out = io.StringIO()
    assert run_demo(None, nodes=1, console=Console(file=out, width=400)) == 0
    assert list(tmp_path.iterdir()) == [], "the temp dir is gone"
    summary = out.getvalue().split("5/5 place log summary")[1]
    assert str(tmp_path) not in summary, summary
    assert "anonymised snapshots" in summary and "removed" in summary and "--workdir" in summary
