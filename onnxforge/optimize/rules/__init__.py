"""Fusion rules for the dynamo path, run in the declared order of ``PIPELINE``.

Each rule is one small module written on the ``onnxscript.rewriter`` pattern API with
an ``apply(model: onnx_ir.Model) -> int`` (the number of rewrites). The order matters
and is said here, once, with the reason:

1. embed_layer_norm before ort_fusions: onnxscript's skip-normalization rule would turn
   the embedding's ``LayerNorm(x + segment)`` into a SkipLayerNormalization and the
   embedding pattern would be gone.
2. attention_bias_merge before ort_fusions: MPNet adds a relative position bias and the
   mask as two Adds; one summed bias is what the SDPA pattern (and ORT's attention_bias) take.
3. rotary_embedding before ort_fusions: its SDPA rule must see the rotated queries and
   keys as one RotaryEmbedding each (onnxscript's own cos/sin-cache rule does not match
   ModernBERT's export and would inline its rotary back into Cos/Sin/Mul ops).
4. layer_norm_zero_beta before ort_fusions: a zero beta on bias-free LayerNorms of a
   residual Add (ModernBERT), so onnxscript's skip-norm rule, which binds a beta, fuses them.
5. ort_fusions: onnxscript's maintained attention / skip-norm / GELU rules.
6. attention_packing after ort_fusions: it packs the Q/K/V projections of the
   MultiHeadAttention nodes that (5) left unpacked into one Attention.
7. packed_in_proj after ort_fusions: nn.MultiheadAttention's one in_proj, split by views
   into the q, k, v of a MultiHeadAttention that (5) made, becomes one Attention.
8. sequence_first_out_proj after packed_in_proj: the (sequence, batch) views around
   out_proj of that Attention's batch-first output become one MatMul.

``CPU_KERNEL_CHOICES`` run after fusion on graphs built for the CPU provider only: they
undo a fusion whose ORT CPU kernel is slower than the ops it replaced (measured, see
docs/optimize.md); the fusion report still counts what fused.

Imported lazily by ``optimize.fusion`` (onnxscript is a heavy import).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import onnx_ir as ir

from . import (attention_bias_merge, attention_packing, embed_layer_norm, layer_norm_zero_beta, ort_fusions,
               packed_in_proj, rotary_embedding, sequence_first_out_proj, skip_layer_norm_for_cpu)


@dataclass(frozen=True)
class FusionStep:
    name: str
    tool: str  # what the report names as the tool that made the rewrite
    apply: Callable[[ir.Model], int]
    why_here: str


PIPELINE: tuple[FusionStep, ...] = (
    FusionStep("embed_layer_norm", "onnxforge.optimize.rules.embed_layer_norm", embed_layer_norm.apply,
               "before skip-normalization fusion absorbs the embedding LayerNorm"),
    FusionStep("attention_bias_merge", "onnxforge.optimize.rules.attention_bias_merge", attention_bias_merge.apply,
               "before ort_fusions: one additive bias (position bias + mask) for the SDPA pattern"),
    FusionStep("rotary_embedding", "onnxforge.optimize.rules.rotary_embedding", rotary_embedding.apply,
               "before ort_fusions: RotaryEmbedding with an in-graph cos/sin cache, then attention fuses over it"),
    FusionStep("layer_norm_zero_beta", "onnxforge.optimize.rules.layer_norm_zero_beta", layer_norm_zero_beta.apply,
               "before ort_fusions: bias-free residual LayerNorms get a zero beta, which its skip-norm rule binds"),
    FusionStep("ort_fusions", ort_fusions.TOOL, ort_fusions.apply,
               "onnxscript's attention, skip-norm and GELU rules"),
    FusionStep("attention_packing", "onnxforge.optimize.rules.attention_packing", attention_packing.apply,
               "after ort_fusions: packs the Q/K/V projections of unpacked MultiHeadAttention"),
    FusionStep("packed_in_proj", "onnxforge.optimize.rules.packed_in_proj", packed_in_proj.apply,
               "after ort_fusions: nn.MultiheadAttention's packed in_proj and its views around a "
               "MultiHeadAttention become one Attention"),
    FusionStep("sequence_first_out_proj", "onnxforge.optimize.rules.sequence_first_out_proj",
               sequence_first_out_proj.apply,
               "after packed_in_proj: out_proj's (sequence, batch) views around its batch-first output go"),
)

CPU_KERNEL_CHOICES: tuple[FusionStep, ...] = (
    FusionStep("skip_layer_norm_for_cpu", "onnxforge.optimize.rules.skip_layer_norm_for_cpu",
               skip_layer_norm_for_cpu.apply,
               "ORT's CPU SkipLayerNormalization kernel is slower than Sum + LayerNormalization"),
)


def run_pipeline(model: ir.Model, count_groups: Callable[[ir.Model], dict[str, int]]) -> list[dict]:
    """Run every step in order; per step: rewrites made and the fused-op groups it added."""
    import onnx_ir.passes.common as common_passes

    common_passes.ShapeInferencePass()(model)
    steps = []
    before = count_groups(model)
    for step in PIPELINE:
        rewrites = step.apply(model)
        after = count_groups(model)
        steps.append({"step": step.name, "tool": step.tool, "rewrites": rewrites,
                      "fused": {g: after[g] - before[g] for g in after}})
        before = after
    return steps
