"""The smoke report: its checks as ``report.Check`` objects, written to the manifest as before.

A check's record keeps its metrics at the top level (``{"name", "passed", "detail",
"max_abs", "min_cosine", ...}``), the shape smoke has always written; ``check_from_record``
reads it back, and older records (``reason`` for the detail) too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..report import Check, ChecksReport

_CHECK_KEYS = ("name", "passed", "detail", "reason", "required", "metrics")


def check_record(check: Check) -> dict[str, Any]:
    """A smoke check as the manifest stores it: metrics flat beside name, passed and detail."""
    record: dict[str, Any] = {"name": check.name, "passed": check.passed, "detail": check.detail}
    record.update(check.metrics)
    return record


def check_from_record(record: dict[str, Any]) -> Check:
    metrics = {k: v for k, v in record.items() if k not in _CHECK_KEYS}
    metrics.update(record.get("metrics") or {})
    return Check(name=str(record.get("name") or "?"), passed=bool(record.get("passed")),
                 detail=str(record.get("detail") or record.get("reason") or ""), metrics=metrics)


@dataclass
class SmokeReport(ChecksReport):
    artifact: str
    variant: str
    precision: str
    requested_device: str
    device: str
    providers: list[str]
    tolerance: dict[str, Any]
    checks: list[Check] = field(default_factory=list)
    latency: list[dict[str, Any]] = field(default_factory=list)
    pytorch: dict[str, Any] = field(default_factory=dict)
    runtime: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> str:
        """One line: checks passed, then p50 latency per batch size."""
        parts = [self.checks_summary()] if self.checks else []
        for row in self.latency:
            if row.get("p50_ms") is not None:
                parts.append(f"batch {row.get('batch_size')} p50 {row['p50_ms']:.1f} ms")
        return ", ".join(parts) or ("passed" if self.passed else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "artifact": self.artifact,
            "variant": self.variant,
            "precision": self.precision,
            "requested_device": self.requested_device,
            "device": self.device,
            "providers": self.providers,
            "tolerance": self.tolerance,
            "checks": [check_record(c) for c in self.checks],
            "failures": self.failures(),
            "pytorch": self.pytorch,
            "latency": self.latency,
            "runtime": self.runtime,
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SmokeReport":
        """A report read back from the manifest's ``smoke.<variant>`` record."""
        return cls(
            artifact=str(d.get("artifact", "")), variant=str(d.get("variant", "")), precision=str(d.get("precision", "")),
            requested_device=str(d.get("requested_device", "")), device=str(d.get("device", "")),
            providers=list(d.get("providers") or []), tolerance=dict(d.get("tolerance") or {}),
            checks=[check_from_record(c) for c in d.get("checks") or [] if isinstance(c, dict)],
            latency=[r for r in d.get("latency") or [] if isinstance(r, dict)], pytorch=dict(d.get("pytorch") or {}),
            runtime=dict(d.get("runtime") or {}), seconds=float(d.get("seconds") or 0.0),
        )
