"""int8 for CPU: real-text sentence embeddings stay within the cosine targets of PyTorch fp32."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from onnxforge.artifact import Artifact
from onnxforge.data import sample_texts
from onnxforge.graph import fused_counts, is_quantized

from .helpers import real_text_feeds, run_variant, torch_model

EVAL_TEXTS = 300  # sample_texts(300): offsets 0-299, disjoint from calibration (1000+) and check (1500+) texts


def _mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask[..., None].astype(np.float64)
    return (hidden * m).sum(1) / np.maximum(m.sum(1), 1.0)


def test_int8_minilm_cosine_targets_on_real_text(minilm_int8):
    from onnxforge.runners import run_torch

    folder, report = minilm_int8
    assert report, report.failures()
    spec = Artifact.open(folder).spec
    module = torch_model(str(folder))
    # Batches of similar length (less padding: PyTorch is the slow side of this test).
    texts = sorted(sample_texts(EVAL_TEXTS), key=len)
    rec = Artifact.open(folder).stage("optimize.int8")["int8"]
    calib = rec["calibration"]["source"]
    assert "offset 1000" in calib and rec["check_texts"]["offset"] >= EVAL_TEXTS  # no overlap with these texts
    cosines = []
    for i in range(0, len(texts), 25):
        feeds = real_text_feeds(folder, texts[i:i + 25])
        ref = _mean_pool(run_torch(module, spec, feeds)["last_hidden_state"], feeds["attention_mask"])
        got = _mean_pool(run_variant(folder, "int8", feeds)["last_hidden_state"], feeds["attention_mask"])
        cosines.append((ref * got).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(got, axis=1))
    cos = np.concatenate(cosines)
    assert cos.size == EVAL_TEXTS
    assert cos.mean() >= 0.995, cos.mean()
    assert cos.min() >= 0.99, cos.min()
    # And it is really int8: not a weight-only or fp32 graph in disguise.
    assert cos.min() < 0.9999


def test_int8_graph_runs_int8_kernels(minilm_int8):
    folder, _ = minilm_int8
    art = Artifact.open(folder)
    assert art.variants["int8"] == {"file": "model_int8.onnx", "precision": "int8", "device": "cpu", "engine": "ort",
                                    "from": "base", "lossy": False}
    model = onnx.load(str(folder / "model_int8.onnx"))
    assert is_quantized(model)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QAttention") == 6 and ops.count("MatMulInteger") == 18
    # Built for CPU: the residual norms are Sum + LayerNormalization (see optimize.rules).
    assert ops.count("LayerNormalization") == 12 and "SkipLayerNormalization" not in fused_counts(model)
    int8_weights = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 2]
    assert len(int8_weights) == 24
    # The int8 file is much smaller than the fp32 one.
    assert (folder / "model_int8.onnx").stat().st_size < 0.7 * (folder / "model_optimized.onnx").stat().st_size


def test_int8_report_settings_and_outliers(minilm_int8):
    folder, _ = minilm_int8
    rec = Artifact.open(folder).stage("optimize.int8")
    q = rec["int8"]
    assert q["weights"].startswith("int8") and q["reduce_range"] is False
    assert q["quantized_nodes"] == {"MatMul": 18, "Attention": 6}
    # MiniLM's massive-activation channel (hidden dim 99, ~28 vs a median ~2) is found by calibration.
    outliers = q["outliers"]
    assert outliers["method"] == "smooth" and 1 <= len(outliers["matmuls"]) <= 18
    # (The node's path prefix follows the module nesting: the sentence pipeline wraps the encoder.)
    (layer0,) = [v for k, v in outliers["matmuls"].items() if k.endswith("/encoder/layer.0/intermediate/dense/MatMul")]
    assert 99 in layer0["channels"] and max(layer0["absmax"]) > 6 * layer0["median_absmax"]
    # Scaled down to smooth_target (5) x the median channel's range.
    assert layer0["scale"][0] * 5 * layer0["median_absmax"] == pytest.approx(layer0["absmax"][0], rel=1e-2)
    assert any(row["config"].endswith("[default]") for row in q["tradeoff_measured"])
    held_out = next(c for c in rec["checks"] if c["name"] == "held-out texts")
    assert held_out["passed"] and held_out["outputs"]["last_hidden_state"]["samples"] == 64


@pytest.mark.parametrize("method", ["split", "smooth"])
def test_int8_outlier_rewrites_are_exact_before_quantization(tiny_opt, method):
    """Both outlier rewrites are identities in fp32: split computes X @ W as
    (X * keep) @ W + X[:, idx] @ W[idx], smooth as (X / s) @ (s W)."""
    import onnxruntime as ort

    from onnxforge.inputs import random_inputs
    from onnxforge.optimize.int8 import channel_absmax, smooth_outliers, split_outliers, weighted_matmuls

    folder = tiny_opt[0]
    spec = Artifact.open(folder).spec
    model = onnx.load(str(folder / "model_optimized.onnx"))
    feeds = random_inputs(spec, 2, 24, seed=4)
    inputs = sorted({n.input[0] for n in weighted_matmuls(model)})
    absmax = channel_absmax(model, inputs, [feeds])
    split_model = onnx.ModelProto.FromString(model.SerializeToString())
    if method == "split":  # a low ratio forces rewrites on this random model
        main, split = split_outliers(split_model, absmax, ratio=1.5, cap=3)
    else:
        main, split = smooth_outliers(split_model, absmax, ratio=1.5, cap=3, target=1.0)
    assert split and len(main) == len(weighted_matmuls(model))
    assert all(1 <= len(s["channels"]) <= 3 for s in split.values())

    def run(m):
        s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        return s.run(None, {k: v for k, v in feeds.items() if k in {i.name for i in s.get_inputs()}})

    for a, b in zip(run(model), run(split_model)):
        np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-5)
