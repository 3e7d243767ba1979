"""Compare outputs with a reference and judge them against a ``Tolerance``.

``measure`` gives one batch's metrics on real tokens (max abs, mean abs, max rel,
per-sample cosine, argmax agreement for logits, and ``atol_needed``: the smallest atol
that would have passed with the tolerance's rtol); ``merge`` folds batches of
different sequence lengths (they cannot be stacked); ``judge_metrics`` says why metrics fail
a tolerance; ``judge_output`` does all three for one output over a list of batches.
The raw numbers (``compare_arrays``) are computed here too, on real tokens only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from ..spec import SEQUENCE_AXIS, OutputSpec
from .tolerance import Tolerance


# -- raw comparison on real tokens ----------------------------------------------------
@dataclass(frozen=True)
class Diff:
    max_abs: float
    mean_abs: float
    max_rel: float
    min_cosine: float
    mean_cosine: float
    argmax_agreement: float | None
    count: int

    def to_dict(self) -> dict:
        return {k: (None if v is None else float(v)) for k, v in self.__dict__.items()}


def per_sample_rows(values: np.ndarray, output: OutputSpec, mask: np.ndarray | None) -> list[np.ndarray]:
    """Split an output into one flat vector per sample, keeping only real tokens."""
    values = np.asarray(values, dtype=np.float64)
    rows = []
    seq_axis = output.axes.index(SEQUENCE_AXIS) if SEQUENCE_AXIS in output.axes else None
    for b in range(values.shape[0]):
        v = values[b]
        if seq_axis is not None and mask is not None and seq_axis == 1:
            v = v[mask[b].astype(bool)]
        rows.append(v.reshape(-1))
    return rows


def compare_arrays(expected: np.ndarray, actual: np.ndarray, output: OutputSpec, mask: np.ndarray | None) -> Diff:
    exp_rows = per_sample_rows(expected, output, mask)
    act_rows = per_sample_rows(actual, output, mask)
    exp = np.concatenate(exp_rows) if exp_rows else np.zeros(0)
    act = np.concatenate(act_rows) if act_rows else np.zeros(0)
    if exp.size == 0:
        return Diff(0.0, 0.0, 0.0, 1.0, 1.0, None, 0)
    diff = np.abs(exp - act)
    finite = np.isfinite(act).all() and np.isfinite(exp).all()
    max_abs = float(diff.max()) if finite else float("inf")
    rel = diff / np.maximum(np.abs(exp), 1e-6)
    cosines = []
    for e, a in zip(exp_rows, act_rows):
        ne, na = np.linalg.norm(e), np.linalg.norm(a)
        cosines.append(1.0 if ne == 0 and na == 0 else float(e @ a / max(ne * na, 1e-30)))
    argmax = None
    if "logits" in output.name and expected.ndim >= 2 and expected.shape[-1] > 1:
        # Logits-like: compare predicted classes on real positions. When the last axis
        # is the sequence (question answering's start/end logits) the prediction is one
        # position per sample, over its real tokens.
        if output.axes and output.axes[-1] == SEQUENCE_AXIS:
            e_cls = [np.atleast_1d(r.argmax()) for r in exp_rows if r.size]
            a_cls = [np.atleast_1d(r.argmax()) for r in act_rows if r.size]
        else:
            e_cls = [r.reshape(-1, expected.shape[-1]).argmax(-1) for r in exp_rows]
            a_cls = [r.reshape(-1, expected.shape[-1]).argmax(-1) for r in act_rows]
        e_all, a_all = np.concatenate(e_cls), np.concatenate(a_cls)
        argmax = float((e_all == a_all).mean()) if e_all.size else None
    return Diff(
        max_abs=max_abs,
        mean_abs=float(diff.mean()) if finite else float("inf"),
        max_rel=float(rel.max()) if finite else float("inf"),
        min_cosine=float(min(cosines)) if finite else float("-inf"),
        mean_cosine=float(np.mean(cosines)) if finite else float("-inf"),
        argmax_agreement=argmax,
        count=int(exp.size),
    )


# -- judging ---------------------------------------------------------------------------
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


def judge_metrics(metrics: dict[str, Any], tol: Tolerance) -> list[str]:
    """Why ``metrics`` fail ``tol``; empty when they pass."""
    why = []
    if not metrics.get("finite", True):
        why.append("ONNX Runtime produced NaN or inf")
    if tol.atol is not None and metrics["atol_needed"] is not None and not metrics["atol_needed"] <= tol.atol:
        why.append(
            f"max abs {metrics['max_abs']:.3g}: needs atol {metrics['atol_needed']:.3g} > {tol.atol:g} (rtol {tol.rtol:g})"
        )
    if tol.min_cosine is not None and metrics["min_cosine"] is not None and not metrics["min_cosine"] >= tol.min_cosine:
        why.append(f"min cosine {metrics['min_cosine']:.6f} < {tol.min_cosine:g}")
    if tol.min_argmax is not None and metrics.get("argmax_agreement") is not None and not metrics["argmax_agreement"] >= tol.min_argmax:
        why.append(f"argmax agreement {metrics['argmax_agreement']:.4f} < {tol.min_argmax:g}")
    return why


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


@dataclass(frozen=True)
class Verdict:
    """One output judged over some batches: merged metrics, the tolerance, why it failed."""

    output: str
    metrics: dict[str, Any]
    tolerance: Tolerance
    reasons: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.reasons

    def __bool__(self) -> bool:
        return self.passed


def judge_output(output: OutputSpec, batches: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray | None]],
                 tol: Tolerance) -> Verdict:
    """Judge one output over ``(expected, actual, attention_mask)`` batches.

    A batch whose shapes differ fails the output (the reason names both shapes).
    """
    parts, shape_problems = [], []
    for expected, actual, mask in batches:
        if np.shape(expected) != np.shape(actual):
            shape_problems.append(f"shape {list(np.shape(actual))}, the reference {list(np.shape(expected))}")
            continue
        parts.append(measure(expected, actual, output, mask, tol.rtol))
    metrics = merge(parts)
    return Verdict(output.name, metrics, tol, shape_problems + (judge_metrics(metrics, tol) if parts else []))


def pooled_cosines(expected: np.ndarray, actual: np.ndarray, output: OutputSpec, mask: np.ndarray | None) -> np.ndarray:
    """Per-sample cosine; token-level outputs are mean-pooled over real tokens first
    (a sentence embedding, the quantity int8 must preserve)."""
    e, a = np.asarray(expected, np.float64), np.asarray(actual, np.float64)
    if output.axes[:2] == ("batch", SEQUENCE_AXIS) and mask is not None and e.ndim >= 2:
        m = mask.astype(np.float64).reshape(mask.shape + (1,) * (e.ndim - 2))
        e = (e * m).sum(1) / np.maximum(m.sum(1), 1.0)
        a = (a * m).sum(1) / np.maximum(m.sum(1), 1.0)
    e, a = e.reshape(len(e), -1), a.reshape(len(a), -1)
    num = (e * a).sum(1)
    den = np.maximum(np.linalg.norm(e, axis=1) * np.linalg.norm(a, axis=1), 1e-30)
    both_zero = (np.linalg.norm(e, axis=1) == 0) & (np.linalg.norm(a, axis=1) == 0)
    return np.where(both_zero, 1.0, num / den)
