"""Smoke judges outputs with the parity judge and its per-precision table."""

from __future__ import annotations

import json

import numpy as np

from onnxforge.parity import DEFAULT_TOLERANCES
from onnxforge.smoke.smoke import compare_output
from onnxforge.spec import OutputSpec

HIDDEN = OutputSpec(name="last_hidden_state", axes=("batch", "sequence", "hidden"))


def _batch():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(2, 6, 8)).astype(np.float32)
    mask = np.array([[1, 1, 1, 1, 0, 0], [1] * 6])
    return ref, mask


def test_fp16_figure_is_the_parity_tables():
    ref, mask = _batch()
    fp16 = DEFAULT_TOLERANCES["fp16"]
    # 1e-2 off everywhere: inside fp16's atol 2e-2 + rtol, outside fp32's 1e-4.
    near = ref + 1e-2
    ok = compare_output(ref, near, HIDDEN, mask, fp16)
    assert ok["passed"] and ok["reason"] is None and 0 < ok["atol_needed"] <= fp16.atol
    assert not compare_output(ref, near, HIDDEN, mask, DEFAULT_TOLERANCES["fp32"])["passed"]
    # 5e-2 off passed smoke's old fp16 figure (atol 5e-2 + 1e-2|ref|); the shared table catches it.
    far = compare_output(ref, ref + 5e-2, HIDDEN, mask, fp16)
    assert not far["passed"] and "needs atol" in far["reason"]
    json.dumps(far)  # the check's metrics go into the manifest as they are


def test_shape_mismatch_and_non_finite_fail_with_the_reason():
    ref, mask = _batch()
    shape = compare_output(ref, ref[:, :5], HIDDEN, mask, DEFAULT_TOLERANCES["fp32"])
    assert not shape["passed"] and shape["reason"].startswith("shape [2, 5, 8]")
    bad = ref.copy()
    bad[1, 2, 3] = np.nan
    nan = compare_output(ref, bad, HIDDEN, mask, DEFAULT_TOLERANCES["fp32"])
    assert not nan["passed"] and "NaN" in nan["reason"] and nan["max_abs"] is None and nan["finite"] is False
