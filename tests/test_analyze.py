"""`vaktpost analyze`: the node pipeline over a generated video, final-state events as JSON lines."""

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from vaktpost.contract.events import Event
from vaktpost.edge.analyze import analyze
from vaktpost.edge.config import parse
from vaktpost.scenes import Figure, Scene, demo_scenes, write_video

T0 = datetime(2026, 11, 26, 19, 0, tzinfo=UTC)


def node_config(video, **camera) -> dict:
    cam = {"id": "yard", "source": str(video), "fps": 5,
           "zones": [{"name": "ground", "polygon": [[0, 0.45], [1, 0.45], [1, 1], [0, 1]]}], **camera}
    return {"node": {"id": "node-a"}, "cameras": [cam]}


@pytest.fixture(scope="module")
def schoolyard(tmp_path_factory):
    scene = demo_scenes()["schoolyard"]
    return scene, write_video(scene, tmp_path_factory.mktemp("video") / "schoolyard.avi")


def test_one_event_per_walker_and_none_for_lights_on(schoolyard):
    scene, video = schoolyard
    cfg = parse(node_config(video))
    result = analyze(video, cfg, cfg.cameras[0], T0)
    motion = [e for e in result.events if e.type == "motion"]
    assert len(motion) == len(scene.figures)
    for ev, fig in zip(motion, sorted(scene.figures, key=lambda f: f.start_s)):
        start = (ev.started_at - T0).total_seconds()
        end = (ev.ended_at - T0).total_seconds()
        assert fig.start_s - 0.5 <= start <= fig.start_s + 1.5
        assert fig.end_s - 2.0 <= end <= fig.end_s + 0.5
        assert ev.zone == "ground" and 0 < ev.confidence <= 1
    # The lights-on step falls between the walkers: no event covers it.
    lights = T0 + timedelta(seconds=scene.lights_on_at)
    assert not any(e.started_at <= lights <= e.ended_at for e in motion)
    assert [e.seq for e in result.events] == sorted(e.seq for e in result.events)


def test_privacy_mask_over_the_path_hides_the_walker(tmp_path):
    scene = Scene(duration_s=8, figures=[Figure(1, 7, [(0.1, 0.75), (0.9, 0.75)])], noise_sigma=1.0)
    video = write_video(scene, tmp_path / "walk.avi")
    whole_bottom = [[0, 0.4], [1, 0.4], [1, 1], [0, 1]]
    masked = parse(node_config(video, privacy_masks=[whole_bottom]))
    unmasked = parse(node_config(video))
    assert analyze(video, unmasked, unmasked.cameras[0], T0).events
    assert analyze(video, masked, masked.cameras[0], T0).events == []


def test_cli_writes_final_state_json_lines(schoolyard, tmp_path):
    _, video = schoolyard
    cfg_file = tmp_path / "node.yaml"
    cfg_file.write_text(yaml.safe_dump(node_config(video)))
    out = tmp_path / "events.jsonl"
    run = subprocess.run([sys.executable, "-m", "vaktpost.cli", "analyze", str(video), "--config", str(cfg_file),
                          "--start-time", "2026-11-26T20:00:00", "--out", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    lines = out.read_text().splitlines()
    events = [Event.from_payload(line) for line in lines]
    assert len(events) == 2 and len({e.event_id for e in events}) == 2
    assert all(e.ended_at is not None for e in events)  # final state only
    # A start time without zone is the node's local time (Europe/Stockholm, UTC+1 in November).
    assert events[0].started_at.hour == 19
    assert json.loads(lines[0])["schema"] == "vaktpost.event/2"
    assert all(e.phase == "end" for e in events)
    assert "2 motion" in run.stderr and "written to" in run.stderr


@pytest.mark.parametrize("args, message", [
    (["missing.avi"], "no such file"),
    (["VIDEO", "--camera", "nope"], "no camera 'nope'"),
    (["VIDEO", "--start-time", "yesterday"], "--start-time: not ISO 8601"),
])
def test_cli_bad_input_is_a_clear_error(schoolyard, tmp_path, args, message):
    _, video = schoolyard
    cfg_file = tmp_path / "node.yaml"
    cfg_file.write_text(yaml.safe_dump(node_config(video)))
    args = [str(video) if a == "VIDEO" else str(tmp_path / a) if a.endswith(".avi") else a for a in args]
    run = subprocess.run([sys.executable, "-m", "vaktpost.cli", "analyze", *args, "--config", str(cfg_file)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert message in run.stderr


def test_corrupt_video_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "corrupt.avi"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00AVI garbage" * 100)
    cfg_file = tmp_path / "node.yaml"
    cfg_file.write_text(yaml.safe_dump(node_config(bad)))
    run = subprocess.run([sys.executable, "-m", "vaktpost.cli", "analyze", str(bad), "--config", str(cfg_file)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "cannot open" in run.stderr


def test_cli_motion_boxes_per_analysed_frame_in_video_pixels(schoolyard, tmp_path):
    scene, video = schoolyard  # 640x360 at 10 fps, analysed at 5 fps: every second decoded frame
    cfg_file = tmp_path / "node.yaml"
    cfg_file.write_text(yaml.safe_dump(node_config(video)))
    boxes_file = tmp_path / "motion.jsonl"
    run = subprocess.run([sys.executable, "-m", "vaktpost.cli", "analyze", str(video), "--config", str(cfg_file),
                          "--start-time", "2026-11-26T20:00:00", "--out", str(tmp_path / "events.jsonl"),
                          "--motion-boxes", str(boxes_file)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    rows = [json.loads(line) for line in boxes_file.read_text().splitlines()]
    assert [r["frame"] for r in rows] == list(range(0, scene.frame_count, 2))
    hits = 0
    for r in rows:
        t = scene.frame_time(r["frame"])
        truth = [(x1 * scene.width, y1 * scene.height, x2 * scene.width, y2 * scene.height)
                 for x1, y1, x2, y2 in scene.truth_boxes(t)]
        for x1, y1, x2, y2 in r["boxes"]:
            assert all(isinstance(v, int) for v in (x1, y1, x2, y2))
            assert 0 <= x1 < x2 <= scene.width and 0 <= y1 < y2 <= scene.height
            # Every box lies on a walker (no false motion in this scene), in pixels, not normalised.
            assert any(min(x2, tx2) - max(x1, tx1) > 0.5 * (x2 - x1) and min(y2, ty2) - max(y1, ty1) > 0
                       for tx1, ty1, tx2, ty2 in truth)
            hits += 1
    assert hits >= 0.8 * sum(1 for r in rows if scene.truth_boxes(scene.frame_time(r["frame"])))
    bad = subprocess.run([sys.executable, "-m", "vaktpost.cli", "analyze", str(video), "--config", str(cfg_file),
                          "--motion-boxes", str(tmp_path / "no" / "such" / "dir" / "m.jsonl")],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--motion-boxes: cannot write" in bad.stderr
