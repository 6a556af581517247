"""Lay the installed package out as symlinks under build/layout, for mypy and import-linter.

pyproject.toml maps folders under one import root with setuptools `package-dir`
(`vaktpost.edge` = `edge/`, ...). Static tools find modules by walking folders,
and the editable install's import hook is invisible to them, so they would see
`edge.node` or nothing instead of `vaktpost.edge.node`. This script builds the
tree a wheel would install, made of links back into the source, so every file
has exactly one module name. It also refuses a package folder that
`[tool.setuptools] packages` forgets (it would be missing from the wheel).
Only listed packages are laid out, so scripts beside them (models/rebuild/) are not.

Usage: python scripts/layout.py  ->  prints the tree's root (build/layout).
       python scripts/layout.py --real-paths  <  tool output: rewrites
       `vaktpost/edge/node.py:12: ...` (a path in the tree) to `edge/node.py:12: ...`.
Run from anywhere; stdlib only.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tomllib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / "build" / "layout"
SKIP = {"__pycache__"}
MODULE_SUFFIXES = {".py", ".pyi", ".typed"}
LEADING_PATH = re.compile(r"^([\w./-]+\.pyi?)(?=:)")


def mapping(pyproject: dict[str, Any]) -> tuple[dict[str, Path], list[str]]:
    """(import name -> source folder for each package-dir entry, the packages list)."""
    setup = pyproject["tool"]["setuptools"]
    return {name: ROOT / folder for name, folder in setup["package-dir"].items()}, list(setup["packages"])


def package_folder(name: str, dirs: dict[str, Path]) -> Path:
    """The source folder of package `name`, resolved through the longest package-dir prefix."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        base = ".".join(parts[:i])
        if base in dirs:
            return dirs[base].joinpath(*parts[i:])
    return ROOT.joinpath(*parts)


def unlisted_packages(dirs: dict[str, Path], packages: list[str]) -> list[str]:
    """Folders with an __init__.py under a mapped package that `packages` does not list."""
    listed = {package_folder(p, dirs).resolve() for p in packages}
    missing = []
    for name, folder in dirs.items():
        for init in sorted(folder.rglob("__init__.py")):
            pkg = init.parent.resolve()
            if pkg not in listed and not SKIP & set(pkg.parts):
                rel = pkg.relative_to(folder.resolve())
                missing.append(".".join([name, *rel.parts]) + f" ({pkg.relative_to(ROOT)}/)")
    return missing


def build(dirs: dict[str, Path], packages: list[str]) -> None:
    """Recreate TREE as the wheel's packages: one real folder per listed package,
    holding links to that package's modules (and py.typed) in the source tree."""
    if TREE.exists():
        shutil.rmtree(TREE)
    for name in packages:
        dest = TREE.joinpath(*name.split("."))
        dest.mkdir(parents=True, exist_ok=True)
        for source in sorted(package_folder(name, dirs).iterdir()):
            if source.is_file() and source.suffix in MODULE_SUFFIXES:
                (dest / source.name).symlink_to(source)


def real_paths(lines: Iterable[str]) -> Iterator[str]:
    """Each line with a leading path into TREE replaced by the repo path of the file it links to."""
    for line in lines:
        match = LEADING_PATH.match(line)
        if match and (TREE / match.group(1)).is_symlink():
            real = Path(os.path.realpath(TREE / match.group(1))).relative_to(ROOT)
            line = str(real) + line[match.end(1) :]
        yield line


def main() -> int:
    if sys.argv[1:] == ["--real-paths"]:
        sys.stdout.writelines(real_paths(sys.stdin))
        return 0
    dirs, packages = mapping(tomllib.loads((ROOT / "pyproject.toml").read_text()))
    missing = unlisted_packages(dirs, packages)
    if missing:
        print(
            "layout: package folders not in [tool.setuptools] packages of pyproject.toml "
            "(a wheel would leave them out): " + ", ".join(missing),
            file=sys.stderr,
        )
        return 1
    build(dirs, packages)
    print(TREE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
