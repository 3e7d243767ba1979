"""int8 for OpenVINO: NNCF post-training quantization of the base export, calibrated on real text.

Why this route and these settings: see ``MEASURED_TRADEOFF`` below and
benchmarks/sweep_ov_int8.py, which reproduces it. NNCF inserts FakeQuantize nodes
(per-tensor activations, per-channel weights) that OpenVINO's CPU plugin runs as int8
kernels (VNNI / AMX-INT8). Its transformer preset already applies SmoothQuant (alpha
0.95) to MatMul inputs, but BERT's FFN output MatMuls read GELU outputs whose few
outlier channels still dominate the one per-tensor scale; keeping those MatMuls (and
the tiny pooler) in higher precision is what brings the sentence embeddings back to
min cosine >= 0.99.

``openvino`` and ``nncf`` are imported inside the functions: ``onnxforge --help`` and the
ONNX Runtime paths never load them.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from ..errors import UserInputError

NNCF_HINT = "install it with `pip install nncf` (or `pip install \"onnxforge[openvino]\"`)"

# Measured on MiniLM-L6, 2-core Sapphire Rapids (AMX), calibration 128 Debian texts (offset
# 1000+), quality on 300 other texts (offsets 0-299) vs PyTorch fp32 (mean-pooled cosine),
# time = OpenVINO at batch 8 x 128, LATENCY hint (median of block-timed calls, one run).
# Filled from benchmarks/sweep_ov_int8.py output; see docs/optimize.md.
MEASURED_TRADEOFF: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class OvInt8Config:
    """One NNCF configuration. ``smooth_quant_alpha``: None keeps NNCF's transformer
    default (0.95), a negative value disables SmoothQuant. ``ignored_patterns``: regular
    expressions of node names left unquantized. ``max_drop``: run NNCF's accuracy
    control (reverting the most harmful quantizers until the validation metric, the
    minimum pooled cosine, drops by at most this much)."""

    name: str = "default"
    smooth_quant_alpha: float | None = None
    ignored_patterns: tuple[str, ...] = ()
    preset: str = "mixed"
    fast_bias_correction: bool = True
    max_drop: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "smooth_quant_alpha": self.smooth_quant_alpha,
                "ignored_patterns": list(self.ignored_patterns), "preset": self.preset,
                "fast_bias_correction": self.fast_bias_correction, "max_drop": self.max_drop}


# BERT-style node names (ONNX exports of transformers' BertModel, as OpenVINO reads them).
FFN_OUTPUT = r".*/output/dense/MatMul"
POOLER = r".*/pooler/.*MatMul"
EARLY_FFN_OUTPUT = r".*/layer\.[01]/output/dense/MatMul"
CONFIGS = {
    "nncf-default": OvInt8Config("nncf-default"),
    "nncf-no-smoothquant": OvInt8Config("nncf-no-smoothquant", smooth_quant_alpha=-1.0),
    "nncf-sq0.5": OvInt8Config("nncf-sq0.5", smooth_quant_alpha=0.5),
    "nncf-sq0.8": OvInt8Config("nncf-sq0.8", smooth_quant_alpha=0.8),
    "nncf-ffn-out-fp": OvInt8Config("nncf-ffn-out-fp", ignored_patterns=(FFN_OUTPUT, POOLER)),
    "nncf-early-ffn-out-fp": OvInt8Config("nncf-early-ffn-out-fp", ignored_patterns=(EARLY_FFN_OUTPUT, POOLER)),
    "nncf-performance": OvInt8Config("nncf-performance", preset="performance"),
    "nncf-sq0.8-early-ffn-out-fp": OvInt8Config("nncf-sq0.8-early-ffn-out-fp", smooth_quant_alpha=0.8,
                                                ignored_patterns=(EARLY_FFN_OUTPUT, POOLER)),
    "nncf-performance-sq0.8-early-ffn-out-fp": OvInt8Config(
        "nncf-performance-sq0.8-early-ffn-out-fp", preset="performance", smooth_quant_alpha=0.8,
        ignored_patterns=(EARLY_FFN_OUTPUT, POOLER)),
    "nncf-accuracy-control": OvInt8Config("nncf-accuracy-control", max_drop=0.005),
}
DEFAULT_CONFIG = "nncf-ffn-out-fp"


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


def _matching(model, patterns: Iterable[str]) -> list[str]:
    import re

    compiled = [re.compile(p) for p in patterns]
    return [op.get_friendly_name() for op in model.get_ordered_ops()
            if op.get_type_name() == "MatMul" and any(c.fullmatch(op.get_friendly_name()) for c in compiled)]


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
    ignored = _matching(model, config.ignored_patterns)
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
