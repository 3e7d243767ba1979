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
* rotary angles (``rotary_angle_nodes``): the Cos / Sin of a rotary embedding and the
  nodes computing their argument (positions x inv_freq). An angle of position p is only
  as exact as p: fp16's spacing is 0.0625 at 64-128 and 4 at 4096-8192 (and inv_freq
  itself rounds by 5e-4 relative), so cos/sin go wrong long before the model's maximum
  length. Only the cache values (in [-1, 1]) are cast to fp16, after Cos / Sin.

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


ROTARY_REASON = ("rotary angles (positions x inv_freq) and their Cos/Sin: positions above 2048 and angles above "
                 "64 are not exact in fp16 (spacing 4 at 4096-8192), which turns cos/sin into noise at long sequences")
# What builds a rotary angle, and which inputs carry it (the rest are shapes or axes).
# Cast ends the walk: it turns the integer positions into floats.
_ANGLE_INPUTS: dict[str, tuple[int, ...] | None] = {
    "Mul": None, "MatMul": None, "Div": None, "Concat": None, "Constant": (), "Cast": (),
    "Reshape": (0,), "Unsqueeze": (0,), "Squeeze": (0,), "Transpose": (0,), "Expand": (0,), "Identity": (0,),
}


def _declare_float_outputs(model, nodes) -> None:
    """Give Cos / Sin outputs a float32 type where the graph has none: the converter casts a
    blocked node's output to fp16 only when it knows the output is float (a fused
    RotaryEmbedding needs its cos/sin cache in the same type as its input)."""
    from onnx import TensorProto, helper

    typed = {v.name for v in list(model.graph.value_info) + list(model.graph.output)}
    for node in nodes:
        if node.output[0] not in typed:
            model.graph.value_info.append(helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT, None))


def _drop_duplicate_nodes(model) -> None:
    """Keep one of identical nodes. A float tensor read by two blocked nodes (the positions by
    two rotary caches) gets one Cast to fp32 per reader, each with the same name and
    output, which ONNX Runtime refuses as an invalid graph."""
    seen: set[bytes] = set()
    keep = []
    for node in model.graph.node:
        key = node.SerializeToString(deterministic=True)
        if key not in seen:
            seen.add(key)
            keep.append(node)
    if len(keep) < len(model.graph.node):
        del model.graph.node[:]
        model.graph.node.extend(keep)


def _retype_fp32_initializers(model) -> None:
    """The converter keeps an initializer read only by blocked nodes (inv_freq) in fp32 but
    still declares it fp16 in value_info; onnx's shape inference then refuses the graph."""
    dtypes = {t.name: t.data_type for t in model.graph.initializer}
    for value in model.graph.value_info:
        if value.name in dtypes and value.type.tensor_type.elem_type != dtypes[value.name]:
            value.type.tensor_type.elem_type = dtypes[value.name]


def rotary_angle_nodes(model) -> list[str]:
    """Names of the Cos / Sin nodes (default domain) and every node their argument is built from.

    Walks up from each Cos / Sin through ``_ANGLE_INPUTS`` and stops at anything else
    (initializers, graph inputs, integer position arithmetic). Unnamed nodes on the way
    are given a name, since the converter's node block list goes by name.
    """
    producer = {out: node for node in model.graph.node for out in node.output if out}
    taken = {node.name for node in model.graph.node if node.name}
    found: dict[int, object] = {}
    stack = [n for n in model.graph.node if n.domain in ("", "ai.onnx") and n.op_type in ("Cos", "Sin")]
    while stack:
        node = stack.pop()
        if id(node) in found:
            continue
        found[id(node)] = node
        carried = _ANGLE_INPUTS.get(node.op_type, (0,))
        inputs = node.input if carried is None else [node.input[i] for i in carried if i < len(node.input)]
        for name in inputs:
            parent = producer.get(name)
            if parent is not None and parent.domain in ("", "ai.onnx") and parent.op_type in _ANGLE_INPUTS:
                stack.append(parent)
    _declare_float_outputs(model, [n for n in found.values() if n.op_type in ("Cos", "Sin")])
    names = []
    for node in found.values():
        if not node.name:
            index = 0
            while f"rotary_angle_{node.op_type}_{index}" in taken:
                index += 1
            node.name = f"rotary_angle_{node.op_type}_{index}"
            taken.add(node.name)
        names.append(node.name)
    return sorted(names)


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
    rotary = rotary_angle_nodes(model)
    onnx_model = OnnxModel(model)
    onnx_model.convert_float_to_float16(
        keep_io_types=True,
        op_block_list=sorted(reasons),
        node_block_list=sorted(set(hot) | set(rotary)),
    )
    converted = onnx_model.model
    _drop_duplicate_nodes(converted)
    _retype_fp32_initializers(converted)
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
        "rotary_angle_nodes": {"nodes": rotary, "why": ROTARY_REASON},
        "initializer_dtypes": dict(dtypes),
    }
    return converted, report
