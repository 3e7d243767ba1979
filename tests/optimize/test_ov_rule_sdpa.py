"""ov_rules.sdpa_attention: PyTorch's decomposed SDPA -> one OpenVINO ScaledDotProductAttention per layer, exactly."""

from __future__ import annotations

import numpy as np
import pytest

from onnxforge.artifact import Artifact
from onnxforge.bench.contenders import bench_inputs

pytest.importorskip("openvino")


def _ir(artifact):
    from onnxforge.optimize.ov_int8 import convert_onnx

    return convert_onnx(Artifact.open(artifact).variant_path("base"))


def _padded_feeds(artifact, names) -> dict[str, np.ndarray]:
    feeds = bench_inputs(Artifact.open(artifact).spec, 3, 24)
    feeds["attention_mask"][1, 9:] = 0  # right padding, as the tokenizer pads
    feeds["attention_mask"][2, 1:] = 0  # a lone [CLS]
    return {n: feeds[n] for n in names}


def _run_f32(model, feeds) -> np.ndarray:
    import openvino as ov

    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return compiled.create_infer_request().infer(feeds)[0].copy()


def _op_counts(model) -> dict[str, int]:
    counts: dict[str, int] = {}
    for op in model.get_ordered_ops():
        counts[op.get_type_name()] = counts.get(op.get_type_name(), 0) + 1
    return counts


def test_dynamo_bert_attention_fuses_once_per_layer_and_stays_exact(tiny_dynamo_artifact):
    from onnxforge.optimize.ov_rules import apply_all

    plain, fused = _ir(tiny_dynamo_artifact), _ir(tiny_dynamo_artifact)
    layers = Artifact.open(tiny_dynamo_artifact).spec.num_layers
    assert apply_all(fused) == {"sdpa_attention": layers}
    counts = _op_counts(fused)
    assert counts["ScaledDotProductAttention"] == layers
    assert "Softmax" not in counts and "IsNaN" not in counts  # the NaN guard went with the ops
    feeds = _padded_feeds(tiny_dynamo_artifact, [i.get_any_name() for i in plain.inputs])
    want, got = _run_f32(plain, feeds), _run_f32(fused, feeds)
    mask = feeds["attention_mask"][..., None].astype(bool)
    assert np.abs(np.where(mask, got - want, 0)).max() < 1e-5


def test_a_mask_that_may_hold_minus_inf_keeps_the_nan_guard(tiny_dynamo_artifact):
    """With -inf in the mask, a fully masked row softmaxes to NaN and the guard matters: no rewrite."""
    from openvino import opset13

    from onnxforge.optimize.ov_rules import sdpa_attention

    model = _ir(tiny_dynamo_artifact)
    masks = {op.input_value(0).get_node().input_value(1).get_node() for op in model.get_ordered_ops()
             if op.get_type_name() == "Softmax"}
    assert masks and all(m.get_type_name() == "Select" for m in masks)
    for select in masks:
        select.input(2).replace_source_output(opset13.constant(np.float32(-np.inf)).output(0))
    assert sdpa_attention.apply(model) == 0
    assert "ScaledDotProductAttention" not in _op_counts(model)


def test_other_attention_shapes_are_left_as_they_are(tiny_artifact):
    """The TorchScript export writes attention differently: nothing matches, nothing changes."""
    from onnxforge.optimize.ov_rules import apply_all

    model = _ir(tiny_artifact)
    before = _op_counts(model)
    assert apply_all(model) == {"sdpa_attention": 0}
    assert _op_counts(model) == before


def test_a_softmax_over_another_axis_is_not_attention(tiny_dynamo_artifact):
    from openvino import opset8
    from openvino.utils import replace_node

    from onnxforge.optimize.ov_rules import sdpa_attention

    model = _ir(tiny_dynamo_artifact)
    for op in [o for o in model.get_ordered_ops() if o.get_type_name() == "Softmax"]:
        replace_node(op, opset8.softmax(op.input_value(0), 2))  # over the queries, not the keys
    assert sdpa_attention.apply(model) == 0
