"""The attention rules on small hand-built graphs: positive, negative, parity on ORT.

- attention_packing: self-attention MultiHeadAttention with three projections of one
  input -> one packed Attention; cross-attention (keys/values from another input) stays.
- attention_bias_merge: Softmax(scores + position_bias + mask) -> one summed bias; a
  Softmax over something that is not MatMul scores stays.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .helpers import apply_rule

HIDDEN, HEADS = 16, 2


def _model(nodes, inputs, inits, outputs=("out",)):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 9
    return onnx.shape_inference.infer_shapes(model)


def _run(model, feeds):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def _mha(cross: bool):
    rng = np.random.default_rng(0)
    inits, nodes = [], []
    kv_source = "y" if cross else "x"
    for name, source in (("q", "x"), ("k", kv_source), ("v", kv_source)):
        inits += [numpy_helper.from_array(rng.standard_normal((HIDDEN, HIDDEN)).astype(np.float32) * 0.3, f"w{name}"),
                  numpy_helper.from_array(rng.standard_normal(HIDDEN).astype(np.float32), f"b{name}")]
        nodes += [helper.make_node("MatMul", [source, f"w{name}"], [f"{name}_mm"]),
                  helper.make_node("Add", [f"{name}_mm", f"b{name}"], [name])]
    nodes.append(helper.make_node("MultiHeadAttention", ["q", "k", "v", "", "", "bias"], ["out"],
                                  domain="com.microsoft", num_heads=HEADS))
    dims = ["batch", "sequence", HIDDEN]
    inputs = [("x", dims), ("bias", ["batch", 1, "sequence", "sequence"])] + ([("y", dims)] if cross else [])
    return _model(nodes, inputs, inits)


def test_self_attention_is_packed_with_parity():
    from onnxforge.optimize.rules import attention_packing

    model = _mha(cross=False)
    packed, count = apply_rule(model, attention_packing)
    assert count == 1
    ops = [n.op_type for n in packed.graph.node]
    assert ops == ["Attention"], ops
    rng = np.random.default_rng(1)
    bias = np.where(rng.random((2, 1, 7, 7)) < 0.2, -1e4, 0.0).astype(np.float32)
    feeds = {"x": rng.standard_normal((2, 7, HIDDEN)).astype(np.float32), "bias": bias}
    assert np.abs(_run(model, feeds) - _run(packed, feeds)).max() <= 1e-5


def test_cross_attention_is_not_packed():
    from onnxforge.optimize.rules import attention_packing

    _, count = apply_rule(_mha(cross=True), attention_packing)
    assert count == 0


def _scores_softmax(from_matmul: bool):
    nodes = []
    if from_matmul:
        nodes += [helper.make_node("MatMul", ["q", "kt"], ["raw"]),
                  helper.make_node("Mul", ["raw", "scale"], ["scores"])]
    else:
        nodes.append(helper.make_node("Relu", ["q"], ["scores"]))
    nodes += [helper.make_node("Add", ["scores", "position_bias"], ["biased"]),
              helper.make_node("Add", ["biased", "mask"], ["masked"]),
              helper.make_node("Softmax", ["masked"], ["out"], axis=-1)]
    inits = [numpy_helper.from_array(np.array(0.5, np.float32), "scale")]
    inputs = [("q", [2, HEADS, 5, 5 if not from_matmul else 4]), ("kt", [2, HEADS, 4, 5]),
              ("position_bias", [1, HEADS, 5, 5]), ("mask", [2, 1, 1, 5])]
    return _model(nodes, inputs, inits)


def test_two_biases_become_one_with_parity():
    from onnxforge.optimize.rules import attention_bias_merge

    model = _scores_softmax(from_matmul=True)
    merged, count = apply_rule(model, attention_bias_merge)
    assert count == 1
    softmax = next(n for n in merged.graph.node if n.op_type == "Softmax")
    add = next(n for n in merged.graph.node if softmax.input[0] in n.output)
    assert "scores" in add.input  # scores + (position_bias + mask)
    rng = np.random.default_rng(2)
    feeds = {"q": rng.standard_normal((2, HEADS, 5, 4)).astype(np.float32),
             "kt": rng.standard_normal((2, HEADS, 4, 5)).astype(np.float32),
             "position_bias": rng.standard_normal((1, HEADS, 5, 5)).astype(np.float32),
             "mask": np.where(rng.random((2, 1, 1, 5)) < 0.3, -1e4, 0.0).astype(np.float32)}
    assert np.abs(_run(model, feeds) - _run(merged, feeds)).max() <= 1e-6


def test_softmax_not_over_attention_scores_is_left_alone():
    from onnxforge.optimize.rules import attention_bias_merge

    _, count = apply_rule(_scores_softmax(from_matmul=False), attention_bias_merge)
    assert count == 0
