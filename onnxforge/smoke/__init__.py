"""smoke stage: does this artifact, on this machine and device, compute what it should?

API: ``smoke_artifact(dir, SmokeOptions()) -> SmokeReport`` (a ``report.StageReport``).
Names load lazily so that ``onnxforge --help`` imports neither numpy nor onnxruntime.
"""

_MODULES = {
    "SmokeOptions": "options",
    "SmokeReport": "report",
    "smoke_artifact": "smoke",
}

__all__ = sorted(_MODULES)


def __getattr__(name: str):
    if name in _MODULES:
        import importlib

        module = importlib.import_module(f".{_MODULES[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(name)
