"""SkipLayerNormalization -> Sum + LayerNormalization, for the CPU provider.

ORT's CPU SkipLayerNormalization kernel is an order of magnitude slower than its
LayerNormalization kernel plus an Add (profiled on MiniLM, batch 8 x 128: 12
SkipLayerNorms cost more than all 13 LayerNorms and every bias/residual Add of the
plain export together), and ORT itself does not fuse SkipLayerNormalization for CPU
at load time. So a graph built for CPU keeps the residual as Adds and normalizes with
LayerNormalization; graphs built for CUDA keep the fused op.

Matches ``SkipLayerNormalization(x, skip, gamma, beta[, bias])`` whose only used output
is the normalized one (the optional mean / inv-std outputs unused; the
input+skip+bias sum output, when used, is kept as the Add that computes it).
"""

from __future__ import annotations

import onnx_ir as ir
from onnxscript.rewriter import pattern


class SkipLayerNormToAddLayerNorm(pattern.RewriteRuleClassBase):
    """``outputs``: 1 (ORT's optimizer writes only the normalized output) or 4 (onnxscript
    declares mean, inv-std and the sum too; LayerNormalization gives the first two)."""

    def __init__(self, name: str, has_bias: bool, outputs: int) -> None:
        super().__init__(name)
        self._has_bias = has_bias
        self._outputs = outputs

    def pattern(self, op, x, skip, gamma, beta, bias):
        args = [x, skip, gamma, beta] + ([bias] if self._has_bias else [])
        names = ["normed", "mean", "inv_std", "summed"][: self._outputs]
        return op.SkipLayerNormalization(*args, _domain="com.microsoft", _outputs=names, _allow_other_attributes=True)

    def check(self, context, normed, **_) -> pattern.MatchResult:
        result = pattern.MatchResult()
        if len(normed.producer().outputs) != self._outputs:
            return result.fail(f"the node declares {len(normed.producer().outputs)} outputs, not {self._outputs}", normed)
        return result

    def rewrite(self, op, x, skip, gamma, beta, normed, bias=None, **_):
        eps = normed.producer().attributes.get_float("epsilon", 1e-12)
        # The residual is a Sum, not an Add: ORT's load-time SkipLayerNormFusion matches
        # Add -> LayerNormalization on CPU too and would bring the slow kernel back.
        total = op.Sum(op.Add(x, bias) if bias is not None else x, skip)
        if self._outputs == 1:
            return op.LayerNormalization(total, gamma, beta, axis=-1, epsilon=eps)
        out, mean, inv_std = op.LayerNormalization(total, gamma, beta, axis=-1, epsilon=eps, _outputs=3)
        return out, mean, inv_std, total


rules = pattern.RewriteRuleSet([
    SkipLayerNormToAddLayerNorm.rule(f"SkipLayerNorm({'bias, ' if bias else ''}{n} out)->Add+LayerNorm",
                                     has_bias=bias, outputs=n)
    for bias in (True, False) for n in (4, 1)
])


def apply(model: ir.Model) -> int:
    return rules.apply_to_model(model)
