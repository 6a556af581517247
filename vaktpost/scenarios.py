"""A labelled set of synthetic clips for evaluating the node's analysers end to end.

Each scenario is a `Scene` (vaktpost/scenes.py), the wall-clock time of its
first frame, the node config to analyse it with, and its ground truth: the
events that must start within a time window, and the event types that must
not occur at all (false alarms). `generate(dir)` writes, per scenario,
``NAME.avi`` (10 fps, 640x360, Motion-JPEG) and ``NAME.json``::

    {"name": "lens_covered", "description": "...", "video": "lens_covered.avi",
     "start_time": "2024-05-14T21:00:00+02:00", "duration_s": 30.0,
     "config": {...a node config...},
     "expected": [{"type": "tamper", "subtype": "covered", "from_s": 8.0, "to_s": 16.0, "must": true}],
     "forbidden": ["scene_change", "intrusion", "loitering"]}

`from_s`/`to_s` bound when the event must *start*, in seconds from the first
frame. Windows are generous on purpose: they encode what must be found, not
how fast (a tamper detector that waits a few seconds to be sure still
passes). vaktpost/evaluate.py scores analysis output against these files.

All clips share one node config (one zone `yard` over the ground, armed
18:00-06:00 every day, loitering after 20 s) and differ in the scene and the
time of day, so schedules matter: the same crossing is an intrusion at 21:00
and nothing at 10:00. The date is a Tuesday in May, when Stockholm is still
light at 21:00, which is why armed clips may be daylight pictures.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from vaktpost.scenes import (
    CameraEffect,
    CameraTurn,
    Figure,
    FigureKind,
    Graffiti,
    LensCover,
    LensSmear,
    Prop,
    Scene,
    write_video,
)

TIMEZONE = "Europe/Stockholm"
DATE = (2024, 5, 14)  # a Tuesday; the zone is armed every day, so the weekday does not matter
ZONE = "yard"
YARD = [[0.0, 0.6], [1.0, 0.6], [1.0, 1.0], [0.0, 1.0]]  # the ground in front of the building
ARMED = [{"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "from": "18:00", "to": "06:00"}]
LOITER_SECONDS = 20.0
SETTLE_SECONDS = 5.0
ANALYSIS_FPS = 5.0
PEOPLE = ("intrusion", "loitering")  # event types that need a person
SCENE_ALARMS = ("tamper", "scene_change")
QUICK = ("intrusion_armed", "intrusion_disarmed", "lens_covered", "lights_on")


@dataclass(frozen=True)
class Expected:
    """An event that must start between from_s and to_s (seconds from the first frame)."""

    type: str
    from_s: float
    to_s: float
    subtype: str | None = None
    zone: str | None = None
    must: bool = True

    @classmethod
    def from_json(cls, data: object) -> Expected:
        """Parse one entry of a clip's "expected" list; ValueError says what is wrong."""
        if not isinstance(data, dict):
            raise ValueError(f"expected an object, got {data!r}")
        unknown = set(data) - {"type", "subtype", "zone", "from_s", "to_s", "must"}
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)}")
        try:
            out = cls(type=str(data["type"]), from_s=float(data["from_s"]), to_s=float(data["to_s"]),
                      subtype=data.get("subtype"), zone=data.get("zone"), must=bool(data.get("must", True)))
        except KeyError as e:
            raise ValueError(f"missing key {e.args[0]!r}") from None
        if out.to_s < out.from_s:
            raise ValueError(f"window {out.from_s}..{out.to_s} s ends before it starts")
        return out

    def label(self) -> str:
        what = self.type + (f"/{self.subtype}" if self.subtype else "") + (f"@{self.zone}" if self.zone else "")
        return f"{what} [{self.from_s:g}-{self.to_s:g} s]"

    def to_json(self) -> dict:
        out: dict = {"type": self.type}
        if self.subtype is not None:
            out["subtype"] = self.subtype
        if self.zone is not None:
            out["zone"] = self.zone
        out.update(from_s=self.from_s, to_s=self.to_s, must=self.must)
        return out


@dataclass
class Scenario:
    name: str
    description: str
    scene: Scene
    start_time: datetime
    expected: list[Expected] = field(default_factory=list)
    forbidden: list[str] = field(default_factory=list)
    config_overrides: dict = field(default_factory=dict)  # merged into the camera section

    @property
    def video(self) -> str:
        return f"{self.name}.avi"

    def config(self) -> dict:
        return node_config(self.video, **self.config_overrides)

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "video": self.video,
            "start_time": self.start_time.isoformat(),
            "duration_s": self.scene.duration_s,
            "config": self.config(),
            "expected": [e.to_json() for e in self.expected],
            "forbidden": list(self.forbidden),
        }


