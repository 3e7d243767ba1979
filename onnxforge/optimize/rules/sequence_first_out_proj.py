"""nn.MultiheadAttention's out_proj in sequence-first layout -> one MatMul on the attention output.

``nn.MultiheadAttention`` with ``batch_first=True`` computes in (sequence, batch) order and
transposes back at the end; after ``packed_in_proj`` the attention itself is
batch-first, so its output goes through::

    y (B, S, E) -> Reshape (B, S, H, d) -> Transpose [1, 0, 2, 3] -> Reshape (S*B, E)
      -> Gemm(., W, [c], transB=1) -> Reshape (S, B, N) -> Transpose [1, 0, 2] -> (B, S, N)

which is row for row ``y @ W.T (+ c)``: one MatMul (and the bias Add), six nodes fewer a
layer. The views are checked against the inferred shapes (rows in (sequence, batch)
order on both sides of the Gemm), so a reshape that mixes rows does not match.

Runs after packed_in_proj, whose Attention (batch, sequence, hidden) output it reads.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import pattern

from .packed_in_proj import _const, _dims, _matches, _same


def _attention_input(value: ir.Value) -> ir.Value | None:
    node = value.producer()
    if node is None or node.domain != "com.microsoft" or node.op_type not in ("Attention", "MultiHeadAttention"):
        return None
    return node.inputs[0]


def _bias(projected: ir.Value) -> ir.Value | None:
    inputs = projected.producer().inputs
    return inputs[2] if len(inputs) > 2 else None


class SequenceFirstOutProj(pattern.RewriteRuleClassBase):
    def __init__(self) -> None:
        super().__init__("SequenceFirstOutProj")
        self._transposed: dict[int, ir.Value] = {}  # one W.T per weight, however many layers share it

    def cleanup(self) -> None:
        self._transposed.clear()

    def pattern(self, op, y, heads_shape, rows_shape, weight, out_shape):
        permuted = op.Transpose(op.Reshape(y, heads_shape), perm=[1, 0, 2, 3], _outputs=["permuted"])
        rows = op.Reshape(permuted, rows_shape, _outputs=["rows"])
        projected = op.Gemm(rows, weight, _allow_other_inputs=True, _outputs=["projected"])
        return op.Transpose(op.Reshape(projected, out_shape, _outputs=["back"]), perm=[1, 0, 2])

    def check(self, context, y, weight, permuted, rows, projected, back, **_) -> pattern.MatchResult:
        result = pattern.MatchResult()
        bias = _bias(projected)
        source = _attention_input(y)
        shape = None if source is None else _dims(source)
        if shape is None or len(shape) != 3 or not isinstance(shape[2], int):
            return result.fail("not the (batch, sequence, hidden) output of a fused attention", y)
        batch, seq, hidden = shape
        attrs = projected.producer().attributes
        if attrs.get_float("alpha", 1.0) != 1.0 or attrs.get_float("beta", 1.0) != 1.0 or \
                attrs.get_int("transA", 0) != 0 or attrs.get_int("transB", 0) != 1:
            return result.fail("not Gemm(rows, W, transB=1) without scaling", projected)
        w = _const(weight)
        if w is None or w.ndim != 2 or w.shape[1] != hidden:
            return result.fail(f"out_proj is not a constant (N, {hidden}) weight", weight)
        c = _const(bias) if bias is not None else np.zeros(0)
        if c is None or (bias is not None and c.shape != (w.shape[0],)):
            return result.fail("out_proj's bias is not a constant vector", bias)
        dims = _dims(permuted)
        if dims is None or len(dims) != 4 or not _same(dims[0], seq) or not _same(dims[1], batch) or \
                not isinstance(dims[2], int) or not isinstance(dims[3], int) or dims[2] * dims[3] != hidden:
            return result.fail("the attention output is not split into heads in (sequence, batch) order", permuted)
        rows_dims = _dims(rows)
        if rows_dims is None or len(rows_dims) != 2 or rows_dims[1] != hidden:
            return result.fail(f"the rows are not (sequence*batch, {hidden})", rows)
        if not _matches(back, [seq, batch, w.shape[0]]):
            return result.fail("the projected rows are not viewed back as (sequence, batch, N)", back)
        return result

    def rewrite(self, op, y, weight, projected, **_):
        if id(weight) not in self._transposed:
            self._transposed[id(weight)] = op.initializer(
                ir.tensor(np.ascontiguousarray(_const(weight).T), name=f"{weight.name}_transposed"))
        out = op.MatMul(y, self._transposed[id(weight)])
        bias = _bias(projected)
        return out if bias is None else op.Add(out, bias)


rules = pattern.RewriteRuleSet([SequenceFirstOutProj.rule()])


def apply(model: ir.Model) -> int:
    if not any(n.op_type in ("Attention", "MultiHeadAttention") for n in model.graph):
        return 0
    return rules.apply_to_model(model)
