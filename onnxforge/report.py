"""The one result contract: every stage returns a report that honours ``StageReport``.

A report is truthy exactly when it passed, lists every failing check before the CLI
exits (``failures()``), gives a one-line ``summary()`` for build's table, and
serializes to the JSON the manifest stores (``to_dict()``). Checks are ``Check``
objects everywhere, so a CI job reads one shape whatever stage produced it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Check:
    """One named check: did it pass, why (``detail``), and the numbers behind it."""

    name: str
    passed: bool
    detail: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    # A soft check is reported but does not fail the stage unless the caller asks
    # (e.g. "fully fused", which ``--strict`` makes fatal).
    required: bool = True
    # What the check is about, for the stage's own reports: validate's output and shape
    # group, verify's kind and target, the tolerance it was judged with. Not a metric.
    about: dict[str, Any] = field(default_factory=dict)

    def message(self) -> str:
        return f"{self.name}: {self.detail}" if self.detail else self.name

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "passed": self.passed, "detail": self.detail}
        if self.metrics:
            out["metrics"] = self.metrics
        if not self.required:
            out["required"] = False
        if self.about:
            out["about"] = self.about
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Check":
        """Read a check back from a manifest (older manifests wrote ``check``/``reason``)."""
        return cls(
            name=str(d.get("name") or d.get("check") or "?"),
            passed=bool(d.get("passed")),
            detail=str(d.get("detail") or d.get("reason") or d.get("message") or ""),
            metrics=dict(d.get("metrics") or {}),
            required=bool(d.get("required", True)),
            about=dict(d.get("about") or {}),
        )


@runtime_checkable
class StageReport(Protocol):
    """What every stage's report provides (``passed`` and ``__bool__`` always agree)."""

    @property
    def passed(self) -> bool: ...

    def __bool__(self) -> bool: ...

    def failures(self) -> list[str]: ...

    def summary(self) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...


class ChecksReport:
    """Mixin for reports whose verdict is their ``checks``: all required checks passed.

    Subclasses hold ``checks: list[Check]`` and implement ``summary()`` and ``to_dict()``.
    """

    checks: list[Check]

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks if c.required)

    def __bool__(self) -> bool:
        return self.passed

    def failures(self) -> list[str]:
        return [c.message() for c in self.checks if c.required and not c.passed]

    def warnings(self) -> list[str]:
        return [c.message() for c in self.checks if not c.required and not c.passed]

    def checks_summary(self) -> str:
        required = [c for c in self.checks if c.required]
        return f"{sum(c.passed for c in required)}/{len(required)} checks"
