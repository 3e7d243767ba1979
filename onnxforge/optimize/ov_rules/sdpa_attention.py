"""PyTorch's decomposed scaled_dot_product_attention -> OpenVINO's ScaledDotProductAttention.

The dynamo exporter writes ``F.scaled_dot_product_attention`` (BERT's sdpa attention)
as ops: ``(q * s) @ (k^T * s)`` with ``s = scale ** 0.5`` on each side, ``+ mask``,
``Softmax``, a NaN guard ``Where(IsNaN(p), 0, p)`` for fully masked rows, ``@ v``; the key
is transposed through ``Reshape -> Transpose(0, 2, 1) -> Reshape``. OpenVINO 2026.4's
CPU plugin does not recognize that shape and runs it op by op (the NaN guard alone is
two passes over every score). One opset-13 ScaledDotProductAttention per layer lets the
plugin run attention as one fused kernel: MiniLM-L6 at batch 1 x 128 in bf16 on a
2-core Sapphire Rapids, ~5.3 -> ~4.7 ms a call (benchmarks/race_cpu.py).

Exact, not approximate: the rewrite only fires when the NaN guard is provably a no-op,
i.e. the additive mask is ``Where(cond, a, b)`` of two finite constants (HF's
``finfo.min`` mask): a row of finite scores never softmaxes to NaN. A mask that could
hold ``-inf`` keeps the guard and the ops. Anything that does not match exactly is left
as it is (the graph still runs, unfused). optimize's parity checks (goldens vs PyTorch,
held-out texts at 10 sequence lengths) run on the rewritten IR before it is written.
On the tiny architectures it fuses BERT, RoBERTa, XLM-R, DistilBERT, ELECTRA, CamemBERT
and ModernBERT, and leaves MPNet (position bias in the mask) and DeBERTa-v2 alone
(tests/optimize/test_ov_rule_sdpa_architectures.py).
"""

from __future__ import annotations

import math

import numpy as np

FUSED_OP = "ScaledDotProductAttention"


def _type(output) -> str:
    return output.get_node().get_type_name()


def _scalar(output) -> float | None:
    """The value of a one-element Constant, else None."""
    node = output.get_node()
    if node.get_type_name() != "Constant":
        return None
    data = node.get_data()
    return float(data.reshape(-1)[0]) if data.size == 1 else None


def _scaled(output):
    """(x, s) for ``Multiply(x, Constant s)``, else None."""
    node = output.get_node()
    if node.get_type_name() != "Multiply":
        return None
    for a, b in ((0, 1), (1, 0)):
        s = _scalar(node.input_value(b))
        if s is not None:
            return node.input_value(a), s
    return None


def _untransposed_key(k_t):
    """The [B, H, L, D] key behind ``Reshape(Transpose(Reshape(k), (0, 2, 1)))``, else None."""
    outer = k_t.get_node()
    if outer.get_type_name() != "Reshape" or _type(outer.input_value(0)) != "Transpose":
        return None
    transpose = outer.input_value(0).get_node()
    perm = transpose.input_value(1).get_node()
    if perm.get_type_name() != "Constant" or perm.get_data().tolist() != [0, 2, 1]:
        return None
    inner = transpose.input_value(0).get_node()
    if inner.get_type_name() != "Reshape":
        return None
    k = inner.input_value(0)
    return k if k.get_partial_shape().rank.get_length() == 4 else None


def _finite_mask(mask) -> bool:
    """True when every value the additive mask can take is finite."""
    node = mask.get_node()
    if node.get_type_name() != "Select":
        return False
    values = [_scalar(node.input_value(i)) for i in (1, 2)]
    return all(v is not None and math.isfinite(v) for v in values)


def _nan_guarded(probs) -> tuple[object, bool]:
    """(the output attention reads, whether it went through the NaN guard)."""
    readers = [t.get_node() for t in probs.get_target_inputs()]
    select = [n for n in readers if n.get_type_name() == "Select"]
    if len(readers) == 2 and len(select) == 1 and _type(select[0].input_value(0)) == "IsNaN" \
            and select[0].input_value(0).get_node().input_value(0) == probs and select[0].input_value(2) == probs \
            and _scalar(select[0].input_value(1)) == 0.0:
        return select[0].output(0), True
    return probs, False


def _rewrite(softmax) -> bool:
    from openvino import opset13
    from openvino.utils import replace_node

    rank = softmax.get_output_partial_shape(0).rank
    if not rank.is_static or softmax.get_attributes().get("axis") not in (-1, rank.get_length() - 1):
        return False  # SDPA normalizes over the keys: the last axis
    add = softmax.input_value(0).get_node()
    if add.get_type_name() != "Add":
        return False
    scores, mask = add.input_value(0), add.input_value(1)
    if _type(scores) != "MatMul":
        scores, mask = mask, scores
    qk = scores.get_node()
    if qk.get_type_name() != "MatMul" or any(qk.get_attributes().get(t) for t in ("transpose_a", "transpose_b")):
        return False
    q_side, k_side = _scaled(qk.input_value(0)), _scaled(qk.input_value(1))
    if q_side is None or k_side is None:
        return False
    key = _untransposed_key(k_side[0])
    probs, guarded = _nan_guarded(softmax.output(0))
    if key is None or (guarded and not _finite_mask(mask)):
        return False
    readers = [t.get_node() for t in probs.get_target_inputs()]
    if len(readers) != 1 or readers[0].get_type_name() != "MatMul" or readers[0].input_value(0) != probs:
        return False
    pv = readers[0]
    query, value = q_side[0], pv.input_value(1)
    if any(x.get_partial_shape().rank.get_length() != 4 for x in (query, value, mask)):
        return False
    scale = opset13.constant(np.float32(q_side[1] * k_side[1]))
    fused = opset13.scaled_dot_product_attention(query, key, value, mask, scale, causal=False)
    fused.set_friendly_name(pv.get_friendly_name())
    replace_node(pv, fused)
    return True


def apply(model) -> int:
    """Fuse every matching attention of ``model`` (an ``openvino.Model``) in place."""
    softmaxes = [op for op in model.get_ordered_ops() if op.get_type_name() == "Softmax"]
    return sum(_rewrite(op) for op in softmaxes)
