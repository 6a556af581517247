"""The central side stands on the contract alone: importing it loads no node code,
no OpenCV and no NumPy (a central host needs neither, and the layers say so)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

CENTRAL = ["vaktpost.broker.service", "vaktpost.broker.ingest.parse", "vaktpost.broker.ingest.consumer",
           "vaktpost.broker.store", "vaktpost.contract.events", "vaktpost.contract.messages",
           "vaktpost.contract.topics", "vaktpost.contract.jpeg", "vaktpost.contract.config"]
FORBIDDEN_ROOTS = {"cv2", "numpy", "onnxruntime", "onnx", "skimage", "scipy"}


def loaded_after_import(module: str) -> list[str]:
    """sys.modules of a fresh interpreter after `import module`."""
    code = f"import json, sys\nimport {module}\nprint(json.dumps(sorted(sys.modules)))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


@pytest.mark.parametrize("module", CENTRAL)
def test_central_and_contract_load_no_node_code_nor_cv2_nor_numpy(module: str) -> None:
    loaded = loaded_after_import(module)
    assert module in loaded
    node = [m for m in loaded if m == "vaktpost.edge" or m.startswith("vaktpost.edge.")]
    heavy = [m for m in loaded if m.split(".")[0] in FORBIDDEN_ROOTS]
    assert not node, f"{module} loads node modules: {node}"
    assert not heavy, f"{module} loads {sorted({m.split('.')[0] for m in heavy})}"


def test_the_check_sees_a_node_import() -> None:
    # The same check on a node module must find what it looks for, or it proves nothing.
    loaded = loaded_after_import("vaktpost.edge.evidence.snapshot")
    assert "cv2" in loaded and "vaktpost.edge.evidence.snapshot" in loaded
