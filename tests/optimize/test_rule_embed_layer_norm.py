"""The EmbedLayerNormalization rule on small hand-built graphs: positive, negative, parity.

The graphs are what the dynamo exporter writes for BERT embeddings: Gather lookups summed
(in either order) and a LayerNormalization, with positions from an arange over the
sequence length, from a graph input, or absent segment embeddings.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from .helpers import apply_rule

VOCAB, POSITIONS, HIDDEN = 50, 16, 8


def _graph(*, segment: str | None = "input", positions: str = "arange", segment_last: bool = False,
           norm_axis: int = -1, word_from_input: bool = True, constant_tables: bool = True):
    rng = np.random.default_rng(0)
    tables = {
        "word": rng.standard_normal((VOCAB, HIDDEN)).astype(np.float32),
        "pos": rng.standard_normal((POSITIONS, HIDDEN)).astype(np.float32),
        "seg": rng.standard_normal((2, HIDDEN)).astype(np.float32),
        "gamma": rng.uniform(0.5, 1.5, HIDDEN).astype(np.float32),
        "beta": rng.standard_normal(HIDDEN).astype(np.float32),
    }
    ids_shape = ["batch", "sequence"]
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ids_shape)]
    nodes, inits = [], []
    for name, value in tables.items():
        if constant_tables or name in ("gamma", "beta"):
            inits.append(numpy_helper.from_array(value, name))
        else:
            inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(value.shape)))
    inits += [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in
              (("zero", 0), ("one", 1), ("axis0", [0]))]
    ids = "input_ids"
    if not word_from_input:  # the lookup indexes a computed tensor, not the graph input
        nodes.append(helper.make_node("Identity", ["input_ids"], ["ids_copy"]))
        ids = "ids_copy"
    nodes.append(helper.make_node("Gather", ["word", ids], ["w"], axis=0))
    if positions == "arange":
        nodes += [helper.make_node("Shape", ["input_ids"], ["seq_len"], start=1, end=2),
                  helper.make_node("Squeeze", ["seq_len"], ["seq"]),
                  helper.make_node("Range", ["zero", "seq", "one"], ["arange"]),
                  helper.make_node("Unsqueeze", ["arange", "axis0"], ["pos_ids"])]
    else:
        inputs.append(helper.make_tensor_value_info("position_ids", TensorProto.INT64, ids_shape))
        nodes.append(helper.make_node("Identity", ["position_ids"], ["pos_ids"]))
    nodes.append(helper.make_node("Gather", ["pos", "pos_ids"], ["p"], axis=0))
    if segment is None:
        nodes.append(helper.make_node("Add", ["w", "p"], ["sum"]))
    else:
        inputs.append(helper.make_tensor_value_info("token_type_ids", TensorProto.INT64, ids_shape))
        nodes.append(helper.make_node("Gather", ["seg", "token_type_ids"], ["s"], axis=0))
        first, last = (("p", "s") if segment_last else ("s", "p"))
        nodes += [helper.make_node("Add", ["w", first], ["partial"]), helper.make_node("Add", ["partial", last], ["sum"])]
    nodes.append(helper.make_node("LayerNormalization", ["sum", "gamma", "beta"], ["normed"], axis=norm_axis, epsilon=1e-12))
    # A consumer after the norm, as in a real encoder.
    nodes.append(helper.make_node("Relu", ["normed"], ["out"]))
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", "sequence", HIDDEN])
    graph = helper.make_graph(nodes, "embeddings", inputs, [out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    return onnx.shape_inference.infer_shapes(model)


def _fuse(model):
    from onnxforge.optimize.rules import embed_layer_norm

    return apply_rule(model, embed_layer_norm)


def _ops(model):
    return [n.op_type for n in model.graph.node]


def _run(model, feeds):
    import onnxruntime as ort

    names = {i.name for i in model.graph.input}
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {k: v for k, v in feeds.items() if k in names})[0]


CASES = {
    "segment, position last (HF BERT)": dict(segment="input"),
    "segment last": dict(segment="input", segment_last=True),
    "no token_type_ids": dict(segment=None),
    "position ids as graph input": dict(segment="input", positions="input"),
    "no token_type_ids, position ids input": dict(segment=None, positions="input"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_fuses_and_matches_the_unfused_graph(case):
    model = _graph(**CASES[case])
    fused, count = _fuse(model)
    assert count == 1
    ops = _ops(fused)
    assert ops.count("EmbedLayerNormalization") == 1
    assert "LayerNormalization" not in ops and "Add" not in ops and "Gather" not in ops
    eln = next(n for n in fused.graph.node if n.op_type == "EmbedLayerNormalization")
    has_segment = CASES[case]["segment"] is not None
    assert bool(eln.input[1]) == has_segment and bool(eln.input[4]) == has_segment
    assert len(eln.input) < 8 or not eln.input[7]  # no mask: attention keeps its own mask
    rng = np.random.default_rng(1)
    for batch, seq in ((1, 5), (3, POSITIONS)):
        feeds = {"input_ids": rng.integers(0, VOCAB, (batch, seq)),
                 "token_type_ids": rng.integers(0, 2, (batch, seq)),
                 "position_ids": rng.permuted(np.tile(np.arange(seq), (batch, 1)), axis=1)}
        expected, actual = _run(model, feeds), _run(fused, feeds)
        assert np.abs(expected - actual).max() <= 1e-5


@pytest.mark.parametrize("broken, why", [
    (dict(norm_axis=1), "normalization over the sequence axis is not an embedding LayerNorm"),
    (dict(word_from_input=False), "the word lookup must index input_ids itself"),
    (dict(constant_tables=False), "tables fed at run time cannot be baked into the fused op"),
])
def test_leaves_other_graphs_alone(broken, why):
    model = _graph(segment="input", **broken)
    fused, count = _fuse(model)
    assert count == 0, why
    assert "EmbedLayerNormalization" not in _ops(fused) and "LayerNormalization" in _ops(fused)


def test_sum_used_elsewhere_is_not_fused():
    """The embedding sum feeding a second consumer cannot disappear into the fused op."""
    model = _graph(segment=None)
    model.graph.node.append(helper.make_node("Identity", ["sum"], ["sum_copy"]))
    model.graph.output.append(helper.make_tensor_value_info("sum_copy", TensorProto.FLOAT, None))
    _, count = _fuse(model)
    assert count == 0
