"""Lazy package exports: a stage package names its public API without importing it.

``onnxforge --help`` must stay fast, so a package ``__init__`` lists ``{name: submodule}``
and hands that table to ``lazy_getattr``; the submodule (and numpy, onnxruntime, torch
behind it) is imported on first use of the name.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_getattr(package: str, homes: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``package.<homes[name]>`` and returns ``name`` from it."""

    def __getattr__(name: str) -> Any:
        if name in homes:
            return getattr(importlib.import_module(f"{package}.{homes[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
