"""What `build` returns: one outcome per stage, in plan order, and the archive it verified."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import OnnxforgeError


@dataclass
class StageOutcome:
    name: str
    status: str  # passed, reused, failed (a check), error (bad input), skipped, not run
    seconds: float = 0.0
    detail: str = ""
    key: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("passed", "reused", "skipped")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "seconds": round(self.seconds, 2), "detail": self.detail,
                "key": self.key}


@dataclass
class BuildReport:
    out: Path
    archive: Path
    device: str
    precisions: tuple[str, ...]
    stages: list[StageOutcome] = field(default_factory=list)
    archive_sha256: str | None = None
    seconds: float = 0.0
    config_file: Path | None = None
    # A stage that stopped on bad input (exit 2) rather than a failed check.
    error: OnnxforgeError | None = None

    @property
    def passed(self) -> bool:
        return bool(self.stages) and all(s.ok for s in self.stages)

    def __bool__(self) -> bool:
        return self.passed

    def failures(self) -> list[str]:
        return [f"{s.name}: {s.detail}" for s in self.stages if s.status in ("failed", "error")]

    def summary(self) -> str:
        reused = f", {len(self.reused)} reused" if self.reused else ""
        verdict = "built and verified" if self.passed else f"stopped at {self.failed_stage.name if self.failed_stage else '?'}"
        return f"{verdict}: {len(self.stages)} stages{reused} in {self.seconds:.1f}s"

    @property
    def failed_stage(self) -> StageOutcome | None:
        return next((s for s in self.stages if s.status in ("failed", "error")), None)

    @property
    def reused(self) -> list[str]:
        return [s.name for s in self.stages if s.status == "reused"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed, "out": str(self.out), "archive": str(self.archive), "archive_sha256": self.archive_sha256,
            "device": self.device, "precisions": list(self.precisions), "config_file": str(self.config_file) if self.config_file else None,
            "stages": [s.to_dict() for s in self.stages], "reused": self.reused,
            "failed_stage": self.failed_stage.name if self.failed_stage else None, "seconds": round(self.seconds, 2),
        }
