"""Options and report of the optimize stage (no heavy imports: the CLI builds these)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserInputError
from ..report import Check, ChecksReport
from ..vocab import CONCRETE_DEVICES as DEVICES
from ..vocab import ENGINES, OPENVINO_FILES, OPENVINO_INT8_VARIANT, PRECISIONS, VARIANT_FOR_PRECISION

# The engine each precision can be built for (bf16 is an OpenVINO IR only).
ENGINES_FOR_PRECISION = {"fp32": ("ort",), "fp16": ("ort",), "int8": ("ort", "openvino"), "bf16": ("openvino",)}
# The device each precision is built for; the other one is allowed with a note.
TARGET_DEVICE = {"fp16": "cuda", "int8": "cpu", "bf16": "cpu"}
OUTLIER_METHODS = ("smooth", "split", "none")


@dataclass(frozen=True)
class OptimizeOptions:
    """What to build: ``precision`` fp32 (fused), fp16 (for CUDA) or int8 (for CPU).

    The int8 fields set the calibration (real texts from ``onnxforge.data``, disjoint
    from the first 300 texts that the tests and benchmarks evaluate on), the outlier
    channel split and the quality gate (mean-pooled cosine vs the fused fp32 graph).
    """

    precision: str = "fp32"
    device: str = "cpu"
    strict: bool = False
    # ort (fused ONNX graphs) or openvino (an IR; bf16 is openvino only). None: the
    # precision's first engine.
    engine: str | None = None
    # int8/bf16: publish a variant that misses the quality gates (recorded as lossy, never a default).
    allow_lossy: bool = False
    # OpenVINO int8: the NNCF configuration (a name in ov_int8.CONFIGS).
    nncf_config: str = "nncf-sq0.8"
    # bf16: sentence embeddings of real text vs the fp32 reference.
    bf16_min_cosine: float = 0.999
    bf16_mean_cosine: float = 0.9995
    # int8: calibration and held-out check texts (offsets into sample_texts).
    calibration_texts: int = 128
    calibration_offset: int = 1000
    check_texts: int = 64
    check_offset: int = 1500
    # A MatMul input channel whose calibrated |max| exceeds outlier_ratio x the median
    # channel's is an outlier (at most max_outlier_channels per MatMul). "smooth" scales
    # it down to smooth_target x the median (into the weights); "split" computes it in
    # fp32 beside the int8 product (more accurate, ~15% slower); "none" leaves it.
    outlier_method: str = "smooth"
    outlier_ratio: float = 6.0
    max_outlier_channels: int = 4
    smooth_target: float = 5.0
    quantize_attention: bool = True
    int8_min_cosine: float = 0.99
    int8_mean_cosine: float = 0.995
    # fp16: an op whose fp32 output reaches this magnitude on calibration inputs stays fp32.
    fp16_overflow_margin: float = 0.5

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise UserInputError(
                f"--precision {self.precision!r} is not known",
                hint=f"choose one of {', '.join(PRECISIONS)}",
            )
        if self.device not in DEVICES:
            raise UserInputError(
                f"--device {self.device!r} is not a target optimize can build for",
                hint=f"choose one of {', '.join(DEVICES)} (the graph is built for that provider; no GPU is needed)",
            )
        if self.engine is None:
            object.__setattr__(self, "engine", ENGINES_FOR_PRECISION[self.precision][0])
        if self.engine not in ENGINES:
            raise UserInputError(f"--engine {self.engine!r} is not known", hint=f"choose one of {', '.join(ENGINES)}")
        if self.engine not in ENGINES_FOR_PRECISION[self.precision]:
            raise UserInputError(
                f"--precision {self.precision} cannot be built for --engine {self.engine}",
                hint=f"{self.precision} is built for {' or '.join(ENGINES_FOR_PRECISION[self.precision])}")
        if self.device == "cuda" and self.engine == "openvino":
            raise UserInputError("--engine openvino builds CPU variants only", hint="use --device cpu")
        if self.calibration_texts < 1 or self.check_texts < 1:
            raise UserInputError("calibration_texts and check_texts must be at least 1")
        if self.outlier_ratio <= 1.0 or self.max_outlier_channels < 0 or self.smooth_target <= 0:
            raise UserInputError("outlier_ratio must be > 1, max_outlier_channels >= 0 and smooth_target > 0")
        if self.outlier_method not in OUTLIER_METHODS:
            raise UserInputError(f"outlier_method {self.outlier_method!r} is not known",
                                 hint=f"choose one of {', '.join(OUTLIER_METHODS)}")

    @property
    def variant(self) -> str:
        if self.precision == "int8" and self.engine == "openvino":
            return OPENVINO_INT8_VARIANT
        return VARIANT_FOR_PRECISION[self.precision]

    @property
    def file_name(self) -> str:
        """The variant's model file, relative to the artifact folder."""
        return OPENVINO_FILES.get(self.variant) or f"model_{self.variant}.onnx"

    def gates(self) -> tuple[float, float]:
        """(min, mean) pooled cosine a lossy precision must keep on real text."""
        if self.precision == "bf16":
            return self.bf16_min_cosine, self.bf16_mean_cosine
        return self.int8_min_cosine, self.int8_mean_cosine

    @property
    def target_device(self) -> str:
        return TARGET_DEVICE.get(self.precision, self.device)


