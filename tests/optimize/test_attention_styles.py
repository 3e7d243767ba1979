"""Every attention style of tests.fixtures.attention_styles fuses fully on the dynamo path.

Counts per style (2 layers): one attention op per layer (ORT Attention with packed QKV),
two SkipLayerNormalization per layer, one GELU per layer, one EmbedLayerNormalization; parity with PyTorch at
fp32 <= 1e-4 over real tokens, with right and with left padding.
"""

from __future__ import annotations

from collections import Counter

import pytest

from tests.fixtures.attention_styles import ATTENTION_STYLES, LAYERS, VOCAB

from .dynamo_helpers import feeds, fused_style, masked_max_abs, ort_outputs, torch_outputs

pytestmark = pytest.mark.slow

# Which fused attention op each style ends up with (all count as the Attention group).
ATTENTION_OP = {
    "build_transformer_encoder": "Attention",  # packed in_proj (rules/packed_in_proj.py)
    "build_mha_layer": "Attention",
    "build_sdpa": "Attention",
    "build_handwritten": "Attention",
    "build_hf_bert_wrapper": "Attention",
    "build_hf_bert_eager_wrapper": "Attention",
}


@pytest.fixture(scope="module")
def tmp_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("styles"))


@pytest.mark.parametrize("style", ATTENTION_STYLES)
def test_style_fully_fused_with_parity(style, tmp_dir):
    module, outcome, names = fused_style(style, tmp_dir)
    report = outcome.report
    assert report["fully_fused"], report["missing"]
    assert report["achieved"] == {"Attention": LAYERS, "SkipLayerNormalization": 2 * LAYERS, "Gelu": LAYERS,
                                  "EmbedLayerNormalization": 1, "RotaryEmbedding": 0}
    ops = Counter(n.op_type for n in outcome.model.graph.node)
    assert ops[ATTENTION_OP[style]] == LAYERS and ops["Softmax"] == 0 and ops["LayerNormalization"] == 0
    assert not report["right_padding_required"]
    layers = report["per_layer"]
    assert layers["reliable"] and all(not layer["missing"] for layer in layers["layers"])
    for pad in ("right", "left"):
        inputs = feeds(names, VOCAB, pad=pad)
        worst = masked_max_abs(torch_outputs(module, inputs), ort_outputs(outcome.model, inputs), inputs["attention_mask"])
        assert worst <= 1e-4, (style, pad, worst)
