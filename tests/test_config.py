import subprocess
import sys

import pytest
import yaml

from vaktpost.contract.config import ConfigError
from vaktpost.edge.config import load, parse
from vaktpost.edge.config.detectors import DetectorSettings
from vaktpost.edge.config.example import example_yaml
from vaktpost.edge.config.track import TrackerSettings


def base(**camera) -> dict:
    cam = {"id": "yard", "source": "clip.avi", **camera}
    return {"node": {"id": "node-a"}, "cameras": [cam]}


def error_of(data) -> str:
    with pytest.raises(ConfigError) as e:
        parse(data)
    return str(e.value)


def test_error_names_key_and_problem():
    data = base(zones=[{"name": "a", "polygon": [[0, 0], [1, 0], [1, 1]]},
                       {"name": "b", "polygon": [[0, 0], [1, 1]]}])
    assert "cameras[0].zones[1].polygon: needs at least 3 points" in error_of(data)


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d["cameras"][0].update(privacy_masks=[[[0, 0], [2, 0], [1, 1]]]),
     "cameras[0].privacy_masks[0]: point [2.0, 0.0] is outside 0..1"),
    (lambda d: d["node"].update(timezone="Mars/Olympus"), "node.timezone: unknown time zone"),
    (lambda d: d["cameras"][0].update(fps=0), "cameras[0].fps"),
    (lambda d: d.update(spool={"when_full": "explode"}), "spool.when_full"),
    (lambda d: d.update(mqtt={"password": "a", "password_file": "/x"}), "give password or password_file"),
    (lambda d: d.update(cameras=[]), "cameras"),
    (lambda d: d["cameras"].append({"id": "yard", "source": 0}), "camera ids must be unique"),
    (lambda d: d.update(colour="blue"), "colour: Extra inputs are not permitted"),
    (lambda d: d["node"].update(id="central"), "node.id: 'central' is reserved"),
    (lambda d: d["cameras"][0].update(zones=[{"name": "bow", "polygon": [[0, 0], [1, 1], [1, 0], [0, 1]]}]),
     "cameras[0].zones[0].polygon: edges cross each other"),
    (lambda d: d["cameras"][0].update(privacy_masks=[[[0.1, 0.1], [0.9, 0.1], [0.1, 0.9], [0.9, 0.9]]]),
     "cameras[0].privacy_masks[0]: edges cross each other"),
    (lambda d: d["cameras"][0].update(zones=[{"name": "z", "polygon": [[0, 0], [1, 0], [1, 1]],
                                              "armed": [{"days": ["funday"], "from": "18:00", "to": "07:00"}]}]),
     "cameras[0].zones[0].armed"),
])
def test_bad_values_are_reported_by_key(mutate, expected):
    data = base()
    mutate(data)
    assert expected in error_of(data)


def test_unquoted_yaml_times_are_read_as_times():
    text = """
node: {id: node-a}
cameras:
  - id: yard
    source: clip.avi
    zones:
      - name: yard
        polygon: [[0, 0], [1, 0], [1, 1]]
        armed: [{days: [mon], from: 18:00, to: 24:00}]
"""
    cfg = parse(yaml.safe_load(text))
    r = cfg.cameras[0].zones[0].schedule.ranges[0]
    assert (r.from_.hour, r.from_.minute, r.to) == (18, 0, "24:00")


def test_example_is_valid_and_commented():
    text = example_yaml()
    cfg = parse(yaml.safe_load(text))
    assert cfg.cameras[0].zones[0].schedule.exceptions
    assert "# Processing rate; frames are dropped, not queued" in text


