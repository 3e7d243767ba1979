"""smoke stage: does this artifact, on this machine and device, compute what it should?

API: ``smoke_artifact(dir, SmokeOptions()) -> SmokeReport`` (a ``report.StageReport``).
Names load lazily so that ``onnxforge --help`` imports neither numpy nor onnxruntime.
"""

from ..lazy import lazy_getattr

_MODULES = {
    "SmokeOptions": "options",
    "SmokeReport": "report",
    "smoke_artifact": "smoke",
}

__all__ = sorted(_MODULES)


__getattr__ = lazy_getattr(__name__, _MODULES)