FUSION_CHECK = "fully fused"


def fusion_check(fusion: dict[str, Any], strict: bool) -> Check:
    """"Fully fused" as a check of its own: every required fusion reached its expected
    count. Required (fatal) only under ``--strict``; otherwise a loud warning."""
    missing = {op: f"{fusion['achieved'][op]}/{fusion['expected'][op]} fused ({why})"
               for op, why in fusion.get("missing", {}).items() if op in fusion.get("required", ())}
    passed = bool(fusion.get("fully_fused"))
    detail = "; ".join(f"{op} {line}" for op, line in missing.items())
    return Check(FUSION_CHECK, passed, detail, metrics={"missing": missing}, required=strict)


def check_dict(c: Check) -> dict[str, Any]:
    """A parity check as optimize's JSON (``--json``, the manifest) has always written it."""
    return {"name": c.name, "reference": c.about.get("reference"), "passed": c.passed, "why": c.detail or None,
            "outputs": c.metrics.get("outputs", {})}


@dataclass
class OptimizeReport(ChecksReport):
    """The result of one ``optimize`` run; truthy exactly when ``passed``: every parity
    check passed, and under ``--strict`` the graph is also fully fused."""

    artifact: Path
    options: OptimizeOptions
    file: str
    fusion: dict[str, Any] = field(default_factory=dict)
    # The "fully fused" check first, then the parity checks.
    checks: list[Check] = field(default_factory=list)
    fp16: dict[str, Any] | None = None
    int8: dict[str, Any] | None = None
    openvino: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    tool_versions: dict[str, str | None] = field(default_factory=dict)

    @property
    def fully_fused(self) -> bool:
        return bool(self.fusion.get("fully_fused"))

    @property
    def parity_checks(self) -> list[Check]:
        return [c for c in self.checks if c.name != FUSION_CHECK]

    @property
    def checks_passed(self) -> bool:
        return all(c.passed for c in self.parity_checks)

    def _messages(self, required: bool) -> list[str]:
        out = []
        for c in self.checks:
            if c.passed or c.required != required:
                continue
            if c.name == FUSION_CHECK:
                out += [f"{op}: {line}" for op, line in c.metrics.get("missing", {}).items()] or [c.message()]
            else:
                out.append(c.message())
        return out

    def failures(self) -> list[str]:
        return self._messages(required=True)

    def warnings(self) -> list[str]:
        return self._messages(required=False)

    def summary(self) -> str:
        if not self.passed:
            fails = self.failures()
            return (fails[0] if fails else "optimize failed") + (f" (+{len(fails) - 1} more)" if len(fails) > 1 else "")
        fused = self.fusion.get("fused_ops") or {}
        line = ", ".join(f"{n} {op}" for op, n in fused.items()) if fused else "no fused ops"
        warned = self.warnings()
        return line if not warned else f"not fully fused ({warned[0]}" + (f" (+{len(warned) - 1} more)" if len(warned) > 1 else "") + f"); {line}"

    def to_dict(self) -> dict[str, Any]:
        o = self.options
        return {
            "passed": self.passed,
            "fully_fused": self.fully_fused,
            "checks_passed": self.checks_passed,
            "variant": o.variant,
            "precision": o.precision,
            "device": o.device,
            "target_device": o.target_device,
            "strict": o.strict,
            "engine": o.engine,
            "allow_lossy": o.allow_lossy,
            "file": self.file,
            "from": "base",
            "fused_ops": dict(self.fusion.get("fused_ops", {})),
            "fusion": self.fusion,
            "checks": [check_dict(c) for c in self.parity_checks],
            "fp16": self.fp16,
            "int8": self.int8,
            "openvino": self.openvino,
            "notes": list(self.notes),
            "failures": self.failures(),
            "warnings": self.warnings(),
            "sizes": dict(self.sizes),
            "seconds": self.seconds,
            "tools": self.tool_versions,
        }
