"""Fusion on the dynamo path for the tiny random model of every architecture (issue 13's
tests/fixtures/architectures.py), exported directly with torch.onnx (dynamo=True) and
fused for CPU: what fuses per architecture, and fp32 parity <= 1e-4 vs PyTorch.

What does not fuse, and why (asserted, so a change in the tools shows up here):
- deberta-v2: disentangled attention reshapes the probabilities to (batch*heads, seq,
  seq) between the Softmax and the MatMul with the values, with the c2p/p2c relative
  terms gathered from the queries and keys; ORT has no kernel for that attention.
- modernbert: no absolute position embeddings (rotary), so no EmbedLayerNormalization.
  Its attention (local and global, mask as bias) fuses to MultiHeadAttention over the
  RotaryEmbedding of its queries and keys; its bias-free pre-LN norms fuse to
  SkipLayerNormalization once they have a zero beta (rules/layer_norm_zero_beta.py).
"""

from __future__ import annotations

import pytest

from tests.fixtures.architectures import ARCHITECTURES, architecture_inputs, tiny_architecture_config

from .dynamo_helpers import export_dynamo, feeds, masked_max_abs, ort_outputs, spec_for, torch_outputs

pytestmark = pytest.mark.slow

BERT_LIKE = {"Attention": 2, "SkipLayerNormalization": 4, "Gelu": 2, "EmbedLayerNormalization": 1, "RotaryEmbedding": 0}
EXPECTED = {arch: BERT_LIKE for arch in ARCHITECTURES} | {
    "deberta-v2": BERT_LIKE | {"Attention": 0},
    # RotaryEmbedding: the queries and the keys of each layer (rules/rotary_embedding.py).
    "modernbert": {"Attention": 2, "SkipLayerNormalization": 4, "Gelu": 2, "EmbedLayerNormalization": 0,
                   "RotaryEmbedding": 4},
}


def _hidden_states_module(arch: str):
    import torch
    import transformers

    torch.manual_seed(0)
    model = transformers.AutoModel.from_config(tiny_architecture_config(arch)).eval()

    class LastHidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            kwargs = dict(input_ids=input_ids, attention_mask=attention_mask)
            if token_type_ids is not None:
                kwargs["token_type_ids"] = token_type_ids
            return self.model(**kwargs).last_hidden_state

    return LastHidden().eval()


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_architecture_fusion_and_parity(arch, tmp_path):
    from onnxforge.optimize.fusion import fuse

    module = _hidden_states_module(arch)
    names = architecture_inputs(arch)
    path = export_dynamo(module, feeds(names, 30522, batch=2, seq=16), tmp_path / f"{arch}.onnx")
    outcome = fuse(path, spec_for(dict.fromkeys(names), 4, 64, 2, 30522), "dynamo", None, device="cpu")
    report = outcome.report
    assert report["achieved"] == EXPECTED[arch], report["missing"]
    assert not report["right_padding_required"]
    if arch == "deberta-v2":
        for layer in report["per_layer"]["layers"]:
            assert "between Softmax" in layer["missing"]["Attention"], layer
    inputs = feeds(names, 30522)
    worst = masked_max_abs(torch_outputs(module, inputs), ort_outputs(outcome.model, inputs), inputs["attention_mask"])
    assert worst <= 1e-4, (arch, worst)
