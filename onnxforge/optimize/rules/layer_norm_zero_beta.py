"""Bias-free LayerNormalization after a residual Add -> the same norm with a zero beta.

ModernBERT's LayerNorms have no bias (``LayerNormalization(x, gamma)``, two inputs).
onnxscript's SkipLayerNormalization rules bind a ``beta`` input, so they never match
them, although the rest fits: the residual ``Add`` feeding the norm, and its sum
read again by the next residual (a pre-LN encoder), which the fused op returns as its
fourth output (input_skip_bias_sum). A zero beta is exact (x * gamma + 0) and lets the
maintained rule fuse them; ORT's SkipLayerNormalization kernels take any beta.

Only norms of an Add get one (the others would carry a useless constant). Runs just
before ort_fusions. On graphs built for CPU, skip_layer_norm_for_cpu then emits the
fused ops as Sum + LayerNormalization again (its measured kernel choice), so this
matters for CUDA graphs.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import pattern


class ZeroBetaLayerNorm(pattern.RewriteRuleClassBase):
    def __init__(self) -> None:
        super().__init__("LayerNorm(Add, gamma) -> LayerNorm(Add, gamma, 0)")

    def pattern(self, op, x, gamma):
        # Only the norm: the Add's sum is read again by the next residual and stays.
        return op.LayerNormalization(x, gamma, _allow_other_attributes=True, _outputs=["normed"])

    def check(self, context, x, gamma, normed, **_) -> pattern.MatchResult:
        result = pattern.MatchResult()
        if x.producer() is None or x.producer().op_type != "Add" or x.producer().domain not in ("", "ai.onnx"):
            return result.fail("the norm's input is not a residual Add", x)
        node = normed.producer()
        if len(node.outputs) != 1:
            return result.fail("the norm's mean / inv-std outputs are declared", normed)
        tensor = ir.convenience.get_const_tensor(gamma)
        if tensor is None or len(tensor.shape) != 1 or tensor.dtype != ir.DataType.FLOAT:
            return result.fail("gamma is not a constant 1-D float32 tensor", gamma)
        if node.attributes.get_int("axis", -1) != -1:
            return result.fail("the norm is not over the last axis only", normed)
        return result

    def rewrite(self, op, x, gamma, normed, **_):
        zeros = op.Constant(value=ir.tensor(np.zeros(ir.convenience.get_const_tensor(gamma).shape[0], np.float32)))
        attrs = normed.producer().attributes
        return op.LayerNormalization(x, gamma, zeros, axis=-1,
                                     epsilon=attrs.get_float("epsilon", 1e-5), stash_type=attrs.get_int("stash_type", 1))


def apply(model: ir.Model) -> int:
    return pattern.RewriteRuleSet([ZeroBetaLayerNorm.rule()]).apply_to_model(model)
