"""int8 for CPU: dynamic quantization of the fused graph, with outlier channels tamed first.

Why this route (measured on MiniLM, see docs/optimize.md for the whole curve):

* ONNX Runtime's fast int8 CPU kernels (DynamicQuantizeMatMul, QAttention: u8 activations
  x s8 weights, VNNI/AMX) quantize each activation tensor with ONE scale, computed at run
  time from its min and max. In BERT the [CLS] token carries "massive activations" in
  one to three hidden channels (|x| ~ 20-30 where the median channel peaks at ~2), so
  that single scale is ~10x too coarse for every other value: plain dynamic per-channel
  int8 reaches only min cosine 0.988 on real text.
* Static QDQ calibration looks accurate (0.999) only because ONNX Runtime turns the
  weight DequantizeLinear + MatMul into a weight-only MatMulNBits and drops the
  activation Q/DQ pair: the compute stays fp32 and so does the speed. MatMulNBits with
  int8 compute (accuracy_level 4, per-block activation scales) is accurate but not
  faster than fp32 on this CPU. Keeping the sensitive MatMuls fp32 costs most of the gain.
* So: keep the fast kernels and take the outliers out of the activation range.
  Calibration on real text (distinct from evaluation text) finds, per MatMul input, the
  few channels whose |max| is far above the median channel's. By default ("smooth")
  each such channel is divided by a factor before the MatMul and the weight row
  multiplied by it, so the channel ends at ``smooth_target`` x the median: exact in
  fp32, one Mul at run time, min cosine 0.995. "split" instead computes the outlier
  channels in a K=1..4 fp32 MatMul beside the int8 product (LLM.int8()'s decomposition
  with the channels fixed offline): min cosine 0.996, but the extra MatMul and Add cost
  ~15% of the int8 time.

Settings that stay as measured best: per-channel s8 weights (per-tensor: min cosine
0.93), reduce_range off (VNNI and AMX do not saturate; reduce_range lost accuracy),
u8 activations (the only type DynamicQuantizeLinear produces; u8 x s8 is what the
VNNI/AMX kernels take), Attention quantized to QAttention when ONNX Runtime supports its
inputs (an Attention with an additive attention bias, as onnxscript produces for dynamo
exports, has no QAttention form and stays fp32). On CPUs without VNNI (AVX2 only) ONNX
Runtime's u8 x s8 kernels can saturate 16-bit sums: re-check the cosine there.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

# Trade-off measured while choosing the route: MiniLM-L6 fused by this stage, 300 real
# texts (sample_texts offsets 0-299; calibration uses 1000+), mean-pooled embeddings,
# cosine vs PyTorch fp32; time = ORT process CPU time per call at batch 8 x 128 with one
# thread (median of 3 interleaved cycles; wall time on the shared 2-core Sapphire Rapids
# VM was too noisy to rank these). Reproduce: benchmarks/bench_optimize.py --sweep
# --threads 1 --clock cpu. PyTorch fp32 on the same clock: ~186 ms.
MEASURED_TRADEOFF = (
    {"config": "fp32 fused (reference)", "min_cosine": 1.0, "mean_cosine": 1.0, "cpu_ms_b8_s128": 169.8},
    {"config": "dynamic per-tensor, MatMul + Attention", "min_cosine": 0.9236, "mean_cosine": 0.9610, "cpu_ms_b8_s128": 72.3},
    {"config": "dynamic per-channel, reduce_range", "min_cosine": 0.9859, "mean_cosine": 0.9927, "cpu_ms_b8_s128": 73.7},
    {"config": "dynamic per-channel, MatMul + Attention", "min_cosine": 0.9880, "mean_cosine": 0.9940, "cpu_ms_b8_s128": 77.3},
    {"config": "dynamic per-channel, MatMul only", "min_cosine": 0.9873, "mean_cosine": 0.9950, "cpu_ms_b8_s128": 103.3},
    {"config": "outlier smooth (ratio 6, <=4 ch, to 5x median) [default]", "min_cosine": 0.9946, "mean_cosine": 0.9969,
     "cpu_ms_b8_s128": 75.9},
    {"config": "outlier smooth (ratio 4, <=8 ch, to 5x median)", "min_cosine": 0.9938, "mean_cosine": 0.9968, "cpu_ms_b8_s128": 75.7},
    {"config": "outlier split (ratio 6, <=4 ch)", "min_cosine": 0.9960, "mean_cosine": 0.9979, "cpu_ms_b8_s128": 88.7},
    {"config": "outlier split, MatMul only (Attention fp32)", "min_cosine": 0.9979, "mean_cosine": 0.9989, "cpu_ms_b8_s128": 112.4},
    {"config": "static QDQ MinMax, MatMul, u8/s8 (ORT runs it weight-only)", "min_cosine": 0.9992, "mean_cosine": 0.9997,
     "cpu_ms_b8_s128": 207.9},
    {"config": "MatMulNBits 8-bit, block 32, int8 compute", "min_cosine": 0.9997, "mean_cosine": 0.9999, "cpu_ms_b8_s128": 204.9},
    {"config": "SmoothQuant-style scaling of every channel (alpha 0.5) + dynamic", "min_cosine": 0.973, "mean_cosine": 0.988,
     "cpu_ms_b8_s128": None},
)


@contextlib.contextmanager
def _quiet_root_logger():
    """The quantizer logs advice ("consider pre-processing") on the root logger; the
    report says what was done, so keep stderr for onnxforge's own messages."""
    root = logging.getLogger()
    level = root.level
    if not os.environ.get("ONNXFORGE_DEBUG"):
        root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def weighted_matmuls(model) -> list:
    """MatMul nodes whose second input is a 2-D initializer (a Linear layer's weight)."""
    inits = {t.name: t for t in model.graph.initializer}
    return [n for n in model.graph.node
            if n.op_type == "MatMul" and n.input[1] in inits and len(inits[n.input[1]].dims) == 2
            and n.input[0] not in inits]


