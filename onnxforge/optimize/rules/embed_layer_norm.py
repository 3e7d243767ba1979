"""EmbedLayerNormalization on dynamo graphs.

Matches BERT's embedding block as the dynamo exporter writes it::

    LayerNormalization(Gather(word, input_ids) + Gather(position, P) [+ Gather(segment, T)])

with the three lookups summed in either order (the ORT optimizer's own fusion only
knows the TorchScript-era position-id subgraphs). P is whatever the model computes
(an arange, a slice of the ``position_ids`` buffer, RoBERTa-style cumsum ids, or a
graph input): it becomes the fused op's ``position_ids`` input instead of being
pattern-matched, so every way of writing positions fuses. T (token_type_ids, or the
buffer of zeros HF uses without one) is expanded to input_ids' shape, which the kernel
requires. No ``mask`` input and no ``mask_index`` output: the fused Attention nodes keep
the exporter's own additive mask, so left padding stays correct.

Must run before the skip-normalization fusion: that one turns ``LN(x + segment)`` into
a SkipLayerNormalization and the embedding pattern is gone.
"""

from __future__ import annotations

import onnx_ir as ir
from onnxscript.rewriter import pattern

INT32 = ir.DataType.INT32


def _table(value: ir.Value | None) -> bool:
    """A constant 2-D embedding table (rows x hidden)."""
    return value is not None and value.const_value is not None and len(value.const_value.shape) == 2


def _gather_axis0(value: ir.Value) -> bool:
    node = value.producer()
    return node is not None and node.attributes.get_int("axis", 0) == 0


class EmbedLayerNormFusion(pattern.RewriteRuleClassBase):
    """``order`` says which lookup is added last: "none" (no segment), "segment" or "position"."""

    def __init__(self, name: str, order: str) -> None:
        super().__init__(name)
        self._order = order

    def pattern(self, op, input_ids, word_table, position_ids, position_table, segment_ids, segment_table, gamma, beta):
        word = op.Gather(word_table, input_ids, _outputs=["word"])
        position = op.Gather(position_table, position_ids, _outputs=["position"])
        if self._order == "none":
            summed = op.Add(word, position)
        elif self._order == "segment":
            summed = op.Add(op.Add(word, position), op.Gather(segment_table, segment_ids, _outputs=["segment"]))
        else:
            summed = op.Add(op.Add(word, op.Gather(segment_table, segment_ids, _outputs=["segment"])), position)
        return op.LayerNormalization(summed, gamma, beta, _outputs=["normalized"])

    def check(self, context, input_ids, word_table, position_ids, position_table, gamma, beta, normalized,
              word, position, segment_ids=None, segment_table=None, segment=None, **_) -> pattern.MatchResult:
        result = pattern.MatchResult()
        if not input_ids.is_graph_input():
            return result.fail("the word lookup does not index a graph input (input_ids)", input_ids)
        if input_ids.shape is None or input_ids.shape.rank() != 2:
            return result.fail("input_ids is not a 2-D (batch, sequence) tensor", input_ids)
        tables = [word_table, position_table] + ([segment_table] if self._order != "none" else [])
        if not all(_table(t) for t in tables):
            return result.fail("an embedding table is not a constant 2-D initializer", word_table)
        hidden = {t.const_value.shape[1] for t in tables}
        if len(hidden) != 1:
            return result.fail(f"embedding tables have different widths {sorted(hidden)}", word_table)
        if gamma.const_value is None or beta is None or beta.const_value is None:
            return result.fail("LayerNormalization scale/bias are not constants", gamma)
        if not all(_gather_axis0(v) for v in (word, position) + ((segment,) if segment is not None else ())):
            return result.fail("an embedding Gather is not along axis 0", word)
        norm = normalized.producer()
        if norm.attributes.get_int("axis", -1) not in (-1, 2):
            return result.fail("LayerNormalization is not over the hidden axis", normalized)
        if position_ids is input_ids or (segment_ids is not None and segment_ids is input_ids):
            return result.fail("position or segment lookup indexes input_ids", position_ids)
        if position_ids.shape is None or position_ids.shape.rank() not in (1, 2):
            return result.fail("position ids are not (sequence) or (batch|1, sequence)", position_ids)
        # The Adds commute, so any lookup can bind to any role; the sizes say which is which:
        # vocabulary rows >= position rows > segment (token type) rows.
        rows = [t.const_value.shape[0] for t in tables]
        if rows[0] < rows[1] or (len(rows) == 3 and rows[1] <= rows[2]):
            return result.fail(f"table sizes {rows} do not read as word >= position > segment", word_table)
        return result

    def rewrite(self, op, input_ids, word_table, position_ids, position_table, gamma, beta, normalized,
                segment_ids=None, segment_table=None, **_):
        eps = normalized.producer().attributes.get_float("epsilon", 1e-5)
        ids32 = op.Cast(input_ids, to=INT32)
        positions = position_ids
        if position_ids.shape.rank() == 1:
            positions = op.Unsqueeze(position_ids, op.Constant(value_ints=[0]))
        segment32 = None
        if segment_table is not None:
            # The kernel wants segment ids shaped exactly like input_ids.
            segment32 = op.Cast(op.Expand(segment_ids, op.Shape(input_ids)), to=INT32)
        # ORT's type inference wants the mask_index output declared; nothing reads it.
        out, _mask_index = op.EmbedLayerNormalization(
            ids32, segment32, word_table, position_table, segment_table, gamma, beta, None,
            op.Cast(positions, to=INT32), epsilon=eps, _domain="com.microsoft", _outputs=2,
        )
        return out


rules = pattern.RewriteRuleSet(
    [
        EmbedLayerNormFusion.rule("EmbedLayerNorm(word+position+segment)", order="segment"),
        EmbedLayerNormFusion.rule("EmbedLayerNorm(word+segment+position)", order="position"),
        EmbedLayerNormFusion.rule("EmbedLayerNorm(word+position)", order="none"),
    ],
    commute=True,
)


def apply(model: ir.Model) -> int:
    return rules.apply_to_model(model)