def node_config(source: str, **camera: object) -> dict:
    """The node config every clip is analysed with; `camera` keys override the camera section.

    `detector`, `rules`, `tamper` and `scene_change` are camera sections that the
    analysers add to edge/config/__init__.py; everything else is accepted today.
    """
    cam: dict = {
        "id": "cam",
        "source": source,
        "fps": ANALYSIS_FPS,
        "zones": [{"name": ZONE, "polygon": YARD, "armed": ARMED}],
        "detector": {"kind": "ssd"},
        "rules": {"loiter_seconds": LOITER_SECONDS},
        "tamper": {},  # present = on, with its defaults
        "scene_change": {"settle_seconds": SETTLE_SECONDS},
    }
    cam.update(camera)
    return {"node": {"id": "eval-node", "timezone": TIMEZONE}, "cameras": [cam]}


def local(hour: int, minute: int = 0) -> datetime:
    return datetime(*DATE, hour, minute, tzinfo=ZoneInfo(TIMEZONE))


def _scene(duration_s: float, seed: int, backdrop: str = "schoolyard", **kw: object) -> Scene:
    return Scene(width=640, height=360, fps=10.0, duration_s=duration_s, seed=seed,
                 noise_sigma=3.0, backdrop=backdrop, **kw)  # type: ignore[arg-type]


def _all_alarms(*, but: Iterable[str] = ()) -> list[str]:
    skip = set(but)
    return [t for t in (*PEOPLE, *SCENE_ALARMS) if t not in skip]


# --- the scenarios ----------------------------------------------------------------


def _crossings() -> tuple[Scenario, Scenario]:
    # Two people cross one after the other: the cameraman left to right near the
    # camera, then the astronaut right to left further back. (The SSD model finds the
    # cameraman's mirror image, walking left, less surely: he only walks right.)
    scene = _scene(25.0, seed=21, figures=[
        Figure(2.0, 11.0, [(-0.1, 0.86), (1.1, 0.82)], height=0.42, kind="cameraman", name="cameraman"),
        Figure(13.0, 22.0, [(1.1, 0.74), (-0.1, 0.76)], height=0.36, kind="astronaut", name="astronaut"),
    ])
    armed = Scenario(
        "intrusion_armed",
        "Two people cross the yard one after the other at 21:00, while the yard is armed: "
        "one intrusion each.",
        scene, local(21),
        expected=[Expected("intrusion", 2.0, 9.0, zone=ZONE), Expected("intrusion", 13.0, 20.0, zone=ZONE)],
        forbidden=_all_alarms(but=["intrusion"]),
    )
    disarmed = Scenario(
        "intrusion_disarmed",
        "The same two crossings at 10:00, when the yard is not armed: no intrusion, and nobody "
        "stays long enough to loiter.",
        scene, local(10),
        forbidden=_all_alarms(),
    )
    return armed, disarmed


def _loitering() -> Scenario:
    scene = _scene(50.0, seed=22, backdrop="park", figures=[
        Figure(2.0, 43.0, [(-0.1, 0.8), (0.45, 0.8), (0.45, 0.8), (1.1, 0.84)], times=[2.0, 7.0, 37.0, 43.0],
               height=0.4, kind="cameraman", name="loiterer"),
    ])
    return Scenario(
        "loitering",
        f"At 10:00 (not armed) a man walks in, stands for 30 s (about 40 s in the zone, loitering "
        f"threshold {LOITER_SECONDS:g} s) and walks off: one loitering event, started when he entered.",
        scene, local(10),
        expected=[Expected("loitering", 2.0, 12.0, zone=ZONE)],
        forbidden=_all_alarms(but=["loitering"]),
    )


def _brief_stop() -> Scenario:
    scene = _scene(30.0, seed=23, backdrop="park", figures=[
        Figure(2.0, 17.0, [(-0.1, 0.82), (0.5, 0.82), (0.5, 0.82), (1.1, 0.8)], times=[2.0, 6.5, 12.5, 17.0],
               height=0.4, kind="astronaut", name="walker"),
    ])
    return Scenario(
        "brief_stop",
        f"At 10:00 someone walks in, stops for 6 s and walks on: about 14 s in the zone, below the "
        f"{LOITER_SECONDS:g} s loitering threshold. Nothing to report.",
        scene, local(10),
        forbidden=_all_alarms(),
    )


