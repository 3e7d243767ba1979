"""The result of a validation: one check per output and shape group, plus localization."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .metrics import public


@dataclass
class Check:
    """One output on one shape group."""

    output: str
    group: str
    passed: bool
    metrics: dict[str, Any]
    tolerance: dict[str, Any]
    reasons: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    def message(self) -> str:
        why = self.error or "; ".join(self.reasons)
        return f"{self.output} on {self.group}: {why}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "output": self.output,
            "group": self.group,
            "passed": self.passed,
            "metrics": public(self.metrics),
            "tolerance": self.tolerance,
            "reasons": list(self.reasons),
            "error": self.error,
            "seconds": round(self.seconds, 4),
        }


@dataclass
class ValidationResult:
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

    def __bool__(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def passed(self) -> bool:
        return bool(self)

    def failures(self) -> list[str]:
        return [c.message() for c in self.checks if not c.passed]

    def failing_outputs(self) -> list[str]:
        return sorted({c.output for c in self.checks if not c.passed})

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
            "checks": [c.to_dict() for c in self.checks],
            "failures": self.failures(),
            "localization": self.localization,
            "notes": list(self.notes),
            "seconds": self.seconds,
            "options": self.options,
            "environment": self.environment,
        }

    def summary(self) -> str:
        parts = [f"{out} min cos {m['min_cosine']:.5f}, max abs {m.get('max_abs') or 0:.2g}"
                 for out, m in ((k, public(v)) for k, v in self.outputs.items()) if m.get("min_cosine") is not None]
        return "; ".join(parts) or ("passed" if self.passed else "; ".join(self.failures()))

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
