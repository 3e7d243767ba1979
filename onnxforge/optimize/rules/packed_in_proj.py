"""nn.MultiheadAttention's packed in_proj around a MultiHeadAttention -> one packed Attention.

``nn.MultiheadAttention`` (and so ``nn.TransformerEncoderLayer``) projects q, k and v with
one ``in_proj`` (weight (3E, E)) in sequence-first layout and splits the result with
views; the dynamo export, after onnxscript's attention fusion, reads::

    lin = MatMul(Transpose(x, [1, 0, 2]), W[E, 3E]) + b[3E]               (S, B, 3E)
    qkv = Squeeze(Transpose(Unsqueeze(Reshape(lin, (S, B, 3, E)), 0), [3, 1, 2, 0, 4]), 3)
    h_i = Reshape(Transpose(Reshape(Gather(qkv, i), (S, B*H, d)), [1, 0, 2]), (B, H, S, d))
    MultiHeadAttention(flat(h_0), flat(h_1), flat(h_2), attention_bias=
                       Expand(mask, Concat(1, 1, Shape(h_0)[2:3], 1)))
    flat(h) = Reshape(Transpose(h, [0, 2, 1, 3]), (B, S, E))

i.e. q, k, v are columns [0, E), [E, 2E), [2E, 3E) of ``x @ W + b``: exactly what ORT's
``Attention`` computes from (x, W, b) in one GEMM, with the same bias. Every view is
checked against the shapes inferred for it (the sequence, batch and heads dims, in
that order), so a different split (another head layout, another order of q, k, v)
does not match.

Runs after ort_fusions (which makes the MultiHeadAttention); the mask (an additive bias
of (batch, heads, seq, seq)) is passed on unchanged, so padding on either side holds.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import pattern


def _const(value: ir.Value | None):
    return None if value is None or value.const_value is None else value.const_value.numpy()


def _same(a, b) -> bool:
    """Equal ints, or the same named symbolic dimension."""
    if isinstance(a, int) or isinstance(b, int):
        return a == b
    return a is not None and b is not None and a.value is not None and a.value == b.value


def _dims(value: ir.Value) -> list | None:
    return None if value.shape is None else list(value.shape)


def _matches(value: ir.Value, expected: list) -> bool:
    dims = _dims(value)
    return dims is not None and len(dims) == len(expected) and all(_same(a, b) for a, b in zip(dims, expected))


class PackedInProjAttention(pattern.RewriteRuleClassBase):
    def pattern(self, op, x, weight, bias, view_shape, unsqueeze_axes, squeeze_axes, iq, ik, iv, split_shape,
                heads_shape, flat_shape, mask, one_a, one_b, one_d):
        lin = op.Add(op.MatMul(op.Transpose(x, perm=[1, 0, 2]), weight), bias)
        qkv = op.Squeeze(op.Transpose(op.Unsqueeze(op.Reshape(lin, view_shape, _outputs=["view"]), unsqueeze_axes),
                                      perm=[3, 1, 2, 0, 4]), squeeze_axes)

        def heads(index, name):
            split = op.Reshape(op.Gather(qkv, index, axis=0), split_shape, _outputs=[f"{name}_split"])
            return op.Reshape(op.Transpose(split, perm=[1, 0, 2]), heads_shape, _outputs=[f"{name}_heads"])

        def flat(h, name):
            return op.Reshape(op.Transpose(h, perm=[0, 2, 1, 3]), flat_shape, _outputs=[f"{name}_flat"])

        q, k, v = heads(iq, "q"), heads(ik, "k"), heads(iv, "v")
        expanded = op.Expand(mask, op.Concat(one_a, one_b, op.Shape(q, start=2, end=3), one_d, axis=0))
        return op.MultiHeadAttention(flat(q, "q"), flat(k, "k"), flat(v, "v"), None, None, expanded,
                                     _domain="com.microsoft", _outputs=["attended"])

    def check(self, context, x, weight, bias, unsqueeze_axes, squeeze_axes, iq, ik, iv, one_a, one_b, one_d,
              attended, view, **values) -> pattern.MatchResult:
        result = pattern.MatchResult()
        shape = _dims(x)
        if shape is None or len(shape) != 3 or not isinstance(shape[2], int):
            return result.fail("the attention input is not (batch, sequence, hidden) with a known hidden size", x)
        batch, seq, hidden = shape
        heads = attended.producer().attributes.get_int("num_heads")
        w, b = _const(weight), _const(bias)
        if w is None or w.shape != (hidden, 3 * hidden) or b is None or b.shape != (3 * hidden,):
            return result.fail(f"in_proj is not a constant ({hidden}, {3 * hidden}) weight with its bias", weight)
        if not heads or hidden % heads:
            return result.fail(f"{heads} heads do not divide hidden size {hidden}", attended)
        if [_const(i) for i in (iq, ik, iv)] != [0, 1, 2] or any(_const(i).ndim for i in (iq, ik, iv)):
            return result.fail("q, k, v are not the scalar selections 0, 1, 2 of the packed projection", iq)
        axes = [None if _const(a) is None else _const(a).tolist() for a in (unsqueeze_axes, squeeze_axes)]
        if axes != [[0], [3]] and axes != [[0], [-2]]:
            return result.fail("the packed projection is not split with Unsqueeze(0) / Squeeze(3)", view)
        if not _matches(view, [seq, batch, 3, hidden]):
            return result.fail(f"the packed projection is not viewed as (sequence, batch, 3, {hidden})", view)
        size = hidden // heads
        for name in "qkv":
            split, split_heads, flat = (values[f"{name}_{part}"] for part in ("split", "heads", "flat"))
            if not _matches(split_heads, [batch, heads, seq, size]):
                return result.fail(f"{name} is not split into (batch, {heads}, sequence, {size})", split_heads)
            if not _matches(flat, [batch, seq, hidden]):
                return result.fail(f"{name} is not flattened back to (batch, sequence, {hidden})", flat)
            dims = _dims(split)
            if dims is None or len(dims) != 3 or not _same(dims[0], seq) or dims[2] != size:
                return result.fail(f"{name} is not viewed as (sequence, batch*heads, {size})", split)
        if [None if _const(c) is None else _const(c).tolist() for c in (one_a, one_b, one_d)] != [[1]] * 3:
            return result.fail("the mask is not expanded over (1, 1, sequence, 1)", one_a)
        return result

    def rewrite(self, op, x, weight, bias, mask, one_a, one_b, one_d, attended, **_):
        heads = attended.producer().attributes.get_int("num_heads")
        expanded = op.Expand(mask, op.Concat(one_a, one_b, op.Shape(x, start=1, end=2), one_d, axis=0))
        return op.Attention(x, weight, bias, None, None, expanded, num_heads=heads, _domain="com.microsoft")


rules = pattern.RewriteRuleSet([PackedInProjAttention.rule("PackedInProjAttention")])


def apply(model: ir.Model) -> int:
    if not any(n.op_type == "MultiHeadAttention" for n in model.graph):
        return 0
    return rules.apply_to_model(model)
