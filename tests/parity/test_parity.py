"""The one parity judge: tolerance table, overrides, verdicts, goldens round trip, report contract."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from onnxforge.parity.goldens import GoldensUnreadable, read_goldens, write_goldens
from onnxforge.parity.judge import judge_output
from onnxforge.parity.tolerance import DEFAULT_TOLERANCES, Tolerance, default_tolerance, resolve_tolerance
from onnxforge.report import StageReport
from onnxforge.spec import OutputSpec
from onnxforge.vocab import PRECISIONS

HIDDEN = OutputSpec(name="last_hidden_state", axes=("batch", "sequence", "hidden"))


def test_one_default_per_precision_and_fp16_is_validates_figure():
    assert set(DEFAULT_TOLERANCES) == set(PRECISIONS)
    assert DEFAULT_TOLERANCES["fp16"] == Tolerance(atol=2e-2, rtol=1e-2, min_cosine=0.9999, min_argmax=0.99)
    # Looser as precision drops.
    order = ["fp32", "fp16", "bf16"]
    assert [DEFAULT_TOLERANCES[p].atol for p in order] == sorted(DEFAULT_TOLERANCES[p].atol for p in order)
    assert default_tolerance("no-such") == DEFAULT_TOLERANCES["fp32"]


def test_overrides_named_output_wins_over_star_and_inf_switches_off():
    over = {"atol": {"*": 0.5, "logits": 0.1}, "min_cosine": {"logits": math.inf}}
    assert resolve_tolerance("logits", "fp32", over).atol == 0.1
    assert resolve_tolerance("other", "fp32", over).atol == 0.5
    assert resolve_tolerance("logits", "fp32", over).min_cosine is None
    assert resolve_tolerance("other", "fp16", over).min_cosine == DEFAULT_TOLERANCES["fp16"].min_cosine
    assert Tolerance.from_dict(DEFAULT_TOLERANCES["int8"].to_dict()) == DEFAULT_TOLERANCES["int8"]


def test_judge_passes_masked_noise_and_fails_a_real_drift():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(2, 5, 8)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    noisy = ref + 1e-3
    noisy[0, 3:] = 100.0  # padding positions are not judged
    ok = judge_output(HIDDEN, [(ref, noisy, mask)], DEFAULT_TOLERANCES["fp16"])
    assert ok and ok.metrics["atol_needed"] < 2e-3 and ok.metrics["samples"] == 2
    bad = judge_output(HIDDEN, [(ref, ref * 1.1, mask)], DEFAULT_TOLERANCES["fp32"])
    assert not bad and any("needs atol" in r for r in bad.reasons)
    # The smallest atol that would have passed, passes; a hair less fails.
    need = bad.metrics["atol_needed"]
    assert judge_output(HIDDEN, [(ref, ref * 1.1, mask)], Tolerance(need, 1e-4, None, None))
    assert not judge_output(HIDDEN, [(ref, ref * 1.1, mask)], Tolerance(need * 0.99, 1e-4, None, None))
    shape = judge_output(HIDDEN, [(ref, ref[:, :4], mask)], DEFAULT_TOLERANCES["fp32"])
    assert not shape and shape.reasons[0].startswith("shape")


def test_goldens_round_trip_and_unreadable(tmp_path: Path):
    ids = np.arange(6, dtype=np.int64).reshape(2, 3)
    out = np.ones((2, 3, 4), np.float32)
    entry = write_goldens(tmp_path, ["a", "b"], {"input_ids": ids}, {"last_hidden_state": out})
    g = read_goldens(tmp_path, entry)
    assert g.texts == ["a", "b"] and np.array_equal(g.inputs["input_ids"], ids)
    assert np.array_equal(g.outputs["last_hidden_state"], out) and g.missing_outputs(["pooler_output"]) == ["pooler_output"]
    assert read_goldens(tmp_path, None) is None
    (tmp_path / entry["file"]).write_bytes(b"not a zip")
    with pytest.raises(GoldensUnreadable, match="cannot be read"):
        read_goldens(tmp_path, entry)
    (tmp_path / entry["file"]).unlink()
    with pytest.raises(GoldensUnreadable, match="missing"):
        read_goldens(tmp_path, entry)


def _optimize_report(fully_fused: bool, strict: bool, parity_passed: bool = True):
    from onnxforge.optimize.options import OptimizeOptions, OptimizeReport, fusion_check
    from onnxforge.report import Check

    fusion = {"fully_fused": fully_fused, "required": ["Attention"], "expected": {"Attention": 2},
              "achieved": {"Attention": 2 if fully_fused else 0},
              "missing": {} if fully_fused else {"Attention": "Softmax failed to match"}, "fused_ops": {}}
    checks = [fusion_check(fusion, strict), Check("goldens", parity_passed, "" if parity_passed else "drift")]
    return OptimizeReport(artifact=Path("."), options=OptimizeOptions(strict=strict), file="m.onnx", fusion=fusion,
                          checks=checks)


@pytest.mark.parametrize("fully_fused,strict,parity,passed", [
    (True, False, True, True), (False, False, True, True), (False, True, True, False), (True, True, False, False),
])
def test_optimize_report_is_truthy_exactly_when_it_passed(fully_fused, strict, parity, passed):
    report = _optimize_report(fully_fused, strict, parity)
    assert isinstance(report, StageReport)
    assert report.passed is passed and bool(report) is passed
    if not fully_fused:
        where = report.failures() if strict else report.warnings()
        assert where[0].startswith("Attention: 0/2 fused")
        assert ("not fully fused" in report.summary()) is (not strict)
    d = report.to_dict()
    assert d["passed"] is passed and [c["name"] for c in d["checks"]] == ["goldens"]


def test_verify_and_package_reports_honour_the_contract(tmp_path: Path):
    from onnxforge.release.package import PackageReport
    from onnxforge.release.verify import VerifyReport

    v = VerifyReport(path=tmp_path, kind="folder")
    v.add("file", "a.onnx", True, "ok")
    v.add("goldens", "a.onnx", None, "no goldens")
    assert isinstance(v, StageReport) and v and v.summary() == "1 checks passed, 1 skipped"
    assert [c["status"] for c in v.to_dict()["checks"]] == ["passed", "skipped"]
    v.add("file", "b.onnx", False, "missing")
    assert not v and v.failures() == ["b.onnx: missing"] and v.to_dict()["counts"]["failed"] == 1
    p = PackageReport(out=tmp_path / "x.tar.gz", passed=False, problems=["a changed", "b changed"])
    assert isinstance(p, StageReport) and not p and p.failures() == ["a changed", "b changed"]
    assert p.summary() == "a changed (+1 more)"
