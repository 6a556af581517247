"""Starting a node or the central service with something wrong around it (a file, a folder,
the database) is one clear line and exit code 2, never a traceback (issue 8, defect 7);
`config check` reports what it can know without starting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from sqlalchemy.engine import make_url
from test_cli import one_error_line, vaktpost

NO_BROKER = {"host": "127.0.0.1", "port": 1, "password": "x"}
NODE = {"node": {"id": "node-a"},
        "cameras": [{"id": "yard", "source": "rtsp://127.0.0.1:1/none", "detector": {"kind": "none"}}]}


def _write(path: Path, doc: dict) -> Path:
    path.write_text(yaml.safe_dump(doc))
    return path


def node_run(tmp_path: Path, *, mqtt: dict | None = None, spool: str = "outbox.db") -> tuple[str, str]:
    """(config check's output, node run's one error line) of a node config in tmp_path."""
    config = _write(tmp_path / "node.yaml", {**NODE, "mqtt": mqtt or NO_BROKER, "spool": {"path": spool}})
    check = vaktpost("config", "check", str(config), cwd=tmp_path)
    run = subprocess.run([sys.executable, "-m", "vaktpost.cli", "node", "run", "--config", str(config)],
                         capture_output=True, text=True, cwd=tmp_path, timeout=60)
    return check.stdout + check.stderr, one_error_line(run)


def test_node_with_a_missing_password_file(tmp_path: Path) -> None:
    check, line = node_run(tmp_path, mqtt={"host": "127.0.0.1", "port": 1, "password_file": "secret.txt"})
    assert "mqtt.password_file" in check and "no such file" in check
    assert "mqtt.password_file" in line and str(tmp_path / "secret.txt") in line


def test_node_whose_spool_path_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "spool").mkdir()
    check, line = node_run(tmp_path, spool="spool")
    assert "spool.path" in check and "directory" in check
    assert str(tmp_path / "spool") in line and "directory" in line


def test_node_whose_spool_path_lies_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    check, line = node_run(tmp_path, spool="afile/outbox.db")
    assert "spool.path" in check and "not a directory" in check
    assert str(tmp_path / "afile") in line and "not a directory" in line


def test_node_whose_spool_folder_cannot_be_made(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        spool = "/sys/vaktpost-test/outbox.db"  # not even root may create it
    else:
        (tmp_path / "locked").mkdir(mode=0o500)
        spool = "locked/sub/outbox.db"
    _, line = node_run(tmp_path, spool=spool)
    assert "outbox" in line and ("vaktpost-test" in line or "locked" in line), line


def central_errors(tmp_path: Path, doc: dict) -> list[str]:
    """The one error line of `vaktpost central` and of `python -m vaktpost.broker.service`."""
    config = _write(tmp_path / "central.yaml", {"mqtt": NO_BROKER, **doc})
    lines = [one_error_line(vaktpost("central", "--config", str(config), cwd=tmp_path))]
    service = subprocess.run([sys.executable, "-m", "vaktpost.broker.service", "--config", str(config)],
                             capture_output=True, text=True, cwd=tmp_path, timeout=60)
    lines.append(one_error_line(service))
    return lines


def test_central_with_postgresql_unreachable(tmp_path: Path) -> None:
    for line in central_errors(tmp_path, {"database": "postgresql://u:secret@127.0.0.1:1/x?connect_timeout=2"}):
        assert "127.0.0.1" in line and "secret" not in line, line


def test_central_with_a_missing_postgresql_database(tmp_path: Path, pg_server_url: str) -> None:
    url = make_url(pg_server_url).set(database="vaktpost_no_such_db").render_as_string(hide_password=False)
    for line in central_errors(tmp_path, {"database": url}):
        assert "vaktpost_no_such_db" in line and "does not exist" in line, line


def test_central_with_a_missing_sqlite_folder(tmp_path: Path) -> None:
    for line in central_errors(tmp_path, {"database": "sqlite:///nowhere/central.db"}):
        assert str(tmp_path / "nowhere") in line and "no such folder" in line, line
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("url", ["mysql://u@h/db", "foo://u@h/db"])
def test_central_with_an_unsupported_database_url(tmp_path: Path, url: str) -> None:
    for line in central_errors(tmp_path, {"database": url}):
        assert "not supported" in line and "sqlite or postgresql" in line, line


def test_central_with_a_missing_ca_file(tmp_path: Path) -> None:
    doc = {"database": "sqlite:///central.db", "mqtt": {**NO_BROKER, "tls": {"ca_file": "ca.pem"}}}
    for line in central_errors(tmp_path, doc):
        assert "mqtt.tls.ca_file" in line and str(tmp_path / "ca.pem") in line, line
