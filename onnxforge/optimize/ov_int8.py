"""int8 for OpenVINO: NNCF post-training quantization of the base export, calibrated on real text.

Why this route and these settings: see ``MEASURED_TRADEOFF`` below and
benchmarks/sweep_ov_int8.py, which reproduces it. NNCF inserts FakeQuantize nodes
(per-tensor activations, per-channel weights) that OpenVINO's CPU plugin runs as int8
kernels (VNNI / AMX-INT8). Its transformer preset already applies SmoothQuant (alpha
0.95) to MatMul inputs, but BERT's FFN output MatMuls read GELU outputs whose few
outlier channels still dominate the one per-tensor scale (the early layers most, as in
the ORT int8 sensitivity scan). Keeping layers 0-1's FFN output MatMuls unquantized
with SmoothQuant alpha 0.8 reached min cosine 0.998 at the same speed, but only while
the unquantized ops ran in bf16, which OpenVINO 2026.4 computes wrong with int8 at
sequence length 32 (``bf16.inference_precision``). In f32 those MatMuls cost more than
int8 saves, so the default quantizes every MatMul with SmoothQuant alpha 0.8 (min 0.995).
On MiniLM, int8 is only ~10% faster than the bf16 variant on AMX (bf16 is already fast
there and int8 adds quantize/dequantize work); ``bench.fastest`` picks by measurement.

``openvino`` and ``nncf`` are imported inside the functions: ``onnxforge --help`` and the
ONNX Runtime paths never load them.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import UserInputError

NNCF_HINT = "install it with `pip install nncf` (onnxforge depends on it on x86-64 and ARM64), or use --engine ort"

# Measured on MiniLM-L6, 2-core Sapphire Rapids (AMX), calibration 128 Debian texts (offset
# 1000+), quality on 300 other texts (offsets 0-299) vs PyTorch fp32 (mean-pooled cosine),
# time = OpenVINO at batch 8 x 128, LATENCY hint (median of block-timed calls, one run).
# Time here is process CPU time per call with one thread (``--threads 1 --clock cpu``): wall
# time on the shared VM (load 15+ on 2 cores) was too noisy to rank these. Two runs of
# benchmarks/sweep_ov_int8.py (2026-12-02); the references repeat in both (within 10%).
# A later run on the quiet machine (results/sweep-ov-int8-spr-quiet-2c.json, docs/openvino.md)
# ranks the routes the same way: no int8 route clearly faster than bf16 on AMX.
MEASURED_TRADEOFF = (
    {"config": "ORT fp32 fused (reference)", "min_cosine": 1.0, "mean_cosine": 1.0, "cpu_ms_b1": 26.6, "cpu_ms_b8": 224.8},
    {"config": "ORT int8, onnxforge outlier smoothing", "min_cosine": 0.99461, "mean_cosine": 0.99688,
     "cpu_ms_b1": 11.1, "cpu_ms_b8": 110.0},
    {"config": "OpenVINO f32 (base export)", "min_cosine": 1.0, "mean_cosine": 1.0, "cpu_ms_b1": 25.4, "cpu_ms_b8": 185.1},
    {"config": "OpenVINO bf16 (base export) = the bf16 variant", "min_cosine": 0.99997, "mean_cosine": 0.99999,
     "cpu_ms_b1": 8.1, "cpu_ms_b8": 58.4},
    {"config": "NNCF default (transformer, SmoothQuant 0.95)", "min_cosine": 0.99156, "mean_cosine": 0.99747,
     "cpu_ms_b1": 8.0, "cpu_ms_b8": 50.7},
    {"config": "NNCF without SmoothQuant", "min_cosine": 0.98674, "mean_cosine": 0.99347, "cpu_ms_b1": 7.3, "cpu_ms_b8": 49.7},
    {"config": "NNCF SmoothQuant 0.5", "min_cosine": 0.98237, "mean_cosine": 0.99281, "cpu_ms_b1": 7.1, "cpu_ms_b8": 50.3},
    {"config": "NNCF SmoothQuant 0.8", "min_cosine": 0.99475, "mean_cosine": 0.99814, "cpu_ms_b1": 8.3, "cpu_ms_b8": 50.4},
    {"config": "NNCF SmoothQuant 0.8, rest in f32 [default: see bf16.inference_precision]", "min_cosine": 0.99520,
     "mean_cosine": 0.99817, "cpu_ms_b1": 9.5, "cpu_ms_b8": 52.6},
    {"config": "NNCF performance preset (symmetric activations)", "min_cosine": 0.98994, "mean_cosine": 0.99688,
     "cpu_ms_b1": 7.4, "cpu_ms_b8": 45.4},
    {"config": "NNCF accuracy control (max drop 0.005 of min cosine)", "min_cosine": 0.99147, "mean_cosine": 0.99753,
     "cpu_ms_b1": 8.2, "cpu_ms_b8": 51.1},
    {"config": "NNCF, all 6 FFN output MatMuls + pooler unquantized", "min_cosine": 0.99835, "mean_cosine": 0.99912,
     "cpu_ms_b1": 9.5, "cpu_ms_b8": 55.6},
    {"config": "NNCF, layers 0-1 FFN output + pooler unquantized", "min_cosine": 0.99661, "mean_cosine": 0.99858,
     "cpu_ms_b1": 8.8, "cpu_ms_b8": 51.1},
    {"config": "NNCF SmoothQuant 0.8, layers 0-1 FFN output + pooler unquantized", "min_cosine": 0.99794,
     "mean_cosine": 0.99893, "cpu_ms_b1": 9.7, "cpu_ms_b8": 50.3},
    {"config": "same, performance preset", "min_cosine": 0.99672, "mean_cosine": 0.99839, "cpu_ms_b1": 9.1,
     "cpu_ms_b8": 49.2},
)


@dataclass(frozen=True)
class OvInt8Config:
    """One NNCF configuration. ``smooth_quant_alpha``: None keeps NNCF's transformer
    default (0.95), a negative value disables SmoothQuant. ``keep_float``: which MatMuls
    stay unquantized, chosen by structure (``KEEP_FLOAT``), not by node name: the
    TorchScript and dynamo exports name their nodes differently. ``max_drop``: run NNCF's accuracy
    control (reverting the most harmful quantizers until the validation metric, the
    minimum pooled cosine, drops by at most this much)."""

    name: str = "default"
    smooth_quant_alpha: float | None = None
    keep_float: str | None = None
    preset: str = "mixed"
    fast_bias_correction: bool = True
    max_drop: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "smooth_quant_alpha": self.smooth_quant_alpha,
                "keep_float": self.keep_float, "preset": self.preset,
                "fast_bias_correction": self.fast_bias_correction, "max_drop": self.max_drop}


# MatMuls kept in float, found by structure. BERT's FFN output projection is the one
# MatMul whose constant weight narrows the width (intermediate -> hidden); the query,
# key, value, attention output and FFN input projections keep or widen it. "early" is
# the first two in graph order (layers 0 and 1).
KEEP_FLOAT = ("ffn-output", "early-ffn-output")
CONFIGS = {
    "nncf-default": OvInt8Config("nncf-default"),
    "nncf-no-smoothquant": OvInt8Config("nncf-no-smoothquant", smooth_quant_alpha=-1.0),
    "nncf-sq0.5": OvInt8Config("nncf-sq0.5", smooth_quant_alpha=0.5),
    "nncf-sq0.8": OvInt8Config("nncf-sq0.8", smooth_quant_alpha=0.8),
    "nncf-ffn-out-fp": OvInt8Config("nncf-ffn-out-fp", keep_float="ffn-output"),
    "nncf-early-ffn-out-fp": OvInt8Config("nncf-early-ffn-out-fp", keep_float="early-ffn-output"),
    "nncf-performance": OvInt8Config("nncf-performance", preset="performance"),
    "nncf-sq0.8-early-ffn-out-fp": OvInt8Config("nncf-sq0.8-early-ffn-out-fp", smooth_quant_alpha=0.8,
                                                keep_float="early-ffn-output"),
    "nncf-performance-sq0.8-early-ffn-out-fp": OvInt8Config(
        "nncf-performance-sq0.8-early-ffn-out-fp", preset="performance", smooth_quant_alpha=0.8,
        keep_float="early-ffn-output"),
    "nncf-accuracy-control": OvInt8Config("nncf-accuracy-control", max_drop=0.005),
}
DEFAULT_CONFIG = "nncf-sq0.8"


def require_nncf():
    try:
        import nncf
    except ImportError as e:
        raise UserInputError(f"OpenVINO int8 needs NNCF, which is not installed ({e})", hint=NNCF_HINT) from None
    return nncf


@contextlib.contextmanager
def _quiet_nncf():
    """NNCF logs progress bars and INFO lines; onnxforge's report says what was done."""
    logger = logging.getLogger("nncf")
    level = logger.level
    if not os.environ.get("ONNXFORGE_DEBUG"):
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _down_projections(model) -> list[str]:
    """Names of the MatMuls whose constant weight maps a wider input to a narrower output."""
    names = []
    for op in model.get_ordered_ops():
        if op.get_type_name() != "MatMul" or op.input_value(1).get_node().get_type_name() != "Constant":
            continue
        shape = op.input_value(1).get_partial_shape()
        if not shape.is_static or len(shape.to_shape()) != 2:
            continue
        rows, cols = shape.to_shape()
        fan_in, fan_out = (cols, rows) if op.get_attributes().get("transpose_b") else (rows, cols)
        if fan_in > fan_out:
            names.append(op.get_friendly_name())
    return names


