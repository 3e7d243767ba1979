"""Default tolerances per precision, said once, and per-output overrides (no heavy imports).

The figures were measured on the real MiniLM-L6 against PyTorch fp32 (CPU provider,
onnxruntime 1.31) at validate's default shape plan and on 200 real texts, then given a
margin; docs/validate.md lists them with the numbers they came from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from ..vocab import PRECISIONS


@dataclass(frozen=True)
class Tolerance:
    """When one output passes, on real-token positions only.

    An element passes when ``|onnx - ref| <= atol + rtol * |ref|`` (numpy's ``allclose``
    rule); ``atol=None`` skips that element-wise check. ``min_cosine`` is the smallest
    allowed per-sample cosine similarity; ``min_argmax`` the smallest allowed share of
    agreeing predicted classes (outputs named ``*logits*`` only).
    """

    atol: float | None
    rtol: float
    min_cosine: float | None
    min_argmax: float | None

    def to_dict(self) -> dict[str, float | None]:
        return {"atol": self.atol, "rtol": self.rtol, "min_cosine": self.min_cosine, "min_argmax": self.min_argmax}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Tolerance":
        """Read a tolerance back from a manifest (a missing key means the check is off)."""
        return cls(atol=d.get("atol"), rtol=float(d.get("rtol") or 0.0), min_cosine=d.get("min_cosine"),
                   min_argmax=d.get("min_argmax"))


# fp32: the graph computes what PyTorch computes up to summation order. MiniLM's
# worst element differs by 5e-6 (fused or not), so 1e-4 catches any real bug.
# fp16: weights and activations rounded to 11 bits. Measured (2026-12-02) on MiniLM's
# fused fp16 variant (ORT CPU provider) vs PyTorch fp32 over validate's 13 random shapes
# (1x1 .. 8x512) and 200 Debian descriptions: worst element max abs 9.1e-3 (needs atol
# 2.85e-3 with rtol 1e-2), worst per-sample cosine of last_hidden_state 0.9999976, of
# the mean-pooled embedding 0.9999983 (text alone: 7.5e-3, 0.9999989, 0.9999992).
# atol 2e-2 is 7x the worst need and min cosine 0.9999 40x the worst 1 - cosine: room
# for other models and GPU kernels, tight enough that an overflowing or broken layer
# fails. (smoke used 5e-2 / 0.999 before: 17x / 400x, loose enough to hide a bad layer.)
# bf16: 8-bit mantissa. Measured the same way on OpenVINO's bf16 run of the plain
# MiniLM export: worst max abs 3.5e-2 (needs atol 2.2e-2 with rtol 1e-2), worst
# cosine 0.999937 token-level, 0.999958 mean-pooled. atol 1e-1 (4.5x) and min cosine
# 0.999 (16x the worst 1 - cosine).
# int8: per-element error is not bounded usefully (MiniLM, dynamic per-channel: worst
# element 0.87, worst cosine 0.971); direction and predicted classes are what matter.
DEFAULT_TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(atol=1e-4, rtol=1e-4, min_cosine=0.99999, min_argmax=0.999),
    "fp16": Tolerance(atol=2e-2, rtol=1e-2, min_cosine=0.9999, min_argmax=0.99),
    "bf16": Tolerance(atol=1e-1, rtol=1e-2, min_cosine=0.999, min_argmax=0.98),
    "int8": Tolerance(atol=None, rtol=0.0, min_cosine=0.95, min_argmax=0.9),
}
assert set(DEFAULT_TOLERANCES) == set(PRECISIONS), "one default tolerance per precision in vocab.PRECISIONS"

def default_tolerance(precision: str | None) -> Tolerance:
    """The default for ``precision``; an unknown or missing precision is judged as fp32."""
    return DEFAULT_TOLERANCES.get(precision or "fp32") or DEFAULT_TOLERANCES["fp32"]


def resolve_tolerance(output: str, precision: str | None,
                      overrides: Mapping[str, Mapping[str, float]] | None = None) -> Tolerance:
    """The tolerance for one output: the precision's default, with per-output overrides.

    ``overrides`` maps a field name (``atol``, ...) to ``{output or "*": value}``; a
    named output wins over ``*``, and ``inf`` switches a bound off (``--atol OUT=inf``).
    """
    base = default_tolerance(precision)
    overrides = overrides or {}

    def pick(name: str) -> float | None:
        table = overrides.get(name) or {}
        default = getattr(base, name)
        value = table[output] if output in table else table.get("*", default)
        return None if value is not None and math.isinf(value) else value

    return Tolerance(atol=pick("atol"), rtol=pick("rtol") or 0.0, min_cosine=pick("min_cosine"),
                     min_argmax=pick("min_argmax"))
