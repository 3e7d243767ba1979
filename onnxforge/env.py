"""Versions and machine facts recorded in manifests and reports."""

from __future__ import annotations

import platform
import sys
from importlib import metadata

_PACKAGES = (
    "onnxforge",
    "torch",
    "transformers",
    "tokenizers",
    "onnx",
    "onnxscript",
    "onnxruntime",
    "onnxruntime-gpu",
    "numpy",
)


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, str | None]:
    found = {name: package_version(name) for name in _PACKAGES}
    # onnxruntime ships as one of two distributions; report the one installed.
    if found.get("onnxruntime") is None and found.get("onnxruntime-gpu"):
        found["onnxruntime"] = found["onnxruntime-gpu"]
    found.pop("onnxruntime-gpu", None)
    found["python"] = platform.python_version()
    return found


def machine() -> dict[str, str | int | None]:
    import os

    cpu = platform.processor() or None
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
    }
