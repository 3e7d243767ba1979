"""The result of a validation: one check per output and shape group, plus localization.

Each check is a ``report.Check`` named ``"<output> on <group>"``; ``about`` carries the
output, the group, the tolerance, the reasons and the error, and ``check_dict`` writes
the JSON shape validate's reports and the manifest have always had.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..parity.judge import public
from ..parity.tolerance import Tolerance
from ..report import Check, ChecksReport


def output_check(output: str, group: str, metrics: dict[str, Any], tolerance: Tolerance, reasons: list[str],
                 error: str | None = None, seconds: float = 0.0) -> Check:
    """One output on one shape group, judged (an ``error`` fails it before any metric)."""
    return Check(
        name=f"{output} on {group}",
        passed=error is None and not reasons,
        detail=error or "; ".join(reasons),
        metrics=metrics,
        about={"output": output, "group": group, "tolerance": tolerance.to_dict(), "reasons": list(reasons),
               "error": error, "seconds": seconds},
    )


def check_dict(c: Check) -> dict[str, Any]:
    """A check as validate's JSON (``--json``, the manifest) has always written it."""
    a = c.about
    return {
        "output": a["output"],
        "group": a["group"],
        "passed": c.passed,
        "metrics": public(c.metrics),
        "tolerance": a["tolerance"],
        "reasons": list(a["reasons"]),
        "error": a["error"],
        "seconds": round(a["seconds"], 4),
    }


@dataclass
class ValidationResult(ChecksReport):
    """Truthy when every check passed. ``failures()`` lists every failing check."""

    artifact: str
    variant: str
    file: str
    precision: str
    device: str
    provider: str
    providers: list[str]
    tolerances: dict[str, dict[str, Any]]
    groups: list[dict[str, Any]]
    checks: list[Check]
    outputs: dict[str, dict[str, Any]]
    localization: dict[str, Any] | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    file_sha256: str | None = None

    def failing_outputs(self) -> list[str]:
        return sorted({c.about["output"] for c in self.checks if not c.passed})

    def summary(self) -> str:
        """One line: each output's worst cosine and max abs, or the first failure."""
        if not self.passed:
            fails = self.failures()
            return (fails[0] if fails else "no checks ran") + (f" (+{len(fails) - 1} more)" if len(fails) > 1 else "")
        return parity_line(self.record())

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "artifact": self.artifact,
            "variant": self.variant,
            "file": self.file,
            "file_sha256": self.file_sha256,
            "precision": self.precision,
            "device": self.device,
            "provider": self.provider,
            "providers": list(self.providers),
            "tolerances": self.tolerances,
            "outputs": {k: public(v) for k, v in self.outputs.items()},
            "groups": self.groups,
            "checks": [check_dict(c) for c in self.checks],
            "failures": self.failures(),
            "localization": self.localization,
            "notes": list(self.notes),
            "seconds": self.seconds,
            "options": self.options,
            "environment": self.environment,
        }

    def record(self) -> dict[str, Any]:
        """What the manifest keeps (packaging carries it): verdict, tolerances, worst
        metrics per output, what was fed, the provider used, localization on failure."""
        return {
            "passed": self.passed,
            "variant": self.variant,
            "file": self.file,
            "file_sha256": self.file_sha256,
            "precision": self.precision,
            "device": self.device,
            "provider": self.provider,
            "tolerances": self.tolerances,
            "outputs": {k: public(v) for k, v in self.outputs.items()},
            "samples": sum(g["samples"] for g in self.groups),
            "groups": len(self.groups),
            "shapes": [g["name"] for g in self.groups],
            "texts": next((g.get("texts") for g in self.groups if g["kind"] == "text"), 0),
            "text_source": next((g.get("source") for g in self.groups if g["kind"] == "text"), None),
            "failures": self.failures(),
            "localization": self.localization,
            "seed": self.options.get("seed"),
            "seconds": self.seconds.get("total"),
            "versions": self.environment.get("versions"),
        }


def parity_line(record: dict[str, Any]) -> str:
    """The one-line parity detail of a validate record (the manifest's, or a fresh one)."""
    parts = []
    for out, m in (record.get("outputs") or {}).items():
        if m.get("min_cosine") is not None:
            parts.append(f"{out} min cos {m['min_cosine']:.5f}, max abs {m.get('max_abs') or 0:.2g}")
    return "; ".join(parts) or ("passed" if record.get("passed") else "")
