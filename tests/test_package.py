"""The package as users get it: every imported library declared in pyproject.toml, and a
wheel installed into a fresh venv (no editable hook, no source tree) that runs a node and
the central commands, with the models and the JSON Schema as package data."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
import tomllib
import urllib.request
from datetime import UTC, datetime
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from vaktpost.contract.events import Event, EventType
from vaktpost.scenes import Figure, Scene, write_video

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SETUP = PYPROJECT["tool"]["setuptools"]
# Modules that may use an optional extra's libraries (each says which one it needs);
# everything else in the package runs on a node-only install.
EXTRA_MODULES = {"vaktpost.broker": "central", "vaktpost.demo": "demo", "vaktpost.scenarios": "demo",
                 "vaktpost.scenes": "demo", "vaktpost.evaluate": "demo"}


def requirements(extra: str | None) -> set[str]:
    """Distribution names (canonical) that the core, or core plus `extra`, installs directly."""
    reqs = list(PYPROJECT["project"]["dependencies"])
    todo = [extra] if extra else []
    while todo:
        for spec in PYPROJECT["project"]["optional-dependencies"][todo.pop()]:
            req = Requirement(spec)
            if canonicalize_name(req.name) == "vaktpost":
                todo.extend(req.extras)
            else:
                reqs.append(spec)
    return {canonicalize_name(Requirement(r).name) for r in reqs}


def package_modules() -> dict[str, Path]:
    """Module name -> source file, for every module the wheel installs."""
    modules = {}
    for package in SETUP["packages"]:
        base = max((n for n in SETUP["package-dir"] if f"{package}.".startswith(f"{n}.")), key=len)
        folder = ROOT / SETUP["package-dir"][base]
        folder = folder.joinpath(*package.split(".")[base.count(".") + 1 :])
        for file in folder.glob("*.py"):
            modules[package if file.stem == "__init__" else f"{package}.{file.stem}"] = file
    return modules


def third_party_imports(file: Path, local: frozenset[str]) -> set[str]:
    """Top-level names of the libraries `file` imports (stdlib, vaktpost and `local` left out)."""
    names = set()
    for node in ast.walk(ast.parse(file.read_text(), str(file))):
        if isinstance(node, ast.Import):
            names |= {a.name.partition(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.partition(".")[0])
    return names - set(sys.stdlib_module_names) - {"__future__", "vaktpost"} - local


def undeclared(files: dict[str, Path], allowed: dict[str, set[str]], local: frozenset[str] = frozenset()) -> list[str]:
    """'FILE imports LIB (its distribution)' for each import whose distribution is not in allowed[name]."""
    dists = packages_distributions()
    problems = []
    for name, file in sorted(files.items()):
        for lib in sorted(third_party_imports(file, local)):
            found = {canonicalize_name(d) for d in dists.get(lib, [])}
            if not found & allowed[name]:
                dist = ", ".join(sorted(found)) or "not installed"
                problems.append(f"{file.relative_to(ROOT)} imports {lib} ({dist})")
    return problems


def test_every_library_the_package_imports_is_declared_where_it_is_needed() -> None:
    modules = package_modules()
    assert "vaktpost.edge.node" in modules and "vaktpost.contract.events" in modules
    extra_of = {name: next((x for prefix, x in EXTRA_MODULES.items()
                            if name == prefix or name.startswith(prefix + ".")), None) for name in modules}
    assert undeclared(modules, {name: requirements(extra_of[name]) for name in modules}) == []


def test_every_library_the_tests_and_benchmarks_import_is_in_the_dev_extra() -> None:
    files = {str(p.relative_to(ROOT)): p for d in ("tests", "benchmarks") for p in (ROOT / d).glob("*.py")}
    local = frozenset(p.stem for p in files.values())  # mqtt_harness, timing, ...
    assert undeclared(files, dict.fromkeys(files, requirements("dev")), local) == []


# --- the wheel in a fresh venv ---------------------------------------------------------------

T0 = datetime(2024, 5, 14, 19, 0, tzinfo=UTC)
EVERY_DAY = [{"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "from": "00:00", "to": "23:59"}]
YARD = [[0.0, 0.6], [1.0, 0.6], [1.0, 1.0], [0.0, 1.0]]
# Shown by the installed interpreter: where the package data is, and which distributions are in.
PROBE = """
import json, importlib.metadata as md, importlib.resources as res
import vaktpost.models
print(json.dumps({
    "models_dir": str(vaktpost.models.DIR),
    "models": sorted(p.name for p in vaktpost.models.DIR.iterdir() if p.is_file()),
    "schemas": sorted(p.name for p in (res.files("vaktpost.contract") / "schema").iterdir()),
    "py_typed": (res.files("vaktpost") / "py.typed").is_file(),
    "dists": sorted(d.metadata["Name"].lower() for d in md.distributions()),
}))
"""


def run(args: list[str | Path], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          check=False)


def ok(args: list[str | Path], cwd: Path, timeout: float = 300) -> str:
    done = run(args, cwd, timeout)
    assert done.returncode == 0, f"{' '.join(map(str, args))}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built by pip from a copy of what the sdist would hold (no build/ or .venv)."""
    src = tmp_path_factory.mktemp("src")
    shutil.copy2(ROOT / "pyproject.toml", src)
    shutil.copy2(ROOT / "README.md", src)
    for folder in set(SETUP["package-dir"].values()):
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path_factory.mktemp("dist")
    ok([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, src], cwd=dist)
    (whl,) = dist.glob("vaktpost-*.whl")
    return whl


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_wheel_in_a_fresh_venv_runs_a_node_then_central(wheel: Path, tmp_path: Path) -> None:
    pytest.importorskip("skimage", reason="the clip's photographed person needs scikit-image (dev extra)")
    venv = tmp_path / "venv"
    ok([sys.executable, "-m", "venv", venv], cwd=tmp_path)  # no system site-packages
    py, vaktpost = venv / "bin" / "python", venv / "bin" / "vaktpost"
    pip = [py, "-m", "pip", "install", "-q", "-c", ROOT / "constraints.txt"]

    # Node only: no extras, nothing of central or dev pulled in.
    ok([*pip, wheel], cwd=tmp_path, timeout=600)
    probe = json.loads(ok([py, "-c", PROBE], cwd=tmp_path))
    assert Path(probe["models_dir"]).is_relative_to(venv)  # the installed copy, not the source tree
    manifest = tomllib.loads((ROOT / "models" / "MANIFEST.toml").read_text())
    shipped = {"MANIFEST.toml", *(m["file"] for m in manifest["models"].values())}
    assert shipped <= set(probe["models"]), probe["models"]
    assert probe["schemas"] == sorted(p.name for p in (ROOT / "vaktpost/contract/schema").glob("*.json"))
    assert probe["py_typed"]
    assert not {"sqlalchemy", "psycopg", "psycopg-binary", "pytest", "scikit-image", "onnx", "mypy", "ruff"} \
        & set(probe["dists"]), probe["dists"]
    assert "--config" in ok([vaktpost, "node", "run", "--help"], cwd=tmp_path)

    # `vaktpost analyze` with the person detector (SSD, the packaged model) and snapshots.
    scene = Scene(width=640, height=360, fps=10, duration_s=7, seed=7, noise_sigma=3.0, figures=[
        # The astronaut, not the cameraman: see tests/test_privacy.py, person_then_cover.
        Figure(0.5, 5.5, [(-0.1, 0.86), (1.1, 0.82)], height=0.42, kind="astronaut", name="astronaut")])
    video = write_video(scene, tmp_path / "person.avi")
    config = tmp_path / "node.yaml"
    config.write_text(yaml.safe_dump({"node": {"id": "node-a"}, "cameras": [{
        "id": "yard", "source": str(video), "fps": 5, "detector": {"kind": "ssd"},
        "zones": [{"name": "yard", "polygon": YARD, "armed": EVERY_DAY}],
        "snapshots": {"intrusion": "anonymised", "motion": "none"}}]}))
    events_file, snaps = tmp_path / "events.jsonl", tmp_path / "snaps"
    ok([vaktpost, "analyze", video, "--config", config, "--start-time", T0.isoformat(),
        "--out", events_file, "--snapshots", snaps], cwd=tmp_path)
    events = [Event.from_payload(line) for line in events_file.read_text().splitlines()]
    intrusions = [e for e in events if e.type == EventType.intrusion]
    assert intrusions and all(e.snapshot == "attached" for e in intrusions), events
    for event in intrusions:
        assert (snaps / f"{event.event_id}.jpg").read_bytes()[:2] == b"\xff\xd8"

    # A central command on a node-only install: one line naming the extra.
    database = f"sqlite:///{tmp_path / 'central.db'}"
    refused = run([vaktpost, "events", "--database", database], cwd=tmp_path)
    assert refused.returncode != 0
    assert refused.stderr.strip().splitlines() == ["error: this command needs the central extra: "
                                                   "pip install 'vaktpost[central]'"]

    # With the central extra: the place registry and the place log work.
    ok([*pip, f"{wheel}[central]"], cwd=tmp_path, timeout=600)
    imported = ok([vaktpost, "places", "import", ROOT / "examples" / "places.yaml", "--database", database],
                  cwd=tmp_path)
    assert imported.startswith("imported ")
    assert "place log (0 events)" in ok([vaktpost, "events", "--database", database], cwd=tmp_path)

    # The inbox from the installed wheel: templates, styles, vendored script and Swedish catalogue.
    (tmp_path / "inbox.key").write_text("k" * 48)
    central = tmp_path / "central.yaml"
    central.write_text(yaml.safe_dump({"database": database, "inbox": {"secret_key_file": "inbox.key"}}))
    added = subprocess.run(
        [str(vaktpost), "users", "add", "anna", "--config", str(central), "--role", "admin", "--password-stdin"],
        input="hemligt-ord\n", capture_output=True, text=True, cwd=tmp_path, timeout=60, check=False)
    assert added.returncode == 0, added.stderr
    inbox = subprocess.Popen([str(vaktpost), "inbox", "--config", str(central), "--port", "0"], cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = inbox.stdout.readline() if inbox.stdout else ""
        assert line.startswith("inbox: http://127.0.0.1:"), (line, inbox.stderr.read() if inbox.stderr else "")
        base = line.split(" ", 1)[1].strip().rstrip("/")
        page = urllib.request.urlopen(f"{base}/login", timeout=30).read().decode()
        assert "Logga in" in page and "/static/vendor/htmx.min.js" in page
        script = urllib.request.urlopen(f"{base}/static/vendor/htmx.min.js", timeout=30).read()
        assert script == (ROOT / "broker/inbox/static/vendor/htmx.min.js").read_bytes()
    finally:
        inbox.terminate()
        inbox.wait(timeout=30)
