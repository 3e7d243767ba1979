"""Validate options and localization's floors (no heavy imports here).

The default tolerances per precision live in ``onnxforge.parity.tolerance`` (one
table for every stage); options carry the user's per-output overrides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserInputError

from ..parity.tolerance import DEFAULT_TOLERANCES, Tolerance, resolve_tolerance
from ..vocab import DEVICES, ENGINES

__all__ = ["DEFAULT_TOLERANCES", "LOCALIZE_FLOOR", "Tolerance", "ValidateOptions", "parse_shape"]


# Localization: the relative L2 error (||onnx - torch|| / ||torch|| on real tokens) a
# hidden state may carry before it counts as departing from PyTorch. Clean MiniLM,
# worst stage at 4 x 128: 1.4e-6 in fp32 (fused or not), 1.5e-3 in fp16, 0.19 in
# dynamic per-channel int8 (its last layer).
# bf16 (8-bit mantissa, 8x fp16's step) takes fp16's floor widened by that factor.
LOCALIZE_FLOOR = {"fp32": 1e-5, "fp16": 1e-2, "bf16": 8e-2, "int8": 0.25}


def _check_overrides(values: dict[str, float], flag: str, *, upper: float | None = None, finite: bool = False) -> dict[str, float]:
    clean: dict[str, float] = {}
    for name, value in dict(values or {}).items():
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise UserInputError(f"{flag} {name}={value!r} is not a number", hint=f"use {flag} OUTPUT=NUMBER") from None
        if math.isnan(v) or v < 0 or (upper is not None and v > upper) or (finite and math.isinf(v)):
            rng = (f"between 0 and {upper:g}" if upper is not None
                   else "of 0 or more (finite; --atol OUT=inf disables the element-wise check)" if finite
                   else "of 0 or more (inf disables the check)")
            raise UserInputError(f"{flag} {name}={value} is out of range", hint=f"{flag} takes a number {rng}")
        clean[str(name)] = v
    return clean


def parse_shape(text: str) -> tuple[int, int]:
    """``3x33`` -> (3, 33)."""
    b, sep, s = text.lower().partition("x")
    try:
        shape = (int(b), int(s)) if sep else None
    except ValueError:
        shape = None
    if shape is None or shape[0] < 1 or shape[1] < 1:
        raise UserInputError(f"--shape {text!r} is not BATCHxSEQUENCE", hint="e.g. --shape 3x33 (both at least 1)")
    return shape


@dataclass(frozen=True)
class ValidateOptions:
    """What ``validate_artifact`` checks and how; built once (from the CLI or by hand).

    Tolerance overrides map an output name (or ``*`` for every output) to a value and
    win over the precision's defaults; a named output wins over ``*``.
    """

    variant: str = "base"
    text_file: Path | None = None
    column: str | None = None
    atol: dict[str, float] = field(default_factory=dict)
    rtol: dict[str, float] = field(default_factory=dict)
    min_cosine: dict[str, float] = field(default_factory=dict)
    min_argmax: dict[str, float] = field(default_factory=dict)
    device: str = "cpu"
    # (batch, sequence) pairs; None: the default plan (see cases.default_shapes).
    shapes: tuple[tuple[int, int], ...] | None = None
    seed: int = 0
    # At most this many texts of --text are used (the first ones, in file order).
    max_texts: int = 1000
    # Texts from the built-in sample (real Debian descriptions) when no --text is given.
    sample_size: int = 200
    text_batch_size: int = 16
    localize: bool = True
    # Intra-op threads of PyTorch and ONNX Runtime; None: PyTorch uses 1 thread for
    # models under SMALL_MODEL_PARAMS parameters (see validator.reference_threads), ONNX
    # Runtime its default.
    threads: int | None = None
    # ort or openvino; None: the engine the variant records in the manifest.
    engine: str | None = None
    # Rows and positions localization feeds (it exposes every hidden state of the graph).
    localize_max_batch: int = 4

    def __post_init__(self) -> None:
        if not isinstance(self.variant, str) or not self.variant:
            raise UserInputError("--variant must be a non-empty name", hint="e.g. --variant base")
        if self.device not in DEVICES:
            raise UserInputError(f"--device {self.device} is not known", hint=f"choose one of {', '.join(DEVICES)}")
        object.__setattr__(self, "atol", _check_overrides(self.atol, "--atol"))
        object.__setattr__(self, "rtol", _check_overrides(self.rtol, "--rtol", finite=True))
        object.__setattr__(self, "min_cosine", _check_overrides(self.min_cosine, "--min-cosine", upper=1.0))
        object.__setattr__(self, "min_argmax", _check_overrides(self.min_argmax, "--min-argmax", upper=1.0))
        if self.text_file is not None:
            path = Path(self.text_file)
            object.__setattr__(self, "text_file", path)
            if not path.exists():
                raise UserInputError(f"--text {path} does not exist", hint="pass a .txt file (one text a line) or a CSV with --column")
            if not path.is_file():
                raise UserInputError(f"--text {path} is not a file", hint="pass a .txt file (one text a line) or a CSV with --column")
        elif self.column is not None:
            raise UserInputError(f"--column {self.column} needs --text FILE.csv", hint="pass the CSV file with --text")
        if self.shapes is not None:
            shapes = tuple((int(b), int(s)) for b, s in self.shapes)
            if not shapes or any(b < 1 or s < 1 for b, s in shapes):
                raise UserInputError(f"shapes {self.shapes} must be (batch, sequence) pairs of at least 1")
            object.__setattr__(self, "shapes", shapes)
        if self.engine is not None and self.engine not in ENGINES:
            raise UserInputError(f"--engine {self.engine} is not known", hint=f"choose one of {', '.join(ENGINES)}")
        if self.threads is not None and int(self.threads) < 1:
            raise UserInputError(f"--threads {self.threads} must be at least 1")
        for name in ("max_texts", "sample_size", "text_batch_size", "localize_max_batch"):
            if int(getattr(self, name)) < 1:
                raise UserInputError(f"{name} must be at least 1, got {getattr(self, name)}")

    def tolerance_for(self, output: str, precision: str) -> Tolerance:
        return resolve_tolerance(output, precision, {"atol": self.atol, "rtol": self.rtol,
                                                     "min_cosine": self.min_cosine, "min_argmax": self.min_argmax})

    def overridden_names(self) -> set[str]:
        names: set[str] = set()
        for d in (self.atol, self.rtol, self.min_cosine, self.min_argmax):
            names.update(k for k in d if k != "*")
        return names

    def to_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "text_file": str(self.text_file) if self.text_file else None,
            "column": self.column,
            "atol": dict(self.atol),
            "rtol": dict(self.rtol),
            "min_cosine": dict(self.min_cosine),
            "min_argmax": dict(self.min_argmax),
            "device": self.device,
            "shapes": [list(s) for s in self.shapes] if self.shapes else None,
            "seed": self.seed,
            "max_texts": self.max_texts,
            "sample_size": self.sample_size,
            "threads": self.threads,
            "engine": self.engine,
        }
