"""Rotary position embedding -> com.microsoft RotaryEmbedding (ModernBERT, dynamo export).

HF's ``apply_rotary_pos_emb`` (q * cos + rotate_half(q) * sin, with ModernBERT's
``freqs = positions[..., None].float() * inv_freq``; its ``attention_scaling`` of 1 is
folded away) is exported, after torch.onnx's own optimization, as::

    freqs = Cast(positions[1, S, 1]) * inv_freq[D/2]
    emb = Concat(freqs, freqs, axis=-1)
    out = x * Unsqueeze(Cos(emb), 1) + Concat(-x[..., D/2:], x[..., :D/2]) * Unsqueeze(Sin(emb), 1)

with x the (batch, heads, seq, head_size) queries or keys. onnxscript's rotary rule
matches the last line, but its cos/sin-cache rule wants Llama's form
``Transpose(MatMul(inv_freq[1, D/2, 1], positions[B, 1, S]))``, so its intermediate
op is inlined back; and it would pass the (1, S) position ids on, which
ORT's kernel rejects for batch > 1 (it wants (batch, S) or one offset).

Here the cache is computed in the graph from the model's own positions (one row per
token: ``Cos(positions[S, 1] * inv_freq[1, D/2])``, the same float32 products as
before), and ``position_ids`` is the one-element offset 0, so token s reads row s for
every batch row. That holds only when the positions are shared by the batch (leading
dim 1) and have one row per token of x (checked), and it needs no maximum length.
Padding does not matter: ModernBERT's positions are arange(S) whatever the mask.

Runs before ort_fusions, whose SDPA / MultiHeadAttention rules then take the
RotaryEmbedding outputs as the queries and keys.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import pattern

FLOAT = ir.DataType.FLOAT


def _ints(value: ir.Value | None) -> list[int] | None:
    tensor = ir.convenience.get_const_tensor(value) if value is not None else None
    if tensor is None:
        return None
    array = tensor.numpy()
    return [int(v) for v in array.reshape(-1)] if array.dtype.kind in "iu" else None


def _same_dim(a, b) -> bool:
    """Equal ints, or the same named symbolic dimension."""
    if isinstance(a, int) or isinstance(b, int):
        return a == b
    return a is not None and b is not None and a.value is not None and a.value == b.value


class RotaryEmbeddingFusion(pattern.RewriteRuleClassBase):
    def __init__(self) -> None:
        # cos/sin are shared by the queries, the keys and other layers: keep them, the
        # final unused-node pass drops what nothing reads.
        super().__init__("RotaryEmbedding(half rotation, in-graph cache)", remove_nodes=False)
        self._caches: dict[tuple[int, int], tuple[ir.Value, ir.Value]] = {}

    def cleanup(self) -> None:
        self._caches.clear()

    def pattern(self, op, x, positions, inv_freq, start1, end1, axes1, steps1, start2, end2, axes2, steps2,
                cos_axes, sin_axes):
        freqs = op.Mul(op.Cast(positions, to=FLOAT), inv_freq)
        emb = op.Concat(freqs, freqs, axis=-1, _outputs=["emb"])
        cos = op.Unsqueeze(op.Cos(emb), cos_axes)
        sin = op.Unsqueeze(op.Sin(emb), sin_axes)
        first = op.Slice(x, start1, end1, axes1, steps1)
        second = op.Slice(x, start2, end2, axes2, steps2)
        rotated = op.Concat(op.Neg(second), first, axis=-1)
        return op.Add(op.Mul(x, cos), op.Mul(rotated, sin))

    def check(self, context, x, positions, inv_freq, start1, end1, axes1, steps1, start2, end2, axes2, steps2,
              cos_axes, sin_axes, emb, **_) -> pattern.MatchResult:
        result = pattern.MatchResult()
        shape = x.shape
        if shape is None or shape.rank() != 4 or not isinstance(shape[1], int) or not isinstance(shape[3], int):
            return result.fail("x is not (batch, heads, seq, head_size) with known heads and head size", x)
        head = shape[3]
        half = head // 2
        if head % 2:
            return result.fail(f"odd head size {head}", x)
        for axes, steps in ((axes1, steps1), (axes2, steps2)):
            if _ints(axes) not in ([3], [-1]) or _ints(steps) != [1]:
                return result.fail("rotate_half does not slice the last axis with step 1", x)
        end2_value = _ints(end2)
        if _ints(start1) != [0] or _ints(end1) != [half] or _ints(start2) != [half] or \
                end2_value is None or len(end2_value) != 1 or end2_value[0] < head:
            return result.fail(f"rotate_half does not split head size {head} into two halves", x)
        if _ints(cos_axes) != [1] or _ints(sin_axes) != [1]:
            return result.fail("cos/sin are not unsqueezed at the heads axis", emb)
        tensor = ir.convenience.get_const_tensor(inv_freq)
        if tensor is None or tensor.numpy().size != half or any(d != 1 for d in tensor.shape[:-1]):
            return result.fail(f"inv_freq is not a constant of {half} frequencies (full rotation)", inv_freq)
        pos = positions.shape
        if pos is None or pos.rank() not in (2, 3) or pos[-1] != 1 or (pos.rank() == 3 and pos[0] != 1):
            return result.fail("positions are not shared by the batch as (1, seq, 1) or (seq, 1)", positions)
        if not _same_dim(pos[-2], shape[2]):
            return result.fail(f"positions have {pos[-2]} rows where x has {shape[2]} tokens", positions)
        return result

    def rewrite(self, op, x, positions, inv_freq, **_):
        key = (id(positions), id(inv_freq))
        if key not in self._caches:
            angles = op.Mul(op.Reshape(op.Cast(positions, to=FLOAT), op.Constant(value_ints=[-1, 1])),
                            op.Reshape(inv_freq, op.Constant(value_ints=[1, -1])))
            self._caches[key] = (op.Cos(angles), op.Sin(angles))
        cos_cache, sin_cache = self._caches[key]
        offset = op.Constant(value=ir.tensor(np.zeros(1, np.int64)))
        return op.RotaryEmbedding(x, offset, cos_cache, sin_cache, interleaved=0, num_heads=x.shape[1],
                                  _domain="com.microsoft")


def apply(model: ir.Model) -> int:
    rules = pattern.RewriteRuleSet([RotaryEmbeddingFusion.rule()], commute=True)
    return rules.apply_to_model(model)
