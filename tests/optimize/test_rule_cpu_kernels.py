"""CPU kernel choice: SkipLayerNormalization -> Sum + LayerNormalization, and ORT keeps it.

Positive (with and without the bias input; one output as ORT's optimizer writes it, four
as onnxscript declares them), negative (SkipSimplifiedLayerNormalization is left alone),
parity with the fused op on ONNX Runtime, and the property the rule exists for: ORT's
load-time optimizer (all levels, CPU) does not turn the result back into the fused op.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

HIDDEN = 16


def _graph(op="SkipLayerNormalization", bias=True, outputs=1):
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.uniform(0.5, 1.5, HIDDEN).astype(np.float32), "gamma"),
             numpy_helper.from_array(rng.standard_normal(HIDDEN).astype(np.float32), "beta"),
             numpy_helper.from_array(rng.standard_normal(HIDDEN).astype(np.float32), "bias"),
             numpy_helper.from_array(rng.standard_normal((HIDDEN, HIDDEN)).astype(np.float32), "w")]
    dims = ["batch", "sequence", HIDDEN]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)]
    args = ["h", "x", "gamma"] + (["beta"] if op == "SkipLayerNormalization" else [])
    if bias and op == "SkipLayerNormalization":
        args.append("bias")
    outs = ["y", "mean", "inv_std", "sum"][:outputs]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]),
             helper.make_node(op, args, outs, domain="com.microsoft", epsilon=1e-12),
             helper.make_node("Relu", ["y"], ["out"])]
    graph_outputs = [helper.make_tensor_value_info("out", TensorProto.FLOAT, dims)]
    if outputs == 4:  # the residual sum read downstream, as in a pre-LN encoder
        nodes.append(helper.make_node("Relu", ["sum"], ["sum_out"]))
        graph_outputs.append(helper.make_tensor_value_info("sum_out", TensorProto.FLOAT, dims))
    graph = helper.make_graph(nodes, "skip", inputs, graph_outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 9
    return model


def _rewrite(model):
    import onnx_ir as ir
    import onnx_ir.passes.common as common_passes

    from onnxforge.optimize.rules import skip_layer_norm_for_cpu

    ir_model = ir.from_proto(model)
    count = skip_layer_norm_for_cpu.apply(ir_model)
    common_passes.RemoveUnusedNodesPass()(ir_model)
    return ir.to_proto(ir_model), count


def _session(model, optimized_path=None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if optimized_path:
        so.optimized_model_filepath = str(optimized_path)
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("bias, outputs", [(True, 1), (False, 1), (True, 4)])
def test_emitted_unfused_matches_and_stays_unfused_in_ort(bias, outputs, tmp_path):
    model = _graph(bias=bias, outputs=outputs)
    rewritten, count = _rewrite(model)
    assert count == 1
    ops = [n.op_type for n in rewritten.graph.node]
    assert "SkipLayerNormalization" not in ops and ops.count("Sum") == 1 and ops.count("LayerNormalization") == 1
    x = np.random.default_rng(1).standard_normal((2, 5, HIDDEN)).astype(np.float32)
    for e, a in zip(_session(model).run(None, {"x": x}), _session(rewritten, tmp_path / "opt.onnx").run(None, {"x": x})):
        assert np.abs(e - a).max() <= 1e-5
    loaded = [n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node]
    assert "SkipLayerNormalization" not in loaded and "LayerNormalization" in loaded


def test_an_add_would_be_refused_by_ort(tmp_path):
    """Why the residual is a Sum: the same graph with an Add is fused back on load."""
    rewritten, _ = _rewrite(_graph(bias=False))
    for node in rewritten.graph.node:
        if node.op_type == "Sum":
            node.op_type = "Add"
    _session(rewritten, tmp_path / "opt.onnx")
    assert "SkipLayerNormalization" in [n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node]


def test_simplified_layer_norm_is_left_alone():
    model = _graph(op="SkipSimplifiedLayerNormalization", bias=False)
    rewritten, count = _rewrite(model)
    assert count == 0 and "SkipSimplifiedLayerNormalization" in [n.op_type for n in rewritten.graph.node]
