"""fp16 for CUDA, built and checked without a GPU: fp16 weights, fp32 I/O, CPU-provider parity."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from onnxforge.artifact import Artifact
from onnxforge.data import sample_texts
from onnxforge.graph import fused_counts
from onnxforge.parity.tolerance import DEFAULT_TOLERANCES

from .helpers import real_text_feeds, run_variant, torch_model

# The parity table's fp16 row (one table for every stage).
FP16_ATOL, FP16_RTOL, FP16_MIN_COSINE = (DEFAULT_TOLERANCES["fp16"].atol, DEFAULT_TOLERANCES["fp16"].rtol,
                                         DEFAULT_TOLERANCES["fp16"].min_cosine)


@pytest.fixture(scope="module")
def tiny_fp16(tiny_opt, cli):
    """fp16 for CUDA through the CLI, with ONNX Runtime watched for CUDA sessions."""
    import onnxruntime as ort

    folder, _ = tiny_opt
    requested = []
    real = ort.InferenceSession

    class Watch(real):
        def __init__(self, *args, providers=None, **kwargs):
            requested.append(list(providers or []))
            super().__init__(*args, providers=providers, **kwargs)

    mp = pytest.MonkeyPatch()
    mp.setattr(ort, "InferenceSession", Watch)
    try:
        code, out, err = cli("optimize", folder, "--precision", "fp16", "--device", "cuda")
    finally:
        mp.undo()
    return folder, code, out, err, requested


@pytest.fixture(scope="module")
def cli():
    from typer.testing import CliRunner

    from onnxforge.cli import app

    def _invoke(*args):
        r = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
        return r.exit_code, r.stdout, r.stderr

    return _invoke


def test_fp16_for_cuda_builds_without_gpu(tiny_fp16):
    folder, code, out, err, requested = tiny_fp16
    assert code == 0, err
    assert requested, "the checks must have run ONNX Runtime"
    assert all(p == ["CPUExecutionProvider"] for p in requested), requested  # never a CUDA session
    art = Artifact.open(folder)
    assert art.variants["fp16"] == {"file": "model_fp16.onnx", "precision": "fp16", "device": "cuda", "engine": "ort",
                                    "from": "base", "lossy": False}
    rec = art.stage("optimize.fp16")
    assert rec["passed"] and rec["fully_fused"] and rec["target_device"] == "cuda"


def test_fp16_weights_and_fp32_io(tiny_fp16):
    folder = tiny_fp16[0]
    model = onnx.load(str(folder / "model_fp16.onnx"))
    floats = [t for t in model.graph.initializer if t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)]
    fp16 = [t for t in floats if t.data_type == onnx.TensorProto.FLOAT16]
    # Every weight matrix is fp16; what stays fp32 is at most a handful of blocked-op constants.
    assert len(fp16) >= 0.9 * len(floats)
    big = [t for t in floats if np.prod(t.dims) >= 64 * 64]
    assert big and all(t.data_type == onnx.TensorProto.FLOAT16 for t in big)
    elem = {v.name: v.type.tensor_type.elem_type for v in list(model.graph.input) + list(model.graph.output)}
    assert elem == {"input_ids": 7, "attention_mask": 7, "token_type_ids": 7, "last_hidden_state": 1, "pooler_output": 1}
    # Fusions survive the conversion.
    assert fused_counts(model) == {"Attention": 2, "SkipLayerNormalization": 4, "BiasGelu": 2, "EmbedLayerNormalization": 1}


def test_fp16_block_list_is_documented(tiny_fp16):
    rec = Artifact.open(tiny_fp16[0]).stage("optimize.fp16")["fp16"]
    assert rec["keep_io_types"] is True
    reasons = rec["op_block_list"]
    assert {"Pow", "ReduceMean", "Range"} <= set(reasons)
    assert all(isinstance(r, str) and len(r) > 20 for r in reasons.values())
    assert rec["overflow_scan"]["inputs"] > 0 and rec["overflow_scan"]["limit"] == pytest.approx(65504 * 0.5)


def test_fp16_parity_on_cpu_provider(tiny_fp16):
    from onnxforge.inputs import random_inputs
    from onnxforge.runners import run_torch

    folder = tiny_fp16[0]
    spec = Artifact.open(folder).spec
    module = torch_model(str(folder))
    for feeds in (random_inputs(spec, 3, 37, seed=3), real_text_feeds(folder, sample_texts(5, offset=60))):
        expected = run_torch(module, spec, feeds)
        actual = run_variant(folder, "fp16", feeds)
        keep = feeds["attention_mask"].astype(bool)
        for name in spec.output_names:
            e, a = expected[name], actual[name]
            if e.ndim == 3:
                e, a = e[keep], a[keep]
            assert a.dtype == np.float32
            np.testing.assert_allclose(a, e, atol=FP16_ATOL, rtol=FP16_RTOL)
            cos = (e * a).sum(-1) / np.linalg.norm(e, axis=-1) / np.linalg.norm(a, axis=-1)
            assert cos.min() >= FP16_MIN_COSINE
            assert np.abs(a - e).max() > 0  # it really is a different (rounded) model


def test_fp16_device_cpu_is_allowed_with_a_note(tiny_opt, copy_artifact, cli):
    folder = copy_artifact(tiny_opt[0])
    code, out, err = cli("optimize", folder, "--precision", "fp16", "--device", "cpu")
    assert code == 0, err
    assert "fp16 targets CUDA" in out
    art = Artifact.open(folder)
    assert art.variants["fp16"]["device"] == "cpu"


def test_fp16_overflow_scan_keeps_hot_nodes_fp32(tiny_opt):
    """With a limit every activation exceeds, the scan must block those nodes: they stay fp32."""
    from onnxforge.inputs import random_inputs
    from onnxforge.optimize.fp16 import to_fp16

    folder = tiny_opt[0]
    spec = Artifact.open(folder).spec
    model = onnx.load(str(folder / "model_optimized.onnx"))
    feeds = [random_inputs(spec, 2, 16, seed=1)]
    _, cold = to_fp16(onnx.ModelProto.FromString(model.SerializeToString()), feeds, margin=0.5)
    assert cold["overflow_scan"]["blocked_nodes"] == {}  # nothing in the tiny BERT comes near 65504
    converted, hot = to_fp16(onnx.ModelProto.FromString(model.SerializeToString()), feeds, margin=1e-6)
    blocked = hot["overflow_scan"]["blocked_nodes"]
    # (model_optimized is built for CPU: its residual norms are LayerNormalization nodes.)
    assert any("LayerNorm" in name for name in blocked)
    # A blocked node reads fp32: its weights stay fp32 initializers, its other inputs come
    # through Casts to fp32 (the converter casts around it).
    inits = {t.name: t.data_type for t in converted.graph.initializer}
    producers = {o: n for n in converted.graph.node for o in n.output}
    seen = 0
    for node in converted.graph.node:
        if node.name not in blocked:
            continue
        seen += 1
        for name in node.input:
            if inits.get(name) in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16):
                assert inits[name] == onnx.TensorProto.FLOAT, (node.name, name)
            elif name in producers and producers[name].op_type == "Cast":
                to = next(a.i for a in producers[name].attribute if a.name == "to")
                assert to in (onnx.TensorProto.FLOAT, onnx.TensorProto.INT32), (node.name, name, to)
    assert seen == len(blocked)


def test_fp16_dynamo_mask_fill_is_clamped_not_blocked(tiny_dynamo_opt, copy_artifact):
    """The dynamo graph builds its attention bias with float32's minimum (-3.4e38). The scan
    must not keep that node fp32 (its output would be cast to -inf); the converter clamps the
    constant to -65504 instead, and parity holds."""
    from onnx import numpy_helper

    from onnxforge.optimize import OptimizeOptions, optimize_artifact

    folder = copy_artifact(tiny_dynamo_opt[0])
    report = optimize_artifact(folder, OptimizeOptions(precision="fp16", device="cuda"))
    assert report, report.failures()
    scan = report.fp16["overflow_scan"]
    assert scan["blocked_nodes"] == {} and scan["mask_fill_nodes"]
    model = onnx.load(str(folder / "model_fp16.onnx"))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    where = next(n for n in model.graph.node if n.name == scan["mask_fill_nodes"][0])
    fills = [inits[i] for i in where.input if i in inits and inits[i].size and inits[i].min() < -1e4]
    assert fills and all(f.dtype == np.float16 and f.min() == np.float16(-65504) for f in fills)
