"""fp16 for CUDA: fp16 weights and compute, fp32 inputs and outputs, and a block list.

The conversion is ``onnxruntime.transformers``' float16 converter on the fused graph
(``keep_io_types=True``: callers keep feeding int64 ids and reading fp32 outputs).
It is a graph transformation only: no GPU and no CUDA session are needed to build it,
and ONNX Runtime's CPU provider still runs it (it casts the fp16 nodes it has no fp16
kernel for back to fp32), which is how the checks here and the tests run it.

What stays in fp32, and why:

* ``BLOCK_REASONS`` below: op types that overflow or lose too much precision in fp16
  when they appear in a BERT graph, each with its reason.
* the float16 converter's own default block list (ops ONNX Runtime has no fp16 kernel
  for, or index arithmetic that must stay exact).
* any node whose fp32 output, on calibration inputs, comes within
  ``fp16_overflow_margin`` of fp16's largest finite value (65504): measured, not guessed.

Ops deliberately not blocked: LayerNormalization / SkipLayerNormalization /
EmbedLayerNormalization and Attention / MultiHeadAttention. Their CUDA kernels take fp16
tensors but accumulate the mean, variance and softmax sums in fp32, so they are safe in
fp16, and blocking them would add a Cast pair around every layer. Constants beyond the
fp16 range (the -3.4e38 additive attention mask of an unfused or SDPA graph) are
clamped to -65504 by the converter, which still masks completely after softmax.
"""

from __future__ import annotations

from typing import Any

import numpy as np

FP16_MAX = 65504.0
# float32's extremes (torch.finfo(float32).min) fill masked attention positions; the
# converter clamps such constants to -65504, which masks just as completely.
MASK_FILL = 1e30

BLOCK_REASONS: dict[str, str] = {
    "ReduceMean": "mean and variance of an unfused LayerNormalization: kept with Pow so the variance is never "
                  "rounded to fp16 (1e-3 relative) before the reciprocal square root",
    "Pow": "x**2 of an unfused LayerNormalization overflows fp16 once |x| > 256 (BERT residual streams reach that)",
    "Sqrt": "the variance it reads is only exact in fp32 (see Pow)",
    "ReduceSum": "sums over long axes (e.g. pooling over the sequence) overflow or round in fp16",
    "Exp": "an unfused softmax's exponent overflows fp16 above 11.09",
    "Softplus": "exp inside overflows fp16 above 11.09",
    "Log": "log of values near 0 loses all precision in fp16 (smallest normal 6.1e-5)",
}


def _default_block_list() -> dict[str, str]:
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST

    return {op: "in onnxruntime.transformers.float16's default block list (no fp16 kernel in ONNX Runtime, "
                "or index arithmetic that must stay exact)" for op in DEFAULT_OP_BLOCK_LIST}


def block_list() -> dict[str, str]:
    return _default_block_list() | BLOCK_REASONS


def overflow_scan(model, feeds_list: list[dict[str, np.ndarray]], limit: float) -> tuple[dict[str, float], list[str]]:
    """Largest |value| of every float node output over the calibration feeds (CPU, fp32).

    Returns ({node name: max abs} for nodes reaching ``limit``, nodes whose only huge
    values are mask fills). Mask fills (|x| >= 1e30) are not counted as overflow:
    keeping such a node fp32 would be worse, its output would then be cast to -inf.
    """
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto.FromString(model.SerializeToString())
    existing = {o.name for o in probe.graph.output}
    owner = {}
    for node in probe.graph.node:
        for out in node.output:
            if out and out not in existing:
                owner[out] = node.name or out
                probe.graph.output.append(onnx.ValueInfoProto(name=out))
    so = ort.SessionOptions()
    so.log_severity_level = 3
    # No graph rewrites: we want the values of exactly these nodes.
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(probe.SerializeToString(), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    inputs = {i.name for i in session.get_inputs()}
    peak: dict[str, float] = {}
    fills: set[str] = set()
    for feeds in feeds_list:
        values = session.run(names, {k: v for k, v in feeds.items() if k in inputs})
        for name, value in zip(names, values):
            if name in owner and isinstance(value, np.ndarray) and value.dtype.kind == "f" and value.size:
                a = np.abs(value)
                ordinary = a[a < MASK_FILL]
                if ordinary.size < a.size:
                    fills.add(owner[name])
                peak[name] = max(peak.get(name, 0.0), float(ordinary.max()) if ordinary.size else 0.0)
    return {owner[n]: v for n, v in peak.items() if v >= limit}, sorted(fills)


def to_fp16(model, feeds_list: list[dict[str, np.ndarray]], margin: float) -> tuple[Any, dict[str, Any]]:
    from collections import Counter

    from onnxruntime.transformers.onnx_model import OnnxModel

    reasons = block_list()
    present = Counter(n.op_type for n in model.graph.node)
    limit = FP16_MAX * margin
    hot, fills = overflow_scan(model, feeds_list, limit) if feeds_list else ({}, [])
    onnx_model = OnnxModel(model)
    onnx_model.convert_float_to_float16(
        keep_io_types=True,
        op_block_list=sorted(reasons),
        node_block_list=sorted(hot),
    )
    converted = onnx_model.model
    dtypes = Counter({1: "float32", 10: "float16"}.get(t.data_type, str(t.data_type)) for t in converted.graph.initializer)
    report = {
        "converter": "onnxruntime.transformers.onnx_model.OnnxModel.convert_float_to_float16",
        "keep_io_types": True,
        "op_block_list": reasons,
        "blocked_ops_present": {op: present[op] for op in reasons if present[op]},
        "not_blocked": {
            "LayerNormalization/SkipLayerNormalization/EmbedLayerNormalization": "CUDA kernels accumulate statistics in fp32",
            "Attention/MultiHeadAttention": "CUDA kernels accumulate softmax in fp32; masks are clamped to -65504",
        },
        "overflow_scan": {
            "limit": limit,
            "inputs": len(feeds_list),
            "blocked_nodes": hot,
            "mask_fill_nodes": fills,
        },
        "initializer_dtypes": dict(dtypes),
    }
    return converted, report
