"""Release stage: reproducible packages and their verification (`build` is onnxforge.build).

API: ``package_artifact(dir, out, PackageOptions(...)) -> PackageReport``,
``verify_path(archive_or_dir, VerifyOptions(...)) -> VerifyReport``. Names are loaded
lazily so that importing ``onnxforge.release.cli`` (for --help) stays light.
"""

from ..lazy import lazy_getattr

__all__ = [
    "PackageOptions", "PackageReport", "package_artifact",
    "VerifyOptions", "VerifyReport", "verify_path",
]

_HOMES = {
    "PackageOptions": "package",
    "PackageReport": "package",
    "package_artifact": "package",
    "VerifyOptions": "verify",
    "VerifyReport": "verify",
    "verify_path": "verify",
}


__getattr__ = lazy_getattr(__name__, _HOMES)
