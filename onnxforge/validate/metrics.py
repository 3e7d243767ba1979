"""Per-output metrics on real tokens, merged across batches, and the pass/fail rule.

The numbers come from ``onnxforge.compare`` (the one definition every stage shares);
this module adds the smallest atol that would have passed and merges batches of a
group (text batches have different sequence lengths, so arrays cannot be stacked).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..compare import compare_arrays, per_sample_rows
from ..spec import OutputSpec
from .options import Tolerance

METRIC_KEYS = ("max_abs", "mean_abs", "max_rel", "min_cosine", "mean_cosine", "argmax_agreement", "atol_needed")


def measure(expected: np.ndarray, actual: np.ndarray, output: OutputSpec, mask: np.ndarray | None, rtol: float) -> dict[str, Any]:
    """Metrics of one batch; ``atol_needed`` is the smallest atol passing with ``rtol``."""
    diff = compare_arrays(expected, actual, output, mask)
    exp = per_sample_rows(expected, output, mask)
    act = per_sample_rows(actual, output, mask)
    e = np.concatenate(exp) if exp else np.zeros(0)
    a = np.concatenate(act) if act else np.zeros(0)
    finite = bool(np.isfinite(a).all())
    if e.size == 0:
        needed = 0.0
    elif not finite or not np.isfinite(e).all():
        needed = math.inf
    else:
        needed = max(0.0, float((np.abs(e - a) - rtol * np.abs(e)).max()))
    argmax_n = None
    if diff.argmax_agreement is not None:
        argmax_n = _argmax_positions(expected, output, mask)
    return {
        "max_abs": diff.max_abs,
        "mean_abs": diff.mean_abs,
        "max_rel": diff.max_rel,
        "min_cosine": diff.min_cosine,
        "mean_cosine": diff.mean_cosine,
        "argmax_agreement": diff.argmax_agreement,
        "atol_needed": needed,
        "count": diff.count,
        "samples": len(exp),
        "finite": finite,
        "_argmax_n": argmax_n,
    }


def _argmax_positions(expected: np.ndarray, output: OutputSpec, mask: np.ndarray | None) -> int:
    """How many predictions an argmax agreement was computed over (to weight merges)."""
    if output.axes and output.axes[-1] == "sequence":
        return int(expected.shape[0])
    rows = per_sample_rows(expected, output, mask)
    return int(sum(r.size for r in rows) // max(expected.shape[-1], 1))


def merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Worst case for max/min metrics, weighted means for the means."""
    parts = [p for p in parts if p["count"] or p["samples"]]
    if not parts:
        return {k: None for k in METRIC_KEYS} | {"count": 0, "samples": 0, "finite": True}
    count = sum(p["count"] for p in parts)
    samples = sum(p["samples"] for p in parts)
    out: dict[str, Any] = {
        "max_abs": max(p["max_abs"] for p in parts),
        "mean_abs": sum(p["mean_abs"] * p["count"] for p in parts) / max(count, 1),
        "max_rel": max(p["max_rel"] for p in parts),
        "min_cosine": min(p["min_cosine"] for p in parts),
        "mean_cosine": sum(p["mean_cosine"] * p["samples"] for p in parts) / max(samples, 1),
        "atol_needed": max(p["atol_needed"] for p in parts),
        "count": count,
        "samples": samples,
        "finite": all(p["finite"] for p in parts),
    }
    weighted = [(p["argmax_agreement"], p["_argmax_n"]) for p in parts if p["argmax_agreement"] is not None]
    if weighted:
        n = sum(w for _, w in weighted)
        out["argmax_agreement"] = sum(v * w for v, w in weighted) / max(n, 1)
        out["_argmax_n"] = n
    else:
        out["argmax_agreement"] = None
        out["_argmax_n"] = None
    return out


def judge(metrics: dict[str, Any], tol: Tolerance) -> list[str]:
    """Why ``metrics`` fail ``tol``; empty when they pass."""
    reasons = []
    if not metrics.get("finite", True):
        reasons.append("ONNX Runtime produced NaN or inf")
    if tol.atol is not None and metrics["atol_needed"] is not None and not metrics["atol_needed"] <= tol.atol:
        reasons.append(
            f"max abs {metrics['max_abs']:.3g}: needs atol {metrics['atol_needed']:.3g} > {tol.atol:g} (rtol {tol.rtol:g})"
        )
    if tol.min_cosine is not None and metrics["min_cosine"] is not None and not metrics["min_cosine"] >= tol.min_cosine:
        reasons.append(f"min cosine {metrics['min_cosine']:.6f} < {tol.min_cosine:g}")
    if tol.min_argmax is not None and metrics.get("argmax_agreement") is not None and not metrics["argmax_agreement"] >= tol.min_argmax:
        reasons.append(f"argmax agreement {metrics['argmax_agreement']:.4f} < {tol.min_argmax:g}")
    return reasons


def public(metrics: dict[str, Any]) -> dict[str, Any]:
    """The metrics as JSON-safe numbers: non-finite values become None (``finite`` says so)."""
    out = {}
    for k, v in metrics.items():
        if k.startswith("_"):
            continue
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        out[k] = v
    return out
