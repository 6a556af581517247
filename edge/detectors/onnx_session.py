"""onnxruntime sessions for verified model files.

The checksum is checked before onnxruntime sees a byte of the file: a model
that was corrupted on the SD card, or swapped, is refused with a ModelError
instead of producing silently wrong detections. Every failure to get a usable
session (missing file, bad checksum, no onnxruntime, a file onnxruntime cannot
parse) is a ModelError whose message names the file and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vaktpost.edge.config.detectors import is_model_path
from vaktpost.edge.modelfile import ModelError, resolve, verify

if TYPE_CHECKING:
    import onnxruntime


@dataclass(frozen=True)
class InputSpec:
    """A model input as onnxruntime declares it; symbolic dimensions are None."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str  # onnxruntime's type string, e.g. "tensor(uint8)"


def verified_model_path(model: str, sha256: str | None = None, models_dir: Path | str | None = None) -> Path:
    """Path of `model` after its checksum passed.

    A manifest name is checked against the manifest; a path against `sha256`,
    which is required for paths so that no unverified file can be loaded.
    """
    if is_model_path(model):
        if sha256 is None:
            raise ModelError(f"model file {model} has no sha256 to check it against; give model_sha256")
        return verify(Path(model).expanduser(), sha256.lower())
    return resolve(model, models_dir=models_dir)


def session_options(threads: int) -> onnxruntime.SessionOptions:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    # Idle worker threads spin-wait for work by default: between two detector runs that
    # is a busy core doing nothing on a node shared by several cameras.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    # Detection graphs are chains of convolutions: parallelism comes from inside each
    # operator (intra-op). Running independent operators in parallel as well only adds
    # threads that compete for the Pi's 4 cores with the other cameras.
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # errors only: warnings about unused initialisers are noise on a node
    return opts


def create_session(path: Path, threads: int) -> onnxruntime.InferenceSession:
    """CPU InferenceSession for an already verified file; ModelError if onnxruntime cannot use it."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ModelError("onnxruntime is not installed; the node needs it for person detection "
                         "(pip install onnxruntime)") from None
    try:
        return ort.InferenceSession(str(path), sess_options=session_options(threads),
                                    providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for bad graphs
        raise ModelError(f"onnxruntime cannot load model {path}: {e}") from None


def open_session(model: str, threads: int, *, sha256: str | None = None,
                 models_dir: Path | str | None = None) -> onnxruntime.InferenceSession:
    """Verify, then load: the one way detectors get a session."""
    return create_session(verified_model_path(model, sha256, models_dir), threads)


def input_spec(session: Any) -> InputSpec:
    """The session's single image input; ModelError if it has more than one."""
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ModelError(f"expected a model with one image input, found {[i.name for i in inputs]}")
    i = inputs[0]
    shape = tuple(d if isinstance(d, int) and d > 0 else None for d in i.shape)
    return InputSpec(i.name, shape, i.type)


def output_names(session: Any) -> list[str]:
    return [o.name for o in session.get_outputs()]
