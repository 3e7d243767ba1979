"""Validate stage: an artifact variant against the PyTorch model it came from.

API: ``validate_artifact(dir, ValidateOptions(...)) -> ValidationResult`` (truthy when
every check passed). Names are loaded lazily so that importing
``onnxforge.validate.cli`` (for --help) stays light.
"""

from ..lazy import lazy_getattr

__all__ = ["DEFAULT_TOLERANCES", "Tolerance", "ValidateOptions", "ValidationResult", "validate_artifact"]

_HOMES = {
    "DEFAULT_TOLERANCES": "options",
    "Tolerance": "options",
    "ValidateOptions": "options",
    "ValidationResult": "result",
    "validate_artifact": "validator",
}


__getattr__ = lazy_getattr(__name__, _HOMES)
