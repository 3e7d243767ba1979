"""Optimize stage: fused fp32, fp16 (for CUDA) and int8 (for CPU) variants of an export.

API: ``optimize_artifact(artifact_dir, OptimizeOptions(...)) -> OptimizeReport``. Names
are loaded lazily so that importing ``onnxforge.optimize.cli`` (for --help) stays light.
"""

__all__ = ["OptimizeOptions", "OptimizeReport", "optimize_artifact", "PRECISIONS", "VARIANT_FOR_PRECISION"]

_FROM_OPTIONS = {"OptimizeOptions", "OptimizeReport", "PRECISIONS", "VARIANT_FOR_PRECISION"}


def __getattr__(name: str):
    if name in _FROM_OPTIONS:
        from . import options

        return getattr(options, name)
    if name == "optimize_artifact":
        from .optimizer import optimize_artifact

        return optimize_artifact
    raise AttributeError(name)
