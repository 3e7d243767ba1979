"""Packed Attention -> one QKV MatMul + MultiHeadAttention, for the CPU provider.

ORT's CPU ``Attention`` kernel computes the Q/K/V projection as batch x heads x 3
separate narrow GEMMs (sequence x hidden times hidden x head_size), which on CPU loses
to one wide GEMM over all tokens. ``MultiHeadAttention`` takes the projections already
made, so the graph keeps the fused attention core (scores, mask, softmax, context in
one kernel) and lets MLAS do the projection as one (batch*sequence x hidden) x
(hidden x 3*hidden) MatMul. Only for graphs built for CPU; CUDA's Attention is fast.

Matches ``Attention(x, W, b, attention_bias=B)`` without mask_index or past state.
"""

from __future__ import annotations

import onnx_ir as ir
from onnxscript.rewriter import pattern


class AttentionToMatMulMha(pattern.RewriteRuleClassBase):
    def pattern(self, op, x, weight, bias, attention_bias):
        return op.Attention(x, weight, bias, None, None, attention_bias, _domain="com.microsoft",
                            _outputs=["attended"])

    def check(self, context, x, weight, bias, attended, **_) -> pattern.MatchResult:
        result = pattern.MatchResult()
        node = attended.producer()
        sizes = node.attributes.get_ints("qkv_hidden_sizes", None)
        if sizes is not None and len(set(sizes)) != 1:
            return result.fail("Q, K and V widths differ", attended)
        if node.attributes.get_int("unidirectional", 0) or node.attributes.get_int("do_rotary", 0):
            return result.fail("causal or rotary Attention has no MultiHeadAttention equivalent here", attended)
        if weight.const_value is None or len(weight.const_value.shape) != 2:
            return result.fail("the packed weight is not a constant matrix", weight)
        return result

    def rewrite(self, op, x, weight, bias, attention_bias, attended, **_):
        node = attended.producer()
        heads = node.attributes.get_int("num_heads")
        scale = node.attributes.get_float("scale", None)
        width = weight.const_value.shape[1] // 3
        qkv = op.Add(op.MatMul(x, weight), bias)
        q, k, v = op.Split(qkv, op.Constant(value_ints=[width] * 3), axis=-1, _outputs=3)
        extra = {"scale": scale} if scale is not None else {}
        return op.MultiHeadAttention(q, k, v, None, None, attention_bias, num_heads=heads,
                                     _domain="com.microsoft", **extra)


rules = pattern.RewriteRuleSet([AttentionToMatMulMha.rule("AttentionToMatMulMha")])


def apply(model: ir.Model) -> int:
    return rules.apply_to_model(model)
