"""Optimize-stage fixtures: writable copies of the shared exports, optimized once per session.

Each fixture copies a read-only session artifact and builds variants into the copy, so
the expensive work (MiniLM fusion and int8 calibration) happens once for the folder.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


def _copy(src: Path, factory, name: str) -> Path:
    dst = factory.mktemp(name) / "art"
    shutil.copytree(src, dst)
    return dst


def _optimize(folder: Path, precision: str, **kw):
    from onnxforge.optimize import OptimizeOptions, optimize_artifact

    return optimize_artifact(folder, OptimizeOptions(precision=precision, **kw))


@pytest.fixture(scope="session")
def minilm_opt(minilm_artifact, tmp_path_factory):
    """MiniLM (TorchScript export) with the fused fp32 variant: (folder, report)."""
    folder = _copy(minilm_artifact, tmp_path_factory, "minilm_opt")
    return folder, _optimize(folder, "fp32")


@pytest.fixture(scope="session")
def minilm_int8(minilm_opt):
    """The int8 variant built in the same MiniLM folder: (folder, report)."""
    folder, _ = minilm_opt
    return folder, _optimize(folder, "int8")


@pytest.fixture(scope="session")
def minilm_dynamo_artifact(tmp_path_factory) -> Path:
    from onnxforge.export import ExportOptions, export_model
    from onnxforge.sources import resolve_source

    out = tmp_path_factory.mktemp("minilm_dynamo") / "art"
    assert export_model(resolve_source(None), out, ExportOptions(exporter="dynamo"))
    return out


@pytest.fixture(scope="session")
def minilm_dynamo_opt(minilm_dynamo_artifact):
    """Optimized in place: this session artifact is private to the optimize tests."""
    return minilm_dynamo_artifact, _optimize(minilm_dynamo_artifact, "fp32")


@pytest.fixture(scope="session")
def tiny_opt(tiny_artifact, tmp_path_factory):
    folder = _copy(tiny_artifact, tmp_path_factory, "tiny_opt")
    return folder, _optimize(folder, "fp32")


@pytest.fixture(scope="session")
def tiny_dynamo_opt(tiny_dynamo_artifact, tmp_path_factory):
    folder = _copy(tiny_dynamo_artifact, tmp_path_factory, "tiny_dynamo_opt")
    return folder, _optimize(folder, "fp32")