def _graffiti() -> Scenario:
    strokes = [
        [(0.10, 0.46), (0.14, 0.30), (0.18, 0.46), (0.22, 0.30)],  # a zigzag tag ...
        [(0.25, 0.31), (0.25, 0.47), (0.33, 0.47)],  # ... and letters beside it
        [(0.36, 0.30), (0.36, 0.47), (0.44, 0.38), (0.36, 0.30)],
    ]
    scene = _scene(40.0, seed=24, figures=[
        Figure(2.0, 18.0, [(-0.1, 0.66), (0.3, 0.63), (0.3, 0.63), (1.1, 0.68)], times=[2.0, 5.5, 14.5, 18.0],
               height=0.36, kind="astronaut", name="painter"),
    ], graffiti=[Graffiti(6.0, 14.0, strokes)])
    return Scenario(
        "graffiti",
        "At 10:00 someone walks to the wall, paints a bright tag on it over 8 s and leaves; "
        "the paint stays: a scene change.",
        scene, local(10),
        expected=[Expected("scene_change", 6.0, 35.0)],
        forbidden=_all_alarms(but=["scene_change"]),
    )


def _bag_left() -> Scenario:
    scene = _scene(35.0, seed=25, figures=[
        Figure(2.0, 14.0, [(-0.1, 0.8), (0.45, 0.8), (0.45, 0.8), (1.1, 0.78)], times=[2.0, 7.0, 9.0, 14.0],
               height=0.4, kind="cameraman", name="walker"),
    ], props=[Prop("bag", 0.52, 0.81, size=0.09, appears_s=8.0)])
    return Scenario(
        "bag_left",
        "At 10:00 a man walks in, stops, puts a bag down beside him and walks on; the bag stays: "
        "a scene change.",
        scene, local(10),
        expected=[Expected("scene_change", 8.0, 30.0)],
        forbidden=_all_alarms(but=["scene_change"]),
    )


def _object_removed() -> Scenario:
    scene = _scene(35.0, seed=26, backdrop="park", figures=[
        Figure(2.0, 14.0, [(1.1, 0.78), (0.68, 0.77), (0.68, 0.77), (-0.1, 0.8)], times=[2.0, 6.0, 8.0, 14.0],
               height=0.4, kind="astronaut", name="taker"),
    ], props=[Prop("bin", 0.6, 0.75, size=0.13, removed_s=7.5)])
    return Scenario(
        "object_removed",
        "At 10:00 someone walks to the bin that has stood there from the start, takes it away "
        "and leaves: a scene change.",
        scene, local(10),
        expected=[Expected("scene_change", 7.0, 30.0)],
        forbidden=_all_alarms(but=["scene_change"]),
    )


def _tamper(name: str, description: str, subtype: str, effect: CameraEffect, duration_s: float,
            seed: int, backdrop: str = "schoolyard", window: tuple[float, float] = (8.0, 18.0)) -> Scenario:
    scene = _scene(duration_s, seed=seed, backdrop=backdrop, camera_effects=[effect])
    return Scenario(
        name, description, scene, local(21),
        expected=[Expected("tamper", *window, subtype=subtype)],
        # The view changes as a whole: that is tamper, and must not also count as a scene change.
        forbidden=_all_alarms(but=["tamper"]),
    )


def _tampering() -> list[Scenario]:
    return [
        _tamper("lens_covered", "At 21:00 the lens is covered at 8 s (dark within 0.5 s), stays covered "
                "for 10 s, then uncovered.", "covered", LensCover(8.0, 18.0, ramp_s=0.5), 30.0, seed=31,
                window=(8.0, 16.0)),
        _tamper("lens_smeared", "At 21:00 the lens is smeared at 8 s (blur and haze within 1 s) and "
                "stays so.", "defocused", LensSmear(8.0, ramp_s=1.0), 25.0, seed=32),
        _tamper("camera_turned", "At 21:00 the camera is pushed at 8 s: the view shifts 15 % sideways, "
                "4 % down and rotates 5 degrees within 1 s, and stays.", "moved",
                CameraTurn(8.0, ramp_s=1.0, shift=(0.15, 0.04), angle_deg=5.0), 25.0, seed=33, backdrop="park"),
    ]


