"""The RotaryEmbedding rule: hand-built graphs (positive, negative, parity) and ModernBERT.

The hand-built graph is what the dynamo exporter writes for HF's apply_rotary_pos_emb
after torch.onnx's optimization: positions = arange(seq) as (1, seq, 1), freqs =
Cast(positions) * inv_freq, emb = Concat(freqs, freqs), and
x * Unsqueeze(Cos(emb), 1) + Concat(-x[..., h:], x[..., :h]) * Unsqueeze(Sin(emb), 1).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from .helpers import apply_rule

HEADS, HEAD = 2, 8
HALF = HEAD // 2


def _graph(*, negate: bool = True, first_start: int = 0, batch_positions: bool = False, same_freqs: bool = True,
           named_length: bool = True):
    inv_freq = (1.0 / (10000 ** (np.arange(0, HEAD, 2, dtype=np.float32) / HEAD))).astype(np.float32)
    inits = [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in
             (("zero", 0), ("one", 1), ("ax0", [0]), ("ax1", [1]), ("ax_last", [-1]), ("s1", [first_start]),
              ("e1", [first_start + HALF]), ("s2", [HALF]), ("e2", [2**62]), ("axes", [3]), ("steps", [1]))]
    inits.append(numpy_helper.from_array(inv_freq, "inv_freq"))
    inits.append(numpy_helper.from_array(inv_freq[::-1].copy(), "other_freq"))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", HEADS, "sequence", HEAD])
    nodes = [helper.make_node("Shape", ["x"], ["seq_len"], start=2, end=3),
             helper.make_node("Squeeze", ["seq_len"], ["seq"]),
             helper.make_node("Range", ["zero", "seq", "one"], ["arange"]),
             helper.make_node("Unsqueeze", ["arange", "ax0"], ["pos_2d"])]
    if batch_positions:  # per-row positions (batch, seq, 1): not shared by the batch
        nodes += [helper.make_node("Shape", ["x"], ["batch_seq"], start=0, end=1),
                  helper.make_node("Concat", ["batch_seq", "seq_len"], ["bs"], axis=0),
                  helper.make_node("Expand", ["pos_2d", "bs"], ["pos_rows"]),
                  helper.make_node("Unsqueeze", ["pos_rows", "ax_last"], ["pos"])]
    else:
        nodes.append(helper.make_node("Unsqueeze", ["pos_2d", "ax_last"], ["pos"]))
    nodes += [helper.make_node("Cast", ["pos"], ["pos_f"], to=TensorProto.FLOAT),
              helper.make_node("Mul", ["pos_f", "inv_freq"], ["freqs"]),
              helper.make_node("Mul", ["pos_f", "other_freq"], ["other"]),
              helper.make_node("Concat", ["freqs", "freqs" if same_freqs else "other"], ["emb"], axis=-1),
              helper.make_node("Cos", ["emb"], ["cos"]), helper.make_node("Sin", ["emb"], ["sin"]),
              helper.make_node("Unsqueeze", ["cos", "ax1"], ["cos4"]),
              helper.make_node("Unsqueeze", ["sin", "ax1"], ["sin4"]),
              helper.make_node("Mul", ["x", "cos4"], ["x_cos"]),
              helper.make_node("Slice", ["x", "s1", "e1", "axes", "steps"], ["x1"]),
              helper.make_node("Slice", ["x", "s2", "e2", "axes", "steps"], ["x2"])]
    if negate:
        nodes += [helper.make_node("Neg", ["x2"], ["neg"]),
                  helper.make_node("Concat", ["neg", "x1"], ["rotated"], axis=-1)]
    else:  # a different "rotation": the halves swapped without the sign
        nodes.append(helper.make_node("Concat", ["x2", "x1"], ["rotated"], axis=-1))
    nodes += [helper.make_node("Mul", ["rotated", "sin4"], ["rot_sin"]),
              helper.make_node("Add", ["x_cos", "rot_sin"], ["out"])]
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", HEADS, "sequence", HEAD])
    # The exporter names the arange's length after the sequence dim; the rule relies on that.
    arange = helper.make_tensor_value_info("arange", TensorProto.INT64, ["sequence"])
    value_info = [arange] if named_length else []
    model = helper.make_model(helper.make_graph(nodes, "rotary", [x], [out], inits, value_info=value_info),
                              opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    return onnx.shape_inference.infer_shapes(model)


def _fuse(model):
    from onnxforge.optimize.rules import rotary_embedding

    return apply_rule(model, rotary_embedding)


def _run(model, x):
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def _reference(x):
    """HF's apply_rotary_pos_emb in numpy (float64)."""
    seq = x.shape[2]
    inv_freq = 1.0 / (10000 ** (np.arange(0, HEAD, 2, dtype=np.float32) / HEAD))
    emb = np.concatenate([np.outer(np.arange(seq), inv_freq)] * 2, axis=-1)
    rotated = np.concatenate([-x[..., HALF:], x[..., :HALF]], axis=-1)
    return x * np.cos(emb) + rotated * np.sin(emb)


