"""Model FLOPs of a BERT encoder at a given batch and sequence length, from its spec.

Dense matmuls only (what a GEMM peak can be compared with): per layer the Q, K, V and
output projections (4 h^2 multiply-adds per token) and the two FFN matmuls (2 h i),
attention scores and context (2 seq h each per token), plus the pooler's dense layer
on the first token. A multiply-add counts as 2 FLOPs. Embedding lookups, softmax,
LayerNorm and GELU are left out: they are memory-bound and small beside the matmuls.
"""

from __future__ import annotations

from ..spec import ModelSpec


def bert_flops(spec: ModelSpec, batch: int, seq: int, *, pooler: bool | None = None) -> int:
    """FLOPs of one forward pass over ``batch`` x ``seq`` tokens (padding included:
    the kernels compute padded positions too)."""
    h = spec.hidden_size
    i = spec.intermediate_size or 4 * h
    tokens = batch * seq
    per_layer = 2 * tokens * (4 * h * h + 2 * h * i) + 4 * tokens * seq * h
    total = spec.num_layers * per_layer
    if pooler is None:
        pooler = "pooler_output" in spec.output_names
    if pooler:
        total += 2 * batch * h * h
    return int(total)
