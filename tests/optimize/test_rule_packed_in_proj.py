"""The packed_in_proj and sequence_first_out_proj rules: nn.MultiheadAttention /
nn.TransformerEncoder end as one packed Attention and one out_proj MatMul a layer.

Both styles export 135 nodes; before these rules the fused graph kept the in_proj split
(Reshape/Transpose/Gather/Squeeze) around a MultiHeadAttention and the (sequence, batch)
views around out_proj: 109 nodes. nn.MultiheadAttention starts both biases at zero, so
one test gives them random values (a wrong bias would otherwise go unseen).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.fixtures.attention_styles import LAYERS, VOCAB

from .dynamo_helpers import feeds, fused_style, masked_max_abs, ort_outputs, torch_outputs

STYLES = ("build_transformer_encoder", "build_mha_layer")


@pytest.fixture(scope="module")
def tmp_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("in_proj"))


@pytest.mark.slow
@pytest.mark.parametrize("style", STYLES)
def test_packed_in_proj_becomes_attention(style, tmp_dir):
    module, outcome, names = fused_style(style, tmp_dir)
    report = outcome.report
    assert report["fully_fused"], report["missing"]
    assert (report["nodes_before"], report["nodes_after"]) == (135, 45)
    ops = Counter((n.domain, n.op_type) for n in outcome.model.graph.node)
    assert ops[("com.microsoft", "Attention")] == LAYERS and ops[("com.microsoft", "MultiHeadAttention")] == 0
    assert ops[("", "Gather")] == 0 and ops[("", "Softmax")] == 0 and ops[("", "Transpose")] == 0
    assert ops[("", "Gemm")] == 0
    steps = {t["settings"].get("rule"): t for t in report["tools"]}
    assert steps["packed_in_proj"]["stats"]["rewrites"] == LAYERS
    assert steps["packed_in_proj"]["fused"]["Attention"] == 0  # MultiHeadAttention -> Attention, same group
    assert steps["sequence_first_out_proj"]["stats"]["rewrites"] == LAYERS
    # in_proj's own weight and bias are the Attention's: no new initializer, no Concat of weights.
    inits = {t.name for t in outcome.model.graph.initializer}
    for node in outcome.model.graph.node:
        if node.op_type == "Attention":
            assert node.input[1] in inits and node.input[2] in inits and node.input[5], node
    for pad in ("right", "left"):
        for seq in (37, 5):
            inputs = feeds(names, VOCAB, seq=seq, pad=pad)
            worst = masked_max_abs(torch_outputs(module, inputs), ort_outputs(outcome.model, inputs),
                                   inputs["attention_mask"])
            assert worst <= 1e-4, (style, pad, seq, worst)


@pytest.mark.slow
@pytest.mark.parametrize("style", STYLES)
def test_nonzero_biases_keep_parity(style, tmp_path):
    import torch

    from onnxforge.optimize.fusion import fuse
    from tests.fixtures import attention_styles as styles

    from .dynamo_helpers import export_dynamo, spec_for

    module = getattr(styles, style)()
    torch.manual_seed(3)
    with torch.no_grad():
        for attention in (m for m in module.modules() if isinstance(m, torch.nn.MultiheadAttention)):
            attention.in_proj_bias.normal_()
            attention.out_proj.bias.normal_()
    names = ("input_ids", "attention_mask")
    path = export_dynamo(module, feeds(names, VOCAB, batch=2, seq=16), tmp_path / "m.onnx")
    outcome = fuse(path, spec_for(dict.fromkeys(names), styles.HEADS, styles.HIDDEN, LAYERS, VOCAB), "dynamo", None)
    steps = {t["settings"]["rule"]: t["stats"]["rewrites"] for t in outcome.report["tools"]
             if "rule" in t["settings"]}
    assert steps["packed_in_proj"] == LAYERS and steps["sequence_first_out_proj"] == LAYERS, steps
    for pad in ("right", "left"):
        inputs = feeds(names, VOCAB, pad=pad)
        worst = masked_max_abs(torch_outputs(module, inputs), ort_outputs(outcome.model, inputs),
                               inputs["attention_mask"])
        assert worst <= 1e-4, (style, pad, worst)


def _before_rule(path: Path):
    """The export after every pipeline step up to packed_in_proj (MultiHeadAttention fused)."""
    import onnx_ir as ir
    import onnx_ir.passes.common as common_passes

    from onnxforge.optimize.rules import PIPELINE

    model = ir.from_proto(onnx.load(str(path)))
    common_passes.ShapeInferencePass()(model)
    for step in PIPELINE:
        if step.name == "packed_in_proj":
            break
        step.apply(model)
    return model


@pytest.mark.slow
def test_q_and_k_read_from_swapped_slices_are_not_packed(tmp_dir):
    """q taken from the k columns and k from the q columns is another attention: left alone."""
    import onnx_ir as ir

    from onnxforge.optimize.rules import packed_in_proj, sequence_first_out_proj

    module, _, names = fused_style("build_mha_layer", tmp_dir)
    model = _before_rule(Path(tmp_dir) / "build_mha_layer.onnx")
    gathers = [n for n in model.graph if n.op_type == "Gather" and n.inputs[0].producer() is not None
               and n.inputs[0].producer().op_type == "Squeeze"]
    assert len(gathers) == 3 * LAYERS
    first, second = gathers[0], gathers[1]  # layer 0's q (index 0) and k (index 1)
    index_q, index_k = first.inputs[1], second.inputs[1]
    first.replace_input_with(1, index_k)
    second.replace_input_with(1, index_q)
    swapped = ir.to_proto(model)

    assert packed_in_proj.apply(model) == LAYERS - 1
    ops = Counter(n.op_type for n in model.graph)
    assert ops["Attention"] == LAYERS - 1 and ops["MultiHeadAttention"] == 1
    # out_proj's views go around the kept MultiHeadAttention just as around an Attention.
    assert sequence_first_out_proj.apply(model) == LAYERS
    inputs = feeds(names, VOCAB, pad="left")
    before, after = ort_outputs(swapped, inputs)[0], ort_outputs(ir.to_proto(model), inputs)[0]
    assert np.abs(before - after).max() <= 1e-5
    # and the swap really changed the model (the test would prove nothing otherwise)
    assert np.abs(before - torch_outputs(module, inputs)[0]).max() > 1e-3


def test_graphs_without_multi_head_attention_are_left_alone():
    import onnx_ir as ir
    from onnx import TensorProto, helper

    from onnxforge.optimize.rules import packed_in_proj

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    assert packed_in_proj.apply(ir.from_proto(helper.make_model(graph))) == 0
