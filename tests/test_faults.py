"""The fault-injection suite, short: `benchmarks/faults.py --quick` on SQLite and PostgreSQL
(kill -9 of broker, consumer and node at random instants, the database cut off) must end
with every event stored once, in its last state, and none left open (docs/delivery.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quick_fault_injection_loses_nothing(broker_factory, pg_server_url: str) -> None:
    # broker_factory: skips without Mosquitto, like every test that needs one (the suite starts its own).
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "faults.py"), "--quick",
                          "--pg-url", pg_server_url], capture_output=True, text=True, cwd=ROOT, timeout=300)
    seed = run.stderr.splitlines()[0] if run.stderr else "(no seed printed)"
    assert run.returncode in (0, 1), run.stderr
    result = json.loads(run.stdout)
    assert [r["database"] for r in result["runs"]] == ["sqlite", "postgresql"], result["skipped"]
    for r in result["runs"]:
        summary = {k: r[k] for k in ("lost", "not_final", "duplicate_rows", "open_events_left")}
        assert summary == dict.fromkeys(summary, 0), (seed, r)
        assert r["node_drained"] and r["events_produced"] > 20 and sum(r["faults"].values()) >= 4, (seed, r)
    assert result["ok"], seed
