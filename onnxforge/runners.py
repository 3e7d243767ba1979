"""Running a model on a batch: PyTorch (the reference) and ONNX Runtime sessions.

``make_session`` is the one place that creates ONNX Runtime sessions, so every stage
gets the same provider handling: CUDA libraries preloaded where ORT can, and a hard
failure (never a silent CPU fallback) when CUDA was asked for and not obtained.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .cuda import _preload_cuda, cuda_provider_load_error, cuda_unavailable_reason  # noqa: F401 - re-exported
from .errors import CheckFailed, UserInputError
from .spec import ModelSpec
from .vocab import DEVICES, short_error

def run_torch(module: Any, spec: ModelSpec, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import torch

    args = [torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in spec.input_names]
    with torch.no_grad():
        outs = module(*args)
    return {name: t.detach().float().cpu().numpy() for name, t in zip(spec.output_names, outs)}


@dataclass(frozen=True)
class SessionInfo:
    requested: tuple[str, ...]
    obtained: tuple[str, ...]

    @property
    def device(self) -> str:
        return "cuda" if self.obtained and self.obtained[0] == "CUDAExecutionProvider" else "cpu"


def make_session(
    path: Path,
    device: str = "cpu",
    *,
    threads: int | None = None,
    optimization: str = "all",
    config: dict[str, str] | None = None,
):
    """An ORT session for ``device`` (cpu, cuda or auto), checked against what ORT gave.

    ``config``: extra session config entries (e.g. ``session.intra_op.allow_spinning``).
    """
    import onnxruntime as ort

    if device not in DEVICES:
        raise UserInputError(f"--device {device} is not known", hint=f"choose one of {', '.join(DEVICES)}")
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if not os.environ.get("ONNXFORGE_DEBUG"):
        # ORT's provider factory logs through the default logger, not the session's: its
        # CUDA warning would print before (and say less than) onnxforge's own message.
        # Errors that matter still raise; --debug shows the log.
        ort.set_default_logger_severity(4)
    if threads:
        so.intra_op_num_threads = threads
    for key, value in (config or {}).items():
        so.add_session_config_entry(key, str(value))
    so.graph_optimization_level = {
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    }[optimization]
    preload_error = None
    if device in ("cuda", "auto"):
        preload_error = _preload_cuda()
        want_cuda = device == "cuda" or cuda_unavailable_reason() is None
    else:
        want_cuda = False
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if want_cuda else ["CPUExecutionProvider"]
    try:
        session = ort.InferenceSession(str(path), so, providers=providers)
    except Exception as e:
        text = short_error(e, 300)
        raise UserInputError(f"ONNX Runtime cannot load {path.name}: {text}", hint="the file may be corrupted; re-run the stage that wrote it") from None
    info = SessionInfo(tuple(providers), tuple(session.get_providers()))
    if device == "cuda" and info.device != "cuda":
        reason = cuda_unavailable_reason() or preload_error or "CUDA provider failed to initialise (see ORT logs)"
        library = cuda_provider_load_error()
        if library and library not in reason:
            reason = f"{reason}; {library}"
        raise CheckFailed(
            f"CUDA was requested but ONNX Runtime fell back to CPU: requested {list(info.requested)}, "
            f"obtained {list(info.obtained)}; {reason}",
            hint="install onnxruntime-gpu with CUDA 13 and cuDNN 9 (or torch's CUDA wheels), or use --device cpu",
        )
    return session, info


def run_session(session, spec: ModelSpec, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    graph_inputs = {i.name for i in session.get_inputs()}
    outs = session.run(list(spec.output_names), {k: v for k, v in feeds.items() if k in graph_inputs})
    return {n: np.asarray(o, dtype=np.float32) for n, o in zip(spec.output_names, outs)}