def _nuisances() -> list[Scenario]:
    """Changes of light and weather that must raise nothing."""
    return [
        Scenario("lights_on", "At 21:30 the floodlights switch on at 10 s (brightness x1.4 + 10 in one "
                 "frame). Nothing to report.", _scene(25.0, seed=41, lights_on_at=10.0), local(21, 30),
                 forbidden=_all_alarms()),
        Scenario("daylight_drift", "Dawn at 05:00 (armed): the picture brightens by 30 % over a minute. "
                 "Nothing to report.", _scene(60.0, seed=42, backdrop="park", drift=0.005), local(5),
                 forbidden=_all_alarms()),
        Scenario("rain", "Rain at 23:00 (armed): thin bright slanted streaks, new every frame, and more "
                 "sensor noise. Nothing to report.", _scene(30.0, seed=43, rain=0.6), local(23),
                 forbidden=_all_alarms()),
        Scenario("night_ir", "Dusk at 21:40 (armed): the picture darkens by 40 % over 20 s, then the "
                 "camera switches to night mode (grayscale under its IR lamp, harder contrast). "
                 "Nothing to report.",
                 _scene(35.0, seed=44, backdrop="park", drift=-0.02, ir_at=20.0), local(21, 40),
                 forbidden=_all_alarms()),
    ]


# --- busy scenes: people pass all the time ------------------------------------------

FAR_LANE = (0.58, 0.62, 0.15, 0.2)  # feet y from..to, height from..to: small people along the far side
NEAR_LANE = (0.9, 0.98, 0.26, 0.34)  # large people along the bottom of the picture


def passers(seed: int, start_s: float, end_s: float, every_s: float,
            lane: tuple[float, float, float, float] = NEAR_LANE) -> list[Figure]:
    """People crossing the whole view one after another (about every `every_s`), left and right in turn.

    Photo people (which the person detector finds) and drawn ones (which it
    does not, so only their movement shows them) alternate. Each takes 7-11 s
    to cross: never long enough in the zone to loiter.
    """
    rng = np.random.default_rng(seed)
    kinds: tuple[FigureKind, ...] = ("astronaut", "drawn", "cameraman", "drawn")
    out, t, k = [], start_s, 0
    while t < end_s:
        y = float(rng.uniform(lane[0], lane[1]))
        xs = (-0.1, 1.1) if k % 2 == 0 else (1.1, -0.1)
        cross = float(rng.uniform(7.0, 11.0))
        colour = tuple(int(c) for c in rng.integers(30, 220, 3))
        out.append(Figure(t, t + cross, [(xs[0], y), (xs[1], y + float(rng.uniform(-0.02, 0.02)))],
                          height=float(rng.uniform(lane[2], lane[3])), kind=kinds[k % len(kinds)],
                          color=colour, name=f"passer-{k}"))  # type: ignore[arg-type]
        t += every_s * float(rng.uniform(0.7, 1.3))
        k += 1
    return out


