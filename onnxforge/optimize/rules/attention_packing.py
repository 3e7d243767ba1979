"""MultiHeadAttention with three separate Q/K/V projections -> one packed Attention.

onnxscript maps self-attention written with separate ``nn.Linear`` query/key/value
(F.scaled_dot_product_attention, hand-written softmax(QK^T/sqrt(d) + mask)V) onto
``MultiHeadAttention(q, k, v, attention_bias=...)`` but, unlike HF's BERT, leaves the
three projections unpacked. ORT's ``Attention`` takes the shared input once with the
weights concatenated (one GEMM instead of three); the additive mask stays an
``attention_bias`` (batch|1, 1, seq, seq), so padding on either side stays correct.

Matches::

    MultiHeadAttention(MatMul(x, Wq) + bq, MatMul(x, Wk) + bk, MatMul(x, Wv) + bv,
                       attention_bias=B)          (no key padding mask, no past)

The exporter sizes the bias from ``Shape(q)``; that extra use of q would block the
rewrite, so ``ShapeBeforeProjection`` first reads the (batch, sequence) dims from the
projection's input instead (a linear layer keeps every dim but the last).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import pattern


def _const(value: ir.Value | None):
    return None if value is None or value.const_value is None else value.const_value.numpy()


class ShapeBeforeProjection(pattern.RewriteRuleClassBase):
    """Shape(MatMul(x, W) + b)[start:end] -> Shape(x)[start:end] when the slice skips the last dim."""

    def pattern(self, op, projected):
        return op.Shape(projected, _allow_other_attributes=True, _outputs=["dims"])

    def check(self, context, projected, dims, **_) -> pattern.MatchResult:
        result = pattern.MatchResult()
        source = self._source(projected)
        if source is None or source.shape is None or projected.shape is None:
            return result.fail("not the shape of a linear projection", projected)
        attrs = dims.producer().attributes
        start, end = attrs.get_int("start", 0), attrs.get_int("end", None)
        rank = projected.shape.rank()
        end = rank if end is None else (end + rank if end < 0 else end)
        start = start + rank if start < 0 else start
        if source.shape.rank() != rank or end > rank - 1:
            return result.fail("the Shape slice reaches the projected (last) dim", projected)
        return result

    @staticmethod
    def _source(value: ir.Value) -> ir.Value | None:
        add = value.producer()
        if add is None or add.op_type != "Add" or add.domain not in ("", "ai.onnx"):
            return None
        for i, operand in enumerate(add.inputs):
            mm = operand.producer() if operand is not None else None
            if mm is not None and mm.op_type == "MatMul" and _const(add.inputs[1 - i]) is not None:
                w = _const(mm.inputs[1])
                if w is not None and w.ndim == 2:
                    return mm.inputs[0]
        return None

    def rewrite(self, op, projected, dims, **_):
        attrs = {k: v.value for k, v in dims.producer().attributes.items()}
        return op.Shape(self._source(projected), **attrs)


class PackQkvIntoAttention(pattern.RewriteRuleClassBase):
    def pattern(self, op, x, wq, bq, wk, bk, wv, bv, attention_bias):
        q = op.Add(op.MatMul(x, wq), bq)
        k = op.Add(op.MatMul(x, wk), bk)
        v = op.Add(op.MatMul(x, wv), bv)
        return op.MultiHeadAttention(q, k, v, None, None, attention_bias, _domain="com.microsoft",
                                     _outputs=["attended"])

    def check(self, context, x, wq, bq, wk, bk, wv, bv, attention_bias, **_) -> pattern.MatchResult:
        result = pattern.MatchResult()
        weights = [_const(w) for w in (wq, wk, wv)]
        biases = [_const(b) for b in (bq, bk, bv)]
        if any(w is None or w.ndim != 2 for w in weights):
            return result.fail("a Q/K/V projection weight is not a constant matrix", wq)
        if any(b is None or b.ndim != 1 for b in biases):
            return result.fail("a Q/K/V projection bias is not a constant vector", bq)
        if len({w.shape[0] for w in weights}) != 1:
            return result.fail("Q/K/V projections read inputs of different widths", wq)
        if x.shape is None or x.shape.rank() != 3:
            return result.fail("the attention input is not (batch, sequence, hidden)", x)
        if attention_bias.shape is not None and attention_bias.shape.rank() != 4:
            return result.fail("the attention bias is not 4-D", attention_bias)
        return result

    def rewrite(self, op, x, wq, bq, wk, bk, wv, bv, attention_bias, attended, **_):
        heads = attended.producer().attributes.get_int("num_heads")
        weights = [_const(w) for w in (wq, wk, wv)]
        biases = [_const(b) for b in (bq, bk, bv)]
        weight = op.initializer(ir.tensor(np.concatenate(weights, axis=1), name=f"{wq.name}_qkv_packed"))
        bias = op.initializer(ir.tensor(np.concatenate(biases), name=f"{bq.name}_qkv_packed"))
        return op.Attention(
            x, weight, bias, None, None, attention_bias, num_heads=heads,
            qkv_hidden_sizes=[w.shape[1] for w in weights], _domain="com.microsoft",
        )


shape_rules = pattern.RewriteRuleSet([ShapeBeforeProjection.rule("ShapeBeforeProjection")])
rules = pattern.RewriteRuleSet([PackQkvIntoAttention.rule("PackQkvIntoAttention")], commute=True)


def apply(model: ir.Model) -> int:
    """Packs only where a MultiHeadAttention is present (the Shape rewrite is its helper)."""
    if not any(n.op_type == "MultiHeadAttention" for n in model.graph):
        return 0
    shape_rules.apply_to_model(model)
    return rules.apply_to_model(model)
