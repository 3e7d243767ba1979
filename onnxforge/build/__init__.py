"""`build`: every stage in order as one job, reusing stages whose inputs did not change.

API: ``build(BuildOptions(...)) -> BuildReport``; ``load_config(path)`` reads the
TOML options. Names are loaded lazily so that importing ``onnxforge.build.cli``
(for --help) stays light.
"""

__all__ = ["BuildOptions", "BuildReport", "StageOutcome", "build", "load_config"]

_HOMES = {
    "BuildOptions": "options",
    "load_config": "options",
    "BuildReport": "report",
    "StageOutcome": "report",
    "build": "runner",
}


def __getattr__(name: str):
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    raise AttributeError(name)