def test_load_reports_unreadable_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("node: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load(bad)


def test_cli_config_check_exit_codes(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(example_yaml().replace("/etc/vaktpost/", f"{tmp_path}/"))  # files it names exist
    (tmp_path / "mqtt-password").write_text("secret\n")
    (tmp_path / "ca.crt").write_text("x\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(base(fps=-1)))
    def run(f):
        return subprocess.run([sys.executable, "-m", "vaktpost.cli", "config", "check", str(f)],
                              capture_output=True, text=True)
    ok, ko = run(good), run(bad)
    assert ok.returncode == 0 and "OK" in ok.stdout
    assert ko.returncode == 2 and "cameras[0].fps" in ko.stderr


def test_example_lists_every_option():
    """The example is the reader's list of options: each field of each section appears."""
    from pydantic import BaseModel

    from vaktpost.edge.config import NodeConfig
    from vaktpost.edge.config.example import _flatten

    text = example_yaml()
    missing, seen = [], set()

    def walk(model: type[BaseModel]) -> None:
        if model in seen:
            return
        seen.add(model)
        for name, f in model.model_fields.items():
            if f"{f.alias or name}:" not in text:
                missing.append(f"{model.__name__}.{name}")
            for sub in _flatten(f.annotation):
                if isinstance(sub, type) and issubclass(sub, BaseModel):
                    walk(sub)

    walk(NodeConfig)
    assert not missing
    assert len(seen) > 10  # the walk reached the nested sections


def test_a_concave_polygon_and_one_with_a_repeated_closing_point_are_fine():
    concave = [[0.1, 0.1], [0.9, 0.1], [0.5, 0.5], [0.9, 0.9], [0.1, 0.9]]
    closed = [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.1]]
    cfg = parse(base(zones=[{"name": "c", "polygon": concave}], privacy_masks=[closed]))
    assert cfg.cameras[0].zones[0].polygon == concave


def node_with_files(tmp_path) -> tuple:
    """A config in conf/ naming files by relative paths, and a working directory elsewhere."""
    conf = tmp_path / "conf"
    conf.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    data = {
        "node": {"id": "node-a"},
        "mqtt": {"password_file": "secrets/pw", "tls": {"ca_file": "ca.pem"}},
        "spool": {"path": "spool/outbox.db"},
        "cameras": [{"id": "yard", "source": "clips/yard.avi"}, {"id": "gate", "source": "rtsp://cam/1"},
                    {"id": "hall", "source": 0}, {"id": "door", "source": "/dev/video1"}],
    }
    (conf / "node.yaml").write_text(yaml.safe_dump(data))
    return conf, elsewhere


def test_relative_paths_are_relative_to_the_config_file(tmp_path, monkeypatch):
    conf, elsewhere = node_with_files(tmp_path)
    monkeypatch.chdir(elsewhere)
    cfg = load("../conf/node.yaml")
    assert cfg.spool.path == conf / "spool/outbox.db"
    assert cfg.mqtt.password_file == conf / "secrets/pw"
    assert cfg.mqtt.tls.ca_file == conf / "ca.pem"
    assert [c.source for c in cfg.cameras] == [str(conf / "clips/yard.avi"), "rtsp://cam/1", 0, "/dev/video1"]


def test_config_check_reports_missing_files_but_not_devices_or_urls(tmp_path):
    conf, elsewhere = node_with_files(tmp_path)
    def check():
        return subprocess.run([sys.executable, "-m", "vaktpost.cli", "config", "check", str(conf / "node.yaml")],
                              capture_output=True, text=True, cwd=elsewhere)
    run = check()
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert f"mqtt.password_file: {conf / 'secrets/pw'}: no such file" in run.stderr
    assert f"mqtt.tls.ca_file: {conf / 'ca.pem'}: no such file" in run.stderr
    assert f"cameras[0].source: {conf / 'clips/yard.avi'}: no such file" in run.stderr
    assert "cameras[1]" not in run.stderr and "cameras[2]" not in run.stderr and "cameras[3]" not in run.stderr
    for f in ("secrets/pw", "ca.pem", "clips/yard.avi"):
        (conf / f).parent.mkdir(exist_ok=True)
        (conf / f).write_text("x\n")
    run = check()
    assert run.returncode == 0 and "OK" in run.stdout, run.stderr


def test_a_removed_detector_option_says_what_replaced_it() -> None:
    with pytest.raises(ValueError, match="full_frame_above was removed: a busy frame is now covered by tiles"):
        DetectorSettings.model_validate({"full_frame_above": 0.5})


def test_a_removed_tracker_option_says_what_replaced_it() -> None:
    with pytest.raises(ValueError, match="min_hits was removed: the tracker now gates by predicted position"):
        TrackerSettings.model_validate({"min_hits": 3})
