"""`vaktpost demo` end to end: what the README's first command shows a new user."""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import httpx
import pytest
from mqtt_harness import wait_until
from rich.console import Console

from vaktpost.broker.config import load_central
from vaktpost.broker.incidents.service import list_incidents
from vaktpost.broker.store import Store
from vaktpost.demo import run_demo
from vaktpost.edge.evidence.snapshot import jpeg_segments

SCHOOLYARD = "Ekbacken school, schoolyard"  # node-a's place in the demo's registry


@pytest.mark.slow
def test_demo_logs_intrusions_a_scene_change_and_anonymised_snapshots(tmp_path: Path) -> None:
    out = io.StringIO()
    assert run_demo(tmp_path, nodes=2, console=Console(file=out, width=200)) == 0
    text = out.getvalue()
    assert "5/5 place log summary" in text and "0 dead letters" in text

    central = load_central(tmp_path / "central.yaml")  # kept for `vaktpost users add` and `vaktpost inbox`
    assert central.database == f"sqlite:///{tmp_path / 'central.db'}"
    assert central.inbox.secret_key_file == tmp_path / "inbox.key"
    for secret in ("central.yaml", "inbox.key"):
        assert (tmp_path / secret).stat().st_mode & 0o777 == 0o600, secret
    store = Store(central.database)
    try:
        incidents = list_incidents(store)
        by_type: dict[str, set[tuple[str, str | None]]] = {}
        for i in incidents:
            by_type.setdefault(i.type.value, set()).update((p.id, p.district) for p in i.places)
        assert by_type["intrusion"] >= {("ekbacken-school-yard", "Norra")}  # grouped, placed, districted
        assert by_type["scene_change"] == {("linden-park-pavilion", "Södra")}
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

    add = subprocess.run([sys.executable, "-m", "vaktpost.cli", "users", "add", "anna", "--config",
                          str(tmp_path / "central.yaml"), "--role", "operator", "--district", "Norra",
                          "--password-stdin"], input="hemligt-ord\n", capture_output=True, text=True)
    assert add.returncode == 0, add.stderr


@pytest.mark.slow
def test_demo_without_workdir_names_no_folder_it_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the demo's temp dir, where we can look
    out = io.StringIO()
    assert run_demo(None, nodes=1, console=Console(file=out, width=400)) == 0
    assert list(tmp_path.iterdir()) == [], "the temp dir is gone"
    summary = out.getvalue().split("5/5 place log summary")[1]
    assert str(tmp_path) not in summary, summary
    assert "anonymised snapshots" in summary and "removed" in summary and "--workdir" in summary


@pytest.mark.slow
def test_demo_serves_the_inbox_with_a_demo_login_until_ctrl_c(tmp_path: Path) -> None:
    temp = tmp_path / "tmp"  # the demo's temp dir goes here, where we can look
    temp.mkdir()
    stderr = tmp_path / "stderr.txt"
    with stderr.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "vaktpost.cli", "demo", "--nodes", "1"],
                                stdout=subprocess.PIPE, stderr=err, text=True,
                                env={**os.environ, "TMPDIR": str(temp), "COLUMNS": "200"})
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        wait_until(lambda: any(s.startswith("login:") for s in lines) or proc.poll() is not None,
                   timeout=240, interval=0.2, message="the demo's inbox and login lines")
        out = "".join(lines)
        url = re.search(r"^inbox: (http://127\.0\.0\.1:\d+/)$", out, re.M)
        login = re.search(r"^login: (\S+) / (\S+)", out, re.M)
        assert url and login, out + stderr.read_text()
        with httpx.Client(base_url=url[1], timeout=10) as client:
            form = client.get("/login")
            token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', form.text)
            assert form.status_code == 200 and token, form.text
            start = client.post("/login", data={"csrf_token": token[1], "name": login[1], "password": login[2],
                                                "next": "/"}, follow_redirects=True)
            assert start.status_code == 200 and "/login" not in start.url.path, start.text
            assert SCHOOLYARD in start.text  # the start page, whichever it is, names the demo's place
            assert SCHOOLYARD in client.get("/places").text
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0, stderr.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # (onnxruntime keeps a session id file, .ses, in the temp folder: not the demo's to remove)
    assert list(temp.glob("vaktpost-demo-*")) == [], "the demo's temp dir is gone"


def test_demo_on_a_taken_port_is_one_line_before_anything_runs(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = subprocess.run([sys.executable, "-m", "vaktpost.cli", "demo", "--workdir", str(tmp_path / "w"),
                              "--port", str(port)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.stderr.count("\n") == 1 and f"cannot listen on 127.0.0.1:{port}" in run.stderr, run.stderr
    assert run.stdout == "" and not (tmp_path / "w").exists()  # failed before making anything
