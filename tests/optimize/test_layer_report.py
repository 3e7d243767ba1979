"""The per-layer fusion report names the node where an attention pattern broke.

The encoder below is the hand-written attention style with one change in layer 1 only:
the attention probabilities are re-weighted per head after the Softmax (a learned
(heads, 1, 1) tensor, as in talking-heads attention). No attention rule matches that
layer; layer 0 still fuses, and the report says so layer by layer.
"""

from __future__ import annotations

import math

import pytest
import torch

from tests.fixtures import attention_styles as styles

from .dynamo_helpers import export_dynamo, feeds, masked_max_abs, ort_outputs, spec_for, torch_outputs


class ReweightedLayer(styles.HandwrittenLayer):
    def __init__(self) -> None:
        super().__init__()
        self.head_weight = torch.nn.Parameter(torch.linspace(0.5, 1.5, styles.HEADS).view(styles.HEADS, 1, 1))

    def attend(self, q, k, v, bias):
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(styles.HIDDEN // styles.HEADS)
        return torch.matmul(torch.softmax(scores + bias, dim=-1) * self.head_weight, v)


class HalfBrokenEncoder(styles.StackedEncoder):
    def __init__(self) -> None:
        super().__init__(styles.HandwrittenLayer)
        torch.manual_seed(1)
        self.layers[1] = ReweightedLayer()


@pytest.fixture(scope="module")
def outcome(tmp_path_factory):
    from onnxforge.optimize.fusion import fuse

    module = HalfBrokenEncoder().eval()
    names = ("input_ids", "attention_mask")
    path = export_dynamo(module, feeds(names, styles.VOCAB, batch=2, seq=16), tmp_path_factory.mktemp("half") / "m.onnx")
    spec = spec_for(dict.fromkeys(names), styles.HEADS, styles.HIDDEN, styles.LAYERS, styles.VOCAB)
    return module, fuse(path, spec, "dynamo", None), names


def test_report_says_which_layer_and_node_broke(outcome):
    module, result, names = outcome
    report = result.report
    assert not report["fully_fused"] and report["achieved"]["Attention"] == 1
    per_layer = report["per_layer"]
    assert per_layer["reliable"] and per_layer["cores_found"] == 2
    first, second = per_layer["layers"]
    assert first["missing"] == {} and first["fused"] == {"Attention": 1, "SkipLayerNormalization": 2, "Gelu": 1}
    assert set(second["missing"]) == {"Attention"}
    why = second["missing"]["Attention"]
    softmax = next(n for n in result.model.graph.node if n.op_type == "Softmax")
    multiply = next(n for n in result.model.graph.node if n.op_type == "Mul" and softmax.output[0] in n.input)
    # The SDPA pattern reaches the MatMul after the re-weighting, and the Mul is where it breaks.
    assert "SDPA pattern" in why and multiply.name in why, why
    # The rest of the broken layer still fused, and the unfused graph still computes the model.
    assert second["fused"]["SkipLayerNormalization"] == 2 and second["fused"]["Gelu"] == 1
    inputs = feeds(names, styles.VOCAB)
    assert masked_max_abs(torch_outputs(module, inputs), ort_outputs(result.model, inputs), inputs["attention_mask"]) <= 1e-4
