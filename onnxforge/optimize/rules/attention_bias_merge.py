"""Two additive attention terms -> one attention bias (MPNet's relative position bias).

MPNet adds a learned relative-position bias (batch|1, heads, seq, seq) and the padding
mask (batch, 1, 1, seq) to the scaled scores before the Softmax::

    Softmax((scores + position_bias) + mask)

onnxscript's SDPA pattern takes one additive mask, so this graph matched no attention
rule. Adding the two terms first gives ``Softmax(scores + (position_bias + mask))``,
the same numbers (float addition of two small bias terms first; parity tested), and
the sum becomes the ``attention_bias`` input of ORT's Attention / MultiHeadAttention,
which accept a (batch|1, heads|1, seq, seq) bias.

Runs before ort_fusions. The scores must come from a MatMul (optionally scaled), so
only attention logits are touched.
"""

from __future__ import annotations

import onnx_ir as ir
from onnxscript.rewriter import pattern


def _attention_scores(value: ir.Value) -> bool:
    node = value.producer()
    if node is not None and node.op_type in ("Mul", "Div"):
        node = node.inputs[0].producer() if node.inputs[0] is not None else None
    return node is not None and node.op_type == "MatMul"


class MergeAttentionBiases(pattern.RewriteRuleClassBase):
    def pattern(self, op, scores, first_bias, second_bias):
        return op.Softmax(op.Add(op.Add(scores, first_bias), second_bias), _allow_other_attributes=True,
                          _outputs=["probs"])

    def check(self, context, scores, first_bias, second_bias, probs, **_) -> pattern.MatchResult:
        result = pattern.MatchResult()
        if not _attention_scores(scores):
            return result.fail("the Softmax input is not MatMul scores plus two biases", scores)
        if _attention_scores(first_bias) or _attention_scores(second_bias):
            return result.fail("a 'bias' is itself a MatMul product", first_bias)
        if probs.producer().attributes.get_int("axis", -1) not in (-1, 3):
            return result.fail("Softmax is not over the key axis", probs)
        return result

    def rewrite(self, op, scores, first_bias, second_bias, probs, **_):
        axis = probs.producer().attributes.get_int("axis", -1)
        return op.Softmax(op.Add(scores, op.Add(first_bias, second_bias)), axis=axis)


rules = pattern.RewriteRuleSet([MergeAttentionBiases.rule("MergeAttentionBiases")], commute=True)


def apply(model: ir.Model) -> int:
    return rules.apply_to_model(model)
