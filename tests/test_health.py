"""Heartbeat helpers: CPU temperature and the frame-rate meter."""

from __future__ import annotations

from pathlib import Path

from vaktpost.edge.health import FpsMeter, cpu_temperature


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_cpu_temperature_reads_millidegrees(tmp_path: Path) -> None:
    f = tmp_path / "temp"
    f.write_text("48312\n")
    assert cpu_temperature(f) == 48.3
    assert cpu_temperature(tmp_path / "missing") is None
    f.write_text("garbage")
    assert cpu_temperature(f) is None


def test_fps_over_window_and_decay() -> None:
    clock = Clock()
    m = FpsMeter(window=10.0, clock=clock)
    assert m.fps() == 0.0
    for _ in range(100):  # 5 fps for 20 s
        m.frame()
        clock.t += 0.2
    assert abs(m.fps() - 5.0) < 0.2
    clock.t += 5.0  # camera stalls: the rate falls as the window empties
    assert abs(m.fps() - 2.5) < 0.2
    clock.t += 10.0
    assert m.fps() == 0.0


def test_young_meter_is_not_reported_slow_and_counts_drops() -> None:
    clock = Clock()
    m = FpsMeter(window=10.0, clock=clock)
    for _ in range(10):  # 2 s at 5 fps
        m.frame(dropped=2)
        clock.t += 0.2
    assert abs(m.fps() - 5.0) < 0.3
    m.frame(dropped=-1)  # a source restart numbering from 0 again is no negative drop
    assert m.dropped == 20
