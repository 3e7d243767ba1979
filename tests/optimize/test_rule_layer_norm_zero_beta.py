"""Bias-free residual LayerNorms -> SkipLayerNormalization (ModernBERT's pre-LN).

Hand-built pre-LN residual chain (each sum feeds the norm and the next residual):
the zero-beta rule alone (positive, negatives), then through onnxscript's skip-norm
rule (fuses, the sum comes from the 4th output), parity on ORT; and ModernBERT built
for CUDA (SkipLayerNormalization kept) vs PyTorch.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

HIDDEN = 16


def _graph(*, beta: bool = False, norm_input: str = "Add", axis: int = -1):
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.uniform(0.5, 1.5, HIDDEN).astype(np.float32), "gamma"),
             numpy_helper.from_array(rng.standard_normal(HIDDEN).astype(np.float32), "beta"),
             numpy_helper.from_array(rng.standard_normal((HIDDEN, HIDDEN)).astype(np.float32) / 4, "w1"),
             numpy_helper.from_array(rng.standard_normal((HIDDEN, HIDDEN)).astype(np.float32) / 4, "w2")]
    dims = ["batch", "sequence", HIDDEN]
    norm_args = ["gamma"] + (["beta"] if beta else [])
    op = {"Add": "Add", "Sub": "Sub"}[norm_input]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h1"]),
             helper.make_node(op, ["x", "h1"], ["sum1"]),
             helper.make_node("LayerNormalization", ["sum1"] + norm_args, ["n1"], axis=axis, epsilon=1e-5),
             helper.make_node("MatMul", ["n1", "w2"], ["h2"]),
             helper.make_node(op, ["sum1", "h2"], ["sum2"]),  # the sum is read again: pre-LN
             helper.make_node("LayerNormalization", ["sum2"] + norm_args, ["out"], axis=axis, epsilon=1e-5)]
    graph = helper.make_graph(nodes, "pre_ln", [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, dims)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    return onnx.shape_inference.infer_shapes(model)


def _apply(model, *, fuse: bool):
    import onnx_ir as ir
    import onnx_ir.passes.common as common_passes

    from onnxforge.optimize.rules import layer_norm_zero_beta, ort_fusions

    ir_model = ir.from_proto(model)
    common_passes.ShapeInferencePass()(ir_model)
    count = layer_norm_zero_beta.apply(ir_model)
    if fuse:
        ort_fusions.apply(ir_model)
    common_passes.RemoveUnusedNodesPass()(ir_model)
    return ir.to_proto(ir_model), count


def _run(model, x):
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_zero_beta_then_skip_layer_norm_with_the_sum_output():
    model = _graph()
    with_beta, count = _apply(model, fuse=False)
    assert count == 2
    norms = [n for n in with_beta.graph.node if n.op_type == "LayerNormalization"]
    assert len(norms) == 2 and all(len(n.input) == 3 for n in norms)
    fused, _ = _apply(model, fuse=True)
    ops = Counter(n.op_type for n in fused.graph.node)
    assert ops["SkipLayerNormalization"] == 2 and ops["LayerNormalization"] == 0 and ops["Add"] == 0
    first = next(n for n in fused.graph.node if n.op_type == "SkipLayerNormalization")
    # The first sum feeds the second residual through the fused op's 4th output.
    assert len(first.output) == 4 and any(first.output[3] in n.input for n in fused.graph.node)
    x = np.random.default_rng(1).standard_normal((3, 7, HIDDEN)).astype(np.float32)
    expected = _run(model, x)
    assert np.abs(_run(with_beta, x) - expected).max() == 0.0
    assert np.abs(_run(fused, x) - expected).max() <= 1e-5


NOT_REWRITTEN = {
    "norm already has a beta": dict(beta=True),
    "norm of something else than an Add": dict(norm_input="Sub"),
    "norm over more than the last axis": dict(axis=1),
}


@pytest.mark.parametrize("case", list(NOT_REWRITTEN))
def test_other_norms_are_left_alone(case):
    rewritten, count = _apply(_graph(**NOT_REWRITTEN[case]), fuse=False)
    assert count == 0
    norms = [n for n in rewritten.graph.node if n.op_type == "LayerNormalization"]
    assert len(norms) == 2 and all(len(n.input) == (3 if case == "norm already has a beta" else 2) for n in norms)


@pytest.mark.slow
@pytest.mark.parametrize("pad", ["right", "left"])
def test_modernbert_for_cuda_keeps_skip_layer_norm_with_parity(pad, tmp_path):
    from onnxforge.optimize.fusion import fuse
    from tests.fixtures.architectures import architecture_inputs

    from .dynamo_helpers import export_dynamo, feeds, masked_max_abs, ort_outputs, spec_for, torch_outputs
    from .test_architectures_fusion import _hidden_states_module

    module = _hidden_states_module("modernbert")
    names = architecture_inputs("modernbert")
    path = export_dynamo(module, feeds(names, 30522, batch=2, seq=16), tmp_path / "m.onnx")
    # device None (as for CUDA): no CPU kernel choices, the fused ops stay in the graph.
    outcome = fuse(path, spec_for(dict.fromkeys(names), 4, 64, 2, 30522), "dynamo", None)
    ops = Counter(n.op_type for n in outcome.model.graph.node)
    assert ops["SkipLayerNormalization"] == 4 and ops["RotaryEmbedding"] == 4 and ops["MultiHeadAttention"] == 2
    # Only the embedding norm stays (it normalizes a Gather, not a residual sum).
    assert ops["LayerNormalization"] == 1, ops
    inputs = feeds(names, 30522, pad=pad)
    worst = masked_max_abs(torch_outputs(module, inputs), ort_outputs(outcome.model, inputs), inputs["attention_mask"])
    assert worst <= 1e-4, (pad, worst)
