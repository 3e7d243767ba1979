"""Pieces of the validate stage: the shape plan, text reading, options, metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from onnxforge.errors import UserInputError
from onnxforge.spec import ModelSpec, OutputSpec
from onnxforge.validate import DEFAULT_TOLERANCES, ValidateOptions
from onnxforge.validate.cases import default_shapes, random_groups, read_texts
from onnxforge.parity.judge import judge_metrics as judge, measure, merge


def spec(max_positions=512, **kw):
    return ModelSpec(
        input_names=("input_ids", "attention_mask", "token_type_ids"),
        outputs=(OutputSpec("last_hidden_state", ("batch", "sequence", None)), OutputSpec("logits", ("batch", None))),
        num_heads=4, hidden_size=64, num_layers=2, vocab_size=30522, max_positions=max_positions, type_vocab_size=2, **kw,
    )


def test_default_shape_plan():
    plan = default_shapes(spec(512))
    assert {b for b, _ in plan} == {1, 3, 8}
    assert {s for _, s in plan} == {1, 7, 33, 128, 512}
    assert (1, 512) in plan and (3, 512) in plan and (8, 512) not in plan  # no full cross product at max
    assert (2, 16) not in plan and (3, 37) not in plan  # never the export's trace or check shape
    small = default_shapes(spec(64))
    assert len(small) == len(set(small)) and max(s for _, s in small) == 64


def test_random_groups_are_seeded_and_padded():
    a = random_groups(spec(), [(8, 33)], seed=0)[0].batches[0]
    b = random_groups(spec(), [(8, 33)], seed=0)[0].batches[0]
    c = random_groups(spec(), [(8, 33)], seed=1)[0].batches[0]
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["input_ids"], c["input_ids"])
    lengths = a["attention_mask"].sum(1)
    assert lengths[0] == 33 and len(set(lengths.tolist())) > 2
    # Right padding: real tokens first, then only padding.
    for row, n in zip(a["attention_mask"], lengths):
        assert row[:n].all() and not row[n:].any()
    assert a["token_type_ids"].max() == 1  # a second segment where the model has one
    assert a["input_ids"].max() < 30522


def test_read_texts(tmp_path):
    txt = tmp_path / "a.txt"
    txt.write_bytes("\ufeffone\r\n\r\ntwo words\n  \nthree\n".encode("utf-8"))
    assert read_texts(txt, None, 10) == (["one", "two words", "three"], 3)
    assert read_texts(txt, None, 2) == (["one", "two words"], 3)
    tsv = tmp_path / "a.tsv"
    tsv.write_text("text\nalpha beta\ngamma\n")
    assert read_texts(tsv, None, 10) == (["alpha beta", "gamma"], 2)  # one column: no --column needed
    with pytest.raises(UserInputError, match="not UTF-8"):
        bad = tmp_path / "b.txt"
        bad.write_bytes(b"ok\n\xff\xfe bad\n")
        read_texts(bad, None, 10)


def test_options_and_tolerances(tmp_path):
    o = ValidateOptions(atol={"*": 1e-3, "logits": 0.5}, min_cosine={"logits": 0.9})
    assert o.tolerance_for("logits", "fp32").atol == 0.5
    assert o.tolerance_for("last_hidden_state", "fp32").atol == 1e-3
    assert o.tolerance_for("last_hidden_state", "fp32").min_cosine == DEFAULT_TOLERANCES["fp32"].min_cosine
    assert o.tolerance_for("logits", "int8").min_cosine == 0.9
    assert ValidateOptions(atol={"*": math.inf}).tolerance_for("x", "fp32").atol is None  # inf switches it off
    assert DEFAULT_TOLERANCES["int8"].atol is None and DEFAULT_TOLERANCES["fp16"].min_cosine < 1
    with pytest.raises(Exception):
        o.variant = "other"  # frozen
    with pytest.raises(UserInputError, match="--rtol"):
        ValidateOptions(rtol={"*": math.inf})
    with pytest.raises(UserInputError, match="--threads"):
        ValidateOptions(threads=0)


def test_metrics_respect_the_mask_and_merge():
    out = OutputSpec("last_hidden_state", ("batch", "sequence", None))
    expected = np.zeros((2, 4, 3), dtype=np.float32)
    actual = expected.copy()
    actual[1, 3] = 100.0  # a padded position: fused Attention may leave anything there
    mask = np.array([[1, 1, 1, 1], [1, 1, 1, 0]])
    m = measure(expected + 1, actual + 1, out, mask, rtol=0.0)
    assert m["max_abs"] == 0 and m["atol_needed"] == 0 and m["count"] == 7 * 3
    actual[0, 0, 0] = 0.5
    m2 = measure(expected + 1, actual + 1, out, mask, rtol=0.1)
    assert m2["max_abs"] == pytest.approx(0.5) and m2["atol_needed"] == pytest.approx(0.4)
    merged = merge([m, m2])
    assert merged["max_abs"] == pytest.approx(0.5) and merged["count"] == 42
    assert merged["mean_abs"] == pytest.approx((0.5 / 21) / 2)
    tol = DEFAULT_TOLERANCES["fp32"]
    assert judge(m, tol) == []
    reasons = judge(m2, tol)
    assert reasons and "needs atol" in reasons[0]
    bad = dict(m, finite=False, atol_needed=math.inf)
    assert "NaN or inf" in judge(bad, tol)[0]


def test_argmax_for_question_answering_logits():
    """start_logits has the sequence as its last axis: one prediction per sample."""
    out = OutputSpec("start_logits", ("batch", "sequence"))
    rng = np.random.default_rng(0)
    expected = rng.normal(size=(3, 9)).astype(np.float32)
    mask = (np.arange(9)[None] < np.array([[9], [5], [2]])).astype(np.int64)
    m = measure(expected, expected.copy(), out, mask, rtol=0.0)
    assert m["argmax_agreement"] == 1.0
    flipped = expected.copy()
    flipped[0] = -flipped[0]
    assert measure(expected, flipped, out, mask, rtol=0.0)["argmax_agreement"] == pytest.approx(2 / 3)
