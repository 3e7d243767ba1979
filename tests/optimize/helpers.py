"""Helpers for the optimize tests: PyTorch reference, real-text feeds, masked parity."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from onnxforge.artifact import Artifact


@functools.lru_cache(maxsize=8)
def torch_model(folder: str):
    """The PyTorch model the artifact was exported from, rebuilt from its manifest."""
    from onnxforge.sources import SourceRef, load_source

    art = Artifact.open(folder)
    return load_source(SourceRef.from_dict(art.manifest["source"])).module


def real_text_feeds(folder: Path, texts: list[str]):
    from onnxforge.textbatch import encode_texts
    from onnxforge.tokenizer import load_tokenizer

    art = Artifact.open(folder)
    return encode_texts(load_tokenizer(folder), texts, art.spec)


def run_variant(folder: Path, variant: str, feeds):
    from onnxforge.runners import make_session, run_session

    art = Artifact.open(folder)
    session, info = make_session(art.variant_path(variant), "cpu")
    assert info.obtained[0] == "CPUExecutionProvider"
    return run_session(session, art.spec, feeds)


def masked_max_abs(expected: np.ndarray, actual: np.ndarray, mask: np.ndarray | None) -> float:
    """Max |difference| over real tokens (fused Attention leaves padded rows undefined)."""
    assert expected.shape == actual.shape
    if mask is not None and expected.ndim >= 2 and expected.shape[:2] == mask.shape:
        keep = mask.astype(bool)
        expected, actual = expected[keep], actual[keep]
    return float(np.abs(expected - actual).max())


def parity_vs_torch(folder: Path, variant: str, *, texts: list[str] | None = None) -> dict[str, float]:
    """Worst masked max abs per output vs PyTorch, on a random right-padded 3 x 37 batch
    and (when the artifact has a tokenizer) on real texts."""
    from onnxforge.inputs import random_inputs
    from onnxforge.runners import run_torch

    art = Artifact.open(folder)
    spec = art.spec
    batches = [random_inputs(spec, 3, min(37, spec.max_positions), seed=99)]
    if texts and (folder / "tokenizer.json").is_file():
        batches.append(real_text_feeds(folder, texts))
    worst: dict[str, float] = {}
    module = torch_model(str(folder))
    for feeds in batches:
        if "attention_mask" in feeds:
            assert feeds["attention_mask"].sum(1).min() < feeds["attention_mask"].shape[1], "needs padded rows"
        expected = run_torch(module, spec, feeds)
        actual = run_variant(folder, variant, feeds)
        for name in spec.output_names:
            d = masked_max_abs(expected[name], actual[name], feeds.get("attention_mask"))
            worst[name] = max(worst.get(name, 0.0), d)
    return worst


def apply_rule(model, rule):
    """One rule module's ``apply`` on an ONNX proto, as the optimize pipeline runs it (shape
    inference first, unused nodes dropped after): (the rewritten proto, rewrites made)."""
    import onnx_ir as ir
    import onnx_ir.passes.common as common_passes

    ir_model = ir.from_proto(model)
    common_passes.ShapeInferencePass()(ir_model)
    count = rule.apply(ir_model)
    common_passes.RemoveUnusedNodesPass()(ir_model)
    return ir.to_proto(ir_model), count
