"""Fixtures shared by tests/runtime, smoke, serve and batch: runtimes, an independent PyTorch reference, and a live uvicorn server.

The reference for MiniLM is built without onnxforge's tokenizer path: transformers'
tokenizer from the model folder, the PyTorch model rebuilt from the manifest, and
mean pooling written here, so a bug in Runtime.encode or pooling cannot hide itself.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

# The tiny fixtures borrow MiniLM's tokenizer_config (model_max_length 512) for a model
# with 128 positions; loading them needs an explicit length (the check refuses 512).
TINY_MAX_LENGTH = 128


@pytest.fixture(scope="session")
def minilm_runtime(minilm_artifact):
    from onnxforge.runtime import Runtime

    return Runtime.load(minilm_artifact)


@pytest.fixture(scope="session")
def tiny_runtime(tiny_artifact):
    from onnxforge.runtime import Runtime

    return Runtime.load(tiny_artifact, max_length=TINY_MAX_LENGTH)


@pytest.fixture(scope="session")
def tiny_cls_artifact(tmp_path_factory, tiny_classifier_dir) -> Path:
    """The tiny 3-label classifier, exported, with a tokenizer_config that fits it. Read-only."""
    from onnxforge.export import ExportOptions, export_model
    from onnxforge.sources import resolve_source

    src = tmp_path_factory.mktemp("cls_src") / "cls"
    shutil.copytree(tiny_classifier_dir, src)
    cfg_path = src / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["model_max_length"] = TINY_MAX_LENGTH
    cfg_path.write_text(json.dumps(cfg))
    out = tmp_path_factory.mktemp("cls_art") / "art"
    report = export_model(resolve_source(str(src)), out, ExportOptions())
    assert report, report.check
    return out


@pytest.fixture(scope="session")
def tiny_cls_runtime(tiny_cls_artifact):
    from onnxforge.runtime import Runtime

    return Runtime.load(tiny_cls_artifact)


class TorchReference:
    """PyTorch outputs for texts, tokenized by transformers (not by onnxforge)."""

    def __init__(self, artifact_dir: Path, tokenizer_dir: Path, max_length: int):
        from transformers import AutoTokenizer

        from onnxforge.artifact import Artifact
        from onnxforge.sources import SourceRef, load_source

        art = Artifact.open(artifact_dir)
        self.spec = art.spec
        self.loaded = load_source(SourceRef.from_dict(art.manifest["source"]))
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
        self.max_length = max_length

    def outputs(self, texts: list[str]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        from onnxforge.runners import run_torch

        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="np")
        feeds = {k: enc[k].astype(np.int64) for k in self.spec.input_names}
        return run_torch(self.loaded.module, self.spec, feeds), feeds["attention_mask"]

    def embeddings(self, texts: list[str]) -> np.ndarray:
        out, mask = self.outputs(texts)
        hidden = out["last_hidden_state"]
        m = mask[:, :, None].astype(np.float64)
        pooled = (hidden * m).sum(1) / m.sum(1)
        return (pooled / np.linalg.norm(pooled, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="session")
def minilm_reference(minilm_artifact, minilm_dir) -> TorchReference:
    return TorchReference(minilm_artifact, minilm_dir, 256)  # its sentence-transformers max_seq_length


@pytest.fixture(scope="session")
def cls_reference(tiny_cls_artifact) -> TorchReference:
    return TorchReference(tiny_cls_artifact, tiny_cls_artifact, TINY_MAX_LENGTH)


def assert_close_rows(actual: np.ndarray, expected: np.ndarray, atol: float = 1e-4, min_cos: float = 0.99999) -> None:
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert np.abs(actual - expected).max() <= atol, np.abs(actual - expected).max()
    cos = (actual * expected).sum(1) / (np.linalg.norm(actual, axis=1) * np.linalg.norm(expected, axis=1))
    assert cos.min() >= min_cos, cos.min()