def crowd(seed: int, at_s: float, size: int) -> list[Figure]:
    """A crowd crossing together: `size` people within about 3 s, in both directions, at several depths."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(size):
        start = at_s + float(rng.uniform(0.0, 3.0))
        y = float(rng.uniform(0.66, 0.98))
        xs = (-0.1, 1.1) if rng.random() < 0.6 else (1.1, -0.1)
        out.append(Figure(start, start + float(rng.uniform(6.0, 9.0)), [(xs[0], y), (xs[1], y)],
                          height=0.15 + 0.25 * (y - 0.6) / 0.4, kind="astronaut" if k % 3 == 0 else "drawn",
                          color=tuple(int(c) for c in rng.integers(30, 220, 3)),  # type: ignore[arg-type]
                          name=f"crowd-{k}"))
    return out


def _busy() -> list[Scenario]:
    """Scene change where people keep passing elsewhere in view."""
    strokes = [
        [(0.10, 0.46), (0.14, 0.30), (0.18, 0.46), (0.22, 0.30)],
        [(0.25, 0.31), (0.25, 0.47), (0.33, 0.47)],
        [(0.36, 0.30), (0.36, 0.47), (0.44, 0.38), (0.36, 0.30)],
    ]
    # The painter stands on the strip of ground at the foot of the wall, outside the zone.
    painter = Figure(3.0, 21.0, [(-0.1, 0.62), (0.3, 0.58), (0.3, 0.58), (-0.1, 0.6)], times=[3.0, 7.5, 16.5, 21.0],
                     height=0.36, kind="astronaut", name="painter")
    graffiti = Scenario(
        "busy_graffiti",
        "At 10:00, while people keep crossing the yard in front, someone paints a tag on the wall "
        "from 8 to 16 s and leaves: a scene change within 30 s after the painting stops.",
        _scene(60.0, seed=51, figures=[painter, *passers(51, 0.0, 55.0, 6.0)],
               graffiti=[Graffiti(8.0, 16.0, strokes)]), local(10),
        expected=[Expected("scene_change", 8.0, 46.0)],
        forbidden=_all_alarms(but=["scene_change"]),
    )
    owner = Figure(3.0, 16.0, [(-0.1, 0.8), (0.45, 0.8), (0.45, 0.8), (1.1, 0.78)], times=[3.0, 9.0, 12.0, 16.0],
                   height=0.4, kind="cameraman", name="owner")
    bag = Scenario(
        "busy_bag_left",
        "At 10:00, while people keep passing along the far side of the yard, a man puts a bag down "
        "at 10 s and walks on at 12 s; the bag stays: a scene change within 60 s after he leaves.",
        _scene(80.0, seed=52, figures=[owner, *passers(52, 0.0, 75.0, 5.0, FAR_LANE)],
               props=[Prop("bag", 0.52, 0.81, size=0.09, appears_s=10.0)]), local(10),
        expected=[Expected("scene_change", 10.0, 72.0)],
        forbidden=_all_alarms(but=["scene_change"]),
    )
    quiet = _all_alarms()
    return [
        graffiti, bag,
        Scenario("busy_lights_on", "At 17:30 people keep crossing the yard; the floodlights switch on at "
                 "20 s. Nothing to report.",
                 _scene(40.0, seed=53, lights_on_at=20.0, figures=passers(53, 0.0, 35.0, 5.0)), local(17, 30),
                 forbidden=quiet),
        Scenario("busy_lights_off", "At 17:30 people keep crossing the yard; the lights go off at 20 s "
                 "(brightness x0.5 - 5). Nothing to report.",
                 _scene(40.0, seed=54, lights_on_at=20.0, lights_gain=0.5, lights_offset=-5.0,
                        figures=passers(54, 0.0, 35.0, 5.0)), local(17, 30), forbidden=quiet),
        Scenario("busy_daylight", "Morning at 07:00, people keep crossing the park while the picture "
                 "brightens by 30 % over a minute. Nothing to report.",
                 _scene(60.0, seed=55, backdrop="park", drift=0.005, figures=passers(55, 0.0, 55.0, 6.0)),
                 local(7), forbidden=quiet),
        Scenario("busy_wind", "At 10:00 wind sways the park's trees and their leaves flicker, while people "
                 "keep crossing. Nothing to report.",
                 _scene(45.0, seed=56, backdrop="park", wind=1.0, figures=passers(56, 0.0, 40.0, 6.0)),
                 local(10), forbidden=quiet),
        Scenario("crowds", "At 10:00 two crowds of eight cross the yard (at 5 s and 25 s) among single "
                 "passers-by. Nothing to report.",
                 _scene(45.0, seed=57, figures=[*crowd(57, 5.0, 8), *crowd(58, 25.0, 8),
                                                *passers(57, 0.0, 40.0, 8.0, FAR_LANE)]),
                 local(10), forbidden=quiet),
    ]


def scenarios(*, quick: bool = False) -> list[Scenario]:
    """All scenarios in a fixed order; `quick`: the small subset in QUICK."""
    every = [*_crossings(), _loitering(), _brief_stop(), _graffiti(), _bag_left(), _object_removed(),
             *_tampering(), *_nuisances(), *_busy()]
    return [s for s in every if s.name in QUICK] if quick else every


def generate(dir: Path, *, quick: bool = False) -> list[Path]:
    """Write every scenario's NAME.avi and NAME.json into `dir`; return the .json paths in order.

    Existing files of the same names are overwritten; other files are left alone.
    """
    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    rendered: dict[int, Path] = {}  # clips sharing one Scene object share its frames: render once, copy
    written = []
    for sc in scenarios(quick=quick):
        video = dir / sc.video
        if id(sc.scene) in rendered:
            shutil.copyfile(rendered[id(sc.scene)], video)
        else:
            rendered[id(sc.scene)] = write_video(sc.scene, video)
        spec = dir / f"{sc.name}.json"
        spec.write_text(json.dumps(sc.to_json(), indent=2) + "\n")
        written.append(spec)
    return written
