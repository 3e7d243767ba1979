"""Shared fixtures: tiny seeded BERTs, the real MiniLM export, and a CLI runner.

Expensive artifacts (exports) are session-scoped and must be treated as read-only by
tests; a test that changes an artifact copies it first (``copy_artifact``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.fixtures.architectures import tiny_architecture  # noqa: F401  (session fixture)

FIXTURES = Path(__file__).parent / "fixtures"


def pytest_collection_modifyitems(config, items):
    _group_by_file(items)
    _skip_cuda_without_gpu(items)


def _group_by_file(items) -> None:
    """Under pytest-xdist (``--dist loadgroup``, see pyproject) a file runs whole on one
    worker, so its module fixtures are built once; a file may name a wider group
    (``xdist_group``) to share an expensive session fixture with other files."""
    named = {id(item) for item in items if item.get_closest_marker("xdist_group") is not None}
    for item in items:
        if id(item) not in named:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::", 1)[0]))
    # Longest first, so no long group starts last while the other worker idles: the
    # named groups (an expensive shared build), then the files marked slow.
    items.sort(key=lambda item: 0 if id(item) in named else 1 if item.get_closest_marker("slow") else 2)


def _skip_cuda_without_gpu(items) -> None:
    from onnxforge.runners import cuda_unavailable_reason

    reason = None
    try:
        reason = cuda_unavailable_reason()
    except Exception as e:  # onnxruntime missing entirely
        reason = str(e)
    if reason:
        skip = pytest.mark.skip(reason=f"no usable CUDA: {reason}")
        for item in items:
            if "cuda" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    from onnxforge.sources.builtin import builtin_model_dir

    return builtin_model_dir()


@pytest.fixture(scope="session")
def tokenizer_dir(minilm_dir) -> Path:
    return minilm_dir


def _save_tiny(folder: Path, model_cls_name: str, minilm_dir: Path, **config_overrides) -> Path:
    import torch
    import transformers

    from tests.fixtures.custom_models import tiny_config

    torch.manual_seed(0)
    config = tiny_config(**config_overrides)
    model = getattr(transformers, model_cls_name)(config).eval()
    model.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copyfile(minilm_dir / name, folder / name)
    return folder


@pytest.fixture(scope="session")
def tiny_classifier_dir(tmp_path_factory, minilm_dir) -> Path:
    """A seeded 2-layer BERT with a 3-label classification head, saved by save_pretrained."""
    return _save_tiny(
        tmp_path_factory.mktemp("tiny_cls"), "BertForSequenceClassification", minilm_dir,
        num_labels=3, id2label={0: "neg", 1: "neu", 2: "pos"}, label2id={"neg": 0, "neu": 1, "pos": 2},
    )


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory, minilm_dir) -> Path:
    """A seeded 2-layer base BertModel (feature extraction)."""
    return _save_tiny(tmp_path_factory.mktemp("tiny_base"), "BertModel", minilm_dir)


def _export(source_kwargs: dict, out: Path, **options):
    from onnxforge.export import ExportOptions, export_model
    from onnxforge.sources import resolve_source

    model = source_kwargs.pop("model", None)
    report = export_model(resolve_source(model, **source_kwargs), out, ExportOptions(**options))
    assert report, report.check
    return out


@pytest.fixture(scope="session")
def minilm_artifact(tmp_path_factory) -> Path:
    """The built-in MiniLM exported with the TorchScript exporter (fully fused by ORT). Read-only."""
    return _export({}, tmp_path_factory.mktemp("minilm") / "art", exporter="torchscript")


@pytest.fixture(scope="session")
def tiny_artifact(tmp_path_factory, tiny_bert_dir) -> Path:
    """The tiny base BERT exported with TorchScript. Read-only."""
    return _export({"model": str(tiny_bert_dir)}, tmp_path_factory.mktemp("tiny") / "art", exporter="torchscript")


@pytest.fixture(scope="session")
def tiny_dynamo_artifact(tmp_path_factory, tiny_bert_dir) -> Path:
    """The tiny base BERT exported with the dynamo exporter. Read-only."""
    return _export({"model": str(tiny_bert_dir)}, tmp_path_factory.mktemp("tiny_dynamo") / "art", exporter="dynamo")


@pytest.fixture
def copy_artifact(tmp_path):
    """Copy a session artifact so a test may modify it."""

    def _copy(src: Path) -> Path:
        dst = tmp_path / f"copy_{src.parent.name}"
        shutil.copytree(src, dst)
        return dst

    return _copy


@pytest.fixture
def cli():
    """Invoke the CLI in-process; returns (exit_code, stdout, stderr)."""
    from typer.testing import CliRunner

    from onnxforge.cli import app

    runner = CliRunner()

    def _invoke(*args: str):
        result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
        return result.exit_code, result.stdout, result.stderr

    return _invoke


@pytest.fixture
def factory_env(monkeypatch):
    """Make tests.fixtures.custom_models importable as a module:function source."""
    root = str(Path(__file__).parent.parent)
    monkeypatch.chdir(root)
    return root


# Runtime fixtures shared by tests/runtime, smoke, serve and batch (session-scoped once here).
from tests.runtime_helpers import (  # noqa: E402,F401
    cls_reference,
    minilm_reference,
    minilm_runtime,
    tiny_cls_artifact,
    tiny_cls_runtime,
    tiny_runtime,
)