def _kept_float(model, config: OvInt8Config) -> list[str]:
    """The node names ``config.keep_float`` selects; a selection that finds nothing is an error."""
    if config.keep_float is None:
        return []
    if config.keep_float not in KEEP_FLOAT:
        raise UserInputError(f"NNCF config {config.name!r} keeps {config.keep_float!r} in float, which is not known",
                             hint=f"choose one of {', '.join(KEEP_FLOAT)}")
    found = _down_projections(model)
    if not found:
        raise UserInputError(f"NNCF config {config.name!r} keeps the FFN output MatMuls in float, but this graph has "
                             "no MatMul that narrows the width (no BERT-style FFN)",
                             hint="choose a config without keep_float (e.g. nncf-sq0.8)")
    return found[:2] if config.keep_float == "early-ffn-output" else found


def quantize(model, calibration: list[dict[str, np.ndarray]], config: OvInt8Config, *,
             validation: list[dict[str, np.ndarray]] | None = None,
             metric: Callable[[Any, list[dict[str, np.ndarray]]], float] | None = None):
    """``model`` (an ``openvino.Model`` in fp32) quantized by NNCF; returns (model, facts).

    ``calibration``: input dicts (batches of real text). Accuracy control needs
    ``validation`` batches and ``metric(compiled_model, batches) -> float`` (higher is better).
    """
    nncf = require_nncf()
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters

    names = [i.get_any_name() for i in model.inputs]
    dataset = nncf.Dataset(calibration, lambda feeds: {n: feeds[n] for n in names})
    ignored = _kept_float(model, config)
    kwargs: dict[str, Any] = dict(
        preset=nncf.QuantizationPreset.MIXED if config.preset == "mixed" else nncf.QuantizationPreset.PERFORMANCE,
        model_type=nncf.ModelType.TRANSFORMER, subset_size=len(calibration),
        fast_bias_correction=config.fast_bias_correction,
        ignored_scope=nncf.IgnoredScope(names=ignored) if ignored else None)
    advanced = None
    if config.smooth_quant_alpha is not None:
        advanced = AdvancedQuantizationParameters(
            smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=config.smooth_quant_alpha))
    with _quiet_nncf():
        if config.max_drop is None:
            quantized = nncf.quantize(model, dataset, advanced_parameters=advanced, **kwargs)
        else:
            if validation is None or metric is None:
                raise ValueError("accuracy control needs validation batches and a metric")
            checked = nncf.Dataset(validation, lambda feeds: {n: feeds[n] for n in names})

            def validate(compiled, items) -> tuple[float, None]:
                return float(metric(compiled, list(items))), None

            quantized = nncf.quantize_with_accuracy_control(
                model, dataset, checked, validate, max_drop=config.max_drop,
                advanced_quantization_parameters=advanced, **kwargs)
    fake = sum(1 for op in quantized.get_ordered_ops() if op.get_type_name() == "FakeQuantize")
    return quantized, {"config": config.to_dict(), "ignored_nodes": ignored, "fake_quantize_nodes": fake,
                       "calibration_batches": len(calibration)}


def convert_onnx(path: Path):
    """The ONNX export as an ``openvino.Model`` (fp32 weights kept)."""
    from ..runtime.openvino import require_openvino

    ov = require_openvino()
    return ov.convert_model(str(path))
