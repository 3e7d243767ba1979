"""onnxscript's maintained ORT fusions, as one step of the table.

``optimize_for_ort`` matches scaled-dot-product attention however it is written
(SDPA, eager softmax(QK^T/sqrt(d) + mask)V, nn.MultiheadAttention) and maps it onto
ORT's Attention (packed QKV projection) or MultiHeadAttention; it also fuses
SkipLayerNormalization, erf-GELU and BiasGelu. Constant folding afterwards turns the
Concat of the three Q/K/V weights into one initializer (the quantizer and ORT's loader
both want a constant there).
"""

from __future__ import annotations

import onnx_ir as ir

TOOL = "onnxscript.rewriter.ort_fusions"


def apply(model: ir.Model) -> int:
    import onnxscript.optimizer
    from onnxscript.rewriter.ort_fusions import optimize_for_ort

    _, stats = optimize_for_ort(model)
    onnxscript.optimizer.fold_constants(model, input_size_limit=1 << 31, output_size_limit=1 << 31)
    return sum(stats.values())
