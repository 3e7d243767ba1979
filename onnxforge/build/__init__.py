"""`build`: every stage in order as one job, reusing stages whose inputs did not change.

API: ``build(BuildOptions(...)) -> BuildReport``; ``load_config(path)`` reads the
TOML options. Names are loaded lazily so that importing ``onnxforge.build.cli``
(for --help) stays light.
"""

from ..lazy import lazy_getattr

__all__ = ["BuildOptions", "BuildReport", "StageOutcome", "build", "load_config"]

_HOMES = {
    "BuildOptions": "options",
    "load_config": "options",
    "BuildReport": "report",
    "StageOutcome": "report",
    "build": "runner",
}


__getattr__ = lazy_getattr(__name__, _HOMES)
