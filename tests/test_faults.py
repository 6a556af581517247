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
@pytest.mark.timeout(420)
def test_quick_fault_injection_loses_nothing(broker_factory, pg_server_url: str, tmp_path: Path) -> None:
    # broker_factory: skips without Mosquitto, like every test that needs one (the suite starts its own).
    err = tmp_path / "faults.err"
    with open(err, "w") as stderr:
        proc = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "faults.py"), "--quick",
                                 "--pg-url", pg_server_url], stdout=subprocess.PIPE, stderr=stderr, text=True,
                                cwd=ROOT)
        try:
            out, _ = proc.communicate(timeout=360)
        except subprocess.TimeoutExpired:
            proc.terminate()  # it stops its broker, consumer and node, and drops its database
            try:
                proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
            pytest.fail(f"faults.py --quick did not finish in 360 s:\n{err.read_text()[-3000:]}")
    seed = err.read_text().splitlines()[0] if err.read_text() else "(no seed printed)"
    assert proc.returncode in (0, 1), err.read_text()[-3000:]
    result = json.loads(out)
    assert [r["database"] for r in result["runs"]] == ["sqlite", "postgresql"], result["skipped"]
    for r in result["runs"]:
        summary = {k: r[k] for k in ("lost", "not_final", "duplicate_rows", "open_events_left")}
        assert summary == dict.fromkeys(summary, 0), (seed, r)
        assert r["node_drained"] and r["events_produced"] > 20 and sum(r["faults"].values()) >= 4, (seed, r)
    assert result["ok"], seed
