"""Model files: the manifest (models/MANIFEST.toml) and their checksums.

The node loads a model only by name through `resolve()`, which finds the file via
the manifest and refuses it unless its sha256 equals the manifest's. Nothing is
downloaded: a missing file is an error whose message says how to rebuild it.

    path = resolve("centerface")           # -> Path, verified
    session = onnxruntime.InferenceSession(str(path))
"""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vaktpost import models

MODELS_DIR = models.DIR
MANIFEST = MODELS_DIR / "MANIFEST.toml"
README_HINT = "models/README.md"
_CHUNK = 1 << 20

Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Dim = int | str  # a fixed size, or a symbolic one ("N", "H", …)


class ModelError(RuntimeError):
    """A model that must not or cannot be loaded; the message says why and what to do."""


class _Open(BaseModel):
    # Provenance tables carry more keys than the node needs; they are kept, not checked.
    model_config = ConfigDict(extra="allow", frozen=True)


class Tensor(_Open):
    name: str
    dtype: str
    shape: list[Dim]
    layout: str | None = None
    role: str | None = None
    format: str | None = None


class Source(_Open):
    package: str
    version: str
    wheel: str
    wheel_sha256: Sha256
    member: str
    member_sha256: Sha256
    licence: str


class ModelEntry(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    name: str
    file: str = Field(pattern=r"^[^/\\]+$")
    sha256: Sha256
    size: int = Field(gt=0)
    task: str
    licence: str
    rebuild: str
    source: Source
    input: Tensor
    outputs: list[Tensor] = Field(min_length=1)

    def output(self, role_or_name: str) -> Tensor:
        for t in self.outputs:
            if role_or_name in (t.name, t.role):
                return t
        raise KeyError(role_or_name)


def load_manifest(path: Path | str = MANIFEST) -> dict[str, ModelEntry]:
    """Read the manifest; a malformed one is a ModelError naming the key."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ModelError(f"model manifest {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ModelError(f"model manifest {path} is not valid TOML: {e}") from None
    models = data.get("models")
    if not isinstance(models, dict) or not models:
        raise ModelError(f"model manifest {path} has no [models.NAME] tables")
    entries: dict[str, ModelEntry] = {}
    for name, raw in models.items():
        if not isinstance(raw, dict):
            raise ModelError(f"model manifest {path}: models.{name} is not a table")
        try:
            entries[name] = ModelEntry(name=name, **raw)
        except ValidationError as e:
            problems = "; ".join(
                f"models.{name}.{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()
            )
            raise ModelError(f"model manifest {path}: {problems}") from None
    return entries


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def verify(path: Path | str, sha256: str, rebuild: str | None = None) -> Path:
    """Return `path` if the file's sha256 is `sha256`; otherwise raise ModelError.

    `rebuild` (the manifest's command) goes into the messages; without it they
    point to models/README.md.
    """
    path = Path(path)
    expected = sha256.strip().lower()
    how = f"rebuild it with `{rebuild}` (see {README_HINT})" if rebuild else f"see {README_HINT} for how to rebuild it"
    if not path.exists():
        raise ModelError(f"model file {path} is missing; {how}")
    if not path.is_file():
        raise ModelError(f"model file {path} is not a regular file; {how}")
    actual = sha256_of(path)
    if actual != expected:
        raise ModelError(
            f"model file {path} failed its checksum and is refused: "
            f"expected sha256 {expected}, actual sha256 {actual}; {how}"
        )
    return path


def resolve(name: str, models_dir: Path | str | None = None,
            manifest: Path | str = MANIFEST) -> Path:
    """Path of the verified model file `name`.

    The sha256 always comes from the manifest shipped with this code; `models_dir`
    (default: the manifest's folder) only says where the files are.
    """
    entries = load_manifest(manifest)
    if name not in entries:
        raise ModelError(f"no model {name!r} in {manifest}; known: {', '.join(sorted(entries))}")
    entry = entries[name]
    folder = Path(models_dir) if models_dir is not None else Path(manifest).parent
    return verify(folder / entry.file, entry.sha256, rebuild=entry.rebuild)
