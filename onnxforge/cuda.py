"""Can ONNX Runtime use CUDA here, and if not, why: probes with no onnxforge imports.

Kept apart from ``runners`` so that ``vocab.resolve_device`` can ask without importing
the session code (which itself uses ``vocab``).
"""

from __future__ import annotations

from pathlib import Path


def _preload_cuda() -> str | None:
    """Load CUDA/cuDNN from PyTorch's or NVIDIA's wheels; return why it failed, if it did."""
    import onnxruntime as ort

    if not hasattr(ort, "preload_dlls"):
        return None
    try:
        ort.preload_dlls()
    except Exception as e:  # report, don't hide: the caller fails loudly if CUDA is missing
        return f"{type(e).__name__}: {e}"
    return None


def cuda_unavailable_reason() -> str | None:
    """Why CUDA cannot be used by ONNX Runtime here, or None when it can."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return f"this onnxruntime build ({ort.__version__}) has no CUDAExecutionProvider; install onnxruntime-gpu"
    try:
        import ctypes

        ctypes.CDLL("libcuda.so.1")
    except OSError as e:
        return f"the NVIDIA driver library libcuda.so.1 did not load ({e})"
    return None


def cuda_provider_load_error() -> str | None:
    """Load ORT's CUDA provider library by hand; the loader's error names the missing dependency.

    ORT itself only logs that the provider failed and carries on with CPU; loading the
    library directly turns that into e.g. "libcublasLt.so.13: cannot open shared object file".
    """
    import ctypes
    import os

    import onnxruntime as ort

    lib = Path(os.path.dirname(ort.__file__)) / "capi" / "libonnxruntime_providers_cuda.so"
    if not lib.is_file():
        return None
    try:
        ctypes.CDLL(str(lib))
    except OSError as e:
        return f"{lib.name} did not load: {e}"
    return None
