"""The `vaktpost` command line as a new user meets it: one clear line for every mistake,
no traceback, no file left behind, and user text printed as it is."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import yaml

from vaktpost.broker.places import import_places
from vaktpost.broker.store import Store
from vaktpost.contract.events import Event, uuid7


def vaktpost(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vaktpost.cli", *args], capture_output=True, text=True, cwd=cwd)


def one_error_line(run: subprocess.CompletedProcess) -> str:
    assert run.returncode == 2, (run.returncode, run.stderr)
    assert "Traceback" not in run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr
    return lines[0]


def test_events_without_a_place_log_is_one_line_and_creates_nothing(tmp_path: Path) -> None:
    line = one_error_line(vaktpost("events", cwd=tmp_path))
    assert "vaktpost-central.db" in line and "--config" in line
    missing = tmp_path / "elsewhere.db"
    line = one_error_line(vaktpost("events", "--database", f"sqlite:///{missing}", cwd=tmp_path))
    assert str(missing) in line
    assert list(tmp_path.iterdir()) == [], "no database file left behind"


def test_purge_of_a_missing_place_log_is_one_line_and_creates_nothing(tmp_path: Path) -> None:
    (tmp_path / "central.yaml").write_text("database: sqlite:///place-log.db\n")
    line = one_error_line(vaktpost("purge", "--config", "central.yaml", cwd=tmp_path))
    assert str(tmp_path / "place-log.db") in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["central.yaml"]


def test_unreachable_database_is_one_line(tmp_path: Path) -> None:
    url = "postgresql://nobody:secret@127.0.0.1:1/none?connect_timeout=2"
    for args in (["events"], ["places", "import", "places.yaml"]):
        line = one_error_line(vaktpost(*args, "--database", url, cwd=tmp_path))
        assert "127.0.0.1" in line and "secret" not in line, line


def test_places_import_creates_the_place_log_and_says_where(tmp_path: Path) -> None:
    places = {"places": [{"id": "hall", "name": "Hall", "kind": "schoolyard"}]}
    (tmp_path / "places.yaml").write_text(yaml.safe_dump(places))
    run = vaktpost("places", "import", "places.yaml", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "imported 1 places" in run.stdout and "vaktpost-central.db" in run.stdout
    assert (tmp_path / "vaktpost-central.db").is_file()


def test_errors_and_user_text_keep_their_square_brackets(tmp_path: Path) -> None:
    bad = tmp_path / "node.yaml"
    bad.write_text(yaml.safe_dump({"node": {"id": "Node A"}, "cameras": [{"id": "yard", "source": 0}]}))
    run = vaktpost("config", "check", str(bad), cwd=tmp_path)
    assert run.returncode == 2
    assert "'^[a-z0-9][a-z0-9_-]{0,62}$'" in run.stderr, run.stderr
    line = one_error_line(vaktpost("events", "--since", "[bold]x", cwd=tmp_path))
    assert "'[bold]x'" in line

    db = tmp_path / "log.db"
    store = Store(f"sqlite:///{db}")
    store.create_all()
    (tmp_path / "places.yaml").write_text(yaml.safe_dump({
        "places": [{"id": "hall", "name": "Hall [b]B[/b]", "kind": "schoolyard"}],
        "cameras": [{"node": "node-a", "camera": "yard", "place": "hall", "from": "2020-01-01"}]}))
    import_places(store, tmp_path / "places.yaml")
    now = datetime.now(UTC)
    store.insert_many([Event(event_id=uuid7(), seq=1, node_id="node-a", camera_id="yard", type="motion",
                             started_at=now, confidence=0.5, phase="start")])
    store.close()
    run = vaktpost("events", "--database", f"sqlite:///{db}", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "Hall [b]B[/b]" in run.stdout, run.stdout
