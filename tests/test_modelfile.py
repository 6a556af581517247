"""Model files: the committed models verify, a changed or missing file is refused.

The last tests check the committed ONNX files against the manifest's input and
output declarations (with `onnx`, dev-only) and run them once on a synthetic frame
(with `onnxruntime`, the node's runtime); they are skipped where those are absent.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from vaktpost.edge.modelfile import (
    MANIFEST,
    MODELS_DIR,
    ModelError,
    load_manifest,
    resolve,
    sha256_of,
    verify,
)

NAMES = ("ssdlite_mobilenet_v2_coco", "centerface")


@pytest.fixture(scope="module")
def manifest():
    return load_manifest()


def test_manifest_lists_the_models(manifest):
    assert set(NAMES) <= set(manifest)
    for name in NAMES:
        entry = manifest[name]
        assert entry.name == name
        assert entry.licence == "MIT"
        assert entry.source.wheel.endswith(".whl")
        assert entry.rebuild.startswith("python3.11 models/")
        assert (MODELS_DIR / entry.rebuild.split()[1].removeprefix("models/")).is_file()


@pytest.mark.parametrize("name", NAMES)
def test_committed_file_verifies(manifest, name):
    path = resolve(name)
    assert path == MODELS_DIR / manifest[name].file
    assert path.stat().st_size == manifest[name].size


def flipped_copy(src: Path, dst_dir: Path) -> Path:
    dst = dst_dir / src.name
    shutil.copyfile(src, dst)
    with open(dst, "r+b") as f:
        f.seek(dst.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0x01]))
    return dst


@pytest.mark.parametrize("name", NAMES)
def test_one_flipped_byte_is_refused(manifest, name, tmp_path):
    entry = manifest[name]
    bad = flipped_copy(MODELS_DIR / entry.file, tmp_path)
    actual = hashlib.sha256(bad.read_bytes()).hexdigest()
    assert actual != entry.sha256

    with pytest.raises(ModelError) as e:
        verify(bad, entry.sha256)
    msg = str(e.value)
    assert f"expected sha256 {entry.sha256}" in msg
    assert f"actual sha256 {actual}" in msg
    assert "refused" in msg

    with pytest.raises(ModelError) as e:  # the same through the manifest
        resolve(name, models_dir=tmp_path)
    assert entry.sha256 in str(e.value) and actual in str(e.value)
    assert entry.rebuild in str(e.value)


@pytest.mark.parametrize("name, script", [("ssdlite_mobilenet_v2_coco", "models/rebuild/build_ssdlite.py"),
                                          ("centerface", "models/rebuild/fetch_centerface.py")])
def test_missing_file_says_how_to_rebuild(name, script, tmp_path):
    with pytest.raises(ModelError) as e:
        resolve(name, models_dir=tmp_path)
    msg = str(e.value)
    assert "missing" in msg and str(tmp_path) in msg
    assert f"python3.11 {script}" in msg


def test_verify_without_rebuild_hint_points_to_readme(tmp_path):
    with pytest.raises(ModelError, match=r"missing; see models/README.md"):
        verify(tmp_path / "nothing.onnx", "0" * 64)


def test_verify_accepts_matching_file_and_upper_case_hash(tmp_path):
    f = tmp_path / "m.onnx"
    f.write_bytes(b"x" * (3 << 20))  # several hash chunks
    digest = hashlib.sha256(f.read_bytes()).hexdigest()
    assert sha256_of(f) == digest
    assert verify(f, digest.upper()) == f


def test_unknown_model_name():
    with pytest.raises(ModelError, match=r"no model 'yolo'.*known: centerface, ssdlite_mobilenet_v2_coco"):
        resolve("yolo")


def test_malformed_manifest_names_the_key(tmp_path):
    sha = load_manifest()["centerface"].sha256
    text = MANIFEST.read_text().replace(f'sha256 = "{sha}"', 'sha256 = "abc"')
    assert 'sha256 = "abc"' in text
    bad = tmp_path / "MANIFEST.toml"
    bad.write_text(text)
    with pytest.raises(ModelError, match=r"models\.centerface\.sha256"):
        load_manifest(bad)
    bad.write_text("[models\n")
    with pytest.raises(ModelError, match="not valid TOML"):
        load_manifest(bad)
    with pytest.raises(ModelError, match="does not exist"):
        load_manifest(tmp_path / "none.toml")


# --- the files against their declared inputs and outputs -----------------------------

ONNX_DTYPES = {1: "float32", 2: "uint8"}


@pytest.mark.parametrize("name", NAMES)
def test_onnx_declarations_match_manifest(manifest, name):
    """Names, element types and ranks as in the manifest; every size the file fixes too.

    (The SSDLite file leaves all output sizes free; the run test checks them.)
    """
    onnx = pytest.importorskip("onnx")
    entry = manifest[name]
    graph = onnx.load(str(resolve(name))).graph
    weights = {i.name for i in graph.initializer}
    declared = [vi for vi in graph.input if vi.name not in weights] + list(graph.output)
    specs = [entry.input, *entry.outputs]
    assert [vi.name for vi in declared] == [t.name for t in specs]
    for vi, spec in zip(declared, specs):
        t = vi.type.tensor_type
        assert ONNX_DTYPES.get(t.elem_type) == spec.dtype, vi.name
        assert len(t.shape.dim) == len(spec.shape), vi.name
        for dim, size in zip(t.shape.dim, spec.shape):
            if dim.HasField("dim_value"):
                assert dim.dim_value == size, vi.name


@pytest.fixture(scope="module")
def ort():
    return pytest.importorskip("onnxruntime")


def session(ort, name):
    return ort.InferenceSession(str(resolve(name)), providers=["CPUExecutionProvider"])


def test_person_detector_runs(ort, manifest):
    entry = manifest["ssdlite_mobilenet_v2_coco"]
    frame = np.full((1, 240, 320, 3), 127, np.uint8)  # NHWC RGB, any size
    out = session(ort, entry.name).run([t.name for t in entry.outputs], {entry.input.name: frame})
    num, boxes, scores, classes = out
    assert num.shape == (1,) and boxes.shape == (1, 100, 4)
    assert scores.shape == classes.shape == (1, 100)
    assert np.all((scores >= 0) & (scores <= 1)) and np.all(np.diff(scores[0]) <= 0)
    assert scores[0, 0] < 0.5  # nobody in a grey frame
    assert set(np.unique(classes)) <= {1.0}  # one-class model: person


def test_face_detector_runs_on_any_multiple_of_32(ort, manifest):
    entry = manifest["centerface"]
    sess = session(ort, entry.name)
    for h, w in ((96, 128), (256, 192)):
        blob = np.full((1, 3, h, w), 127.0, np.float32)
        outs = sess.run([t.name for t in entry.outputs], {entry.input.name: blob})
        assert [o.shape for o in outs] == [(1, c, h // 4, w // 4) for c in (1, 2, 2, 10)]
        heatmap = outs[0]
        assert np.all((heatmap >= 0) & (heatmap <= 1)) and heatmap.max() < 0.5  # no face in grey
