"""Numerical comparison of two sets of outputs, restricted to real tokens.

Shared by the export check, validate and smoke, so every stage measures drift the
same way: max abs, mean abs, max rel, and the minimum per-sample cosine similarity,
on the positions the attention mask marks as real for token-level outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .spec import OutputSpec, SEQUENCE_AXIS


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