def channel_absmax(model, tensors: list[str], feeds_list: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per-channel (last axis) max |x| of each tensor over real tokens of the feeds."""
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto.FromString(model.SerializeToString())
    have = {o.name for o in probe.graph.output}
    for name in tensors:
        if name not in have:
            probe.graph.output.append(onnx.ValueInfoProto(name=name))
    so = ort.SessionOptions()
    so.log_severity_level = 3
    session = ort.InferenceSession(probe.SerializeToString(), so, providers=["CPUExecutionProvider"])
    inputs = {i.name for i in session.get_inputs()}
    peak: dict[str, np.ndarray] = {}
    for feeds in feeds_list:
        values = session.run(tensors, {k: v for k, v in feeds.items() if k in inputs})
        mask = feeds.get("attention_mask")
        for name, value in zip(tensors, values):
            v = np.abs(np.asarray(value, dtype=np.float32))
            if mask is not None and v.ndim == 3 and v.shape[:2] == mask.shape:
                v = v[mask.astype(bool)]
            v = v.reshape(-1, v.shape[-1]).max(axis=0)
            peak[name] = v if name not in peak else np.maximum(peak[name], v)
    return peak


OUTLIER_METHODS = {
    "smooth": "with calibrated outlier input channels scaled into the weights (one Mul per MatMul)",
    "split": "with calibrated outlier input channels split off into small fp32 MatMuls",
    "none": "without outlier handling",
}


def outlier_channels(amax: np.ndarray, ratio: float, cap: int) -> tuple[list[int], float]:
    """Channels whose calibrated |max| exceeds ``ratio`` x the median channel's (at most ``cap``)."""
    median = float(np.median(amax))
    order = np.argsort(-amax)[:cap]
    return [int(i) for i in order if amax[i] > ratio * max(median, 1e-12)], median


def _rewrite_outlier_matmuls(model, absmax: dict[str, np.ndarray], ratio: float, cap: int, rewrite) -> tuple[list[str], dict[str, Any]]:
    """Apply ``rewrite`` to every weighted MatMul whose input has outlier channels.

    ``rewrite(node, weight, idx, median, amax)`` adds its initializers to the model and
    returns the nodes that replace ``node`` plus a record for the report. Returns the
    names of the weighted MatMuls (the ones to quantize) and the records by node name.
    """
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    targets = {n.name: n for n in weighted_matmuls(model)}
    new_nodes, records = [], {}
    for node in model.graph.node:
        if node.name not in targets or cap == 0 or node.input[0] not in absmax:
            new_nodes.append(node)
            continue
        amax = absmax[node.input[0]]
        idx, median = outlier_channels(amax, ratio, cap)
        if not idx:
            new_nodes.append(node)
            continue
        weight = numpy_helper.to_array(inits[node.input[1]])
        replacement, records[node.name] = rewrite(node, weight, idx, median, amax)
        new_nodes.extend(replacement)
    del model.graph.node[:]
    model.graph.node.extend(new_nodes)
    return list(targets), records


def smooth_outliers(model, absmax: dict[str, np.ndarray], ratio: float, cap: int, target: float) -> tuple[list[str], dict[str, Any]]:
    """Scale each outlier channel down to ``target`` x the median channel's range before the
    MatMul, and the matching weight row up by the same factor (X @ W = (X / s) @ (s W)).

    SmoothQuant's migration, restricted to the few outlier channels: applied to every
    channel (alpha 0.5) it cost accuracy here, because one per-output-channel weight
    scale then has to cover many enlarged rows; one or two enlarged rows per column are
    cheap. The only run-time cost is one Mul per scaled MatMul.
    """
    from onnx import helper, numpy_helper

    def rewrite(node, weight, idx, median, amax):
        scale = np.ones(weight.shape[0], dtype=weight.dtype)
        scale[idx] = amax[idx] / (target * median)
        p = node.name
        # A fresh weight initializer: the original may be shared with another node.
        model.graph.initializer.extend([
            numpy_helper.from_array((weight * scale[:, None]).astype(weight.dtype), f"{p}/smoothed_weight"),
            numpy_helper.from_array((1.0 / scale).astype(weight.dtype), f"{p}/inverse_scale"),
        ])
        x = node.input[0]
        node.input[0], node.input[1] = f"{p}/smoothed_input", f"{p}/smoothed_weight"
        nodes = [helper.make_node("Mul", [x, f"{p}/inverse_scale"], [node.input[0]], name=f"{p}/smooth"), node]
        return nodes, {"channels": idx, "absmax": [round(float(amax[i]), 3) for i in idx],
                       "median_absmax": round(median, 3), "scale": [round(float(scale[i]), 3) for i in idx]}

    result = _rewrite_outlier_matmuls(model, absmax, ratio, cap, rewrite)
    _drop_unused_initializers(model)
    return result


def _drop_unused_initializers(model) -> None:
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    keep = [t for t in model.graph.initializer if t.name in used]
    if len(keep) != len(model.graph.initializer):
        del model.graph.initializer[:]
        model.graph.initializer.extend(keep)


def split_outliers(model, absmax: dict[str, np.ndarray], ratio: float, cap: int) -> tuple[list[str], dict[str, Any]]:
    """Rewrite each weighted MatMul as an int8-friendly main product + an fp32 outlier product:
    ``X @ W = (X * keep) @ W + X[..., idx] @ W[idx, :]`` (LLM.int8()'s decomposition with
    the outlier channels fixed offline). Exact in fp32; the most accurate option, but the
    extra MatMul and Add cost ~15% of the int8 run time at batch 8 x 128.

    Returns the names of the main MatMuls (to quantize) and, per split MatMul, which
    channels went to fp32 and how far above the median channel they were.
    """
    from onnx import helper, numpy_helper

    def rewrite(node, weight, idx, median, amax):
        keep = np.ones(weight.shape[0], dtype=weight.dtype)
        keep[idx] = 0
        p = node.name
        model.graph.initializer.extend([
            numpy_helper.from_array(keep, f"{p}/int8_keep"),
            numpy_helper.from_array(np.asarray(idx, dtype=np.int64), f"{p}/outlier_channels"),
            numpy_helper.from_array(np.ascontiguousarray(weight[idx]), f"{p}/outlier_weight"),
        ])
        x, y = node.input[0], node.output[0]
        node.input[0] = f"{p}/int8_input"
        node.output[0] = f"{p}/int8_output"
        nodes = [
            helper.make_node("Mul", [x, f"{p}/int8_keep"], [node.input[0]], name=f"{p}/drop_outliers"),
            node,
            helper.make_node("Gather", [x, f"{p}/outlier_channels"], [f"{p}/outlier_input"], axis=-1, name=f"{p}/take_outliers"),
            helper.make_node("MatMul", [f"{p}/outlier_input", f"{p}/outlier_weight"], [f"{p}/outlier_output"], name=f"{p}/outlier_matmul"),
            helper.make_node("Add", [node.output[0], f"{p}/outlier_output"], [y], name=f"{p}/add_outliers"),
        ]
        return nodes, {"channels": idx, "absmax": [round(float(amax[i]), 3) for i in idx], "median_absmax": round(median, 3)}

    return _rewrite_outlier_matmuls(model, absmax, ratio, cap, rewrite)


def quantizable_attention(model) -> tuple[list[str], dict[str, str]]:
    """Attention nodes ORT's quantizer can turn into QAttention, and why the others can't."""
    inits = {t.name for t in model.graph.initializer}
    ok, skipped = [], {}
    for n in model.graph.node:
        if n.op_type != "Attention":
            continue
        attrs = {a.name for a in n.attribute}
        if "qkv_hidden_sizes" in attrs:
            skipped[n.name] = "has qkv_hidden_sizes (QAttention does not support it)"
        elif len(n.input) > 5 and any(n.input[5:]):
            skipped[n.name] = "takes an additive attention bias (QAttention has no such input)"
        elif n.input[1] not in inits:
            skipped[n.name] = "its QKV weight is not an initializer"
        else:
            ok.append(n.name)
    return ok, skipped


def to_int8(model, feeds_list: list[dict[str, np.ndarray]], options, *, calibration: str, say=None) -> tuple[Any, dict[str, Any]]:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    say = say or (lambda m: None)
    for i, node in enumerate(model.graph.node):
        if not node.name:  # the quantizer and the split address nodes by name
            node.name = f"{node.op_type}_{i}"
    say("calibrating MatMul input ranges on real text")
    matmul_inputs = sorted({n.input[0] for n in weighted_matmuls(model)})
    absmax = channel_absmax(model, matmul_inputs, feeds_list) if options.outlier_method != "none" else {}
    if options.outlier_method == "split":
        say("splitting outlier channels off into fp32 MatMuls")
        main, outliers = split_outliers(model, absmax, options.outlier_ratio, options.max_outlier_channels)
    elif options.outlier_method == "smooth":
        say("scaling outlier channels into the weights")
        main, outliers = smooth_outliers(model, absmax, options.outlier_ratio, options.max_outlier_channels,
                                         options.smooth_target)
    else:
        main, outliers = [n.name for n in weighted_matmuls(model)], {}
    attention, attention_skipped = quantizable_attention(model) if options.quantize_attention else ([], {})
    nodes = main + attention
    say(f"quantizing {len(nodes)} nodes (dynamic, per-channel s8 weights)")
    with tempfile.TemporaryDirectory(prefix="onnxforge-int8-") as tmp, _quiet_root_logger():
        out = Path(tmp) / "int8.onnx"
        quantize_dynamic(
            model, out,
            per_channel=True,
            reduce_range=False,
            weight_type=QuantType.QInt8,
            nodes_to_quantize=nodes,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT, "MatMulConstBOnly": True},
        )
        quantized = onnx.load(str(out), load_external_data=True)
    from collections import Counter

    ops = Counter(n.op_type for n in quantized.graph.node)
    report = {
        "method": "dynamic quantization (onnxruntime.quantization.quantize_dynamic) of the fused graph, "
                  + OUTLIER_METHODS[options.outlier_method],
        "weights": "int8 (s8), symmetric, per output channel",
        "activations": "uint8, asymmetric, per tensor, computed at run time (DynamicQuantizeLinear)",
        "reduce_range": False,
        "format": "QOperator (MatMulInteger/DynamicQuantizeMatMul, QAttention)",
        "calibration": {"source": calibration, "batches": len(feeds_list)},
        "outliers": {
            "method": options.outlier_method,
            "ratio": options.outlier_ratio,
            "max_channels": options.max_outlier_channels,
            "smooth_target": options.smooth_target if options.outlier_method == "smooth" else None,
            "matmuls": outliers,
        },
        "quantized_nodes": {"MatMul": len(main), "Attention": len(attention)},
        "fp32_nodes": {"Attention": attention_skipped,
                       "outlier MatMuls": len(outliers) if options.outlier_method == "split" else 0,
                       "other": sorted({n.op_type for n in quantized.graph.node if n.op_type in ("Gemm", "MatMul")})},
        "quantized_ops": {op: ops[op] for op in ("MatMulInteger", "DynamicQuantizeLinear", "DynamicQuantizeMatMul",
                                                  "QAttention", "MatMulIntegerToFloat") if ops[op]},
        "tradeoff_measured": list(MEASURED_TRADEOFF),
    }
    return quantized, report
