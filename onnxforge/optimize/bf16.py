"""bf16 for CPU: the base export as an OpenVINO IR, run with bf16 inference precision.

Why OpenVINO and not a bf16 ONNX graph: ONNX Runtime's CPU provider has no bf16 MatMul
kernels (a bf16 graph would run by casting back to fp32), while OpenVINO's CPU plugin
runs bf16 on AMX (Sapphire Rapids and newer) and AVX512-BF16 tiles. The weights stay
fp32 in the IR (``compress_to_fp16=False``): the plugin converts them once at compile
time, so the same file also runs exactly in f32 (``--engine openvino`` with an f32
hint, or on a CPU without bf16 through the fallback a user asks for explicitly).

Measured on MiniLM-L6 (2-core Sapphire Rapids): min cosine 0.99997 vs PyTorch fp32 on 300
real texts, batch 8 x 128 about 2x faster than ONNX Runtime fp32 (benchmarks/sweep_ov_int8.py).
"""

from __future__ import annotations

from pathlib import Path


def bf16_model(base_path: Path):
    """The base export as an ``openvino.Model`` for bf16 inference; exit 2 on a CPU without bf16."""
    from ..runtime.openvino import require_bf16
    from .ov_int8 import convert_onnx

    require_bf16("optimize --precision bf16")
    return convert_onnx(base_path)


def inference_precision(variant: str) -> str:
    """The OpenVINO inference precision a variant is built and checked for.

    bf16 runs in bf16. NNCF int8 runs its unquantized ops in f32: with bf16 inference
    precision, OpenVINO 2026.4's CPU plugin computes every NNCF int8 MiniLM wrong at
    sequence length 32 exactly (mean-pooled cosine 0.75 vs 0.995+ at 31 and 33, any
    batch size; the same IRs in f32, and the bf16 IR, are right at every length).
    Measured while racing the CSV job; optimize's sequence-length check catches it.
    """
    return "bf16" if variant == "bf16" else "f32"
