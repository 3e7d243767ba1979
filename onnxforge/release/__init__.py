"""Release stage: reproducible packages and their verification (`build` is onnxforge.build).

API: ``package_artifact(dir, out, PackageOptions(...)) -> PackageReport``,
``verify_path(archive_or_dir, VerifyOptions(...)) -> VerifyReport``. Names are loaded
lazily so that importing ``onnxforge.release.cli`` (for --help) stays light.
"""

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


def __getattr__(name: str):
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    raise AttributeError(name)
