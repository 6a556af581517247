"""More than one consumer: retiring one (`vaktpost central retire`) and a shared group
that loses a member for good while a node publishes (docs/central.md, "Several consumers")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from mqtt_harness import Broker

from vaktpost.contract.topics import ANY, Topic

REPO = Path(__file__).resolve().parent.parent


def vaktpost(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vaktpost.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=60)


def central_config(broker: Broker, directory: Path, username: str, **mqtt: object) -> Path:
    """A central.yaml for consumer `username`, its password in a file next to it."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{username}.password").write_text(broker.password(username) + "\n")
    path = directory / f"{username}.yaml"
    path.write_text(yaml.safe_dump({
        "database": f"sqlite:///{directory / 'central.db'}",
        "mqtt": {"host": broker.host, "port": broker.port, "username": username,
                 "password_file": f"{username}.password", "reconnect_max_seconds": 1, **mqtt},
        "retention": {"events": "36500d"},
    }))
    return path


def test_retire_ends_the_consumers_session_with_the_password_from_its_config(broker: Broker,
                                                                             tmp_path: Path) -> None:
    session = dict(clean_start=False, session_expiry=3600)
    member = broker.client("central", **session)
    assert member.subscribe_wait(f"$share/central/{Topic.events(ANY, ANY)}") == 1
    member.close()  # gone, its session (and its share of the events) kept by the broker
    with broker.client("node-a") as node:
        assert node.publish_wait(Topic.events("node-a", "cam1"), b"queued for the retired member") == 0

    config = central_config(broker, tmp_path, "central", shared_group="central")
    run = vaktpost("central", "retire", "--config", str(config), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "central" in run.stdout and "ended" in run.stdout
    assert broker.password("central") not in run.stdout + run.stderr

    back = broker.client("central", **session)
    assert not back.connack_flags.session_present  # session and its queue are gone
    assert back.drain() == []


def test_retire_with_a_wrong_password_is_one_error_line(broker: Broker, tmp_path: Path) -> None:
    config = central_config(broker, tmp_path, "central")
    (tmp_path / "central.password").write_text("wrong\n")
    run = vaktpost("central", "retire", "--config", str(config), cwd=tmp_path)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "refused" in lines[0] and "central" in lines[0], run.stderr