def test_fuses_and_matches_the_unfused_graph():
    model = _graph()
    fused, count = _fuse(model)
    assert count == 1
    ops = Counter(n.op_type for n in fused.graph.node)
    assert ops["RotaryEmbedding"] == 1 and ops["Neg"] == 0 and ops["Slice"] == 0
    node = next(n for n in fused.graph.node if n.op_type == "RotaryEmbedding")
    assert node.domain == "com.microsoft"
    rng = np.random.default_rng(0)
    for batch, seq in ((1, 3), (3, 17), (2, 64)):
        x = rng.standard_normal((batch, HEADS, seq, HEAD)).astype(np.float32)
        actual = _run(fused, x)
        assert np.abs(actual - _run(model, x)).max() <= 1e-6
        assert np.abs(actual - _reference(x.astype(np.float64))).max() <= 1e-5


NOT_ROTARY = {
    "no rotate_half sign": dict(negate=False),
    "halves not split at head_size / 2": dict(first_start=1),
    "positions per batch row": dict(batch_positions=True),
    "cos/sin of two different frequency sets": dict(same_freqs=False),
    # one cache row per token of x cannot be shown: the rule does not guess
    "positions of unknown length": dict(named_length=False),
}


@pytest.mark.parametrize("case", list(NOT_ROTARY))
def test_other_rotations_are_not_rewritten(case):
    fused, count = _fuse(_graph(**NOT_ROTARY[case]))
    assert count == 0
    assert "RotaryEmbedding" not in {n.op_type for n in fused.graph.node}


@pytest.fixture(scope="module")
def modernbert(tmp_path_factory):
    from onnxforge.optimize.fusion import fuse
    from tests.fixtures.architectures import architecture_inputs

    from .dynamo_helpers import export_dynamo, feeds, spec_for
    from .test_architectures_fusion import _hidden_states_module

    module = _hidden_states_module("modernbert")
    names = architecture_inputs("modernbert")
    path = export_dynamo(module, feeds(names, 30522, batch=2, seq=16), Path(tmp_path_factory.mktemp("mb")) / "m.onnx")
    outcome = fuse(path, spec_for(dict.fromkeys(names), 4, 64, 2, 30522), "dynamo", None, device="cpu")
    return module, outcome, names


@pytest.mark.slow
def test_modernbert_rotary_fuses_and_attention_still_does(modernbert):
    _, outcome, _ = modernbert
    ops = Counter((n.domain, n.op_type) for n in outcome.model.graph.node)
    # Two layers, queries and keys each; the MultiHeadAttention fusion takes their outputs.
    assert ops[("com.microsoft", "RotaryEmbedding")] == 4
    assert ops[("com.microsoft", "MultiHeadAttention")] == 2 and ops[("", "Softmax")] == 0
    assert ops[("", "Neg")] == 0
    report = outcome.report
    assert report["expected"]["RotaryEmbedding"] == 4 and report["achieved"]["RotaryEmbedding"] == 4
    assert "RotaryEmbedding" not in report["missing"] and report["fused_ops"]["RotaryEmbedding"] == 4
    step = next(t for t in report["tools"] if t["settings"].get("rule") == "rotary_embedding")
    assert step["stats"]["rewrites"] == 4 and step["fused"]["RotaryEmbedding"] == 4
    for layer in report["per_layer"]["layers"]:
        assert layer["fused"]["RotaryEmbedding"] == 2, layer


@pytest.mark.slow
@pytest.mark.parametrize("pad", ["right", "left"])
@pytest.mark.parametrize("seq", [37, 5])
def test_modernbert_parity_with_pytorch(modernbert, pad, seq):
    from .dynamo_helpers import feeds, masked_max_abs, ort_outputs, torch_outputs

    module, outcome, names = modernbert
    inputs = feeds(names, 30522, seq=seq, pad=pad)
    worst = masked_max_abs(torch_outputs(module, inputs), ort_outputs(outcome.model, inputs), inputs["attention_mask"])
    assert worst <= 1e-4, (pad, seq, worst)
