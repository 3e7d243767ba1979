"""SmokeReport honours the stage-report contract and reads back what it writes."""

from __future__ import annotations

from onnxforge.report import Check, StageReport
from onnxforge.smoke.report import SmokeReport


def _report(*checks: Check) -> SmokeReport:
    return SmokeReport(artifact="a", variant="base", precision="fp32", requested_device="cpu", device="cpu",
                       providers=["CPUExecutionProvider"], tolerance={}, checks=list(checks),
                       latency=[{"batch_size": 1, "p50_ms": 2.345}, {"batch_size": 8, "p50_ms": 9.87}])


def test_contract_and_summary():
    ok = Check("goldens.x", True, metrics={"max_abs": 1e-6, "min_cosine": 1.0})
    bad = Check("pytorch.x", False, "min cosine 0.9 < 0.99999", {"max_abs": 0.5})
    passing, failing = _report(ok), _report(ok, bad)
    assert isinstance(passing, StageReport)
    assert passing.passed and bool(passing) and passing.failures() == []
    assert not failing.passed and not bool(failing)
    assert failing.failures() == ["pytorch.x: min cosine 0.9 < 0.99999"]
    assert failing.summary() == "1/2 checks, batch 1 p50 2.3 ms, batch 8 p50 9.9 ms"
    assert not _report().passed  # no checks ran: not a pass


def test_record_keeps_metrics_flat_and_reads_back():
    report = _report(Check("pytorch.x", False, "too far", {"max_abs": 0.5, "min_cosine": 0.9}))
    record = report.to_dict()
    check = record["checks"][0]
    assert check["max_abs"] == 0.5 and check["min_cosine"] == 0.9 and check["detail"] == "too far"
    assert record["failures"] == ["pytorch.x: too far"] and record["passed"] is False
    again = SmokeReport.from_dict(record)
    assert again.checks == report.checks and again.summary() == report.summary()


def test_reads_the_older_reason_field():
    old = {"passed": False, "checks": [{"name": "session", "passed": False, "reason": "fell back to CPU", "max_abs": None}]}
    assert SmokeReport.from_dict(old).failures() == ["session: fell back to CPU"]
